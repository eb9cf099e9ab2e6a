"""Git -> store and store -> Git, lossless: see ``importer``, ``exporter`` and ``metadata``."""

from __future__ import annotations

from herofossil.gitimport.errors import (
    GitError,
    GitObjectError,
    NotAGitRepositoryError,
    ShallowRepositoryError,
    UnstorablePathError,
)
from herofossil.gitimport.exporter import ExportResult, export_git
from herofossil.gitimport.importer import ImportResult, import_git
from herofossil.gitimport.mapping import git_map

__all__ = [
    "import_git",
    "export_git",
    "git_map",
    "ImportResult",
    "ExportResult",
    "GitError",
    "GitObjectError",
    "NotAGitRepositoryError",
    "ShallowRepositoryError",
    "UnstorablePathError",
]
