"""Store -> Git: every check-in reachable from a branch or tag, as Git objects and refs.

Imported check-ins are written back byte for byte from their raw commit
objects (trees rebuilt from the files plus the raw trees kept aside), so
their ids do not change; check-ins made in the store become new commits on
top of them. Objects go into one pack (``packwriter``); refs are set last.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

from herofossil.gitimport import gitproc
from herofossil.gitimport.errors import GitError, GitObjectError
from herofossil.gitimport.importer import DEFAULT_BRANCH, fossil_branch
from herofossil.gitimport.metadata import GitIndex, RefRecord, decode_trees, git_tags_of
from herofossil.gitimport.objects import (
    EMPTY_TREE,
    MODE_TREE,
    PERM_MODE,
    CommitInfo,
    is_tree_mode,
    object_id,
    parse_tree,
    serialize_tree,
)
from herofossil.gitimport.packwriter import PackWriter
from herofossil.store.paths import DIR_MARKER


@dataclass
class ExportResult:
    """What an export did."""

    commits: int = 0
    new_commits: int = 0
    refs: int = 0
    seconds: float = 0.0
    peak_rss_kb: int = 0


def _ensure_repo(path: str) -> tuple[str, bool]:
    gitproc.require_git()
    if os.path.isdir(path) and os.listdir(path):
        return gitproc.find_gitdir(path), False
    os.makedirs(path, exist_ok=True)
    gitproc.git(path, "init", "-q", "--bare", path)
    return gitproc.find_gitdir(path), True


class Exporter:
    """One export run of ``repo`` into the Git repository at ``path``."""

    def __init__(self, repo, path: str, progress=None):
        self.repo = repo
        self.path = path
        self.progress = progress or (lambda *a: None)
        self.index = GitIndex(repo)
        self.blob_shas: dict[str, str] = {}
        self.result = ExportResult()

    # ---- which refs, which check-ins
    def _refs(self) -> dict[str, RefRecord]:
        records = self.index.refs()
        head = self.index.head()
        out = dict(records)
        by_branch = {fossil_branch(r, head): r for r in records if r.startswith("refs/heads/")}
        for branch, tip in self.repo.branches().items():
            if branch == DEFAULT_BRANCH:
                ref = head or "refs/heads/master"
            else:
                ref = by_branch.get(branch, "refs/heads/" + branch)
            ci = self.repo.checkin(tip)
            if not ci.parents and not ci.nfiles and self.index.sha_of(tip) is None:
                continue  # the store's initial empty check-in
            rec = records.get(ref)
            if rec is None or (rec.cid != tip and self.index.sha_of(tip) is None):
                out[ref] = RefRecord(tip)
        branches = self.repo.branches()
        for name, cids in self.repo.tags().items():
            ref = "refs/tags/" + name
            if name not in branches and ref not in records and cids:
                out[ref] = RefRecord(cids[-1])
        return out

    def _order(self, roots: list[str]) -> list[str]:
        order, seen = [], set()
        for root in roots:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, False)]
            while stack:
                cid, done = stack.pop()
                if done:
                    order.append(cid)
                    continue
                stack.append((cid, True))
                for p in reversed(self.repo.checkin(cid).parents):
                    if p not in seen:
                        seen.add(p)
                        stack.append((p, False))
        return order

    # ---- objects
    def _blob(self, aid: str) -> str:
        sha = self.blob_shas.get(aid)
        if sha is None:
            sha = self.pack.add("blob", self.repo.artifact(aid))
            self.blob_shas[aid] = sha
        return sha

    def _tree(self, cid: str, overrides: dict[str, str]) -> str:
        dirs: dict[str, dict[bytes, tuple[bytes, str]]] = {"": {}}

        def need(d: str) -> dict:
            got = dirs.get(d)
            if got is None:
                got = dirs[d] = {}
                if d:
                    need(d.rpartition("/")[0])
            return got

        for path, (aid, perm) in self.repo.files(cid).items():
            d, _, name = path.rpartition("/")
            if name == DIR_MARKER:
                continue
            need(d)[name.encode()] = (PERM_MODE.get(perm, PERM_MODE[""]), self._blob(aid))
        for d in overrides:
            need(d)
        sha = EMPTY_TREE
        for d in sorted(dirs, key=lambda d: d.count("/") + 1 if d else 0, reverse=True):
            if d in overrides:
                raw = self.repo.artifact(overrides[d])
                for mode, name, h in parse_tree(raw):
                    child = (d + "/" if d else "") + name.decode("utf-8", "surrogateescape")
                    if is_tree_mode(mode) and child not in dirs:
                        if h != EMPTY_TREE:
                            raise GitObjectError(f"check-in {cid}: tree {h} at {child} is "
                                                 "neither in the files nor kept raw")
                        self.pack.add("tree", b"")
            else:
                raw = serialize_tree([(m, n, h) for n, (m, h) in dirs[d].items()])
            sha = self.pack.add("tree", raw)
            if d:
                parent, _, name = d.rpartition("/")
                dirs[parent][name.encode()] = (MODE_TREE, sha)
        return sha

    def _commit(self, cid: str, gsha: dict[str, str]) -> str:
        m = self.repo.manifest(cid)
        raw_id, trees_id = git_tags_of(m)
        overrides = decode_trees(self.repo.artifact(trees_id)) if trees_id else {}
        tree = self._tree(cid, overrides)
        if raw_id is not None:
            raw = self.repo.artifact(raw_id)
            if CommitInfo(raw).tree != tree:
                raise GitObjectError(f"check-in {cid}: rebuilt tree {tree} differs from the "
                                     f"one of its Git commit {object_id('commit', raw)}")
            return self.pack.add("commit", raw)
        ci = self.repo.checkin(cid)
        who = f"{ci.user} <{ci.user}@herofossil> {int(ci.time)} +0000".encode()
        lines = [b"tree " + tree.encode()]
        lines += [b"parent " + gsha[p].encode() for p in ci.parents if p in gsha]
        lines += [b"author " + who, b"committer " + who]
        raw = b"\n".join(lines) + b"\n\n" + ci.comment.encode() + b"\n"
        self.result.new_commits += 1
        return self.pack.add("commit", raw)

    # ---- the run
    def run(self) -> ExportResult:
        t0 = time.perf_counter()
        self.index.sync()
        gitdir, created = _ensure_repo(self.path)
        refs = self._refs()
        order = self._order(sorted({r.cid for r in refs.values()}))
        check = gitproc.CatFile(gitdir, check_only=True)
        self.pack = PackWriter(gitdir)
        gsha: dict[str, str] = {}
        try:
            for n, cid in enumerate(order, 1):
                known = self.index.sha_of(cid)
                if known is not None and check.exists(known):
                    gsha[cid] = known
                else:
                    gsha[cid] = self._commit(cid, gsha)
                if n % 64 == 0 or n == len(order):
                    self.progress("export git", n, len(order))
            updates = []
            for ref, rec in sorted(refs.items()):
                sha = gsha[rec.cid]
                for aid in reversed(rec.tags):
                    sha = self.pack.add("tag", self.repo.artifact(aid))
                updates.append(f"update {ref} {sha}\n")
        finally:
            check.close()
        self.pack.close()
        gitproc.git(gitdir, "update-ref", "--stdin", input="".join(updates).encode())
        head = self.index.head() or "refs/heads/master"
        if created and head in refs:
            gitproc.git(gitdir, "symbolic-ref", "HEAD", head)
        self.result.commits = len(order)
        self.result.refs = len(refs)
        self.result.seconds = time.perf_counter() - t0
        self.result.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self.result


def export_git(repo, path: str, *, progress=None) -> ExportResult:
    """Write the store's history into the Git repository at ``path`` (created if missing)."""
    if not isinstance(path, str):
        path = os.fspath(path)
    try:
        return Exporter(repo, path, progress).run()
    except OSError as exc:
        raise GitError(f"cannot export to {path}: {exc}") from exc
