"""``RepoFS``: the file-system view of a ``Repo`` that the WebDAV resources delegate to.

Each WebDAV request that changes content becomes exactly one ``Repo.commit``
(one check-in) whose message names the method and the URL and whose user is
the authenticated user. HTTP preconditions (If-Match / If-None-Match) are
passed to the store as ``expect``, so the check happens inside the write
transaction: a client that writes over a version it did not see gets 412
and nothing is lost.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_NOT_FOUND,
    HTTP_PRECONDITION_FAILED,
    DAVError,
)

from herofossil import errors
from herofossil.store.blobs import artifact_hex
from herofossil.store.changes import ABSENT, EXISTS, Delete, MakeDir, Put, PutArtifact, Rename
from herofossil.store.paths import is_under
from herofossil.store.tree import Entry
from herofossil.webdav import routes
from herofossil.webdav.auth import UserDB
from herofossil.webdav.noise import NoiseStore
from herofossil.webdav.resources import FileResource, FolderResource, ListingResource

RECENT = 25  # check-ins listed in /.history/
CREATED = "herofossil.created"  # environ flag: a COPY/MOVE created its destination (201)

_STATUS = {
    errors.ConflictError: HTTP_PRECONDITION_FAILED,
    errors.NotFoundError: HTTP_NOT_FOUND,
    errors.InvalidPathError: HTTP_FORBIDDEN,
    errors.UsageError: HTTP_BAD_REQUEST,
}


def dav_error(exc: errors.HeroFossilError) -> DAVError:
    """The HTTP error for a store error (412 for a failed precondition)."""
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return DAVError(status, str(exc))
    return DAVError(500, str(exc))


def _etag_list(value: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()]


def expect_from(environ: dict) -> str | None:
    """The store precondition the request's If-Match / If-None-Match header asks for."""
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match:
        tags = _etag_list(if_match)
        if tags == ["*"]:
            return EXISTS
        if len(tags) == 1:
            return tags[0]
    if environ.get("HTTP_IF_NONE_MATCH", "").strip() == "*":
        return ABSENT
    return None


class RepoFS:
    """Reads, writes and listings of a ``Repo`` for the WebDAV resources."""

    def __init__(self, provider, repo, users: UserDB, noise: NoiseStore, readonly: bool):
        self.provider = provider
        self.repo = repo
        self.users = users
        self.noise = noise
        self.readonly = readonly

    # ---- lookup
    def resource(self, url: str, environ: dict):
        """The resource at URL path ``url``, or None."""
        loc = routes.parse(url, self.repo.default_branch)
        if loc is None:
            return None
        if loc.kind != "tree":
            return ListingResource(url, environ, loc)
        try:
            entry = self.repo.stat(loc.path, at=loc.at)
        except errors.NotFoundError:
            entry = None
        except (errors.InvalidPathError, errors.UsageError):
            return None
        if entry is None:
            if loc.branch and loc.path and self.noise.is_noise(loc.path):
                nf = self.noise.get(loc.branch, loc.path)
                if nf is not None:
                    return FileResource(url, environ, loc, noise=nf)
            return None
        if entry.is_dir:
            return FolderResource(url, environ, loc, entry)
        return FileResource(url, environ, loc, entry)

    def members(self, folder: FolderResource) -> list:
        """The members of ``folder``: one ``ls`` (no lookup per entry), noise, listings."""
        loc, env = folder.loc, folder.environ
        try:
            entries = self.repo.ls(loc.path, at=loc.at)
        except errors.NotFoundError:
            return []
        out = []
        names = set()
        for e in entries:
            url = routes.join(loc.url, e.name)
            child = routes.parse(url, self.repo.default_branch)
            names.add(e.name)
            if e.is_dir:
                out.append(FolderResource(url, env, child, e))
            else:
                out.append(FileResource(url, env, child, e))
        if loc.branch:
            for nf in self.noise.listdir(loc.branch, loc.path):
                if nf.name not in names:
                    url = routes.join(loc.url, nf.name)
                    out.append(FileResource(url, env, routes.parse(url, loc.branch), noise=nf))
        if loc.url == "/":
            for name in routes.VIRTUAL:
                url = "/" + name
                out.append(ListingResource(url, env, routes.parse(url, loc.branch)))
        return out

    def listing(self, loc: routes.Location) -> list[str]:
        """Member names of ``/.branches/`` (branches) or ``/.history/``.

        ``/.history/`` lists branches, tags and the newest ``RECENT`` check-ins
        of the default branch (short ids), not every check-in: any other
        version is still reachable by its id, prefix or date.
        """
        names = set(self.repo.branches())
        if loc.kind == routes.HISTORY:
            names |= set(self.repo.tags())
            names |= {c.id[:12] for c in self.repo.log(limit=RECENT)}
        return sorted(n for n in names if "/" not in n)

    def open_file(self, entry: Entry):
        """A readable stream of the file version ``entry`` names (its ETag)."""
        return self.repo.plumbing.open_artifact(entry.id)

    def read_noise(self, loc: routes.Location) -> bytes | None:
        return self.noise.read(loc.branch, loc.path)

    def is_noise(self, loc: routes.Location) -> bool:
        return bool(loc.branch and loc.path and self.noise.is_noise(loc.path))

    # ---- permissions
    def may_write(self, loc: routes.Location, environ: dict) -> bool:
        """True when this request may change ``loc``."""
        if self.readonly or not loc.writable:
            return False
        return self.users.can_write(environ.get("wsgidav.auth.user_name"))

    def require_write(self, loc: routes.Location, environ: dict) -> None:
        """Raise 403 unless this request may change ``loc``."""
        if not loc.writable:
            raise DAVError(HTTP_FORBIDDEN, "history is read-only: write under / or /.branches/")
        if not self.may_write(loc, environ):
            raise DAVError(HTTP_FORBIDDEN, "this user may only read")

    # ---- writes: each is one check-in
    def commit(self, environ: dict, loc: routes.Location, changes: list, what: str):
        """Apply ``changes`` on ``loc``'s branch as one check-in named after the request."""
        user = environ.get("wsgidav.auth.user_name") or "anonymous"
        message = f"WebDAV {environ.get('REQUEST_METHOD', 'PUT')} {what}"
        try:
            return self.repo.commit(changes, message=message, user=user, branch=loc.branch)
        except errors.HeroFossilError as exc:
            raise dav_error(exc) from exc

    def _keep_parent(self, loc: routes.Location, path: str) -> list:
        """MakeDir for ``path``'s folder when removing ``path`` would leave it empty.

        WebDAV folders do not vanish when their last file goes; the store's
        folders do unless they hold a marker, so one is added in the same check-in.
        """
        parent = path.rpartition("/")[0]
        if not parent:
            return []
        try:
            entry = self.repo.stat(parent, at=loc.branch)
        except errors.NotFoundError:
            return []
        return [MakeDir(parent)] if entry.count <= 1 else []

    def put(self, res: FileResource, data: bytes) -> None:
        """PUT: store ``data`` at ``res`` (noise goes to the metadata, not to history)."""
        loc, env = res.loc, res.environ
        if res.is_noise:
            self.noise.put(loc.branch, loc.path, data)
            res.noise = self.noise.get(loc.branch, loc.path)
            return
        expect = expect_from(env)
        self.commit(env, loc, [Put(loc.path, data, None, expect)], loc.url)
        aid = artifact_hex(data)
        res.entry = Entry(loc.path, False, aid, size=len(data), mtime=time.time())

    def create_file(self, folder: FolderResource, name: str) -> FileResource:
        """A new file: pending for PUT (written by ``put``); empty at once for LOCK."""
        url = routes.join(folder.loc.url, name)
        loc = routes.parse(url, self.repo.default_branch)
        self.require_write(loc, folder.environ)
        res = FileResource(url, folder.environ, loc)
        if folder.environ.get("REQUEST_METHOD") != "PUT":
            self.put(res, b"")
        return res

    def mkdir(self, folder: FolderResource, name: str) -> None:
        """MKCOL: an empty folder, kept in history."""
        url = routes.join(folder.loc.url, name)
        loc = routes.parse(url, self.repo.default_branch)
        self.require_write(loc, folder.environ)
        self.commit(folder.environ, loc, [MakeDir(loc.path)], url + "/")

    def delete(self, res) -> None:
        """DELETE: a file or a whole folder as one check-in, with its properties and locks."""
        loc, env = res.loc, res.environ
        self.require_write(loc, env)
        if loc.is_root:
            raise DAVError(HTTP_FORBIDDEN, "the root cannot be deleted")
        if isinstance(res, FileResource) and res.noise is not None:
            self.noise.delete(loc.branch, loc.path)
        else:
            if res.is_collection:
                changes = [Delete(loc.path, recursive=True)]
            else:
                changes = [Delete(loc.path, expect_from(env))]
            self.commit(env, loc, changes + self._keep_parent(loc, loc.path), loc.url)
            if res.is_collection:
                self.noise.delete_under(loc.branch, loc.path)
        res.remove_all_properties(recursive=True)
        res.remove_all_locks(recursive=True)

    def copy_move(self, src, dest_url: str, *, is_move: bool, depth_infinity: bool) -> bool:
        """COPY or MOVE ``src`` to ``dest_url`` as one check-in (overwrite included).

        wsgidav has already checked locks, Overwrite and If headers.
        """
        env = src.environ
        sloc = src.loc
        dloc = routes.parse(dest_url, self.repo.default_branch)
        if dloc is None or dloc.kind != "tree" or dloc.is_root:
            raise DAVError(HTTP_FORBIDDEN, "cannot copy or move there")
        self.require_write(dloc, env)
        if is_move:
            self.require_write(sloc, env)
            if sloc.branch != dloc.branch:
                raise DAVError(HTTP_FORBIDDEN, "move between branches: copy, then delete")
        if sloc.branch == dloc.branch and is_under(sloc.path, dloc.path):
            raise DAVError(HTTP_CONFLICT, "cannot replace a folder by something inside it")
        dest = self.resource(dest_url, env)
        changes: list = []
        if dest is not None:
            if isinstance(dest, FileResource) and dest.noise is not None:
                self.noise.delete(dloc.branch, dloc.path)
            else:
                changes.append(Delete(dloc.path, recursive=dest.is_collection))
        else:
            env[CREATED] = True
        what = f"{sloc.url} -> {dloc.url}"
        src_noise = isinstance(src, FileResource) and src.noise is not None
        dst_noise = not src.is_collection and self.noise.is_noise(dloc.path)
        if src_noise or dst_noise:
            data = (
                self.noise.read(sloc.branch, sloc.path)
                if src_noise
                else self.repo.artifact(src.entry.id)
            )
            if dst_noise:
                self.noise.put(dloc.branch, dloc.path, data)
            else:
                changes.append(Put(dloc.path, data))
            if is_move and src_noise:
                self.noise.delete(sloc.branch, sloc.path)
            elif is_move:
                changes.append(Delete(sloc.path))
                changes += self._keep_parent(sloc, sloc.path)
            if changes:
                self.commit(env, dloc, changes, what)
        elif is_move:
            changes.append(Rename(sloc.path, dloc.path))
            changes += self._keep_parent(sloc, sloc.path)
            self.commit(env, dloc, changes, what)
            if src.is_collection:
                self.noise.move_under(sloc.branch, sloc.path, dloc.path)
        elif src.is_collection:
            changes.append(MakeDir(dloc.path))
            if depth_infinity:
                changes += self._copy_tree(sloc, dloc.path)
            self.commit(env, dloc, changes, what)
            if depth_infinity and sloc.branch:
                self.noise.copy_under(sloc.branch, sloc.path, dloc.branch, dloc.path)
        else:
            changes.append(PutArtifact(dloc.path, src.entry.id, src.entry.perm))
            self.commit(env, dloc, changes, what)
        self._carry_properties(src, dest, dest_url, is_move)
        return True

    def _copy_tree(self, sloc: routes.Location, dst: str) -> list:
        """Changes that recreate folder ``sloc`` at ``dst`` (artifacts shared, no data copied)."""
        out: list = []
        stack = [sloc.path]
        while stack:
            folder = stack.pop()
            entries = self.repo.ls(folder, at=sloc.at)
            target = dst + folder[len(sloc.path) :]
            if not entries:
                out.append(MakeDir(target))
            for e in entries:
                if e.is_dir:
                    stack.append(e.path)
                else:
                    out.append(PutArtifact(target + "/" + e.name, e.id, e.perm))
        return out

    def _carry_properties(self, src, dest, dest_url: str, is_move: bool) -> None:
        pm = self.provider.prop_manager
        lm = self.provider.lock_manager
        coll = "/" if src.is_collection else ""
        dst_ref = quote(self.provider.share_path + dest_url.rstrip("/") + coll)
        src_ref = src.get_ref_url()
        if pm is not None:
            if dest is not None:
                dest.remove_all_properties(recursive=True)
            if is_move:
                pm.move_properties(src_ref, dst_ref, with_children=src.is_collection)
            else:
                pm.copy_properties(src_ref, dst_ref)
        if is_move and lm is not None:
            lm.remove_all_locks_from_url(src_ref, recursive=True)


def status_fix(environ: dict, start_response):
    """start_response that reports 201 when a handled COPY/MOVE created its destination."""

    def fixed(status, headers, exc_info=None):
        if environ.get(CREATED) and status.startswith("204"):
            status = "201 Created"
        return start_response(status, headers, exc_info)

    return fixed


__all__ = ["RepoFS", "dav_error", "expect_from", "status_fix"]
