"""The error hierarchy of herofossil.

A leaf module: it imports nothing of the project, so every folder may import it.
Each class's docstring is its meaning; ``exit_code`` is what the command line
returns for it (stable, documented in ``herofossil --help``).
"""

from __future__ import annotations


class HeroFossilError(Exception):
    """Something went wrong in herofossil.

    Besides its message, an error carries what it is about as fields (each
    subclass names its own; absent ones are None), for callers that act on it.
    """

    exit_code = 1
    fields: tuple[str, ...] = ()

    def __init__(self, message: str = "", **fields):
        unknown = set(fields) - set(self.fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        for name in self.fields:
            setattr(self, name, fields.get(name))
        super().__init__(message)


class UsageError(HeroFossilError):
    """The command or call was given wrong arguments."""

    exit_code = 2


class NotFoundError(HeroFossilError):
    """A path, version, artifact or store does not exist.

    Fields: ``path`` (the path looked up), ``ref`` (the version it was looked up at).
    """

    exit_code = 3
    fields = ("path", "ref")


class ConflictError(HeroFossilError):
    """A write was based on a version that is no longer current; nothing was written.

    Fields: ``path``, ``expected`` (the artifact id, or state, the writer expected)
    and ``found`` (the artifact id there now, or None for no file).
    """

    exit_code = 4
    fields = ("path", "expected", "found")


class IntegrityError(HeroFossilError):
    """Stored data does not match its hash or is otherwise damaged."""

    exit_code = 5


class DeltaError(HeroFossilError):
    """A Fossil-format delta is malformed (truncated, bad operator, out of range, bad checksum)."""

    exit_code = 6


class ParseError(HeroFossilError):
    """A file (HeroScript, TOML, Markdown, manifest) could not be parsed.

    ``file`` and ``line`` say where, when known.
    """

    exit_code = 7

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        self.reason = message
        where = ""
        if file is not None and line is not None:
            where = f"{file}:{line}: "
        elif file is not None:
            where = f"{file}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)


class AuthError(HeroFossilError):
    """Authentication or authorisation failed."""

    exit_code = 8


class InvalidPathError(HeroFossilError):
    """A path is not allowed in the store (absolute, '..', empty segment, NUL, ...)."""

    exit_code = 9


class StoreError(HeroFossilError):
    """The store cannot be opened or used (missing, not a store, locked, full disk)."""

    exit_code = 10
    fields = ("store",)


class SyncError(HeroFossilError):
    """An exchange with a peer failed (unreachable, refused, or it sent something wrong);
    nothing of that exchange was stored. Field: ``peer`` (its URL, when known)."""

    exit_code = 11
    fields = ("peer",)


__all__ = [
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
    "SyncError",
]
