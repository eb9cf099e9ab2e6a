"""The changes a check-in is made of: the one vocabulary of every writer."""

from __future__ import annotations

from dataclasses import dataclass

from herofossil.errors import ConflictError

# Precondition values for ``expect``: the artifact id the writer last saw, or one of these.
EXISTS = "*"
ABSENT = ""


@dataclass(slots=True)
class Put:
    """Write ``data`` at ``path``; ``perm`` None keeps the current one ('' for new files)."""

    path: str
    data: bytes
    perm: str | None = None
    expect: str | None = None


@dataclass(slots=True)
class Delete:
    """Remove the file ``path``, or with ``recursive`` the folder and all it holds."""

    path: str
    expect: str | None = None
    recursive: bool = False


@dataclass(slots=True)
class Rename:
    """Move a file or a whole folder from ``src`` to ``dst``."""

    src: str
    dst: str
    expect: str | None = None
    overwrite: bool = False


@dataclass(slots=True)
class MakeDir:
    """Create an (empty) folder that survives in history; ``expect=ABSENT``: only where
    nothing is yet (a folder already there is then a conflict, not a no-op)."""

    path: str
    expect: str | None = None


@dataclass(slots=True)
class PutArtifact:
    """Point ``path`` at an artifact already in the store (merges, copies, imports)."""

    path: str
    id: str
    perm: str = ""
    expect: str | None = None


def check_expect(path: str, expect: str | None, found: str | None) -> None:
    """Raise ``ConflictError`` unless what is at ``path`` (``found``: its id or ETag, None
    for nothing) is what ``expect`` says: None anything, ``EXISTS`` something, ``ABSENT``
    nothing, else that id (case-insensitive)."""
    if expect is None:
        return
    if expect == EXISTS:
        ok = found is not None
    elif expect == ABSENT:
        ok = found is None
    else:
        ok = found is not None and found.lower() == expect.lower()
    if not ok:
        raise ConflictError(
            f"{path} changed since you read it (expected {expect or 'no file'}, "
            f"found {found or 'no file'}); nothing was written: read it again and retry",
            path=path, expected=expect, found=found)

