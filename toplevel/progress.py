"""Progress lines for long operations: shown on a terminal, silent when piped."""

from __future__ import annotations

import sys
import time


class Progress:
    """A ``(label, done, total)`` callable redrawing one stderr line, at most 10 times a second."""

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = False

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last < 0.1:
            return
        self._last = now
        text = f"{label}: {done}/{total}" if total else f"{label}: {done}"
        if total:
            text += f" ({100 * done // max(total, 1)}%)"
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
