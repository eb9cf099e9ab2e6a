"""The one write path: a list of changes becomes one check-in in one transaction.

Every writer (command line, WebDAV, config API, merge) calls ``commit``. It
applies the changes to the branch's current leaf inside the write
transaction, so concurrent writers of different files never lose each
other's work, and ``expect`` preconditions catch lost updates of one file.

Manifests: a check-in is a Fossil delta-manifest (B card) listing only what
differs from its baseline, so a write costs O(changes), not O(files); a full
baseline is written again when the delta grows past ``delta_limit`` files.
"""

from __future__ import annotations

import math
import time
import unicodedata
from datetime import UTC, datetime

from herofossil.errors import (
    ConflictError,
    InvalidPathError,
    NotFoundError,
    StoreError,
    UsageError,
)
from herofossil.store import manifest as mf
from herofossil.store.artifacts import KNOWN, ArtifactWriter
from herofossil.store.blobs import artifact_id
from herofossil.store.changes import (
    ABSENT,
    Delete,
    MakeDir,
    Put,
    PutArtifact,
    Rename,
    check_expect,
)
from herofossil.store.checkins import MANIFESTS, Checkin, CheckinIndex
from herofossil.store.chunks import Staged
from herofossil.store.crosslink import crosslink, fill_tree, tree_kept_at
from herofossil.store.keys import id_key, id_name
from herofossil.store.paths import DIR_MARKER, is_under, normalize
from herofossil.store.tree import Tree, check_perm, refuse_folder

_NOT_LOOKED_UP = object()


def delta_limit(nfiles: int) -> int:
    """Cards a delta-manifest may carry before a full baseline is written (import too)."""
    # Delta size grows by one card per changed file; a full baseline costs
    # O(files). Re-baselining at ~2*sqrt(files) keeps the amortised cost per
    # check-in O(sqrt(files)) while manifests stay small.
    return max(16, int(2 * math.sqrt(max(nfiles, 1))))


def _as_bytes(data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise UsageError(f"file content must be bytes or str, not {type(data).__name__}")


def _check_expect(path: str, expect: str | None, current: bytes | None) -> None:
    check_expect(path, expect, id_name(current) if current is not None else None)


class _Pending:
    """The changes of one check-in as they are applied to the tree."""

    def __init__(self, tree: Tree, aw: ArtifactWriter, mtime: float):
        self.tree = tree
        self.aw = aw
        self.mtime = mtime
        self.cards: dict[str, mf.FileCard] = {}
        self.replaced: list[tuple[bytes, bytes, bytes]] = []
        self.nfiles_delta = 0
        # What each touched path held before this check-in: (id, perm), None for nothing.
        self.before: dict[str, tuple[str, str] | None] = {}

    def _remember(self, path: str, entry) -> None:
        if path not in self.before:
            self.before[path] = None if entry is None else (entry.id, entry.perm)

    def changed(self) -> dict[str, mf.FileCard]:
        """The cards of the paths whose state differs from before this check-in (a file
        put and removed again, or put back as it was, is no change)."""
        return {path: card for path, card in self.cards.items()
                if self.before.get(path) != (None if card.uuid is None
                                             else (card.uuid, card.perm or ""))}

    def put(self, path: str, aid: bytes, perm: str, size: int, entry=_NOT_LOOKED_UP) -> None:
        """Put file ``aid`` at ``path``; ``entry``: what is there (None: nothing), if the
        caller looked."""
        if entry is _NOT_LOOKED_UP:
            entry = self.tree.get(path)
        refuse_folder(path, entry)
        if entry is None and not path.isascii():
            self._check_normalisation(path)
        old = None if entry is None else id_key(entry.id)
        if old == aid and entry.perm == perm:
            return
        self._remember(path, entry)
        self.tree.put(path, perm, size, self.mtime, aid, exists=entry is not None)
        self.cards[path] = mf.FileCard(path, id_name(aid), perm)
        if old is None:
            self.nfiles_delta += 1

    def _check_normalisation(self, path: str) -> None:
        """Refuse a new name that equals a sibling's in Unicode NFC (café vs cafe + U+0301):
        macOS and Windows mounts would show one of them only."""
        segs = path.split("/")
        for n in range(1, len(segs) + 1):
            here = "/".join(segs[:n])
            if self.tree.get(here) is not None:
                continue
            name = segs[n - 1]
            if not name.isascii():
                want = unicodedata.normalize("NFC", name)
                for e in self.tree.listdir("/".join(segs[:n - 1]), markers=False):
                    if e.name != name and unicodedata.normalize("NFC", e.name) == want:
                        raise ConflictError(
                            f"{here!r} and the existing {e.path!r} differ only in Unicode "
                            "normalisation (NFC/NFD): macOS and Windows show them as one "
                            "name; nothing was written: use the existing name")
            return

    def remove(self, path: str) -> None:
        if path not in self.before:
            self._remember(path, self.tree.get(path))
        self.tree.remove(path, self.mtime)
        self.cards[path] = mf.FileCard(path, None)
        self.nfiles_delta -= 1

    def apply(self, change) -> None:
        if isinstance(change, Put):
            self._put(change)
        elif isinstance(change, Delete):
            self._delete(change)
        elif isinstance(change, Rename):
            self._rename(change)
        elif isinstance(change, MakeDir):
            self._mkdir(change)
        elif isinstance(change, PutArtifact):
            self._put_artifact(change)
        else:
            raise UsageError(f"unknown change {change!r}")

    def _put(self, ch: Put) -> None:
        path = normalize(ch.path)
        staged = ch.data if isinstance(ch.data, Staged) else None
        data = None if staged else _as_bytes(ch.data)
        entry = self.tree.get(path)
        refuse_folder(path, entry)
        current = id_key(entry.id) if entry else None
        _check_expect(path, ch.expect, current)
        perm = check_perm(ch.perm if ch.perm is not None else (entry.perm if entry else ""))
        if staged is not None:  # stored in parts already, never a delta
            aid, _ = self.aw.add_staged(staged)
            self.put(path, aid, perm, staged.size, entry)
            return
        aid, added = self.aw.add(data)
        if added and current is not None:
            self.replaced.append((current, aid, data))
        self.put(path, aid, perm, len(data), entry)

    def _put_artifact(self, ch: PutArtifact) -> None:
        path = normalize(ch.path, marker=True)
        aid = id_key(ch.id)
        if not self.aw.has(aid):
            raise NotFoundError(f"artifact {ch.id} is not in the store")
        entry = self.tree.get(path)
        refuse_folder(path, entry)
        _check_expect(path, ch.expect, id_key(entry.id) if entry else None)
        self.put(path, aid, check_perm(ch.perm), self.aw.size(aid))

    def _delete(self, ch: Delete) -> None:
        path = normalize(ch.path, marker=True)
        entry = self.tree.get(path)
        if entry is None:
            raise NotFoundError(f"{path}: no such file or folder")
        if entry.is_dir:
            if not ch.recursive:
                raise UsageError(f"{path} is a folder: delete it recursively")
            for f in list(self.tree.walk(path)):
                self.remove(f.path)
            return
        _check_expect(path, ch.expect, id_key(entry.id))
        self.remove(path)

    def _rename(self, ch: Rename) -> None:
        src, dst = normalize(ch.src), normalize(ch.dst)
        if src == dst:
            return
        entry = self.tree.get(src)
        if entry is None:
            raise NotFoundError(f"{src}: no such file or folder")
        target = self.tree.get(dst)
        if entry.is_dir:
            if is_under(dst, src):
                raise InvalidPathError(f"cannot move folder {src} into itself ({dst})")
            if target is not None and not ch.overwrite:
                raise ConflictError(f"{dst} already exists; nothing was moved")
            if target is not None:
                self._delete(Delete(dst, recursive=True))
            moves = [(f.path, dst + f.path[len(src) :], f) for f in self.tree.walk(src)]
        else:
            _check_expect(src, ch.expect, id_key(entry.id))
            if target is not None:
                if target.is_dir or not ch.overwrite:
                    raise ConflictError(f"{dst} already exists; nothing was moved")
            moves = [(src, dst, entry)]
        for old, _new, _f in moves:
            self.remove(old)
        for _old, new, f in moves:
            aid = id_key(f.id)
            if self.tree.file_id(new) is not None:
                self.remove(new)
            self.put(new, aid, f.perm, f.size)

    def _mkdir(self, ch: MakeDir) -> None:
        path = normalize(ch.path)
        entry = self.tree.get(path)
        if ch.expect is not None:
            if ch.expect != ABSENT:
                raise UsageError(f"MakeDir {path}: expect can only be ABSENT")
            _check_expect(path, ABSENT, b"" if entry is not None else None)
        if entry is not None:
            if entry.is_dir:
                return
            raise ConflictError(f"{path} is a file; cannot create a folder there")
        aid, _ = self.aw.add(b"")
        self.put(path + "/" + DIR_MARKER, aid, "", 0)


def _next_date(parent: Checkin | None, at: float | None = None) -> tuple[str, float]:
    """Now (or ``at``), in Fossil's millisecond format and as a timestamp, always after
    the parent's."""
    ms = int(time.time() * 1000) if at is None else round(at * 1000)
    if parent is not None:
        ms = max(ms, round(parent.time * 1000) + 1)
    when = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    return mf.datetime_to_date(when), when.timestamp()


class AlreadyCommitted(Exception):
    """The check-in a ``commit`` would make is in the store already (raised inside the
    write, so nothing of it is kept). Only a fork's merge, written byte for byte the same
    by every process and peer that makes it, can meet one made first elsewhere."""

    def __init__(self, checkin: Checkin):
        super().__init__(checkin.id)
        self.checkin = checkin


def commit(
    txn,
    dbs,
    changes,
    *,
    branch: str,
    message: str,
    user: str,
    parent: bytes | None = None,
    merge_parents: tuple[bytes, ...] = (),
    allow_empty: bool = False,
    at: float | None = None,
    written: dict[str, str] | None = None,
) -> Checkin | None:
    """Apply ``changes`` to ``branch`` as one check-in; returns it (None if nothing changed).

    ``parent`` defaults to the branch tip; a branch that does not exist yet is
    started from ``parent`` (required then) with Fossil's branch tags. ``at``:
    the check-in's time instead of now (a check-in that every peer must write
    byte for byte the same: a fork's merge).
    """
    aw = ArtifactWriter(txn, dbs)
    ci = CheckinIndex(txn, dbs)
    tip = ci.tip(branch)
    tree = Tree(txn, dbs["tree"], branch)
    parent, prec, tags = _start_at(txn, dbs, ci, aw, tree, branch, tip, parent)
    date, when = _next_date(prec, at)
    pending = _Pending(tree, aw, when)
    for change in changes:
        pending.apply(change)
    changed = pending.changed()
    if written is not None:  # path -> artifact id of what this check-in puts there
        written.update((p, c.uuid) for p, c in changed.items() if c.uuid)
    if not changed and not merge_parents and not tags and not allow_empty:
        if parent != tip:
            fill_tree(tree, aw, MANIFESTS.files(aw, tip), ci.require(tip).time)
        tree_kept_at(ci, branch, tip)
        return None
    nfiles = prec.nfiles + pending.nfiles_delta
    pm = MANIFESTS.manifest(aw, parent)
    baseline, files, full = _file_cards(aw, pm, parent, changed, nfiles)
    m = mf.Manifest(
        comment=message,
        date=date,
        user=user,
        files=files,
        parents=[id_name(parent)] + [id_name(p) for p in merge_parents],
        tags=tags,
        baseline=baseline,
    )
    data = m.to_bytes()
    existing = ci.get(artifact_id(data))
    if existing is not None:
        raise AlreadyCommitted(existing)
    cid = _store_manifest(aw, data, pm, parent, full, pending.replaced)
    linked = crosslink(txn, dbs, [cid], aw=aw, parsed={cid: m}, deltify_merges=True,
                       stored_refs=True,
                       summaries={cid: (nfiles, list(changed), when)},
                       tree_at={branch: cid})
    record = linked.checkins[0]
    if record.branch != branch:  # its parent is another branch's: never write elsewhere
        raise StoreError(f"branch {branch!r} names check-in {id_name(parent)[:16]} of branch "
                         f"{record.branch!r} as its tip; nothing was written: run "
                         "'herofossil rebuild'")
    KNOWN.add(cid, data)
    return record


def _start_at(txn, dbs, ci: CheckinIndex, aw: ArtifactWriter, tree: Tree, branch: str,
              tip: bytes | None, parent: bytes | None
              ) -> tuple[bytes, Checkin, list[mf.TagCard]]:
    """(parent id, its record, the tags of a new branch) of a check-in on ``branch``, with
    ``tree`` holding the parent's files."""
    if tip is None:
        if parent is None:
            raise NotFoundError(f"no branch {branch!r}: start it from a version first")
        prec = ci.require(parent)
        tags = [
            mf.TagCard("*", "branch", "*", branch),
            mf.TagCard("*", "sym-" + branch, "*"),
            mf.TagCard("-", "sym-" + prec.branch, "*"),
        ]
        if ci.tip(prec.branch) == parent and ci.indexed(prec.branch):
            Tree(txn, dbs["tree"], prec.branch).copy_to(tree)
        else:
            fill_tree(tree, aw, MANIFESTS.files(aw, parent), prec.time)
        return parent, prec, tags
    if parent is None:
        parent = tip
    prec = ci.require(parent)
    if parent != tip or not ci.indexed(branch):
        fill_tree(tree, aw, MANIFESTS.files(aw, parent), prec.time)
    return parent, prec, []


def _file_cards(aw: ArtifactWriter, pm: mf.Manifest, parent: bytes, changed: dict,
                nfiles: int) -> tuple[str | None, list[mf.FileCard], bool]:
    """(baseline, F cards, full) of the manifest after ``pm``: a delta-manifest on the
    parent's baseline, or a full baseline (None) once the delta outgrows ``delta_limit``."""
    if pm.baseline:
        baseline, cards = pm.baseline, {c.name: c for c in pm.files}
    else:
        baseline, cards = id_name(parent), {}
    cards.update(changed)
    if len(cards) > delta_limit(nfiles):  # the baseline's files with every change since
        base = MANIFESTS.baseline(aw, id_key(baseline)) if pm.baseline else pm
        files = list(mf.overlay_cards({c.name: c for c in base.files}, cards.values()).values())
        return None, files, True
    return baseline, list(cards.values()), False


def _store_manifest(aw: ArtifactWriter, data: bytes, pm: mf.Manifest, parent: bytes,
                    full: bool, replaced: list) -> bytes:
    """Store the manifest ``data``, and the reverse deltas it and the new file versions
    allow (``replaced``: (old id, new id, new bytes)); returns its id."""
    cid, _ = aw.add(data, cards=True)
    for old, new, new_data in replaced:
        aw.deltify(old, new, new_data=new_data)
    if full:  # the previous baseline becomes a reverse delta on the new one
        aw.deltify(id_key(pm.baseline) if pm.baseline else parent, cid, new_data=data)
        if pm.baseline:  # the last delta-manifest of the cycle stays whole: compress it
            aw.compress(parent, cards=True)
    else:
        # The next check-in turns this delta-manifest into a delta on its own:
        # compressing it now would be wasted (and so would decompressing it then).
        aw.keep_uncompressed(cid)
        # Consecutive delta-manifests share most of their cards; one that stays
        # whole (not worth a delta) is compressed.
        if pm.baseline and not aw.deltify(parent, cid, new_data=data):
            aw.compress(parent, cards=True)
    return cid
