"""wsgidav resources: files and folders of one version, noise files, and listings.

Resources only describe and delegate: every change goes through the
provider's ``fs`` (``RepoFS``), which turns one request into one check-in.
"""

from __future__ import annotations

import io
from urllib.parse import quote

from wsgidav import util
from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection

from herofossil.store import chunks
from herofossil.webdav import routes


class Upload:
    """The body of a PUT as it arrives: a large one is stored part by part at once
    (``chunks.Stager``: memory holds at most ``blobs.LARGE`` bytes of it), and
    ``end_write`` makes the check-in that names it.

    wsgidav closes the stream before ``end_write``; ``close`` therefore keeps
    what arrived, and ``discard`` gives it up.
    """

    def __init__(self, env):
        self._stager = chunks.Stager(env)

    def write(self, data: bytes) -> None:
        self._stager.push(data)

    def writelines(self, chunks_) -> None:
        for data in chunks_:
            self._stager.push(data)

    def close(self) -> None:
        """Kept open on purpose: ``end_write`` still takes what arrived."""

    def finish(self) -> bytes | chunks.Staged:
        """The whole body: its bytes, or the parts already stored (``chunks.Staged``)."""
        return self._stager.finish()

    def discard(self) -> None:
        self._stager.discard()


class _Writable:
    """Write-permission hooks shared by files and folders."""

    def get_ref_url(self) -> str:
        """The key of locks and dead properties: one per (tree, path), whatever the URL."""
        key = self.loc.key
        if self.is_collection and not key.endswith("/"):
            key += "/"
        return quote(self.provider.share_path + key)

    def prevent_locking(self) -> bool:
        return not self.provider.fs.may_write(self.loc, self.environ)

    def handle_delete(self):
        """Refuse at once what cannot be deleted (before wsgidav walks a folder)."""
        self.provider.fs.require_changeable(self.loc, self.environ, "deleted")
        return False

    def set_property_value(self, name, value, *, dry_run=False):
        self.provider.fs.require_write(self.loc, self.environ)
        return super().set_property_value(name, value, dry_run=dry_run)

    def handle_move(self, dest_path):
        return self.provider.fs.copy_move(self, dest_path, is_move=True, depth_infinity=True)

    def handle_copy(self, dest_path, *, depth_infinity):
        return self.provider.fs.copy_move(
            self, dest_path, is_move=False, depth_infinity=depth_infinity
        )


class FileResource(_Writable, DAVNonCollection):
    """A file at a version; ``entry`` None with ``noise`` None means "being created by PUT"."""

    def __init__(self, path, environ, loc, entry=None, noise=None):
        super().__init__(path, environ)
        self.loc = loc
        self.entry = entry
        self.noise = noise
        self._upload: Upload | None = None

    @property
    def is_noise(self) -> bool:
        return self.noise is not None or (
            self.entry is None and self.provider.fs.is_noise(self.loc)
        )

    def get_content_length(self):
        src = self.entry or self.noise
        return src.size if src else 0

    def get_content_type(self):
        return util.guess_mime_type(self.path)

    def get_creation_date(self):
        return self.get_last_modified()

    def get_last_modified(self):
        src = self.entry or self.noise
        return src.mtime if src else None

    def get_etag(self):
        if self.entry is not None:
            return self.entry.id
        if self.noise is not None:
            return self.noise.etag
        return None

    def support_etag(self):
        return True

    def support_ranges(self):
        return True

    def get_content(self):
        if self.entry is not None:
            return self.provider.fs.open_file(self.entry)
        return io.BytesIO(self.provider.fs.read_noise(self.loc) or b"")

    def begin_write(self, *, content_type=None):
        self.provider.fs.require_write(self.loc, self.environ)
        self._upload = Upload(self.provider.fs.repo._env)
        return self._upload

    def end_write(self, *, with_errors):
        upload, self._upload = self._upload, None
        if upload is None:
            return
        try:
            if not with_errors:
                self.provider.fs.put(self, upload.finish())
        finally:
            upload.discard()

    def delete(self):
        self.provider.fs.delete(self)

    def support_recursive_move(self, dest_path):
        return True


class FolderResource(_Writable, DAVCollection):
    """A folder (or the root) of a version."""

    def __init__(self, path, environ, loc, entry=None):
        super().__init__(path, environ)
        self.loc = loc
        self.entry = entry

    def get_display_info(self):
        return {"type": "Directory"}

    def get_creation_date(self):
        return self.get_last_modified()

    def get_last_modified(self):
        return self.entry.mtime if self.entry is not None and self.entry.mtime else None

    def get_member_list(self):
        return self.provider.fs.members(self)

    def get_member_names(self):
        return [util.get_uri_name(m.path) for m in self.get_member_list()]

    def get_member(self, name):
        return self.provider.get_resource_inst(routes.join(self.path, name), self.environ)

    def create_empty_resource(self, name):
        return self.provider.fs.create_file(self, name)

    def create_collection(self, name):
        self.provider.fs.mkdir(self, name)

    def delete(self):
        self.provider.fs.delete(self)

    def support_recursive_delete(self):
        return True

    def support_recursive_move(self, dest_path):
        return True


class ListingResource(DAVCollection):
    """``/.history/`` or ``/.branches/``: one read-only folder per branch (and tag)."""

    def __init__(self, path, environ, loc):
        super().__init__(path, environ)
        self.loc = loc

    def get_display_info(self):
        return {"type": "Directory"}

    def get_member_names(self):
        return self.provider.fs.listing(self.loc)

    def get_member(self, name):
        return self.provider.get_resource_inst(routes.join(self.path, name), self.environ)

    def prevent_locking(self):
        return True

    def create_collection(self, name):
        self.provider.fs.mkbranch(self.loc, name, self.environ)

    def create_empty_resource(self, name):
        raise DAVError(HTTP_FORBIDDEN, "a listing holds only branches: MKCOL one")

    def set_property_value(self, name, value, *, dry_run=False):
        raise DAVError(HTTP_FORBIDDEN, "this listing is read-only")

    def handle_delete(self):
        raise DAVError(HTTP_FORBIDDEN, "this listing is read-only")

    def delete(self):
        raise DAVError(HTTP_FORBIDDEN, "this listing is read-only")

    def support_recursive_delete(self):
        return True

    def support_recursive_move(self, dest_path):
        return True

    def handle_move(self, dest_path):
        raise DAVError(HTTP_FORBIDDEN, "this listing is read-only")

    def handle_copy(self, dest_path, *, depth_infinity):
        raise DAVError(HTTP_FORBIDDEN, "listings cannot be copied")
