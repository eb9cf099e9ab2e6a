"""Errors of Git import and export: typed ``HeroFossilError`` subclasses."""

from __future__ import annotations

from herofossil.errors import HeroFossilError, IntegrityError, InvalidPathError, UsageError


class GitError(HeroFossilError):
    """Git import or export failed."""


class NotAGitRepositoryError(GitError, UsageError):
    """The directory is not a Git repository (bare or not)."""


class ShallowRepositoryError(GitError, UsageError):
    """A shallow clone lacks history: it cannot be imported losslessly."""


class GitObjectError(GitError, IntegrityError):
    """A Git object is missing or corrupt."""


class UnstorablePathError(GitError, InvalidPathError):
    """Git holds a path the store cannot hold."""
