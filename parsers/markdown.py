"""Markdown reader (markdown-it-py): TOML front matter, headings, outline, links, HeroScript.

HeroScript in a Markdown file is read from fenced blocks tagged ``heroscript`` or ``hero``
and from bare action lines outside code blocks (a line starting with ``!name`` or
``!!actor.name``, plus the indented lines and ``//`` lines around it). Line numbers are the
Markdown file's, and ``doc.actions.dumps()`` returns the whole Markdown text with only the
edited values changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt

from herofossil.errors import ParseError

from . import heroscript, tomlfile

__all__ = ["Document", "Heading", "Link", "Section", "parse"]

_HERO_INFO = frozenset(("heroscript", "hero"))
_BARE_ACTION = re.compile(r"[ \t]*!{1,4}[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)?(?:[ \t]|$)")
_MD = MarkdownIt("commonmark")


@dataclass
class Heading:
    """A heading: level 1..6, its text, its 1-based line."""

    level: int
    text: str
    line: int


@dataclass
class Link:
    """A link: its text, target and 1-based line."""

    text: str
    href: str
    line: int


@dataclass
class Section:
    """A heading with the sections nested under it."""

    heading: Heading
    children: list[Section] = field(default_factory=list)


@dataclass
class Document:
    """A parsed Markdown file."""

    front_matter: dict[str, Any]
    headings: list[Heading]
    outline: list[Section]
    links: list[Link]
    actions: heroscript.Playbook
    body: str
    file: str | None = None


def parse(text: str, file: str | None = None) -> Document:
    """Parse Markdown ``text``; ParseError (with line) on bad front matter or HeroScript."""
    lines = text.split("\n")
    front: dict[str, Any] = {}
    skip = 0
    if lines and lines[0].rstrip() == "+++":
        for j in range(1, len(lines)):
            if lines[j].rstrip() == "+++":
                break
        else:
            raise ParseError("front matter opened with +++ is not closed by a +++ line", file, 1)
        try:
            front = tomlfile.loads("\n".join(lines[1:j]))
        except ParseError as e:
            raise ParseError(e.reason, file, None if e.line is None else e.line + 1) from None
        skip = j + 1
    body = "\n".join(lines[skip:])
    tokens = _MD.parse("\n" * skip + body)

    headings: list[Heading] = []
    links: list[Link] = []
    code = bytearray(len(lines))  # 1 = line inside a code block (or the front matter)
    for k in range(skip):
        code[k] = 1
    hero: list[tuple[int, int]] = []  # [start, end) line ranges of HeroScript fences
    for i, t in enumerate(tokens):
        if t.type == "heading_open" and t.map:
            headings.append(Heading(int(t.tag[1:]), tokens[i + 1].content, t.map[0] + 1))
        elif t.type == "inline" and t.children and t.map:
            _links(t, links)
        elif t.type in ("fence", "code_block", "html_block") and t.map:
            for k in range(t.map[0], t.map[1]):
                code[k] = 1
            if t.type == "fence" and t.info.strip().split(" ")[0].lower() in _HERO_INFO:
                first = t.map[0] + 1
                hero.append((first, first + t.content.count("\n")))

    scan = _scan_text(lines, code, hero)
    actions = heroscript.parse_masked(scan, text, file)
    return Document(front, headings, _outline(headings), links, actions, body, file)


def _links(inline: Any, out: list[Link]) -> None:
    line = inline.map[0] + 1
    href = None
    parts: list[str] = []
    start = line
    for c in inline.children:
        if c.type in ("softbreak", "hardbreak"):
            line += 1
        elif c.type == "link_open":
            href, parts, start = str(c.attrs.get("href", "")), [], line
        elif c.type == "link_close" and href is not None:
            out.append(Link("".join(parts), href, start))
            href = None
        elif href is not None and c.type in ("text", "code_inline"):
            parts.append(c.content)
        elif c.type == "image":
            out.append(Link(c.content, str(c.attrs.get("src", "")), line))
        if c.type in ("text", "code_inline") and "\n" in c.content:
            line += c.content.count("\n")


def _scan_text(lines: list[str], code: bytearray, hero: list[tuple[int, int]]) -> str:
    """The text the HeroScript parser reads: other lines blanked, offsets unchanged."""
    keep = bytearray(len(lines))
    for a, b in hero:
        for k in range(a, min(b, len(lines))):
            keep[k] = 1
    prev = False
    for k, ln in enumerate(lines):
        if code[k]:
            prev = False
            continue
        stripped = ln.strip()
        if _BARE_ACTION.match(ln):
            keep[k] = 1
            # `//` lines directly above are the action's comments
            j = k - 1
            while j >= 0 and not code[j] and lines[j].startswith("//"):
                keep[j] = 1
                j -= 1
            prev = True
        elif prev and (not stripped or ln[:2] in ("  ", "\t ") or ln[:1] == "\t"):
            keep[k] = 1
        else:
            prev = False
    return "\n".join(ln if keep[k] else " " * len(ln) for k, ln in enumerate(lines))


def _outline(headings: list[Heading]) -> list[Section]:
    root: list[Section] = []
    stack: list[Section] = []
    for h in headings:
        s = Section(h)
        while stack and stack[-1].heading.level >= h.level:
            stack.pop()
        (stack[-1].children if stack else root).append(s)
        stack.append(s)
    return root
