"""The command line's Git commands: ``import git``, ``export git`` and ``git map``."""

from __future__ import annotations

import sys

from herofossil.errors import StoreError


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_import(repo, path: str, incremental: bool, progress) -> None:
    """``herofossil import git GITDIR [--incremental]``."""
    from herofossil.gitimport.importer import import_git

    r = import_git(repo, path, incremental=incremental, progress=progress)
    progress.close()
    try:
        repo.compact()  # a bulk import leaves LMDB free pages behind; give them back
    except StoreError:
        pass  # another process has the store open: its free pages get reused later
    for w in r.warnings:
        sys.stderr.write(f"herofossil: warning: {w}\n")
    _out(f"imported {r.commits} commits ({r.skipped} already present), {r.refs_changed} refs "
         f"changed from {path} in {r.seconds:.2f}s (peak RSS {r.peak_rss_kb // 1024} MiB)")


def cmd_export(repo, path: str, progress) -> None:
    """``herofossil export git GITDIR``."""
    from herofossil.gitimport.exporter import export_git

    r = export_git(repo, path, progress=progress)
    progress.close()
    _out(f"exported {r.commits} commits ({r.new_commits} new) and {r.refs} refs to {path} "
         f"in {r.seconds:.2f}s")


def cmd_map(repo, ref: str | None, limit: int | None) -> None:
    """``herofossil git map [REF] [-n N]``: Git commit id and check-in id, newest first."""
    from herofossil.gitimport.mapping import git_map

    for sha, cid in git_map(repo, ref, limit):
        _out(f"{sha or '-' * 40} {cid}")
