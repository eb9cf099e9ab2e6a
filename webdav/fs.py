"""``RepoFS``: the file-system view of a ``Repo`` that the WebDAV resources delegate to.

Each WebDAV request that changes content becomes exactly one ``Repo.commit``
(one check-in) whose message names the method and the URL and whose user is
the authenticated user. HTTP preconditions (If-Match / If-None-Match,
Overwrite: F, a MKCOL's new folder) are passed to the store as ``expect``, so
the check happens inside the write transaction: a client that writes over a
version it did not see gets 412 and nothing is lost. Noise files, kept in the
metadata, are checked under the noise store's lock instead.

Only the tip of an existing branch is written: ``locate`` resolves the name
under ``/.branches/`` and leaves any other version (tag, date, prefix)
read-only; a branch is started only by MKCOL ``/.branches/NAME/``.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_METHOD_NOT_ALLOWED,
    HTTP_NOT_FOUND,
    HTTP_PRECONDITION_FAILED,
    HTTP_REQUEST_ENTITY_TOO_LARGE,
    DAVError,
)

from herofossil import errors
from herofossil.store.blobs import LARGE, artifact_hex
from herofossil.store.changes import ABSENT, EXISTS, Delete, MakeDir, Put, PutArtifact, Rename
from herofossil.store.chunks import Staged
from herofossil.store.keys import id_name
from herofossil.store.paths import is_under, normalize
from herofossil.store.refs import parse_date
from herofossil.store.tree import Entry
from herofossil.webdav import routes
from herofossil.webdav.auth import UserDB
from herofossil.webdav.noise import NoiseStore
from herofossil.webdav.resources import FileResource, FolderResource, ListingResource

RECENT = 25  # check-ins listed in /.history/
_CONTROL = re.compile("[\x00-\x1f\x7f]").search  # names no listing may show (store.paths)
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


def _etag_list(value: str) -> list[tuple[bool, str]]:
    """(weak, tag) of each entity tag of an If-Match / If-None-Match value."""
    out = []
    for t in value.split(","):
        t = t.strip()
        if t:
            weak = t.startswith("W/")
            out.append((weak, t.removeprefix("W/").strip('"')))
    return out


def _reads_as_date(name: str) -> bool:
    try:
        return parse_date(name) is not None
    except errors.UsageError:
        return True


def expect_from(environ: dict, current: str | None) -> str | None:
    """The store precondition the request's If-Match / If-None-Match header asks for.

    ``current`` is the ETag of what the request found at its target (None:
    nothing). If-Match compares strongly (a weak tag never matches a write);
    of several tags, the one that matches ``current`` is what the store must
    still find inside the write transaction. No tag matching is 412 at once.
    """
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match:
        tags = _etag_list(if_match)
        if (False, "*") in tags:
            return EXISTS
        if current is not None and (False, current) in tags:
            return current
        raise DAVError(HTTP_PRECONDITION_FAILED, "If-Match: no entity tag matches (strong "
                                                 "comparison: a weak tag never matches a write)")
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
        # Branches are never deleted: a name once seen as a branch stays one.
        self._branches: set[str] = set()

    # ---- lookup
    def branch_of(self, name: str) -> str | None:
        """The existing branch ``name`` names (itself, or the branch it is an alias of)."""
        if name == self.repo.default_branch or name in self._branches:
            return name
        try:
            if self.repo.leaves(name):
                self._branches.add(name)
                return name
            target = self.repo.branch_aliases().get(name)
        except errors.HeroFossilError:
            return None
        if target is not None and (target == self.repo.default_branch
                                   or self.repo.leaves(target)):
            return target
        return None

    def locate(self, url: str) -> routes.Location | None:
        """Where URL path ``url`` points, with the branch it may write resolved."""
        loc = routes.parse(url, self.repo.default_branch)
        if loc is not None and loc.kind == "tree" and loc.prefix.startswith("/" + routes.BRANCHES):
            loc = loc.on_branch(self.branch_of(loc.ref))
        return loc

    def resource(self, url: str, environ: dict):
        """The resource at URL path ``url``, or None."""
        loc = self.locate(url)
        if loc is None:
            return None
        if loc.kind != "tree":
            return ListingResource(url, environ, loc)
        try:
            entry = self.repo.stat(loc.path, at=loc.at)
        except (errors.NotFoundError, errors.InvalidPathError, errors.UsageError):
            entry = None
        if entry is None:
            if self.is_noise(loc):
                nf = self.noise.get(loc.branch, loc.path)
                if nf is not None:
                    return FileResource(url, environ, loc, noise=nf)
            return None
        if entry.is_dir:
            return FolderResource(url, environ, loc, entry)
        return FileResource(url, environ, loc, entry)

    def members(self, folder: FolderResource) -> list:
        """The members of ``folder``: one ``ls`` (no lookup per entry), noise, listings.

        A name no client could be shown (a control character, from a store
        written before such names were refused) is left out.
        """
        loc, env = folder.loc, folder.environ
        try:
            entries = self.repo.ls(loc.path, at=loc.at)
        except errors.NotFoundError:
            return []
        out = []
        names = set()
        for e in entries:
            if _CONTROL(e.name):
                continue
            child = loc.child(e.name)
            names.add(e.name)
            if e.is_dir:
                out.append(FolderResource(child.url, env, child, e))
            else:
                out.append(FileResource(child.url, env, child, e))
        if loc.branch:
            for nf in self.noise.listdir(loc.branch, loc.path):
                if nf.name not in names and not _CONTROL(nf.name):
                    child = loc.child(nf.name)
                    out.append(FileResource(child.url, env, child, noise=nf))
        if loc.url == "/":
            for name in routes.VIRTUAL:
                url = "/" + name
                out.append(ListingResource(url, env, self.locate(url)))
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
        return sorted(n for n in names if "/" not in n and not _CONTROL(n))

    def open_file(self, entry: Entry):
        """A readable stream of the file version ``entry`` names (its ETag)."""
        return self.repo.plumbing.open_artifact(entry.id)

    def read_noise(self, loc: routes.Location) -> bytes | None:
        return self.noise.read(loc.branch, loc.path)

    def is_noise(self, loc: routes.Location) -> bool:
        return bool(loc.branch and loc.path and self.noise.is_noise(loc.path))

    # ---- permissions
    def user_may_write(self, environ: dict) -> bool:
        """True when this request's user may change content anywhere."""
        return not self.readonly and self.users.can_write(environ.get("wsgidav.auth.user_name"))

    def may_write(self, loc: routes.Location, environ: dict) -> bool:
        """True when this request may change ``loc``."""
        return loc.writable and self.user_may_write(environ)

    def require_write(self, loc: routes.Location, environ: dict) -> None:
        """Raise 403 unless this request may change ``loc``."""
        if not loc.writable:
            if loc.kind == "tree" and loc.prefix.startswith("/" + routes.BRANCHES):
                raise DAVError(HTTP_FORBIDDEN, f"{loc.ref!r} is not a branch: only a branch's "
                               f"tip is writable (MKCOL /{routes.BRANCHES}/NAME/ starts one)")
            raise DAVError(HTTP_FORBIDDEN, "read-only: write under / or /.branches/BRANCH/")
        if not self.may_write(loc, environ):
            raise DAVError(HTTP_FORBIDDEN, "this user may only read")

    def require_name(self, loc: routes.Location) -> None:
        """Raise 403 unless the store can hold ``loc``'s path (the store's own rules)."""
        try:
            normalize(loc.path)
        except errors.InvalidPathError as exc:
            raise DAVError(HTTP_FORBIDDEN, str(exc)) from exc

    def require_changeable(self, loc: routes.Location, environ: dict, what: str) -> None:
        """Raise 403 unless ``loc`` is a file or folder of a tree this request may change."""
        self.require_write(loc, environ)
        if loc.is_root:
            raise DAVError(HTTP_FORBIDDEN, f"the root of a tree cannot be {what}")

    # ---- writes: each is one check-in
    def commit(self, environ: dict, loc: routes.Location, changes: list, what: str,
               lost: int | None = None):
        """Apply ``changes`` on ``loc``'s branch as one check-in named after the request.

        ``lost``: the status for a failed absence precondition (``expect=ABSENT``), when
        another request created the target first.
        """
        return self._checkin(environ, loc, what, lost, lambda **named: self.repo.commit(
            changes, **named))

    def write(self, environ: dict, loc: routes.Location, data: bytes) -> str:
        """PUT of one file as one check-in; returns its ETag, the artifact id the write
        computed (unchanged bytes: the id they already had)."""
        written = self._checkin(environ, loc, loc.url, None, lambda **named: self.repo.write(
            loc.path, data, **named))
        return written.file_id if written is not None else artifact_hex(data)

    def _checkin(self, environ: dict, loc: routes.Location, what: str, lost: int | None,
                 run):
        if loc.branch is None:
            raise DAVError(HTTP_FORBIDDEN, "read-only: write under / or /.branches/BRANCH/")
        user = environ.get("wsgidav.auth.user_name") or "anonymous"
        message = f"WebDAV {environ.get('REQUEST_METHOD', 'PUT')} {what}"
        try:
            return run(message=message, user=user, branch=loc.branch)
        except (errors.ConflictError, errors.InvalidPathError) as exc:
            if lost is not None:
                raise DAVError(lost, str(exc)) from exc
            raise dav_error(exc) from exc
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

    def noise_put(self, loc: routes.Location, data: bytes, expect: str | None) -> None:
        """Store a noise file (in the metadata, not in history) under ``expect``."""
        self.require_name(loc)
        try:
            self.noise.put(loc.branch, loc.path, data, expect)
        except errors.HeroFossilError as exc:
            raise dav_error(exc) from exc

    def put(self, res: FileResource, data: bytes | Staged) -> None:
        """PUT: store ``data`` (bytes, or a large body's parts already stored) at ``res``
        (noise goes to the metadata, not to history)."""
        loc, env = res.loc, res.environ
        if res.is_noise:
            if isinstance(data, Staged):
                raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE, "a file of this name is kept "
                               f"outside history, up to {LARGE >> 20} MiB; nothing was stored")
            self.noise_put(loc, data, expect_from(env, res.get_etag()))
            res.noise = self.noise.get(loc.branch, loc.path)
            return
        expect = expect_from(env, res.entry.id if res.entry is not None else None)
        self.commit(env, loc, [Put(loc.path, data, None, expect)], loc.url)
        if isinstance(data, Staged):
            aid, size = id_name(data.aid), data.size
        else:
            aid, size = artifact_hex(data), len(data)
        res.entry = Entry(loc.path, False, aid, size=size, mtime=time.time())

    def create_file(self, folder: FolderResource, name: str) -> FileResource:
        """A new file: pending for PUT (written by ``put``); empty at once for LOCK."""
        loc = folder.loc.child(name)
        self.require_write(loc, folder.environ)
        self.require_name(loc)
        res = FileResource(loc.url, folder.environ, loc)
        if folder.environ.get("REQUEST_METHOD") != "PUT":
            self.put(res, b"")
        return res

    def mkdir(self, folder: FolderResource, name: str) -> None:
        """MKCOL: an empty folder, kept in history; of racing MKCOLs one creates it."""
        loc = folder.loc.child(name)
        self.require_write(loc, folder.environ)
        self.require_name(loc)
        changes = [MakeDir(loc.path, expect=ABSENT)]  # decided inside the write
        self.commit(folder.environ, loc, changes, loc.url + "/", lost=HTTP_METHOD_NOT_ALLOWED)

    def mkbranch(self, listing: routes.Location, name: str, environ: dict) -> None:
        """MKCOL /.branches/NAME/: start branch NAME at the default branch's tip."""
        if listing.kind != routes.BRANCHES:
            raise DAVError(HTTP_FORBIDDEN, "history is read-only: MKCOL /.branches/NAME/ "
                                           "starts a branch")
        if not self.user_may_write(environ):
            raise DAVError(HTTP_FORBIDDEN, "this user may only read")
        if self.branch_of(name) is not None:
            raise DAVError(HTTP_METHOD_NOT_ALLOWED, f"branch {name!r} exists")
        if _CONTROL(name):
            raise DAVError(HTTP_FORBIDDEN, f"bad branch name {name!r}: no control characters")
        if "@" in name or _reads_as_date(name):
            raise DAVError(HTTP_FORBIDDEN, f"bad branch name {name!r}: it reads as a date "
                                           "(REF@DATE), and would hide that version")
        user = environ.get("wsgidav.auth.user_name") or "anonymous"
        try:
            made = self.repo.branch_new(name, message=f"WebDAV MKCOL /{routes.BRANCHES}/{name}/",
                                        user=user)
        except errors.HeroFossilError as exc:
            if self.branch_of(name) is not None:  # another request started it first
                raise DAVError(HTTP_METHOD_NOT_ALLOWED, f"branch {name!r} exists") from exc
            raise DAVError(HTTP_FORBIDDEN, str(exc)) from exc
        if made is None:
            raise DAVError(HTTP_METHOD_NOT_ALLOWED, f"branch {name!r} exists")

    def delete(self, res) -> None:
        """DELETE: a file or a whole folder as one check-in, with its properties and locks."""
        loc, env = res.loc, res.environ
        self.require_changeable(loc, env, "deleted")
        if isinstance(res, FileResource) and res.noise is not None:
            try:
                self.noise.delete(loc.branch, loc.path, expect_from(env, res.get_etag()))
            except errors.HeroFossilError as exc:
                raise dav_error(exc) from exc
        else:
            if res.is_collection:
                changes = [Delete(loc.path, recursive=True)]
            else:
                changes = [Delete(loc.path, expect_from(env, res.entry.id))]
            self.commit(env, loc, changes + self._keep_parent(loc, loc.path), loc.url)
            if res.is_collection:
                self.noise.delete_under(loc.branch, loc.path)
        res.remove_all_properties(recursive=True)
        res.remove_all_locks(recursive=True)

    def copy_move(self, src, dest_url: str, *, is_move: bool, depth_infinity: bool) -> bool:
        """COPY or MOVE ``src`` to ``dest_url`` as one check-in (overwrite included).

        wsgidav has already checked locks, Overwrite and If headers on what it
        saw; what must still hold when the check-in is made (the source's
        If-Match, a destination that Overwrite: F requires absent) is decided
        inside the write.
        """
        env = src.environ
        sloc = src.loc
        dloc = self.locate(dest_url)
        if dloc is None or dloc.kind != "tree" or dloc.is_root:
            raise DAVError(HTTP_FORBIDDEN, "cannot copy or move there")
        if sloc.is_root and (is_move or sloc.branch is not None):
            raise DAVError(HTTP_FORBIDDEN, "the root of a tree cannot be copied or moved")
        self.require_write(dloc, env)
        self.require_name(dloc)
        if is_move:
            self.require_changeable(sloc, env, "moved")
            if sloc.branch != dloc.branch:
                raise DAVError(HTTP_FORBIDDEN, "move between branches: copy, then delete")
        if sloc.branch == dloc.branch and sloc.branch is not None:
            if is_under(dloc.path, sloc.path):
                raise DAVError(HTTP_FORBIDDEN, "cannot copy or move a folder into itself")
            if is_under(sloc.path, dloc.path):
                raise DAVError(HTTP_CONFLICT, "cannot replace a folder by something inside it")
        keep_out = env.get("HTTP_OVERWRITE", "T").upper() == "F"
        dest = self.resource(dest_url, env)
        changes: list = []
        lost = HTTP_PRECONDITION_FAILED if keep_out else None
        if dest is not None and keep_out:  # created since wsgidav looked
            raise DAVError(HTTP_PRECONDITION_FAILED, f"{dloc.url} exists and Overwrite is F")
        if dest is not None:
            if isinstance(dest, FileResource) and dest.noise is not None:
                self.noise.delete(dloc.branch, dloc.path)
            else:
                changes.append(Delete(dloc.path, recursive=dest.is_collection))
        else:
            env[CREATED] = True
        src_etag = src.get_etag()
        what = f"{sloc.url} -> {dloc.url}"
        src_noise = isinstance(src, FileResource) and src.noise is not None
        dst_noise = not src.is_collection and self.noise.is_noise(dloc.path)
        if src_noise or dst_noise:
            data = (
                self.noise.read(sloc.branch, sloc.path)
                if src_noise
                else self.repo.artifact(src.entry.id)
            )
            if data is None:
                raise DAVError(HTTP_NOT_FOUND, f"{sloc.url} is gone")
            if dst_noise:
                self.noise_put(dloc, data, ABSENT if lost else None)
            else:
                changes.append(Put(dloc.path, data, None, ABSENT if lost else None))
            if is_move and src_noise:
                try:
                    self.noise.delete(sloc.branch, sloc.path, expect_from(env, src_etag))
                except errors.HeroFossilError as exc:
                    raise dav_error(exc) from exc
            elif is_move:
                changes.append(Delete(sloc.path, expect_from(env, src_etag)))
                changes += self._keep_parent(sloc, sloc.path)
            if changes:
                self.commit(env, dloc, changes, what, lost)
        elif is_move:
            expect = None if src.is_collection else expect_from(env, src_etag)
            changes.append(Rename(sloc.path, dloc.path, expect))
            changes += self._keep_parent(sloc, sloc.path)
            self.commit(env, dloc, changes, what, lost)
            if src.is_collection:
                self.noise.move_under(sloc.branch, sloc.path, dloc.path)
        elif src.is_collection:
            changes.append(MakeDir(dloc.path, expect=ABSENT if lost else None))
            if depth_infinity:
                changes += self._copy_tree(sloc, dloc.path)
            self.commit(env, dloc, changes, what, lost)
            if depth_infinity and sloc.branch:
                self.noise.copy_under(sloc.branch, sloc.path, dloc.branch, dloc.path)
        else:
            expect = ABSENT if lost else None
            changes.append(PutArtifact(dloc.path, src.entry.id, src.entry.perm, expect))
            self.commit(env, dloc, changes, what, lost)
        self._carry_properties(src, dest, dloc, is_move)
        return True

    def _copy_tree(self, sloc: routes.Location, dst: str) -> list:
        """Changes that recreate folder ``sloc`` at ``dst`` (artifacts shared, no data copied)."""
        out: list = []
        stack = [sloc.path]
        while stack:
            folder = stack.pop()
            entries = self.repo.ls(folder, at=sloc.at)
            target = dst + folder[len(sloc.path) :] if sloc.path else f"{dst}/{folder}"
            target = target.rstrip("/")
            if not entries:
                out.append(MakeDir(target))
            for e in entries:
                if e.is_dir:
                    stack.append(e.path)
                else:
                    out.append(PutArtifact(target + "/" + e.name, e.id, e.perm))
        return out

    def _carry_properties(self, src, dest, dloc: routes.Location, is_move: bool) -> None:
        pm = self.provider.prop_manager
        lm = self.provider.lock_manager
        coll = "/" if src.is_collection else ""
        dst_ref = quote(self.provider.share_path + dloc.key + coll)
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
