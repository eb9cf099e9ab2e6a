"""Pick the parser by file extension: parse a stored file, or list its errors.

``.hero`` / ``.heroscript`` → ``Playbook``, ``.toml`` → ``dict``, ``.md`` → ``Document``.
Other extensions are not parsed: both functions return ``None`` for them.
"""

from __future__ import annotations

import posixpath
from typing import Any

from herofossil.errors import ParseError

from . import heroscript, markdown, tomlfile

__all__ = ["kind_of", "parse_file", "check_file"]

_KINDS = {".hero": "heroscript", ".heroscript": "heroscript", ".toml": "toml", ".md": "markdown"}
_MAX_ERRORS = 100


def kind_of(path: str) -> str | None:
    """``'heroscript'``, ``'toml'``, ``'markdown'`` or None, from the extension of ``path``."""
    return _KINDS.get(posixpath.splitext(path)[1].lower())


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ParseError(f"not UTF-8: invalid byte 0x{data[e.start]:02x} at offset {e.start}",
                         path, line) from None


def parse_file(path: str, data: bytes) -> Any:
    """The parsed form of ``data`` by the extension of ``path``; ParseError on bad input."""
    kind = kind_of(path)
    if kind is None:
        return None
    text = _decode(path, data)
    if kind == "heroscript":
        return heroscript.parse(text, path)
    if kind == "toml":
        return tomlfile.loads(text, path)
    return markdown.parse(text, path)


def check_file(path: str, data: bytes) -> list[ParseError] | None:
    """Every error in ``data`` (empty when it parses); None for an extension not parsed here.

    The parsers stop at the first error; to report more, the failing HeroScript action is
    blanked out and the text parsed again (at most 100 errors).
    """
    kind = kind_of(path)
    if kind is None:
        return None
    try:
        text = _decode(path, data)
    except ParseError as e:
        return [e]
    if kind == "toml":
        try:
            tomlfile.loads(text, path)
        except ParseError as e:
            return [e]
        return []
    errors: list[ParseError] = []
    lines = text.split("\n")
    if kind == "markdown" and lines and lines[0].rstrip() == "+++":
        try:
            markdown.parse(text, path)
        except ParseError as e:
            if e.line is None or e.line == 1 or _in_front_matter(lines, e.line):
                errors.append(e)
                lines = _blank_front_matter(lines)
    while len(errors) < _MAX_ERRORS:
        try:
            if kind == "heroscript":
                heroscript.parse("\n".join(lines), path)
            else:
                markdown.parse("\n".join(lines), path)
            break
        except ParseError as e:
            errors.append(e)
            if e.line is None or not _blank_action(lines, e.line - 1):
                break
    return errors


def _in_front_matter(lines: list[str], line: int) -> bool:
    for j in range(1, len(lines)):
        if lines[j].rstrip() == "+++":
            return line <= j + 1
    return True


def _blank_front_matter(lines: list[str]) -> list[str]:
    for j in range(1, len(lines)):
        if lines[j].rstrip() == "+++":
            return [""] * (j + 1) + lines[j + 1:]
    return [""] * len(lines)


def _blank_action(lines: list[str], err: int) -> bool:
    """Blank the action holding line ``err`` (0-based); False when nothing could be blanked."""
    if not 0 <= err < len(lines):
        return False
    start = err
    while start > 0 and not lines[start].lstrip(" \t").startswith("!"):
        start -= 1
    if not lines[start].lstrip(" \t").startswith("!"):
        start = err
    for k in range(start, err + 1):
        lines[k] = ""
    return True
