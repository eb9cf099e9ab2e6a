"""Read views of one version of the tree: the tip index, or a parsed manifest."""

from __future__ import annotations

from herofossil.store.blobs import BlobReader
from herofossil.store.keys import id_key
from herofossil.store.paths import DIR_MARKER, is_under
from herofossil.store.tree import Entry, Tree, perm_of


class TreeView:
    """A branch tip, read through the tip index: O(1) lookups, O(entries) listings."""

    def __init__(self, tree: Tree, checkin: bytes):
        self.tree = tree
        self.checkin = checkin

    def get(self, path: str) -> Entry | None:
        if not path:
            return Entry("", True)
        return self.tree.get(path)

    def listdir(self, path: str) -> list[Entry]:
        return self.tree.listdir(path)

    def walk(self, path: str = ""):
        for e in self.tree.walk(path):
            if e.name != DIR_MARKER:
                yield e

    def files(self, markers: bool = False) -> dict[str, tuple[str, str]]:
        """path -> (artifact id, perm); kept-empty folders' markers only with ``markers``."""
        return {e.path: (e.id, e.perm) for e in self.tree.walk("")
                if markers or e.name != DIR_MARKER}


class ManifestView:
    """Any past version, read from its resolved manifest."""

    def __init__(self, files: dict, blobs: BlobReader, checkin: bytes, mtime: float):
        self._files = files
        self.blobs = blobs
        self.checkin = checkin
        self.mtime = mtime
        self._dirs: dict[str, list[str]] | None = None

    def _entry(self, path: str, card) -> Entry:
        aid = id_key(card.uuid)
        size = self.blobs.size(aid) if self.blobs.has(aid) else 0
        return Entry(path, False, card.uuid, perm_of(card.perm), size, self.mtime)

    def _index(self) -> dict[str, list[str]]:
        if self._dirs is None:
            dirs: dict[str, set[str]] = {"": set()}
            for name in self._files:
                parts = name.split("/")
                for i in range(len(parts)):
                    d = "/".join(parts[:i])
                    dirs.setdefault(d, set()).add(parts[i])
            self._dirs = {d: sorted(v) for d, v in dirs.items()}
        return self._dirs

    def get(self, path: str) -> Entry | None:
        if not path:
            return Entry("", True)
        card = self._files.get(path)
        if card is not None:
            return self._entry(path, card)
        if path in self._index():
            return Entry(path, True, mtime=self.mtime, count=len(self._index()[path]))
        return None

    def listdir(self, path: str) -> list[Entry]:
        out = []
        for name in self._index().get(path, []):
            if name == DIR_MARKER:
                continue
            full = f"{path}/{name}" if path else name
            out.append(self.get(full))
        return out

    def walk(self, path: str = ""):
        for name in sorted(self._files):
            if is_under(name, path) and name.rpartition("/")[2] != DIR_MARKER:
                yield self._entry(name, self._files[name])

    def files(self, markers: bool = False) -> dict[str, tuple[str, str]]:
        """path -> (artifact id, perm); kept-empty folders' markers only with ``markers``."""
        return {n: (c.uuid, perm_of(c.perm)) for n, c in self._files.items()
                if markers or n.rpartition("/")[2] != DIR_MARKER}
