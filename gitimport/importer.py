"""Git -> store: every branch and tag of a Git repository as Fossil check-ins, losslessly.

One pass over the new commits in topological order (see ``stream``): each
commit becomes a check-in whose manifest is a delta on its first parent's
baseline (a full manifest again every ~2*sqrt(files) changes), linking the
raw commit object and any raw trees the files cannot reproduce (see
``metadata``). Refs are recorded last, in one control artifact.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from dataclasses import dataclass, field

from herofossil.errors import InvalidPathError
from herofossil.gitimport import gitproc
from herofossil.gitimport.errors import GitError, GitObjectError, UnstorablePathError
from herofossil.gitimport.metadata import (
    TAG_COMMIT,
    TAG_HEAD,
    TAG_REF,
    TAG_TREES,
    GitIndex,
    RefRecord,
    decode_trees,
    encode_trees,
    git_tags_of,
)
from herofossil.gitimport.objects import (
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    CommitInfo,
    file_perm,
    is_tree_mode,
    parse_tree_raw,
    plain_tree,
    split_ident,
)
from herofossil.gitimport.stream import CommitStream
from herofossil.store import manifest as mf
from herofossil.store.lru import LRU
from herofossil.store.paths import normalize
from herofossil.store.repo import default_user
from herofossil.store.writer import delta_limit

DEFAULT_BRANCH = "trunk"
FLUSH_EVERY = 2000
_PLAIN = (MODE_FILE, MODE_EXEC, MODE_LINK)


@dataclass
class ImportResult:
    """What an import did."""

    commits: int = 0
    skipped: int = 0
    refs_changed: int = 0
    seconds: float = 0.0
    peak_rss_kb: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _State:
    """What a child check-in needs of its first parent."""

    cid: str
    baseline: str
    cards: dict
    nfiles: int
    overrides: dict
    branch: str
    is_delta: bool


def fossil_branch(ref: str, default_ref: str | None) -> str:
    """The Fossil branch of Git branch ``ref``: the default branch is trunk."""
    if ref == default_ref:
        return DEFAULT_BRANCH
    name = ref.removeprefix("refs/heads/")
    return name + "-git" if name in (DEFAULT_BRANCH, "tip") else name


def name_default(repo, default_ref: str | None) -> None:
    """Let Git's name of its default branch (e.g. ``main``) stand for trunk."""
    if not default_ref:
        return
    name = default_ref.removeprefix("refs/heads/")
    if name != DEFAULT_BRANCH and repo.branch_aliases().get(name) != DEFAULT_BRANCH:
        repo.set_branch_alias(name, DEFAULT_BRANCH)


def _default_ref(gitdir: str, branch_refs: list[str]) -> str | None:
    head = gitproc.head_ref(gitdir)
    if head in branch_refs:
        return head
    for name in ("refs/heads/main", "refs/heads/master"):
        if name in branch_refs:
            return name
    return branch_refs[0] if branch_refs else None


def _tag_ok(name: str) -> bool:
    return bool(name) and not all(c in "0123456789abcdefABCDEF" for c in name)


class Importer:
    """One import run into ``repo`` from the Git repository at ``path``."""

    def __init__(self, repo, path: str, *, incremental: bool = False, progress=None,
                 on_commit=None):
        self.repo = repo
        self.gitdir = gitproc.find_gitdir(path)
        gitproc.check_importable(self.gitdir)
        self.incremental = incremental
        self.progress = progress or (lambda *a: None)
        self.on_commit = on_commit
        self.index = GitIndex(repo)
        self.result = ImportResult()
        self.cids: dict[str, str] = {}
        self.states = LRU(max_items=256)  # check-in id -> _State
        self.baselines = LRU(max_items=8)  # baseline id -> its files by name
        self.blobs: dict[str, str] = {}
        self.seen_blobs: set[str] = set()
        self.memo: dict[str, tuple[bool, bool]] = {}
        self.cat: gitproc.CatFile | None = None
        self.bulk = None

    # ---- planning
    def _peel(self, sha: str, kind: str) -> tuple[str | None, list[bytes]]:
        tags = []
        while kind == "tag":
            _, _, raw = self.cat.get(sha, "tag")
            tags.append(raw)
            head = dict(line.split(b" ", 1) for line in raw.split(b"\n\n")[0].split(b"\n")
                        if b" " in line)
            sha, kind = head.get(b"object", b"").decode(), head.get(b"type", b"").decode()
        return (sha if kind == "commit" else None), tags

    def _plan(self, refs):
        tips = sorted({sha for _, sha, _ in refs})
        frontier = self.index.json("frontier", []) if self.incremental else []
        if frontier:
            check = gitproc.CatFile(self.gitdir, check_only=True)
            try:
                frontier = [s for s in frontier if check.exists(s)]
            finally:
                check.close()
        stdin = "".join(f"{t}\n" for t in tips) + "".join(f"^{f}\n" for f in frontier)
        out = gitproc.git(self.gitdir, "rev-list", "--reverse", "--topo-order", "--parents",
                          "--stdin", input=stdin.encode()) if tips else b""
        order, parents = [], {}
        for line in out.decode().splitlines():
            c, *ps = line.split()
            order.append(c)
            parents[c] = ps
        known = self.index.checkins_of(order)
        self.cids.update(known)
        new = [c for c in order if c not in known]
        self.result.skipped = len(order) - len(new)
        return new, parents

    def _assign(self, new, parents, branch_tips, default_ref):
        newset, assigned = set(new), {}
        for ref, tip in branch_tips:
            name = fossil_branch(ref, default_ref)
            c = tip
            while c in newset and c not in assigned:
                assigned[c] = name
                c = parents[c][0] if parents[c] else None
        return assigned

    # ---- state of imported check-ins
    def _state(self, cid: str) -> _State:
        st = self.states.get(cid, refresh=True)
        if st is not None:
            return st
        self.bulk.flush()
        m = self.repo.manifest(cid)
        rec = self.repo.checkin(cid)
        _, trees = git_tags_of(m)
        overrides = decode_trees(self.repo.artifact(trees)) if trees else {}
        if m.baseline:
            st = _State(cid, m.baseline, {f.name: f for f in m.files}, rec.nfiles, overrides,
                        rec.branch, True)
        else:
            st = _State(cid, cid, {}, rec.nfiles, overrides, rec.branch, False)
        self.states.put(cid, st)
        return st

    def _baseline_files(self, bid: str) -> dict:
        files = self.baselines.get(bid)
        if files is None:
            self.bulk.flush()
            files = {f.name: f for f in self.repo.manifest(bid).files}
        self.baselines.put(bid, files)
        return files

    # ---- trees
    def _raw(self, sha: str, objects: dict) -> bytes:
        raw = objects.get(sha)
        if raw is None:
            raw = self.cat.get(sha, "tree")[2]
        return raw

    def _evaluate(self, sha: str, objects: dict) -> tuple[bool, bool]:
        """(reproducible from files, has content) of tree ``sha``."""
        got = self.memo.get(sha)
        if got is not None:
            return got
        raw = self._raw(sha, objects)
        memo = self.memo
        plain = plain_tree(raw)
        if plain is not None:  # the usual tree (a compiled scan: the parse below was a
            has_file, subtrees = plain  # quarter of the Python time of a config-L import)
            repro = True
            content = has_file
            for bid in subtrees:
                h = bid.hex()
                sub = memo.get(h) or self._evaluate(h, objects)
                content = content or sub[1]
                repro = repro and sub[1]
            return self._remember(sha, (repro, content or not repro))
        repro, content = True, False
        keys = []
        for mode, name, bid in parse_tree_raw(raw, sha):
            if mode in _PLAIN:
                content = True
                keys.append(name)
            elif mode == MODE_TREE or is_tree_mode(mode):
                h = bid.hex()
                sub = memo.get(h) or self._evaluate(h, objects)
                content = content or sub[1]
                repro = repro and sub[1] and mode == MODE_TREE
                keys.append(name + b"/")
            else:
                repro = False
                content = content or file_perm(mode) is not None
        # Entries in Git's order re-serialise to the same bytes, so the tree is reproducible.
        if repro and keys != sorted(keys):
            repro = False
        return self._remember(sha, (repro, content or not repro))

    def _remember(self, sha: str, got: tuple[bool, bool]) -> tuple[bool, bool]:
        if len(self.memo) > 500_000:
            self.memo.clear()
        self.memo[sha] = got
        return got

    # ---- one commit
    def _path(self, raw: bytes, sha: str) -> str:
        try:
            path = raw.decode("utf-8")
            if normalize(path) != path:
                raise InvalidPathError(f"{path!r} is not a canonical path")
        except UnicodeDecodeError:
            raise UnstorablePathError(
                f"commit {sha}: path {raw!r} is not UTF-8; the store holds UTF-8 paths only"
            ) from None
        except InvalidPathError as exc:
            raise UnstorablePathError(f"commit {sha}: the store cannot hold path {raw!r}: "
                                      f"{exc}") from None
        return path

    def _blob(self, sha: str, objects: dict, commit: str) -> str:
        aid = self.blobs.get(sha)
        if aid is None:
            data = objects.get(sha)
            if data is None:
                data = self.cat.get(sha, "blob")[2]
            aid = self.bulk.add_blob(data)
            if len(self.blobs) > 2_000_000:
                self.blobs.clear()
            self.blobs[sha] = aid
        return aid

    def _commit(self, item, assigned) -> str:
        b = self.bulk
        sha = item.sha
        info = CommitInfo(item.raw, sha)
        pcids = self._parent_checkins(info, sha)
        ps = self._state(pcids[0]) if pcids else None
        cards = dict(ps.cards) if ps else {}
        base = self._baseline_files(ps.baseline) if ps else {}
        overrides = dict(ps.overrides) if ps else {}
        objects = item.objects
        objects[info.tree] = item.root
        changed, new_trees, gone_dirs, nfiles = self._file_changes(
            item, base, cards, ps.nfiles if ps else 0)
        self._tree_overrides(info.tree, new_trees, gone_dirs, overrides, objects)
        tags, branch = self._tags(item.raw, ps, overrides, assigned.get(sha))
        name, email, when = split_ident(info.committer)
        full = ps is None or len(cards) > delta_limit(nfiles)
        if full:
            files = mf.overlay_cards(dict(base), cards.values())
            fcards, baseline = list(files.values()), None
        else:
            fcards, baseline = list(cards.values()), ps.baseline
        m = mf.Manifest(comment=info.text() or "(no message)", date=mf.datetime_to_date(when),
                        user=email or name or "unknown", files=fcards,
                        parents=pcids, tags=tags, baseline=baseline)
        cid = b.add_checkin(m, nfiles=nfiles, changed=changed)
        if full:
            if ps is not None:
                b.deltify(ps.baseline, cid)
            self.baselines.put(cid, files)
            st = _State(cid, cid, {}, nfiles, overrides, branch, False)
        else:
            if ps.is_delta and ps.baseline == baseline:
                b.deltify(ps.cid, cid)
            st = _State(cid, baseline, cards, nfiles, overrides, branch, True)
        self.states.put(cid, st)
        self.cids[sha] = cid
        self.index.map(sha, cid)
        return cid

    def _parent_checkins(self, info: CommitInfo, sha: str) -> list[str]:
        """The check-in ids of commit ``sha``'s parents, in order (each imported already)."""
        pcids = []
        for p in info.parents:
            pcid = self.cids.get(p) or self.index.checkin_of(p)
            if pcid is None:
                raise GitObjectError(f"commit {sha}: parent {p} was not imported")
            pcids.append(pcid)
        return pcids

    def _file_changes(self, item, base: dict, cards: dict, nfiles: int):
        """Apply the commit's changed files to ``cards`` (the delta on ``base``, the
        baseline's files); returns (changed paths, (path, sha) of new or changed trees,
        paths of trees gone, file count)."""
        b = self.bulk
        sha = item.sha
        objects = item.objects
        changed, new_trees, gone_dirs = [], [], []
        removed, modified, added = [], [], []  # (path, artifact id): bases for added paths
        for ch in item.changes:
            old_file = file_perm(ch.old_mode) is not None
            new_perm = file_perm(ch.new_mode) if ch.status != "D" else None
            if is_tree_mode(ch.old_mode) and not (ch.status != "D" and is_tree_mode(ch.new_mode)):
                gone_dirs.append(ch.path.decode("utf-8", "surrogateescape"))
            if ch.status != "D" and is_tree_mode(ch.new_mode):
                new_trees.append((ch.path.decode("utf-8", "surrogateescape"), ch.new))
            if not old_file and new_perm is None:
                continue
            path = self._path(ch.path, sha)
            changed.append(path)
            if new_perm is None:
                if path in base:
                    cards[path] = mf.FileCard(path, None)
                else:
                    cards.pop(path, None)
                nfiles -= 1
                gone = self.blobs.get(ch.old)
                if gone is not None:
                    removed.append((path, gone))
                continue
            aid = self._blob(ch.new, objects, sha)
            card = mf.FileCard(path, aid, new_perm)
            old = base.get(path)
            if old is not None and old.uuid == aid and old.perm == new_perm:
                cards.pop(path, None)
            else:
                cards[path] = card
            if not old_file:
                nfiles += 1
                added.append((path, aid))
            elif ch.old != ch.new:
                old_aid = self.blobs.get(ch.old)
                if old_aid is not None and old_aid != aid:
                    b.deltify(old_aid, aid)
                    modified.append((path, aid))
        if added and (removed or modified):
            b.deltify_added(removed, modified, added)
        return changed, new_trees, gone_dirs, nfiles

    def _tree_overrides(self, root_tree: str, new_trees: list, gone_dirs: list,
                        overrides: dict, objects: dict) -> None:
        """Update ``overrides`` (path -> artifact of a Git tree that the export could not
        rebuild byte for byte) for the root tree and the commit's new trees."""
        b = self.bulk
        for d in gone_dirs:
            for p in [p for p in overrides if p == d or p.startswith(d + "/")]:
                del overrides[p]
        for path, tsha in [("", root_tree), *new_trees]:
            if not self._evaluate(tsha, objects)[0]:
                old = overrides.get(path)
                overrides[path] = b.add_blob(self._raw(tsha, objects))
                if old and old != overrides[path]:
                    b.deltify(old, overrides[path])
            else:
                overrides.pop(path, None)

    def _tags(self, raw: bytes, ps: _State | None, overrides: dict,
              assigned: str | None) -> tuple[list[mf.TagCard], str]:
        """(T cards, branch) of the check-in: the raw commit, the tree overrides, and the
        branch tags where it starts a branch (``assigned``: its branch, if the plan set one)."""
        b = self.bulk
        tags = [mf.TagCard("+", TAG_COMMIT, "*", b.add_blob(raw))]
        if overrides:
            tags.append(mf.TagCard("+", TAG_TREES, "*", b.add_blob(encode_trees(overrides))))
        branch = assigned or (ps.branch if ps else DEFAULT_BRANCH)
        if ps is None or branch != ps.branch:
            tags += [mf.TagCard("*", "branch", "*", branch), mf.TagCard("*", "sym-" + branch, "*")]
            if ps is not None:
                tags.append(mf.TagCard("-", "sym-" + ps.branch, "*"))
        return tags, branch

    # ---- refs
    def _record_refs(self, refs, default_ref) -> None:
        old = self.index.refs()
        new: dict[str, RefRecord] = {}
        for ref, sha, kind in refs:
            target, raw_tags = self._peel(sha, kind)
            if target is None:
                self.result.warnings.append(f"{ref} points to a {kind} that is not a commit: "
                                            "not imported")
                continue
            cid = self.cids.get(target) or self.index.checkin_of(target)
            if cid is None:
                raise GitObjectError(f"{ref}: commit {target} was not imported")
            new[ref] = RefRecord(cid, [self.bulk.add_blob(r) for r in raw_tags])
        cards = []
        for ref in sorted(set(old) | set(new)):
            o, n = old.get(ref), new.get(ref)
            if o == n:
                continue
            self.result.refs_changed += 1
            if o and (n is None or n.cid != o.cid):
                cards.append(mf.TagCard("-", TAG_REF + ref, o.cid))
            if n:
                cards.append(mf.TagCard("+", TAG_REF + ref, n.cid, ",".join(n.tags) or None))
                self.index.put("r/" + ref, n.dumps())
            else:
                self.index.delete("r/" + ref)
            tag = ref.removeprefix("refs/tags/")
            if ref.startswith("refs/tags/") and _tag_ok(tag):
                if o and (n is None or n.cid != o.cid):
                    cards.append(mf.TagCard("-", "sym-" + tag, o.cid))
                if n and (o is None or n.cid != o.cid):
                    cards.append(mf.TagCard("+", "sym-" + tag, n.cid))
        head_old = self.index.head()
        if default_ref in new and (head_old != default_ref or old.get(default_ref)
                                   != new[default_ref]):
            cid = new[default_ref].cid
            prev = old.get(head_old) if head_old else None
            if prev is not None and prev.cid != cid:
                cards.append(mf.TagCard("-", TAG_HEAD, prev.cid))
            cards.append(mf.TagCard("+", TAG_HEAD, cid, default_ref))
            self.index.put("head", default_ref.encode())
        if cards:
            self.bulk.add_control(mf.ControlArtifact(date=mf.date_now(), user=default_user(),
                                                     tags=cards))

    # ---- the run
    def _checkpoint(self, frontier: set, touched: set) -> None:
        # A kill after the flush and before the index commit leaves tips stale and no
        # record of them: BulkWriter.close brings every branch with a leaf up to date.
        self.bulk.flush()
        self.index.put("frontier", json.dumps(sorted(frontier)).encode())
        self.index.put("pending", json.dumps(sorted(touched)).encode())
        self.index.mark()
        self.index.commit()

    def run(self) -> ImportResult:
        t0 = time.perf_counter()
        self.index.sync()
        refs = gitproc.refs(self.gitdir)
        branch_refs = [r for r, _, _ in refs if r.startswith("refs/heads/")]
        default_ref = _default_ref(self.gitdir, branch_refs)
        self.cat = gitproc.CatFile(self.gitdir)
        stream = None
        try:
            new, parents = self._plan(refs)
            tips = {r: s for r, s, k in refs if k == "commit" and r.startswith("refs/heads/")}
            order = sorted(tips, key=lambda r: (r != default_ref, r))
            assigned = self._assign(new, parents, [(r, tips[r]) for r in order], default_ref)
            frontier = set(self.index.json("frontier", []))
            touched = set(self.index.json("pending", []))
            self.bulk = self.repo.plumbing.bulk()
            self.bulk.touch(touched)  # branches an interrupted run left stale
            stream = CommitStream(self.gitdir, new, self.seen_blobs)
            total = len(new)
            for n, item in enumerate(stream, 1):
                try:
                    self._commit(item, assigned)
                except subprocess.SubprocessError as exc:
                    raise GitError(f"commit {item.sha}: {exc}") from exc
                frontier.add(item.sha)
                frontier.difference_update(parents.get(item.sha, ()))
                touched.add(self.states[self.cids[item.sha]].branch)
                self.result.commits = n
                if n % FLUSH_EVERY == 0:
                    self._checkpoint(frontier, touched)
                if n % 64 == 0 or n == total:
                    self.progress("import git", n, total)
                if self.on_commit is not None:
                    self.on_commit(n, item.sha)
            self._record_refs(refs, default_ref)
            self._checkpoint(frontier, touched)
            name_default(self.repo, default_ref)
            self.index.delete("pending")
        finally:
            if stream is not None:
                stream.close()
            self.cat.close()
            if self.bulk is not None:
                self.bulk.close()
                self.index.mark()
                self.index.commit()
        self.result.seconds = time.perf_counter() - t0
        self.result.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self.result


def import_git(repo, path: str, *, incremental: bool = False, progress=None,
               on_commit=None) -> ImportResult:
    """Import every branch and tag of the Git repository at ``path`` into ``repo``."""
    return Importer(repo, path, incremental=incremental, progress=progress,
                    on_commit=on_commit).run()
