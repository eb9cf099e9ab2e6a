"""The changes a check-in is made of: the one vocabulary of every writer."""

from __future__ import annotations

from dataclasses import dataclass

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
