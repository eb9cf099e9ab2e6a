"""herofossil: a Fossil-style, content-addressed, versioned datastore over LMDB."""

from __future__ import annotations

from herofossil.errors import (
    AuthError,
    ConflictError,
    DeltaError,
    HeroFossilError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    ParseError,
    StoreError,
    UsageError,
)

__version__ = "0.1.0"


def open(path=None, *, create: bool = False, **kw):  # noqa: A001 - mirrors the builtin
    """Open the store at ``path`` (default: ``$HEROFOSSIL_REPO`` or the embedded default).

    With ``create=True`` a missing store is created. Returns a ``Repo``.
    """
    from herofossil.repo import Repo

    return Repo.open(path, create=create, **kw)


__all__ = [
    "open",
    "HeroFossilError",
    "UsageError",
    "NotFoundError",
    "ConflictError",
    "IntegrityError",
    "DeltaError",
    "ParseError",
    "AuthError",
    "InvalidPathError",
    "StoreError",
]
