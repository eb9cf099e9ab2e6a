"""TOML: strict reads with line numbers, new files via tomli-w, layout-keeping edits."""

from __future__ import annotations

import pytest

from herofossil.errors import ParseError
from herofossil.parsers import tomlfile

DOC = """\
# service config
title = "demo"  # shown in the UI

[server]
port = 80   # the port
hosts = ["a", "b"]

[server.tls]
enabled = false
"""


def test_loads_returns_dict():
    assert tomlfile.loads(DOC)["server"] == {"port": 80, "hosts": ["a", "b"],
                                             "tls": {"enabled": False}}


def test_loads_error_has_file_and_line():
    with pytest.raises(ParseError) as e:
        tomlfile.loads("a = 1\nb = \n", "c.toml")
    assert (e.value.file, e.value.line) == ("c.toml", 2)
    assert "(at line" not in e.value.reason


def test_dumps_round_trips_through_loads():
    data = {"a": 1, "t": {"x": [1, 2], "s": "it's \"q\""}}
    assert tomlfile.loads(tomlfile.dumps(data)) == data


def test_edit_changes_only_the_value_keeping_comments():
    out = tomlfile.edit(DOC, {"server.port": 8080})
    assert out == DOC.replace("port = 80 ", "port = 8080 ")
    assert tomlfile.edit(DOC, {}) == DOC


def test_edit_adds_creates_tables_and_deletes():
    out = tomlfile.edit(DOC, {"server.tls.cert": "/c.pem", "new.key": 1, "title": None})
    data = tomlfile.loads(out)
    assert data["server"]["tls"] == {"enabled": False, "cert": "/c.pem"}
    assert data["new"] == {"key": 1} and "title" not in data
    assert "# the port" in out and "# service config" in out


def test_edit_quoted_dotted_key_and_error():
    assert tomlfile.split_key('a."b.c".d') == ["a", "b.c", "d"]
    out = tomlfile.edit('[a]\n"b.c" = 1\n', {'a."b.c"': 2})
    assert tomlfile.loads(out) == {"a": {"b.c": 2}}
    with pytest.raises(ParseError) as e:
        tomlfile.edit("x = \n", {"x": 1}, "e.toml")
    assert (e.value.file, e.value.line) == ("e.toml", 1)
