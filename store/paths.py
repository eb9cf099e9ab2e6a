"""Path rules of the store: what a stored path may be, and how it splits."""

from __future__ import annotations

from herofossil.errors import InvalidPathError

DIR_MARKER = ".herofossil-dir"
MAX_PATH = 4096


def normalize(path: str, *, allow_root: bool = False) -> str:
    """Validate a store path and return it in canonical form (no leading or trailing '/').

    A leading '/' is rejected rather than stripped: stored paths are relative.
    Rejected: empty paths (unless ``allow_root``), '.', '..', empty segments,
    NUL, and the reserved directory-marker name.
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
    if "\0" in path:
        raise InvalidPathError(f"path {path!r} contains a NUL byte")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise InvalidPathError(f"path is longer than {MAX_PATH} bytes")
    for seg in path.split("/"):
        if seg == "":
            raise InvalidPathError(f"path {path!r} has an empty segment ('//' or trailing '/')")
        if seg in (".", ".."):
            raise InvalidPathError(f"path {path!r} contains '{seg}': name the path directly")
        if seg == DIR_MARKER:
            raise InvalidPathError(f"path {path!r} uses the reserved name {DIR_MARKER!r}")
    return path


def split(path: str) -> tuple[str, str]:
    """('a/b', 'c') for 'a/b/c'; ('', 'c') for 'c'."""
    head, _, tail = path.rpartition("/")
    return head, tail


def ancestors(path: str) -> list[str]:
    """The directories above ``path``, outermost first: 'a/b/c' -> ['a', 'a/b']."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def is_under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or inside it ('' is the root)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")
