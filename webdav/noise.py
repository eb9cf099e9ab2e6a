"""OS and editor noise (``.DS_Store``, ``*.swp``, ...): accepted, never versioned.

Such files are kept in the store's metadata (namespace ``webdav-noise``), one
value per branch and path, so a client sees them in listings and can read and
delete them, while history holds only the user's own files.
"""

from __future__ import annotations

import fnmatch
import re
import struct
import time
from dataclasses import dataclass

from herofossil.store.changes import check_expect

NAMESPACE = "webdav-noise"

DEFAULT_PATTERNS = (
    ".DS_Store",
    "._*",
    ".localized",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "~$*",
    "*.swp",
    "*.swx",
    "*.swo",
    ".~lock.*#",
    ".goutputstream-*",
)

_HEAD = struct.Struct("<d")


@dataclass(slots=True)
class NoiseFile:
    """One noise file: its store-relative path, size and modification time."""

    path: str
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def etag(self) -> str:
        """Size and microsecond mtime: every write of one file moves the mtime on."""
        return f"noise-{self.size}-{round(self.mtime * 1e6)}"


def _check_expect(path: str, expect: str | None, current: NoiseFile | None) -> None:
    """The store's ``expect`` rule for a noise file's ETag."""
    check_expect(path, expect, current.etag if current is not None else None)


def _decode(path: str, raw: bytes | None) -> NoiseFile | None:
    if raw is None:
        return None
    return NoiseFile(path, len(raw) - _HEAD.size, _HEAD.unpack_from(raw)[0])


class NoiseStore:
    """Noise files of every branch, and the patterns that say what is noise.

    A precondition (``expect``) and the write it guards happen in one write
    transaction, so that of concurrent conditional writes of one noise file one wins.
    """

    def __init__(self, repo, patterns=DEFAULT_PATTERNS):
        self.repo = repo
        self.patterns = tuple(p.lower() for p in patterns)
        # One regular expression for all patterns: checked on every request.
        self._match = re.compile("|".join(fnmatch.translate(p) for p in self.patterns)).match

    def is_noise(self, path: str) -> bool:
        """True when the last segment of ``path`` matches a noise pattern (case-insensitive)."""
        return bool(self.patterns) and self._match(path.rpartition("/")[2].lower()) is not None

    @staticmethod
    def _key(branch: str, path: str) -> str:
        return f"{branch}\0{path}"

    def get(self, branch: str, path: str) -> NoiseFile | None:
        """The noise file at ``path`` on ``branch``, or None."""
        return _decode(path, self.repo.plumbing.meta_get(NAMESPACE, self._key(branch, path)))

    def read(self, branch: str, path: str) -> bytes | None:
        """The bytes of a noise file, or None."""
        raw = self.repo.plumbing.meta_get(NAMESPACE, self._key(branch, path))
        return None if raw is None else raw[_HEAD.size :]

    def put(self, branch: str, path: str, data: bytes, expect: str | None = None) -> None:
        """Store (or replace) a noise file; ``expect``: its ETag, ``EXISTS`` or ``ABSENT``
        (checked in the write transaction: it holds against writers in other processes)."""
        def change(raw: bytes | None) -> bytes:
            current = _decode(path, raw)
            _check_expect(path, expect, current)
            now = time.time()
            if current is not None and now <= current.mtime:
                now = current.mtime + 1e-6
            return _HEAD.pack(now) + data

        self.repo.plumbing.meta_change(NAMESPACE, self._key(branch, path), change)

    def delete(self, branch: str, path: str, expect: str | None = None) -> bool:
        """Remove a noise file; True when it existed."""
        existed = []

        def change(raw: bytes | None) -> None:
            current = _decode(path, raw)
            _check_expect(path, expect, current)
            existed.append(current is not None)

        self.repo.plumbing.meta_change(NAMESPACE, self._key(branch, path), change)
        return existed[0]

    def _under(self, branch: str, folder: str):
        prefix = self._key(branch, folder + "/" if folder else "")
        start = len(branch) + 1
        for key, raw in self.repo.plumbing.meta_items(NAMESPACE, prefix):
            yield key[start:], raw

    def listdir(self, branch: str, folder: str) -> list[NoiseFile]:
        """The noise files directly inside ``folder``."""
        base = len(folder) + 1 if folder else 0
        return [
            NoiseFile(path, len(raw) - _HEAD.size, _HEAD.unpack_from(raw)[0])
            for path, raw in self._under(branch, folder)
            if "/" not in path[base:]
        ]

    def delete_under(self, branch: str, folder: str) -> None:
        """Remove every noise file inside ``folder`` (a folder deleted or overwritten)."""
        for path, _ in list(self._under(branch, folder)):
            self.repo.plumbing.meta_delete(NAMESPACE, self._key(branch, path))

    def move_under(self, branch: str, src: str, dst: str) -> None:
        """Move the noise files inside folder ``src`` to folder ``dst`` (a folder MOVE)."""
        for path, raw in list(self._under(branch, src)):
            self.repo.plumbing.meta_put(NAMESPACE, self._key(branch, dst + path[len(src) :]), raw)
            self.repo.plumbing.meta_delete(NAMESPACE, self._key(branch, path))

    def copy_under(self, src_branch: str, src: str, branch: str, dst: str) -> None:
        """Copy the noise files inside folder ``src`` to folder ``dst``."""
        for path, raw in list(self._under(src_branch, src)):
            self.repo.plumbing.meta_put(NAMESPACE, self._key(branch, dst + path[len(src) :]), raw)
