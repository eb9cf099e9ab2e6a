"""Configuration read straight from the store: parsed files and playbooks at any version.

The glue between ``Repo`` and the parsers: what ``Repo.config``, ``Repo.playbook`` and
``Repo.check`` do.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from herofossil.errors import UsageError
from herofossil.parsers import check, heroscript


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """A regex for a path glob: ``**`` spans folders, ``*`` and ``?`` stay inside one."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, path: str) -> bool:
    """True when store path ``path`` matches ``pattern`` (``services/**/*.hero``)."""
    return _glob_regex(pattern).match(path) is not None


def load_config(repo, path: str, at: str | None = None) -> Any:
    """The parsed form of ``path`` at ``at``, chosen by extension; ParseError names file and line.

    ``.hero``/``.heroscript`` → ``Playbook``, ``.toml`` → ``dict``, ``.md`` → ``Document``.
    """
    if check.kind_of(path) is None:
        raise UsageError(f"{path}: no configuration parser for this extension "
                         "(.hero, .heroscript, .toml, .md)")
    return check.parse_file(path, repo.read(path, at=at))


def load_playbook(repo, pattern: str, at: str | None = None) -> heroscript.Playbook:
    """The actions of every HeroScript and Markdown file matching ``pattern``, in path order.

    Each action keeps its ``file`` and ``line``.
    """
    actions: list[heroscript.Action] = []
    for entry in repo.walk("", at=at):
        kind = check.kind_of(entry.path)
        if kind not in ("heroscript", "markdown") or not glob_match(pattern, entry.path):
            continue
        parsed = check.parse_file(entry.path, repo.artifact(entry.id))
        book = parsed if kind == "heroscript" else parsed.actions
        actions.extend(book.actions)
    return heroscript.Playbook(actions, file=pattern)


def check_version(repo, at: str | None = None) -> tuple[int, list]:
    """Parse every structured file at ``at``: (files checked, all ParseErrors)."""
    checked, problems = 0, []
    for entry in repo.walk("", at=at):
        if check.kind_of(entry.path) is None:
            continue
        checked += 1
        problems.extend(check.check_file(entry.path, repo.artifact(entry.id)) or [])
    return checked, problems
