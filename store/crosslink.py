"""Local state from artifacts: the one builder of derived state (Fossil's crosslink).

Whatever brings artifacts into the store — a write, an import, a rebuild,
a sync — stores them first and then calls ``crosslink`` with their ids, in
the same transaction. It is the only code that turns artifacts into the
local tables: check-in records and their sequence, parent/child links,
leaves, sym-tags (from manifests and control artifacts), the path log,
phantoms for what they reference but the store lacks, and the branch tips
with their tree index. It can also reverse-deltify what arrived (a file's
older version becomes a delta on its newer one, and a parent's manifest on
its child's), as local writes are stored.

Callers that already know something pass it in, so that it is not
computed twice: the parsed artifacts (``parsed``), a check-in's file count
and changed paths (``summaries``), a tree index already brought to a
check-in (``tree_at``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from herofossil.errors import HeroFossilError, IntegrityError
from herofossil.store import blobs
from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.checkins import (
    DEFAULT_BRANCH,
    MANIFESTS,
    UNKNOWN_BRANCH,
    Checkin,
    CheckinIndex,
    checkin_summary,
)
from herofossil.store.keys import id_key
from herofossil.store.reports import Report, quiet
from herofossil.store.tree import Tree, perm_of


@dataclass
class Linked:
    """What one ``crosslink`` call indexed."""

    checkins: list[Checkin] = field(default_factory=list)
    controls: int = 0
    branches: set[str] = field(default_factory=set)


def topological(manifests: dict[bytes, mf.Manifest]) -> list[bytes]:
    """Check-in ids ordered parents first (among ``manifests``), ties by date."""
    pending = {}
    children: dict[bytes, list[bytes]] = {}
    for cid, m in manifests.items():
        ps = [id_key(p) for p in m.parents if id_key(p) in manifests]
        pending[cid] = len(ps)
        for p in ps:
            children.setdefault(p, []).append(cid)
    ready = [(manifests[c].date, c) for c, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, cid = heapq.heappop(ready)
        order.append(cid)
        for ch in children.get(cid, []):
            pending[ch] -= 1
            if pending[ch] == 0:
                heapq.heappush(ready, (manifests[ch].date, ch))
    if len(order) != len(manifests):
        raise IntegrityError("check-ins form a cycle; the store is damaged")
    return order


def fill_tree(tree: Tree, aw: ArtifactWriter, files: dict[str, mf.FileCard], mtime: float):
    """Rebuild ``tree`` from a resolved file list (a moved tip, a fork, a rebuild)."""
    tree.clear()
    for name in sorted(files):
        card = files[name]
        aid = id_key(card.uuid)
        size = aw.size(aid) if aw.has(aid) else 0
        tree.put(name, perm_of(card.perm), size, mtime, aid)


def leaf_branches(txn, dbs) -> set[str]:
    """Every branch that has a leaf (so a check-in), with a tip or not."""
    out: set[str] = set()
    for key in txn.cursor(db=dbs["leaf"]).iternext(values=False):
        out.add(key.partition(b"\0")[0].decode())
    return out


def tree_kept_at(ci: CheckinIndex, branch: str, cid: bytes) -> None:
    """Record that ``branch``'s tree index now holds check-in ``cid``, its tip (a writer
    brought it there, change by change)."""
    ci.set_tip(branch, cid, indexed=True)


def crosslink(
    txn,
    dbs,
    aids: Iterable[bytes],
    *,
    aw: ArtifactWriter | None = None,
    reader=None,
    parsed: dict[bytes, mf.Manifest | mf.ControlArtifact] | None = None,
    summaries: dict[bytes, tuple[int, list[str] | None, float | None]] | None = None,
    update_tips: bool = True,
    indexed: Iterable[str] = (),
    touch: Iterable[str] = (),
    tree_at: dict[str, bytes] | None = None,
    deltify: bool = False,
    deltify_merges: bool = False,
    stored_refs: bool = False,
    progress: Report = quiet,
) -> Linked:
    """Derive the local state of the artifacts ``aids``, which are now stored.

    ``aw``: the transaction's ArtifactWriter (a new one if None); ``reader``:
    what reads contents (default ``aw``). Artifacts that are not manifests
    or control artifacts (file contents) need nothing but phantom bookkeeping,
    which storing them did. ``update_tips``: point every branch that got a
    check-in at its newest leaf; its tree index is kept where it was kept,
    for the default branch of a new store, and for the branches in
    ``indexed``; ``touch``: more branches to bring up to date (an earlier batch's).
    ``deltify``: store what arrived as reverse deltas; ``deltify_merges``: only the
    versions merged branches had where the merges have others (new writes and imports;
    never a rebuild, which keeps stored forms as they are). ``stored_refs``: everything the
    check-ins reference is stored or a phantom already (a local write: its files were just
    added or come from the tree, whose manifests were crosslinked), so none is looked up
    (16 lookups of a write's 500 us).
    """
    aw = aw or ArtifactWriter(txn, dbs)
    reader = reader or aw
    parsed = parsed or {}
    summaries = summaries or {}
    ci = CheckinIndex(txn, dbs)
    manifests: dict[bytes, mf.Manifest] = {}
    controls: list[mf.ControlArtifact] = []
    for aid in aids:
        art = parsed.get(aid)
        if art is None:
            if ci.get(aid) is not None:
                continue
            try:
                art = mf.parse_artifact(reader.content(aid))
            except HeroFossilError:  # file content, or not ours to index
                continue
        if isinstance(art, mf.Manifest):
            if ci.get(aid) is None:
                manifests[aid] = art
        elif isinstance(art, mf.ControlArtifact):
            controls.append(art)
    linked = Linked(controls=len(controls))
    order = topological(manifests)
    seen: set[str] = set()
    for n, cid in enumerate(order, 1):
        m = manifests[cid]
        MANIFESTS.remember(cid, m)
        # Every file a check-in references is a card of it or of its baseline, which is a
        # check-in too: looking at each manifest's own cards covers all references once.
        for ref in () if stored_refs else [*m.parents, *(c.uuid for c in m.files if c.uuid)]:
            if len(ref) == 64 and ref not in seen:
                seen.add(ref)
                aw.add_phantom(id_key(ref))
        if cid in summaries:
            nfiles, changed, when = summaries[cid]
        else:
            nfiles, changed = _summary(ci, reader, m, manifests)
            when = None
        record = ci.index_checkin(cid, m, nfiles, changed, when)
        linked.checkins.append(record)
        linked.branches.add(record.branch)
        _relink_children(ci, reader, record, linked)
        if deltify:
            _deltify_checkin(aw, reader, cid, m, changed)
        if (deltify or deltify_merges) and len(m.parents) > 1:
            _deltify_merged(aw, reader, cid, m)
        if n % 64 == 0:
            progress("index check-ins", n, len(order))
    for ctl in sorted(controls, key=lambda c: c.date):  # stable: ties keep arrival order
        ci.index_control(ctl)
    if update_tips:
        keep = set(indexed)
        touched = linked.branches | set(touch) | (keep & set(ci.branches()))
        for branch in sorted(touched - {UNKNOWN_BRANCH}):
            _update_tip(txn, dbs, aw, reader, ci, branch, branch in keep,
                        (tree_at or {}).get(branch))
    if order:
        progress("index check-ins", len(order), len(order))
    return linked


def _relink_children(ci: CheckinIndex, reader, parent: Checkin, linked: Linked) -> None:
    """Derive again what was derived without ``parent``, just indexed: a child indexed
    before it (in a clone a manifest can come ahead of its parent, as the base of the
    parent's reverse delta) got no branch and every file as changed, and its descendants
    inherited that no-branch. A descendant indexed after its own parent only takes the
    branch (``rebranch``): a clone of config-L re-derived every check-in once in full."""
    stack = [(parent, parent.seq)]  # a check-in, and its sequence when first indexed
    while stack:
        up, first = stack.pop()
        for child in ci.children(id_key(up.id)):
            old = ci.get(child)
            if old is None or not old.parents or old.parents[0] != up.id:
                continue
            m = MANIFESTS.manifest(reader, child)
            own_branch = any(t.name == "branch" and t.kind == "*" and t.target == "*"
                             for t in m.tags)
            if old.seq > first:  # indexed after its parent: what it changed is right
                if own_branch or old.branch == up.branch:
                    continue  # and on the branch it has
                rec = ci.rebranch(child, old, up.branch)
            else:
                nfiles, changed = _summary(ci, reader, m, {})
                # Its path log names what it changed: its files, and what it deleted or
                # renamed away (against the parent now here, or all its files when it was
                # indexed).
                ci.unindex(child, old, {*MANIFESTS.files(reader, child), *(changed or ())})
                rec = ci.index_checkin(child, m, nfiles, changed)
            linked.branches.update((old.branch, rec.branch))
            for pid in m.parents:
                if (p := ci.get(id_key(pid))) is not None:
                    ci.settle_leaf(p)
            if rec.branch != old.branch:
                stack.append((rec, old.seq))


def _summary(ci: CheckinIndex, reader, m: mf.Manifest, new: dict[bytes, mf.Manifest]
             ) -> tuple[int, list[str] | None]:
    pid = m.parents[0] if m.parents else None
    parent = None
    if pid is not None:
        pkey = id_key(pid)
        parent = new.get(pkey)
        if parent is None and ci.get(pkey) is not None:
            try:
                parent = MANIFESTS.manifest(reader, pkey)
            except HeroFossilError:
                parent = None
    try:
        return checkin_summary(m, parent, pid if parent else None,
                               lambda h: MANIFESTS.files(reader, id_key(h)))
    except HeroFossilError:  # a baseline or parent manifest is missing: index it anyway
        return len(m.files), None


def _deltify_checkin(aw: ArtifactWriter, reader, cid: bytes, m: mf.Manifest,
                     changed: list[str] | None) -> None:
    """Older versions of what ``cid`` changed become reverse deltas on its versions."""
    if not m.parents or not changed:
        return
    pid = id_key(m.parents[0])
    try:
        before = MANIFESTS.files(reader, pid)
        after = MANIFESTS.files(reader, cid)
    except HeroFossilError:
        return
    added = []
    for path in changed:
        old, new = before.get(path), after.get(path)
        if old is None and new is not None and new.uuid:
            added.append(path)
        if old is None or new is None or old.uuid == new.uuid:
            continue
        a, b = id_key(old.uuid), id_key(new.uuid)
        if aw.has(a) and aw.has(b):
            aw.deltify(a, b)
    if added:
        removed = [(p, before[p].uuid) for p in changed
                   if p in before and p not in after and before[p].uuid]
        modified = [(p, after[p].uuid) for p in changed if p in before and p in after
                    and after[p].uuid and after[p].uuid != before[p].uuid]
        deltify_added(aw, removed, modified, [(p, after[p].uuid) for p in added])
    if aw.has(pid):
        aw.deltify(pid, cid)


MAX_ADDED_BASES = 16  # candidate bases one check-in's new paths are tried against, at most


def deltify_added(aw: ArtifactWriter, removed: list[tuple[str, str]],
                  modified: list[tuple[str, str]], added: list[tuple[str, str]]) -> None:
    """Give a path new in a check-in (``added``: path, artifact id) a base among the
    paths the check-in removed (a rename: the removed path's last version becomes a delta
    on the new one) or changed (a copy: the new file becomes a delta on the changed file's
    version): of the same name, else of the same extension and the closest size. On a
    real history (toml-lang/toml) the versioned copies of its specification were whole,
    45 KB of 3.71 MB, where a copy of README.md in the same check-in makes 7 of them deltas
    of ~100 bytes."""
    if not removed and not modified or len(removed) + len(modified) > MAX_ADDED_BASES:
        return
    pool = [(p, u, True) for p, u in removed] + [(p, u, False) for p, u in modified]
    sizes: dict[str, int] = {}

    def size(uuid: str) -> int:
        if uuid not in sizes:
            aid = id_key(uuid)
            sizes[uuid] = aw.size(aid) if aw.has(aid) else -1
        return sizes[uuid]

    for path, uuid in added:
        target = size(uuid)
        if target < blobs.MIN_DELTA_SIZE:
            continue
        name, ext = path.rpartition("/")[2], path.rpartition(".")[2]
        same = [c for c in pool if c[0].rpartition("/")[2] == name]
        if not same:
            same = sorted((c for c in pool if c[0].rpartition(".")[2] == ext
                           and size(c[1]) >= blobs.MIN_DELTA_SIZE),
                          key=lambda c: abs(size(c[1]) - target))
        if not same:
            continue
        _, base, was_removed = same[0]
        new, other = id_key(uuid), id_key(base)
        if was_removed:
            aw.deltify(other, new)  # a reverse delta, as for two versions of one path
        else:
            aw.deltify_onto(new, other)


def _deltify_merged(aw: ArtifactWriter, reader, cid: bytes, m: mf.Manifest) -> None:
    """The versions a merged branch had where merge ``cid`` has others become deltas on
    the merge's, and so does the merged branch's last manifest: nothing else succeeds
    them (on a real Git history, 0.18 MB of 0.41 MB of old versions kept whole were such,
    and 138 of 219 whole manifests, 90 KB, were merged sides')."""
    try:
        after = MANIFESTS.files(reader, cid)
    except HeroFossilError:
        return
    for mp in m.parents[1:]:
        side = id_key(mp)
        try:
            merged = MANIFESTS.files(reader, side)
        except HeroFossilError:
            continue
        for path, old in merged.items():
            new = after.get(path)
            if new is None or old.uuid == new.uuid:
                continue
            _deltify_on_later(aw, id_key(old.uuid), id_key(new.uuid))
        _deltify_on_later(aw, side, cid)


def _deltify_on_later(aw: ArtifactWriter, old: bytes, new: bytes) -> None:
    """Make ``old`` a delta on ``new``, also when an import made ``new`` a delta on a
    later version already; where the chain through ``new`` is too long, on the nearest
    version along it (what ``new`` is a delta on, and so on) that keeps ``old``'s chain
    within ``MAX_CHAIN``. The chain's whole end was the fallback once: on a real history
    its deltas were 10-15 times larger than on a near version (55 KB more of 2.8 MB on
    the wire of a Fossil clone, most of what Fossil's own server sent less)."""
    if not aw.has(old) or not aw.has(new):
        return
    along = [new]  # ``new``, then what it is a delta on, ..., the chain's whole end
    while (base := blobs.delta_base(aw.stored(along[-1]))) is not None and aw.has(base) \
            and len(along) <= blobs.MAX_CHAIN:
        along.append(base)
    # ``old``'s chain then reaches ``chain_len(old) + 1`` hops past the version chosen, and
    # the k-th of ``along`` is ``len(along) - 1 - k`` hops from the end: the nearest that
    # fits is tried, once (a farther one is less like ``old``).
    nearest = aw.chain_len(old) + len(along) - blobs.MAX_CHAIN
    if nearest < len(along):
        aw.deltify_onto(old, along[max(0, nearest)])


def _update_tip(txn, dbs, aw: ArtifactWriter, reader, ci: CheckinIndex, branch: str,
                keep_index: bool, tree_at: bytes | None) -> None:
    """Point ``branch`` at its newest leaf, with its tree index where one is kept (a
    touched branch with no check-in yet is left alone)."""
    leaves = ci.leaves(branch)
    if not leaves:
        return
    tip = ci.newest_leaf(branch, leaves)
    indexed = keep_index or ci.indexed(branch) or (
        ci.tip(branch) is None and branch == DEFAULT_BRANCH)
    if tree_at is not None and tip == tree_at:
        tree_kept_at(ci, branch, tip)
        return
    if ci.tip(branch) == tip and ci.indexed(branch) == indexed and tree_at is None:
        return
    ci.set_tip(branch, tip, indexed=indexed)
    if indexed:
        fill_tree(Tree(txn, dbs["tree"], branch), aw, MANIFESTS.files(reader, tip),
                  ci.require(tip).time)


def set_tips(txn, dbs, aw: ArtifactWriter, reader, branches: Iterable[str], *,
             indexed: Iterable[str], tips: dict[str, bytes] | None = None) -> None:
    """Give each of ``branches`` (in a store whose tips were dropped: a rebuild) its tip:
    its newest leaf, or ``tips[branch]`` where that is a check-in of the branch (a
    branch ``tips`` leaves out gets none); a tree index for those in ``indexed``."""
    ci = CheckinIndex(txn, dbs)
    keep = set(indexed)
    for branch in branches:
        tip = ci.newest_leaf(branch)
        if tips is not None:
            if branch not in tips:
                continue
            rec = ci.get(tips[branch])
            if rec is not None and rec.branch == branch:
                tip = tips[branch]
        ci.set_tip(branch, tip, indexed=branch in keep)
        if branch in keep:
            fill_tree(Tree(txn, dbs["tree"], branch), aw, MANIFESTS.files(reader, tip),
                      ci.require(tip).time)


def arrived(txn, dbs, aw: ArtifactWriter, ids: set[bytes]) -> None:
    """Artifacts ``ids`` were phantoms (referenced, not present) and are stored now: the
    tree indexes that list them get their sizes."""
    if not ids:
        return
    ci = CheckinIndex(txn, dbs)
    for branch in ci.branches():
        if not ci.indexed(branch):
            continue
        tree = Tree(txn, dbs["tree"], branch)
        for entry in list(tree.walk()):
            aid = id_key(entry.id)
            if aid in ids:
                tree.put(entry.path, entry.perm, aw.size(aid), entry.mtime, aid, exists=True)
