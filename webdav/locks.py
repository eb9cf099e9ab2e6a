"""WebDAV locks (class 2) kept in the store's metadata, so they survive restarts."""

from __future__ import annotations

from wsgidav.dav_error import HTTP_REQUEST_ENTITY_TOO_LARGE, DAVError
from wsgidav.lock_man.lock_storage import LockStorageDict

from herofossil.webdav.metamap import MetaMapping

NAMESPACE = "webdav-locks"
MAX_OWNER = 16 << 10  # bytes of a lock's <owner>: shown in every listing of the resource
MAX_LOCKS = 64  # shared locks on one resource


class MetaLockStorage(LockStorageDict):
    """wsgidav's lock storage over ``repo.meta`` (namespace ``webdav-locks``)."""

    def __init__(self, repo):
        super().__init__()
        self.repo = repo

    def __repr__(self) -> str:
        return f"MetaLockStorage({self.repo.path!r})"

    def open(self) -> None:
        self._dict = MetaMapping(self.repo, NAMESPACE)

    def close(self) -> None:
        self._dict = None

    def create(self, path, lock):
        """Store a new lock, within the size limits (413 past them)."""
        if len(lock.get("owner") or b"") > MAX_OWNER:
            raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE,
                           f"a lock's owner is at most {MAX_OWNER} bytes")
        if len(self.get_lock_list(path, include_root=True, include_children=False,
                                  token_only=True)) >= MAX_LOCKS:
            raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE,
                           f"a resource holds at most {MAX_LOCKS} locks")
        return super().create(path, lock)

    def has_locks(self) -> bool:
        """True when any lock (even an expired one not purged yet) is stored."""
        return self.repo.plumbing.meta_any(NAMESPACE)

    def clear(self) -> None:
        for key in list(MetaMapping(self.repo, NAMESPACE)):
            self.repo.plumbing.meta_delete(NAMESPACE, key)
