"""WebDAV dead properties kept in the store's metadata, outside the versioned tree."""

from __future__ import annotations

from wsgidav.prop_man.property_manager import PropertyManager

from herofossil.webdav.metamap import MetaMapping

NAMESPACE = "webdav-props"


class MetaPropertyManager(PropertyManager):
    """wsgidav's property manager over ``repo.meta`` (namespace ``webdav-props``)."""

    def __init__(self, repo):
        super().__init__()
        self.repo = repo

    def __repr__(self) -> str:
        return f"MetaPropertyManager({self.repo.path!r})"

    def _lazy_open(self) -> None:
        self._dict = MetaMapping(self.repo, NAMESPACE)
        self._loaded = True

    def _close(self) -> None:
        self._dict = None
        self._loaded = False
