"""TOML reader and writers.

``loads`` uses ``tomllib`` (stdlib, strict, fast); ``dumps`` uses ``tomli-w`` for new files.
``edit`` uses ``tomlkit`` because it is the only one of the three that keeps a document's
comments, key order, spacing and quoting when a value changes: a store of config files
wants a one-line diff for a one-value change, not a re-serialised file.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import tomli_w
import tomlkit
import tomlkit.exceptions

from herofossil.errors import ParseError

__all__ = ["loads", "dumps", "edit", "split_key"]

_AT_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def loads(text: str, file: str | None = None) -> dict[str, Any]:
    """Parse TOML ``text``; ParseError naming file and line on bad input."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _AT_LINE.search(msg)
        line = None
        if m is not None:
            line = int(m.group(1)) if m.group(1) else text.count("\n") + 1
            msg = msg[: m.start()] + msg[m.end():]
        raise ParseError(f"invalid TOML: {msg}", file, line) from None


def dumps(data: dict[str, Any]) -> str:
    """Serialise ``data`` as a new TOML document."""
    return tomli_w.dumps(data)


def split_key(dotted: str) -> list[str]:
    """Split a dotted key; parts may be quoted (``a."b.c".d``)."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([^.]+)', dotted)
    return [a or b or c.strip() for a, b, c in parts]


def edit(text: str, updates: dict[str, Any], file: str | None = None) -> str:
    """Return ``text`` with each dotted key of ``updates`` set, keeping comments and layout.

    A value of ``None`` deletes the key (TOML has no null). Missing tables are created.
    """
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as e:
        raise ParseError(f"invalid TOML: {e}", file, e.line) from None
    for dotted, value in updates.items():
        parts = split_key(dotted)
        if not parts:
            raise ParseError(f"empty key {dotted!r}", file)
        node: Any = doc
        for part in parts[:-1]:
            if part not in node:
                if value is None:
                    break
                node[part] = tomlkit.table()
            node = node[part]
        else:
            if value is None:
                node.pop(parts[-1], None)
            else:
                node[parts[-1]] = value
    return tomlkit.dumps(doc)
