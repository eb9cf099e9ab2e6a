"""herofossil: a Fossil-style, content-addressed, versioned datastore over LMDB."""

from __future__ import annotations

from herofossil import errors
from herofossil.errors import (  # noqa: F401 - the package exports them (errors.__all__)
    AuthError,
    ConflictError,
    DeltaError,
    HeroFossilError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    ParseError,
    StoreError,
    SyncError,
    UsageError,
)

__version__ = "0.2.0"


def open(path=None, *, create: bool = False, readonly: bool = False,  # noqa: A001
         map_size: int | None = None):
    """Open the store at ``path`` (default: ``$HEROFOSSIL_REPO`` or the embedded default).

    With ``create=True`` a missing store is created; ``readonly`` opens it for
    reading only (works on a store you may not write, waits for no writer).
    Returns a ``Repo``.
    """
    from herofossil.repo import Repo

    kw = {} if map_size is None else {"map_size": map_size}
    return Repo.open(path, create=create, readonly=readonly, **kw)


def clone(url: str, path, *, progress=None):
    """Copy the store a herofossil server serves at ``url`` into a new store at ``path``
    (run it again after an interruption: it resumes). Returns the ``Repo``."""
    from herofossil.sync import client

    repo = open(path, create=True)
    try:
        client.sync(repo, url, pull=True, push=False, progress=progress)
    except BaseException:
        repo.close()
        raise
    return repo


def __getattr__(name: str):
    # The store's types load with the store, not with every ``import herofossil``
    # (the command line's --help and the error classes need none of it).
    if name in _STORE_TYPES:
        from herofossil import repo
        from herofossil.store import changes, checkins, tree

        found = {"Put": changes.Put, "Delete": changes.Delete, "Rename": changes.Rename,
                 "MakeDir": changes.MakeDir, "Checkin": checkins.Checkin,
                 "Written": checkins.Written,
                 "Entry": tree.Entry, "Repo": repo.Repo}
        return found[name]
    raise AttributeError(f"module 'herofossil' has no attribute {name!r}")


_STORE_TYPES = ("Put", "Delete", "Rename", "MakeDir", "Checkin", "Written", "Entry", "Repo")

__all__ = [
    "open",
    "clone",
    *_STORE_TYPES,
    *errors.__all__,
]
