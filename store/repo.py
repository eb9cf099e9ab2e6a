"""``Repo``: the store's public API, used by the command line, WebDAV, parsers and sync."""

from __future__ import annotations

import functools
import getpass
import heapq
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from herofossil.errors import ConflictError, NotFoundError, UsageError
from herofossil.store import blobs as blobfmt
from herofossil.store import chunks, lmdbenv, refs
from herofossil.store import manifest as mf
from herofossil.store.artifacts import KNOWN
from herofossil.store.blobs import BlobReader
from herofossil.store.changes import Delete, MakeDir, Put, Rename
from herofossil.store.checkins import (
    DEFAULT_BRANCH,
    MANIFESTS,
    Checkin,
    CheckinIndex,
    Written,
    checkin_summary,
)
from herofossil.store.crosslink import crosslink
from herofossil.store.keys import id_key, id_name
from herofossil.store.paths import DIR_MARKER, MAX_NAME, normalize
from herofossil.store.plumbing import Plumbing, meta_key
from herofossil.store.reports import quiet
from herofossil.store.tree import Entry, Tree, tree_key
from herofossil.store.views import ManifestView, TreeView
from herofossil.store.writer import AlreadyCommitted
from herofossil.store.writer import commit as commit_changes

ENV_VAR = "HEROFOSSIL_REPO"
READ_KEEP = 64 << 10  # tip reads of files up to this size keep their bytes in KNOWN
FORK_MERGER = "herofossil"  # the user of the merges every peer writes the same (merge_forks)


def default_store_path() -> str:
    """``$HEROFOSSIL_REPO``, else ``$XDG_DATA_HOME/herofossil/default`` (~/.local/share/...)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data_home, "herofossil", "default")


def default_user() -> str:
    """The user recorded on check-ins: ``$HEROFOSSIL_USER``, else the login name."""
    return os.environ.get("HEROFOSSIL_USER") or _login_name()


@functools.lru_cache(maxsize=1)
def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): a stable fallback
        return "herofossil"


@dataclass(slots=True)
class FileChange:
    """One difference between two versions: status 'A'dded, 'M'odified, 'D'eleted."""

    path: str
    status: str
    old: str | None
    new: str | None


class Repo:
    """A versioned store: read and write paths at any version; every write is a check-in."""

    def __init__(self, env: lmdbenv.StoreEnv, default_branch: str = DEFAULT_BRANCH):
        self._env = env
        self.path = env.path
        self.default_branch = default_branch
        self._db = env.db
        self._closed = False
        self.plumbing = Plumbing(self)

    # ---- opening
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, create: bool = False,
             map_size: int = lmdbenv.DEFAULT_MAP_SIZE, readonly: bool = False) -> Repo:
        """Open the store at ``path``; the default store is created on first use.

        ``map_size`` is the initial LMDB map; it grows by doubling when full.
        ``readonly``: for reading only (no lock a writer holds is waited for; works
        on a store the user may not write); every write raises ``StoreError``.
        """
        if path is None:
            path, create = default_store_path(), not readonly
        path = os.fspath(path)
        env = lmdbenv.open_env(path, create=create, map_size=map_size, readonly=readonly)
        return cls(env)

    @classmethod
    def init(cls, path: str | os.PathLike) -> Repo:
        """Create an empty store at ``path``.

        As in Fossil, the first check-in written here starts from an initial
        empty check-in on trunk; it is made by that first write (in the same
        transaction), so an import into a new store adds only what it imports.
        """
        path = os.fspath(path)
        if lmdbenv.is_store(os.path.abspath(path)):
            raise UsageError(f"a store already exists at {os.path.abspath(path)}")
        return cls.open(path, create=True)

    def _initial_checkin(self, txn) -> None:
        """Make Fossil's initial empty check-in on trunk, in a store that has no check-in."""
        ci = CheckinIndex(txn, self._db)
        if not ci.empty():
            return
        from herofossil.store.artifacts import ArtifactWriter

        m = mf.Manifest(
            comment="initial empty check-in",
            date=mf.date_now(),
            user=default_user(),
            tags=[
                mf.TagCard("*", "branch", "*", DEFAULT_BRANCH),
                mf.TagCard("*", "sym-" + DEFAULT_BRANCH, "*"),
            ],
        )
        aw = ArtifactWriter(txn, self._db)
        cid, _ = aw.add(m.to_bytes())
        crosslink(txn, self._db, [cid], aw=aw, parsed={cid: m}, summaries={cid: (0, None, None)})
        aw.write_pending()  # the check-in that follows has an ArtifactWriter of its own

    def close(self) -> None:
        """Release the store (the LMDB environment closes with its last user)."""
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Repo {self.path}>"

    # ---- internals
    def _read(self):
        return self._env.read()

    def _view(self, txn, at: str | None):
        ci = CheckinIndex(txn, self._db)
        if at is None or at == "":
            at = self.default_branch
        tip = ci.tip(at)
        if tip is not None and ci.indexed(at):
            return TreeView(Tree(txn, self._db["tree"], at), tip)
        if tip is None and at in (self.default_branch, "tip") and ci.empty():
            return ManifestView({}, BlobReader(txn, self._db), None, 0.0)  # a new store
        cid = tip or refs.resolve(ci, at, self.default_branch)
        rec = ci.require(cid)
        if ci.tip(rec.branch) == cid and ci.indexed(rec.branch):
            return TreeView(Tree(txn, self._db["tree"], rec.branch), cid)
        reader = BlobReader(txn, self._db)
        return ManifestView(MANIFESTS.files(reader, cid), reader, cid, rec.time)

    # ---- reads
    def resolve(self, ref: str | None = None) -> str:
        """The full check-in id that ``ref`` names (see ``refs.resolve``)."""
        with self._read() as txn:
            return id_name(refs.resolve(CheckinIndex(txn, self._db), ref, self.default_branch))

    def read(self, path: str, at: str | None = None) -> bytes:
        """The bytes of file ``path`` at version ``at`` (default: the default branch's tip)."""
        with self._read() as txn:
            try:
                key = tree_key(self.default_branch, path) if at is None else None
            except (UnicodeEncodeError, AttributeError):  # normalize below says why
                key = None
            if key is not None and len(key) <= refs.MAX_KEY:
                raw = txn.get(key, db=self._db["tree"])
                if raw is not None and raw[:1] == b"F":
                    aid = raw[-32:]
                    data = KNOWN.get(aid)
                    if data is not None:  # content-addressed: true forever (an LRU)
                        return data
                    stored = txn.get(aid, db=self._db["blob"])
                    if stored is not None and stored[:1] == blobfmt.WHOLE:
                        # Decompressing a small file costs more than the rest of a tip
                        # read (measured: 10 of 16 us); a file read again is kept.
                        data = blobfmt.decompress(stored[1:], aid)
                        if len(data) <= READ_KEEP:
                            KNOWN.add(aid, data)
                        return data
                    if stored is not None and stored[:1] == blobfmt.RAW:
                        return stored[1:]
                    return BlobReader(txn, self._db).content(aid)
            path = normalize(path)
            entry = self._view(txn, at).get(path)
            if entry is None:
                raise NotFoundError(f"{path}: no such file" + (f" at {at}" if at else ""),
                                    path=path, ref=at)
            if entry.is_dir:
                raise UsageError(f"{path} is a folder, not a file")
            return BlobReader(txn, self._db).content(id_key(entry.id))

    def stat(self, path: str, at: str | None = None) -> Entry:
        """The entry (file or folder) at ``path``; its ``id`` is the artifact id (ETag)."""
        path = normalize(path, allow_root=True)
        with self._read() as txn:
            entry = self._view(txn, at).get(path)
        if entry is None:
            raise NotFoundError(f"{path}: no such file or folder" + (f" at {at}" if at else ""),
                                path=path, ref=at)
        return entry

    def exists(self, path: str, at: str | None = None) -> bool:
        """True when ``path`` is a file or folder at ``at``."""
        try:
            self.stat(path, at)
        except NotFoundError:
            return False
        return True

    def ls(self, path: str = "", at: str | None = None) -> list[Entry]:
        """The entries of folder ``path`` (files and folders, sorted by name)."""
        path = normalize(path, allow_root=True)
        with self._read() as txn:
            view = self._view(txn, at)
            if path:
                entry = view.get(path)
                if entry is None:
                    raise NotFoundError(f"{path}: no such folder")
                if not entry.is_dir:
                    return [entry]
            return view.listdir(path)

    def walk(self, path: str = "", at: str | None = None) -> list[Entry]:
        """Every file under ``path`` at ``at``, sorted by path."""
        path = normalize(path, allow_root=True)
        with self._read() as txn:
            return sorted(self._view(txn, at).walk(path), key=lambda e: e.path)

    def files(self, at: str | None = None) -> dict[str, tuple[str, str]]:
        """path -> (artifact id, perm) of every file at ``at``."""
        with self._read() as txn:
            return self._view(txn, at).files()

    def _files(self, at: str | None = None) -> dict[str, tuple[str, str]]:
        """``files`` with the markers that keep empty folders (merge, checkout, snapshot)."""
        with self._read() as txn:
            return self._view(txn, at).files(markers=True)

    def artifact(self, aid: str) -> bytes:
        """The bytes of artifact ``aid`` (full hex id)."""
        with self._read() as txn:
            return BlobReader(txn, self._db).content(id_key(aid))

    def checkin(self, ref: str | None = None) -> Checkin:
        """The check-in ``ref`` names."""
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            return ci.require(refs.resolve(ci, ref, self.default_branch))

    def manifest(self, ref: str | None = None) -> mf.Manifest:
        """The parsed Fossil manifest of check-in ``ref``."""
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            cid = refs.resolve(ci, ref, self.default_branch)
            return MANIFESTS.manifest(BlobReader(txn, self._db), cid)

    def log(
        self, path: str | None = None, at: str | None = None, limit: int | None = None
    ) -> list[Checkin]:
        """Check-ins reachable from ``at``, newest first; only those touching ``path`` if given."""
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            if at in (None, "") and not ci.count():
                return []  # a new store
            start = refs.resolve(ci, at, self.default_branch)
            touching = None
            if path:
                path = normalize(path)
                touching = {cid for _, cid in ci.path_history(path)}
                touching |= {cid for _, cid in ci.path_prefix_history(path.encode() + b"/")}
            out: list[Checkin] = []
            first = ci.require(start)
            heap = [(-first.time, -first.seq, start)]
            seen = {start}
            while heap and (limit is None or len(out) < limit):
                _, _, cid = heapq.heappop(heap)
                rec = ci.require(cid)
                if touching is None or cid in touching:
                    out.append(rec)
                for p in rec.parents:
                    pid = id_key(p)
                    if pid not in seen:
                        seen.add(pid)
                        prec = ci.get(pid)
                        if prec is not None:
                            heapq.heappush(heap, (-prec.time, -prec.seq, pid))
            return out

    def diff(
        self, ref1: str | None, ref2: str | None = None, path: str | None = None
    ) -> list[FileChange]:
        """Files that differ between two versions (under ``path`` if given), sorted by path."""
        from herofossil.store.paths import is_under

        prefix = normalize(path, allow_root=True) if path else ""
        with self._read() as txn:
            a = self._view(txn, ref1).files()
            b = self._view(txn, ref2).files()
        out = []
        for name in sorted(set(a) | set(b)):
            if not is_under(name, prefix):
                continue
            old, new = a.get(name), b.get(name)
            if old == new:
                continue
            status = "A" if old is None else "D" if new is None else "M"
            out.append(FileChange(name, status, old and old[0], new and new[0]))
        return out

    def changed_paths(self, ref: str) -> list[str]:
        """Paths check-in ``ref`` changed relative to its first parent, sorted.

        O(changes) when both are delta-manifests on one baseline (the common
        case for check-ins written here), O(files) otherwise.
        """
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            cid = refs.resolve(ci, ref, self.default_branch)
            reader = BlobReader(txn, self._db)
            m = MANIFESTS.manifest(reader, cid)
            pid = m.parents[0] if m.parents else None
            if pid is not None and ci.get(id_key(pid)) is None:
                pid = None
            parent = MANIFESTS.manifest(reader, id_key(pid)) if pid else None
            changed = checkin_summary(m, parent, pid,
                                      lambda h: MANIFESTS.files(reader, id_key(h)))[1]
            return [p for p in changed if p.rpartition("/")[2] != DIR_MARKER]

    def branches(self) -> dict[str, str]:
        """Branch name -> id of its tip (the newest leaf)."""
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            return {b: id_name(ci.tip(b)) for b in ci.branches()}

    def leaves(self, branch: str | None = None) -> list[str]:
        """Ids of the leaves of ``branch``, newest first (more than one is a fork)."""
        branch = branch or self.default_branch
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            recs = [ci.require(c) for c in ci.leaves(branch)]
        return [r.id for r in sorted(recs, key=lambda r: (r.time, r.seq), reverse=True)]

    def branch_aliases(self) -> dict[str, str]:
        """Other names of branches -> the branch: Git's default branch name -> trunk."""
        return {k: v.decode() for k, v in self.plumbing.meta_items(refs.ALIAS_NS)}

    def set_branch_alias(self, name: str, branch: str) -> None:
        """Let ``name`` stand for ``branch`` wherever a version or branch is named.

        A branch has at most one alias: an earlier one is dropped. A real
        branch called ``name`` takes precedence over the alias.
        """
        _check_name(name, "branch")
        stale = [a for a, b in self.branch_aliases().items() if b == branch and a != name]

        def txn_fn(txn):
            db = self._db["meta"]
            for old in stale:
                txn.delete(meta_key(refs.ALIAS_NS, old), db=db)
            txn.put(meta_key(refs.ALIAS_NS, name), branch.encode(), db=db)

        self._env.write(txn_fn)

    def tags(self) -> dict[str, list[str]]:
        """Tag name -> ids of the check-ins carrying it."""
        with self._read() as txn:
            tags = CheckinIndex(txn, self._db).tags()
            return {k: [id_name(c) for c in v] for k, v in tags.items()}

    # ---- writes
    def commit(
        self,
        changes: Iterable,
        *,
        message: str | None = None,
        user: str | None = None,
        branch: str | None = None,
        parent: str | None = None,
        merge_parents: Iterable[str] = (),
        allow_empty: bool = False,
        at: float | None = None,
        _written: dict | None = None,
    ) -> Checkin | None:
        """Apply ``changes`` (Put, Delete, Rename, MakeDir) as one durable check-in.

        Returns the check-in, or None when nothing changed. ``branch`` defaults
        to the default branch; a new branch starts from ``parent`` or from the
        default branch's tip.
        """
        changes = list(changes)
        branch = branch or self.default_branch
        _check_name(branch, "branch")
        if _version_like(branch) and branch not in self.branches():
            _check_new_name(branch, "branch")  # a write may not start such a branch
        message = message or _describe(changes)
        user = user or default_user()

        def txn_fn(txn):
            self._initial_checkin(txn)
            ci = CheckinIndex(txn, self._db)
            target = branch if ci.tip(branch) is not None else refs.alias(ci, branch) or branch
            pid = refs.resolve(ci, parent, self.default_branch) if parent else None
            if pid is None and ci.tip(target) is None:
                pid = refs.resolve(ci, None, self.default_branch)
            extra = tuple(refs.resolve(ci, p, self.default_branch) for p in merge_parents)
            return commit_changes(
                txn,
                self._db,
                changes,
                branch=target,
                message=message,
                user=user,
                parent=pid,
                merge_parents=extra,
                allow_empty=allow_empty,
                at=at,
                written=_written,
            )

        try:
            return self._env.write(txn_fn)
        except AlreadyCommitted as made:  # a fork's merge another process made first
            return made.checkin

    def write(
        self,
        path: str,
        data: bytes | str | BinaryIO,
        *,
        expect: str | None = None,
        perm: str | None = None,
        message: str | None = None,
        user: str | None = None,
        branch: str | None = None,
    ) -> Written | None:
        """Write one file as one check-in; returns it (None if the file was unchanged),
        with ``file_id``, the artifact id of the bytes written (their ETag).

        ``data``: bytes, text, or a binary stream read to its end — a large one is
        stored part by part as it is read, in bounded memory (``chunks``).
        ``expect``: the artifact id you last read (or ``EXISTS``/``ABSENT``);
        ``perm``: "x" (executable) or "l" (symlink).
        """
        ids: dict[str, str] = {}
        staged = None
        if hasattr(data, "read"):
            staged = data = chunks.stage(self._env, data)
        try:
            ci = self.commit([Put(path, data, perm, expect)], message=message, user=user,
                             branch=branch, _written=ids)
        finally:
            if isinstance(staged, chunks.Staged):
                staged.release()
        if ci is None:
            return None
        fields = {f: getattr(ci, f) for f in Checkin.__dataclass_fields__}
        return Written(**fields, file_id=next(iter(ids.values()), None))

    def delete(self, path: str, *, expect: str | None = None, recursive: bool = False,
               message: str | None = None, user: str | None = None,
               branch: str | None = None) -> Checkin:
        """Delete a file (or with ``recursive`` a folder) as one check-in."""
        return self.commit([Delete(path, expect, recursive)], message=message, user=user,
                           branch=branch)

    def rename(self, src: str, dst: str, *, expect: str | None = None,
               overwrite: bool = False, message: str | None = None, user: str | None = None,
               branch: str | None = None) -> Checkin:
        """Move a file or folder as one check-in."""
        return self.commit([Rename(src, dst, expect, overwrite)], message=message, user=user,
                           branch=branch)

    def mkdir(self, path: str, *, message: str | None = None, user: str | None = None,
              branch: str | None = None) -> Checkin | None:
        """Create an empty folder that is kept in history."""
        return self.commit([MakeDir(path)], message=message, user=user, branch=branch)

    def branch_new(
        self,
        name: str,
        at: str | None = None,
        *,
        message: str | None = None,
        user: str | None = None,
    ) -> Checkin:
        """Start branch ``name`` at version ``at`` (a check-in carrying Fossil's branch tags)."""
        _check_new_name(name, "branch")
        if name in self.branches():
            raise UsageError(f"branch {name!r} already exists")
        return self.commit(
            [],
            branch=name,
            parent=at or self.default_branch,
            message=message or f'Create new branch named "{name}"',
            user=user,
        )

    def tag_add(self, name: str, ref: str | None = None, *, user: str | None = None) -> str:
        """Tag check-in ``ref`` with ``name`` (a Fossil control artifact); returns its id."""
        return self._tag("+", name, ref, user)

    def tag_remove(self, name: str, ref: str | None = None, *, user: str | None = None) -> str:
        """Cancel tag ``name`` on check-in ``ref`` (a control artifact); returns its id."""
        return self._tag("-", name, ref, user)

    def _tag(self, kind: str, name: str, ref: str | None, user: str | None) -> str:
        (_check_new_name if kind == "+" else _check_name)(name, "tag")
        if kind == "-" and ref is None:
            tagged = self.tags().get(name)
            if not tagged:
                raise NotFoundError(f"no tag {name!r}")
            ref = tagged[-1]

        def txn_fn(txn):
            from herofossil.store.artifacts import ArtifactWriter

            ci = CheckinIndex(txn, self._db)
            cid = refs.resolve(ci, ref, self.default_branch)
            if kind == "-" and cid not in ci.tagged(name):
                raise NotFoundError(f"check-in {id_name(cid)[:12]} has no tag {name!r}")
            ctl = mf.ControlArtifact(date=mf.date_now(), user=user or default_user(),
                                     tags=[mf.TagCard(kind, "sym-" + name, id_name(cid))])
            aw = ArtifactWriter(txn, self._db)
            aid, _ = aw.add(ctl.to_bytes())
            crosslink(txn, self._db, [aid], aw=aw, parsed={aid: ctl})
            return id_name(aid)

        return self._env.write(txn_fn)

    def merge(self, other: str | None = None, *, branch: str | None = None,
              strategy: str | None = None, message: str | None = None,
              user: str | None = None) -> Checkin:
        """Join ``other`` (default: the other leaf of a forked branch) into ``branch``'s tip.

        Files changed on one side merge cleanly; files changed on both are
        conflicts: ``ConflictError`` and nothing written, unless ``strategy``
        is 'ours' or 'theirs'.
        """
        from herofossil.store import merge as mergemod

        branch = branch or self.default_branch
        with self._read() as txn:
            ci = CheckinIndex(txn, self._db)
            ours = ci.tip(branch)
            if ours is None:
                raise NotFoundError(f"no branch {branch!r}")
            if other is None:
                others = [c for c in ci.leaves(branch) if c != ours]
                if not others:
                    raise UsageError(f"branch {branch!r} has a single leaf: nothing to merge")
                theirs = max(others, key=lambda c: (ci.require(c).time, ci.require(c).seq))
            else:
                theirs = refs.resolve(ci, other, self.default_branch)
            if theirs == ours:
                raise UsageError("nothing to merge: both sides are the same check-in")
            base = mergemod.common_ancestor(ci, ours, theirs)
            if base == theirs:
                raise UsageError(f"{id_name(theirs)[:12]} is already part of {branch}")
        if message is None:
            message = f"Merge {other or id_name(theirs)[:12]} into {branch}"
        return self._merge(branch, ours, theirs, base, strategy, message, user, None)

    def _merge(self, branch: str, ours: bytes, theirs: bytes, base: bytes | None,
               strategy: str | None, message: str, user: str | None,
               at: float | None) -> Checkin:
        from herofossil.store import merge as mergemod

        files = {c: self._files(id_name(c)) if c else {} for c in {base, ours, theirs}}
        changes, conflicts = mergemod.plan(files[base], files[ours], files[theirs], strategy)
        if conflicts:
            message += f" (conflicts resolved as {strategy}: {', '.join(conflicts[:5])})"
        return self.commit(changes, message=message, user=user, branch=branch,
                           parent=id_name(ours), merge_parents=[id_name(theirs)], allow_empty=True,
                           at=at)

    def merge_forks(self, branch: str | None = None) -> tuple[list[Checkin], list[str]]:
        """Join the leaves of ``branch`` (default: every branch) whose sides changed
        different paths, by merge check-ins built from the leaves alone — parents in id
        order, a time 1 ms after the newer, user and comment fixed — so that every peer
        that merges the same fork writes the same artifact and no new fork appears.
        Returns (the merges made, the branches left forked by a conflict)."""

        made, forked = [], []
        for name in [branch] if branch else sorted(self.branches()):
            while len(leaves := sorted(self.leaves(name))) >= 2:
                merge = self._merge_first_pair(name, leaves)
                if merge is None:  # every pair conflicts (or waits for files to arrive)
                    forked.append(name)
                    break
                made.append(merge)
        return made, forked

    def _merge_first_pair(self, name: str, leaves: list[str]) -> Checkin | None:
        """Merge the first pair of ``leaves`` (in id order) that merges without a
        conflict; None when none does. Every peer with these leaves picks the same."""
        from herofossil.store import merge as mergemod

        for i, first in enumerate(leaves):
            for second in leaves[i + 1:]:
                ours, theirs = id_key(first), id_key(second)
                with self._read() as txn:
                    ci = CheckinIndex(txn, self._db)
                    base = mergemod.common_ancestor(ci, ours, theirs)
                    at = max(ci.require(ours).time, ci.require(theirs).time) + 0.001
                try:
                    return self._merge(name, ours, theirs, base, None,
                                       f"Merge fork {second[:12]} into {name}", FORK_MERGER, at)
                except (ConflictError, NotFoundError):  # NotFound: files yet to arrive
                    continue
        return None

    def checkout(self, ref: str | None, dest: str, *, force: bool = False) -> int:
        """Write version ``ref`` into directory ``dest``; returns the number of files."""
        from herofossil.store.worktree import checkout

        return checkout(self, ref, dest, force=force)

    def commit_dir(self, root: str, *, message: str | None = None, branch: str | None = None,
                   user: str | None = None) -> Checkin | None:
        """Make ``branch``'s tip equal to the directory tree at ``root`` as one check-in."""
        from herofossil.store.worktree import snapshot_changes

        changes = snapshot_changes(self, root, branch)
        return self.commit(changes, message=message or f"snapshot of {os.path.basename(root)}",
                           branch=branch, user=user)

    # ---- maintenance
    def verify(self, progress=None):
        """Re-hash every artifact and compare every index with a rebuild of it, in a child
        process; returns a ``VerifyReport`` (damage is a problem in it, never a crash)."""
        from herofossil.store.verify import verify

        return verify(self._env.path, progress or quiet)

    def rebuild(self, progress=None) -> dict:
        """Regenerate every index from the artifacts alone."""
        from herofossil.store.maintenance import rebuild

        return rebuild(self._env, progress or quiet)

    def compact(self, pack: bool = True, progress=None) -> tuple[int, int]:
        """Give LMDB's free pages back to the disk and, with ``pack``, pack its history
        (``packing``); (bytes before, after). ``progress``: called (stage, done, total)
        along the way.

        Needs the store to be open in no other process.
        """
        return self._env.compact(pack, progress)

    def stats(self) -> dict:
        """Counts and sizes of the store."""
        from herofossil.store.stats import stats

        return stats(self._env)

    def table_sizes(self) -> dict[str, dict[str, int]]:
        """Entries and bytes on disk of each LMDB table, and of the unused pages (``(free)``)."""
        from herofossil.store.stats import table_sizes

        return table_sizes(self._env)

    def export_artifacts(self, dest: str, progress=None) -> int:
        """Write every artifact as a file named by its hash (``fossil deconstruct`` layout)."""
        from herofossil.store.artifactio import export_artifacts

        return export_artifacts(self._env, dest, progress or quiet)

    def import_artifacts(self, src: str, progress=None) -> int:
        """Add the artifacts of a ``fossil deconstruct`` directory; returns how many were new."""
        from herofossil.store.artifactio import import_artifacts

        MANIFESTS.clear()
        return import_artifacts(self._env, src, progress or quiet)

def _check_name(name: str, what: str) -> None:
    if isinstance(name, str) and len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise UsageError(f"bad {what} name {name[:40]!r}...: longer than {MAX_NAME} bytes")
    if (not name or any(c == " " or ord(c) < 32 or ord(c) == 127 for c in name)
            or name.startswith("-") or name == "tip"):
        raise UsageError(f"bad {what} name {name!r}: no spaces or control characters, "
                         "no leading '-', not 'tip'")
    if all(c in "0123456789abcdefABCDEF" for c in name):
        raise UsageError(f"bad {what} name {name!r}: all hex digits would read as a check-in id")


def _check_new_name(name: str, what: str) -> None:
    """``_check_name``, and not a name that reads as another kind of version name."""
    _check_name(name, what)
    if _version_like(name):
        raise UsageError(f"bad {what} name {name!r}: '@' and dates name versions "
                         "('REF@DATE', 'YYYY-MM-DD'), not branches or tags")


def _version_like(name: str) -> bool:
    return "@" in name or refs.DATE_SHAPE.match(name) is not None


def _describe(changes: list) -> str:
    words = []
    for ch in changes[:3]:
        if isinstance(ch, Put):
            words.append(f"put {ch.path}")
        elif isinstance(ch, Delete):
            words.append(f"delete {ch.path}")
        elif isinstance(ch, Rename):
            words.append(f"move {ch.src} to {ch.dst}")
        elif isinstance(ch, MakeDir):
            words.append(f"mkdir {ch.path}")
    if len(changes) > 3:
        words.append(f"and {len(changes) - 3} more")
    return ", ".join(words) or "check-in"
