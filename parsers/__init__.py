"""Readers and writers of the files the store holds: HeroScript, TOML, Markdown.

``heroscript.parse`` / ``Playbook.dumps`` / ``heroscript.format``; ``tomlfile.loads`` /
``dumps`` / ``edit``; ``markdown.parse``; ``check.check_file`` / ``check.parse_file``
pick the parser by extension. Nothing here imports the store.
"""

from __future__ import annotations

from .check import check_file, parse_file
from .heroscript import Action, Playbook, parse
from .markdown import Document
from .params import Param, Params

__all__ = ["Action", "Document", "Param", "Params", "Playbook", "check_file", "parse",
           "parse_file"]
