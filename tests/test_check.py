"""check_file / parse_file: the parser chosen by extension, all errors listed."""

from __future__ import annotations

import pytest

from herofossil.errors import ParseError
from herofossil.parsers.check import check_file, kind_of, parse_file
from herofossil.parsers.heroscript import Playbook
from herofossil.parsers.markdown import Document


def test_parse_file_by_extension():
    assert isinstance(parse_file("a/x.hero", b"!!a.b x:1\n"), Playbook)
    assert isinstance(parse_file("x.HeroScript", b"!!a.b\n"), Playbook)
    assert parse_file("c.toml", b"a = 1\n") == {"a": 1}
    assert isinstance(parse_file("r.md", b"# t\n"), Document)
    assert parse_file("bin.dat", b"\xff") is None
    assert kind_of("x.txt") is None


def test_parse_file_raises_with_path_and_line():
    with pytest.raises(ParseError) as e:
        parse_file("c.toml", b"a = 1\nb =\n")
    assert (e.value.file, e.value.line) == ("c.toml", 2)


def test_check_file_ok_and_unknown():
    assert check_file("x.hero", b"!!a.b x:1\n") == []
    assert check_file("x.md", b"+++\na = 1\n+++\n# t\n") == []
    assert check_file("x.png", b"\x89PNG") is None


def test_check_file_lists_every_heroscript_error():
    data = b"!!a.b\n  ba-d:1\n!!c.d x:1\n!!e.f.g\n!!h.i\n  y:'open\n"
    errs = check_file("m.hero", data)
    assert [e.line for e in errs] == [2, 4, 6]
    assert all(e.file == "m.hero" for e in errs)


def test_check_file_non_utf8_is_an_error_with_line():
    errs = check_file("x.toml", b"a = 1\nb = '\xff'\n")
    assert len(errs) == 1 and errs[0].line == 2 and "UTF-8" in errs[0].reason


def test_check_file_markdown_front_matter_and_body_errors():
    data = b"+++\na =\n+++\n```hero\n!!a.b\n  ba-d:1\n```\n"
    errs = check_file("d.md", data)
    assert [e.line for e in errs] == [2, 6]


def test_check_file_toml_error():
    errs = check_file("x.toml", b"[a\n")
    assert len(errs) == 1 and errs[0].line == 1
