"""The tip index: for each branch, the tree of its newest leaf, one LMDB key per entry.

Key: ``branch NUL dir NUL name`` (dir is '' at the root), so a file read is
one lookup and listing a folder is a range scan over its own entries only.
Value: a file ``F perm size mtime id`` or a directory ``D count mtime``,
where count is the number of direct entries (the directory goes when it
reaches zero).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from herofossil.errors import InvalidPathError, UsageError
from herofossil.store.keys import id_name, join_key, tree_key
from herofossil.store.paths import DIR_MARKER, split

_FILE = struct.Struct("<cQd32s")
_DIR = struct.Struct("<Id")
# File modes: plain, executable (Fossil's F card flag x), symbolic link (flag l).
PERMS = ("", "x", "l")
_PERM_CODES = dict(zip(PERMS, (b"-", b"x", b"l"), strict=True))
PERM_NAMES = {v: k for k, v in _PERM_CODES.items()}


def perm_of(flag: str | None) -> str:
    """The file mode a manifest's F card flag stands for ('' for any flag but x and l)."""
    return flag if flag in PERMS else ""


def check_perm(perm: str) -> str:
    """``perm`` if it is a file mode a writer may set, else ``UsageError``."""
    if perm not in PERMS:
        raise UsageError(f"file permission must be '', 'x' or 'l', not {perm!r}")
    return perm


@dataclass(slots=True)
class Entry:
    """A file or directory at a branch tip."""

    path: str
    is_dir: bool
    id: str | None = None
    perm: str = ""
    size: int = 0
    mtime: float = 0.0
    count: int = 0

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


def refuse_folder(path: str, entry: Entry | None) -> None:
    """Raise ``InvalidPathError`` when ``entry``, what is at ``path``, is a folder: a file
    cannot take a folder's place."""
    if entry is not None and entry.is_dir:
        raise InvalidPathError(f"{path} is a folder; a file cannot replace it")


def encode_file(perm: str, size: int, mtime: float, aid: bytes) -> bytes:
    return b"F" + _FILE.pack(_PERM_CODES[perm], size, mtime, aid)


def decode(path: str, raw: bytes) -> Entry:
    if raw[:1] == b"F":
        perm, size, mtime, aid = _FILE.unpack_from(raw, 1)
        return Entry(path, False, id_name(aid), PERM_NAMES[perm], size, mtime)
    count, mtime = _DIR.unpack_from(raw, 1)
    return Entry(path, True, mtime=mtime, count=count)


class Tree:
    """The tip tree of one branch inside a transaction."""

    def __init__(self, txn, db, branch: str):
        self.txn = txn
        self.db = db
        self.branch = branch
        self._prefix = join_key(branch, b"")

    def raw(self, path: str) -> bytes | None:
        return self.txn.get(tree_key(self.branch, path), db=self.db)

    def get(self, path: str) -> Entry | None:
        raw = self.raw(path)
        return None if raw is None else decode(path, raw)

    def file_id(self, path: str) -> bytes | None:
        raw = self.raw(path)
        if raw is None or raw[:1] != b"F":
            return None
        return raw[-32:]

    def listdir(self, path: str, *, markers: bool = False) -> list[Entry]:
        prefix = join_key(self.branch, path, b"")
        base = path + "/" if path else ""
        out = []
        cur = self.txn.cursor(db=self.db)
        if cur.set_range(prefix):
            for key, raw in cur:
                if not key.startswith(prefix):
                    break
                name = key[len(prefix) :].decode()
                if name == DIR_MARKER and not markers:
                    continue
                out.append(decode(base + name, raw))
        return out

    def walk(self, path: str = ""):
        """Every file entry under ``path`` (depth-first, markers included)."""
        for entry in self.listdir(path, markers=True):
            if entry.is_dir:
                yield from self.walk(entry.path)
            else:
                yield entry

    def _bump(self, directory: str, by: int, mtime: float) -> None:
        if not directory:
            return
        key = tree_key(self.branch, directory)
        raw = self.txn.get(key, db=self.db)
        count = _DIR.unpack_from(raw, 1)[0] + by
        if count <= 0:
            self.txn.delete(key, db=self.db)
            self._bump(split(directory)[0], -1, mtime)
        else:
            self.txn.put(key, b"D" + _DIR.pack(count, mtime), db=self.db)

    def _ensure_dir(self, directory: str, mtime: float) -> None:
        if not directory:
            return
        key = tree_key(self.branch, directory)
        raw = self.txn.get(key, db=self.db)
        if raw is None:
            parent = split(directory)[0]
            self._ensure_dir(parent, mtime)
            self.txn.put(key, b"D" + _DIR.pack(0, mtime), db=self.db)
            self._bump(parent, 1, mtime)
        elif raw[:1] == b"F":
            raise InvalidPathError(f"{directory!r} is a file, so it cannot hold other files")

    def put(self, path: str, perm: str, size: int, mtime: float, aid: bytes,
            exists: bool | None = None) -> None:
        """Write file ``path``. ``exists``: whether a file is there, if the caller knows."""
        key = tree_key(self.branch, path)
        if exists is None:
            raw = self.txn.get(key, db=self.db)
            if raw is not None and raw[:1] == b"D":
                refuse_folder(path, decode(path, raw))
            exists = raw is not None
        if not exists:
            parent = split(path)[0]
            self._ensure_dir(parent, mtime)
            self._bump(parent, 1, mtime)
        self.txn.put(key, encode_file(perm, size, mtime, aid), db=self.db)

    def remove(self, path: str, mtime: float) -> None:
        key = tree_key(self.branch, path)
        if self.txn.delete(key, db=self.db):
            self._bump(split(path)[0], -1, mtime)

    def clear(self) -> None:
        cur = self.txn.cursor(db=self.db)
        if cur.set_range(self._prefix):
            while cur.key().startswith(self._prefix):
                if not cur.delete():
                    break

    def copy_to(self, other: Tree) -> None:
        other.clear()
        cur = self.txn.cursor(db=self.db)
        if cur.set_range(self._prefix):
            for key, raw in cur:
                if not key.startswith(self._prefix):
                    break
                self.txn.put(other._prefix + key[len(self._prefix) :], raw, db=self.db)
