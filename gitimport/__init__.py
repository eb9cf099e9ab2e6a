"""Git -> store and store -> Git, lossless: see ``importer``, ``exporter`` and ``metadata``.

The names below are imported on first use: an import need not load the exporter, nor an
export the importer (start-up counts on a small history)."""

from __future__ import annotations

import importlib

from herofossil.gitimport.errors import (
    GitError,
    GitObjectError,
    NotAGitRepositoryError,
    ShallowRepositoryError,
    UnstorablePathError,
)

_LAZY = {
    "import_git": "importer",
    "ImportResult": "importer",
    "export_git": "exporter",
    "ExportResult": "exporter",
    "git_map": "mapping",
}

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


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
