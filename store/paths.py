"""Path rules of the store: what a stored path may be, and how it splits."""

from __future__ import annotations

import re

from herofossil.errors import InvalidPathError

DIR_MARKER = ".herofossil-dir"
# Paths are LMDB keys (tip index: branch NUL folder NUL name; path log: path
# NUL sequence), and LMDB keys stop at 511 bytes: 400 bytes of path and 100 of
# branch name leave room for the separators.
MAX_PATH = 400
MAX_NAME = 100  # bytes of a branch or tag name
# Control characters (U+0000-U+001F, U+007F) are refused in every stored name:
# they cannot be written in XML 1.0 (WebDAV listings), Windows refuses them, and
# a newline or escape in a name misleads every terminal and line-based tool.
_CONTROL = re.compile("[\x00-\x1f\x7f]").search


def normalize(path: str, *, allow_root: bool = False, marker: bool = False) -> str:
    """Validate a store path and return it in canonical form (no leading or trailing '/').

    A leading '/' is rejected rather than stripped: stored paths are relative.
    Rejected: empty paths (unless ``allow_root``), '.', '..', empty segments,
    control characters (NUL included), paths over ``MAX_PATH`` bytes, and the
    reserved directory-marker name (allowed as the last segment with ``marker``:
    the writer's own name for a kept-empty folder).
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a string, not {type(path).__name__}")
    if path in ("", "."):
        if allow_root:
            return ""
        raise InvalidPathError("empty path: name a file inside the store")
    if allow_root and path.endswith("/") and not path.endswith("//"):
        path = path[:-1]
    if path.startswith("/"):
        raise InvalidPathError(f"absolute path {path!r}: store paths are relative, drop the '/'")
    bad = _CONTROL(path)
    if bad:
        raise InvalidPathError(
            f"path {path!r} contains the control character U+{ord(bad.group()):04X}: "
            "file names cannot hold control characters; rename the file")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPathError(
            f"path '{printable(path)}' is not UTF-8: the store holds UTF-8 names only; "
            "rename the file") from None
    if size > MAX_PATH:
        raise InvalidPathError(f"path '{printable(path)[:60]}...' ({size} bytes) is longer "
                               f"than {MAX_PATH} bytes, the longest path the store holds")
    segs = path.split("/")
    for n, seg in enumerate(segs, 1):
        if seg == "":
            raise InvalidPathError(f"path {path!r} has an empty segment ('//' or trailing '/')")
        if seg in (".", ".."):
            raise InvalidPathError(f"path {path!r} contains '{seg}': name the path directly")
        if seg == DIR_MARKER and not (marker and n == len(segs)):
            raise InvalidPathError(f"path {path!r} uses the reserved name {DIR_MARKER!r}")
    return path


def printable(path: str) -> str:
    """``path`` with the bytes of a non-UTF-8 name escaped as in Python (``caf\\xe9``)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def split(path: str) -> tuple[str, str]:
    """('a/b', 'c') for 'a/b/c'; ('', 'c') for 'c'."""
    head, _, tail = path.rpartition("/")
    return head, tail


def is_under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or inside it ('' is the root)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")
