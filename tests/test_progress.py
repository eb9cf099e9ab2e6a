"""Progress lines: drawn on a terminal, silent when piped."""

from __future__ import annotations

import io

from herofossil.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_ends_with_a_newline():
    out = _Tty()
    p = Progress(out)
    p("verify artifacts", 10, 10)
    p.close()
    text = out.getvalue()
    assert "verify artifacts: 10/10 (100%)" in text and text.endswith("\n")


def test_progress_is_silent_when_piped():
    out = io.StringIO()
    p = Progress(out)
    p("rebuild", 5, 10)
    p.close()
    assert out.getvalue() == ""


def test_repeated_updates_are_rate_limited_but_the_last_is_shown():
    out = _Tty()
    p = Progress(out)
    for i in range(1, 1001):
        p("import", i, 1000)
    p.close()
    text = out.getvalue()
    assert text.count("\r") < 50 and "import: 1000/1000" in text
