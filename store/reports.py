"""What a long operation of the store (verify, rebuild, compact, an import or export of
artifacts, crosslink) reports its progress to: a callable (stage, done, total or None)."""

from __future__ import annotations

from collections.abc import Callable

Report = Callable[[str, int, int | None], None]


def quiet(label: str, done: int, total: int | None) -> None:
    """A report that shows nothing (the default of every long operation)."""
    return None
