"""WebDAV locks (class 2) kept in the store's metadata, so they survive restarts."""

from __future__ import annotations

from wsgidav.lock_man.lock_storage import LockStorageDict

from herofossil.webdav.metamap import MetaMapping

NAMESPACE = "webdav-locks"


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

    def has_locks(self) -> bool:
        """True when any lock (even an expired one not purged yet) is stored."""
        return self.repo.plumbing.meta_any(NAMESPACE)

    def clear(self) -> None:
        for key in list(MetaMapping(self.repo, NAMESPACE)):
            self.repo.plumbing.meta_delete(NAMESPACE, key)
