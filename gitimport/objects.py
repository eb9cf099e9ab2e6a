"""Git objects as bytes: tree parsing and canonical serialisation, commit headers, ids."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from herofossil.gitimport.errors import GitObjectError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
ZERO = "0" * 40
# Canonical modes as Git writes them; anything else makes a tree non-canonical.
MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE, MODE_GITLINK = (
    b"100644", b"100755", b"120000", b"40000", b"160000")
PERM_MODE = {"": MODE_FILE, "x": MODE_EXEC, "l": MODE_LINK}
MODE_PERM = {MODE_FILE: "", MODE_EXEC: "x", MODE_LINK: "l"}


def object_id(kind: str, data: bytes) -> str:
    """The Git (SHA-1) id of an object of ``kind`` with content ``data``."""
    h = hashlib.sha1(b"%s %d\0" % (kind.encode(), len(data)))
    h.update(data)
    return h.hexdigest()


def is_tree_mode(mode: bytes) -> bool:
    """True for a tree entry that is a subtree (``40000``, or ``040000`` in old repos)."""
    return int(mode, 8) & 0o170000 == 0o040000


def file_perm(mode: bytes) -> str | None:
    """The store permission of a blob entry ('' / 'x' / 'l'), None for trees and gitlinks."""
    p = MODE_PERM.get(mode)
    if p is not None:
        return p
    kind = int(mode, 8) & 0o170000
    if kind == 0o100000:
        return "x" if int(mode, 8) & 0o100 else ""
    if kind == 0o120000:
        return "l"
    return None


_TREE_ENTRY = re.compile(rb"([0-9]+) ([^\0]*)\0(.{20})", re.S)
_WHOLE_TREE = re.compile(rb"(?:[0-9]+ [^\0]*\0.{20})*", re.S)


def parse_tree_raw(raw: bytes, sha: str = "?") -> list[tuple[bytes, bytes, bytes]]:
    """(mode, name, 20-byte id) of each entry of a raw tree, in stored order."""
    if _WHOLE_TREE.fullmatch(raw) is None:
        raise GitObjectError(f"tree {sha} is corrupt")
    return _TREE_ENTRY.findall(raw)


_PLAIN_TREE_MODES = {b"100644": False, b"100755": False, b"120000": False, b"40000": True}


def plain_tree_reference(raw: bytes) -> tuple[bool, list[bytes]] | None:
    """(has a file, 20-byte ids of its subtrees) of a well-formed tree whose entries are
    files (100644, 100755, 120000) and subtrees (40000) only, in Git's order (a subtree
    sorts as ``name/``; equal keys pass); None for anything else (an odd mode, an empty
    name, entries out of order, a damaged tree). The readable twin of the compiled
    ``herofossil.cext._gittree.plain_tree``."""
    if _WHOLE_TREE.fullmatch(raw) is None:
        return None
    has_file, subtrees, prev = False, [], None
    for mode, name, bid in _TREE_ENTRY.findall(raw):
        tree = _PLAIN_TREE_MODES.get(mode)
        if tree is None or not name:
            return None
        key = name + b"/" if tree else name
        if prev is not None and prev > key:
            return None
        prev = key
        if tree:
            subtrees.append(bid)
        else:
            has_file = True
    return has_file, subtrees


try:  # the compiled scan: the regex parse was a quarter of an import's Python time
    from herofossil.cext._gittree import plain_tree
except ImportError:  # not built: the reference serves
    plain_tree = plain_tree_reference


def parse_tree(raw: bytes, sha: str = "?") -> list[tuple[bytes, bytes, str]]:
    """(mode, name, hex id) of each entry of a raw tree, in stored order."""
    return [(m, n, h.hex()) for m, n, h in parse_tree_raw(raw, sha)]


def _sort_key(entry: tuple[bytes, bytes, str]) -> bytes:
    mode, name, _ = entry
    return name + b"/" if mode == MODE_TREE else name


def serialize_tree(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    """A canonical raw tree (Git's order: a subtree sorts as ``name/``)."""
    return b"".join(
        m + b" " + nm + b"\0" + bytes.fromhex(h) for m, nm, h in sorted(entries, key=_sort_key)
    )


class CommitInfo:
    """The parts of a raw commit the importer uses (the raw bytes are kept as-is)."""

    __slots__ = ("tree", "parents", "committer", "author", "encoding", "message")

    def __init__(self, raw: bytes, sha: str = "?"):
        head, sep, self.message = raw.partition(b"\n\n")
        if not sep:
            head, self.message = raw.rstrip(b"\n"), b""
        self.tree = ""
        self.parents: list[str] = []
        self.committer = self.author = b""
        self.encoding = None
        for line in head.split(b"\n"):
            if line.startswith(b"tree "):
                self.tree = line[5:].decode("ascii", "replace")
            elif line.startswith(b"parent "):
                self.parents.append(line[7:].decode("ascii", "replace"))
            elif line.startswith(b"committer "):
                self.committer = line[10:]
            elif line.startswith(b"author "):
                self.author = line[7:]
            elif line.startswith(b"encoding "):
                self.encoding = line[9:].decode("ascii", "replace")
        if len(self.tree) != 40:
            raise GitObjectError(f"commit {sha} is corrupt: no tree")

    def text(self) -> str:
        """The message as text (decoded by its ``encoding`` header), without trailing newlines."""
        try:
            msg = self.message.decode(self.encoding or "utf-8")
        except (LookupError, UnicodeDecodeError):
            msg = self.message.decode("utf-8", "replace")
        return msg.rstrip("\n")


def split_ident(ident: bytes) -> tuple[str, str, datetime]:
    """(name, email, aware UTC time) of an author/committer line value."""
    lt, gt = ident.find(b"<"), ident.rfind(b">")
    name = ident[:lt].strip().decode("utf-8", "replace") if lt > 0 else ""
    email = ident[lt + 1 : gt].decode("utf-8", "replace") if 0 <= lt < gt else ""
    try:
        when = int(ident[gt + 1 :].split()[0])
        dt = datetime.fromtimestamp(when, UTC)
    except (ValueError, IndexError, OverflowError, OSError):
        dt = datetime(1970, 1, 1, tzinfo=UTC)
    return name, email, dt
