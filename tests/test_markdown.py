"""Markdown: front matter, headings, outline, links, embedded HeroScript with file lines."""

from __future__ import annotations

import pytest

from herofossil.errors import ParseError
from herofossil.parsers import markdown

DOC = """\
+++
title = "Guide"
tags = ["a"]
+++
# Intro

See [the site](https://x.com) and
[docs](docs.md).

## Setup

```heroscript
!!server.define name:web
    port:80
```

```bash
!!not.an action:here
```

!!core.note text:'bare action'

### Deep
# Second
![img](pic.png)
"""


def test_front_matter_headings_outline():
    d = markdown.parse(DOC, "g.md")
    assert d.front_matter == {"title": "Guide", "tags": ["a"]}
    assert [(h.level, h.text, h.line) for h in d.headings] == [
        (1, "Intro", 5), (2, "Setup", 10), (3, "Deep", 23), (1, "Second", 24)]
    top = d.outline
    assert [s.heading.text for s in top] == ["Intro", "Second"]
    assert top[0].children[0].heading.text == "Setup"
    assert top[0].children[0].children[0].heading.text == "Deep"
    assert d.body.startswith("# Intro\n")


def test_links_with_lines():
    d = markdown.parse(DOC)
    assert [(k.text, k.href, k.line) for k in d.links] == [
        ("the site", "https://x.com", 7), ("docs", "docs.md", 8), ("img", "pic.png", 25)]


def test_actions_from_hero_fences_and_bare_lines_with_markdown_lines():
    d = markdown.parse(DOC, "g.md")
    acts = d.actions.actions
    assert [(a.fullname, a.line) for a in acts] == [("server.define", 13), ("core.note", 21)]
    assert acts[0].params.to_dict() == {"name": "web", "port": "80"}
    assert acts[1].params.get("text") == "bare action"
    assert all(a.file == "g.md" for a in acts)


def test_actions_dumps_edits_the_markdown_in_place():
    d = markdown.parse(DOC)
    assert d.actions.dumps() == DOC
    d.actions.get("server.define").params.set("port", 8080)
    assert d.actions.dumps() == DOC.replace("port:80", "port:8080")


def test_prose_starting_with_bang_is_not_an_error():
    d = markdown.parse("!Wow: that's great\n\n!!! warning\n\n!!!note\n")
    assert [a.fullname for a in d.actions] == ["core.note"]


def test_bad_front_matter_error_line_is_the_markdown_line():
    with pytest.raises(ParseError) as e:
        markdown.parse("+++\na = 1\nb = \n+++\n# x\n", "f.md")
    assert (e.value.file, e.value.line) == ("f.md", 3)
    with pytest.raises(ParseError, match="not closed"):
        markdown.parse("+++\na = 1\n", "f.md")


def test_bad_heroscript_in_fence_reports_markdown_line():
    with pytest.raises(ParseError) as e:
        markdown.parse("# t\n\n```hero\n!!a.b\n  ba-d:1\n```\n", "h.md")
    assert (e.value.file, e.value.line) == ("h.md", 5)


def test_no_front_matter():
    d = markdown.parse("# Only\ntext\n")
    assert d.front_matter == {} and d.body == "# Only\ntext\n"
