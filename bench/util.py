"""Shared helpers: result rows, timing, measured subprocesses, sizes, Markdown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# Fossil refuses to work without a user name (containers often have none).
TOOL_ENV = dict(os.environ, USER=os.environ.get("USER") or "bench",
                GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.org",
                GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.org")


@dataclass
class Row:
    """One line of the results table: herofossil's figure against another system's.

    ``better`` says which direction of the figures is better ("lower" for times
    and sizes, "higher" for rates); ``budget`` is a DESIGN.md bound on the ratio
    herofossil/other, as ("<=" or ">=", number). A missing figure has a reason in
    ``note``.
    """

    workload: str
    metric: str
    hf: float | None
    unit: str
    other_name: str = ""
    other: float | None = None
    better: str = "lower"
    budget: tuple[str, float] | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """herofossil / other, when both figures exist."""
        if self.hf is None or self.other is None or self.other == 0:
            return None
        return self.hf / self.other

    @property
    def verdict(self) -> str:
        """'met', 'NOT met', '' (no budget) or '?' (no ratio)."""
        if self.budget is None:
            return ""
        r = self.ratio
        if r is None:
            return "?"
        op, bound = self.budget
        ok = r <= bound if op == "<=" else r >= bound
        return "met" if ok else "NOT met"

    def to_dict(self) -> dict:
        """The row with its ratio and verdict, for JSON."""
        return dict(asdict(self), ratio=self.ratio, verdict=self.verdict)


def missing(workload: str, metric: str, reason: str, unit: str = "") -> Row:
    """A row whose herofossil figure could not be measured, with the reason."""
    return Row(workload, metric, None, unit, note=reason)


def progress(msg: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_op(fn: Callable[[int], object], n: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per call of ``fn(i)`` over ``n`` calls."""
    def loop():
        for i in range(n):
            fn(i)
    return best_of(loop, repeats) / n


@dataclass
class Measured:
    """Wall time and peak resident memory of one finished subprocess."""

    seconds: float
    peak_rss: int  # bytes; the largest of the process and its waited-for descendants
    returncode: int
    stderr: str


def run_measured(cmd: list[str] | str, cwd: Path | None = None, check: bool = True,
                 stdin=subprocess.DEVNULL) -> Measured:
    """Run ``cmd`` (a shell string is run by ``sh -c``) and measure it with ``wait4``.

    ``wait4`` reports the peak RSS of the child and of every descendant it
    waited for, so for a shell pipeline it is the largest stage's peak.
    """
    args = ["sh", "-c", cmd] if isinstance(cmd, str) else cmd
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(args, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err,
                             env=TOOL_ENV)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()[-4000:].decode(errors="replace")
    m = Measured(seconds, usage.ru_maxrss * 1024, p.returncode, text)
    if check and m.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {m.returncode}: {text.strip()[-500:]}")
    return m


def run(cmd: list[str], cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a tool quietly with the benchmark environment; raise on failure."""
    return subprocess.run(cmd, cwd=cwd, check=True, env=TOOL_ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **kw)


def have(tool: str) -> bool:
    """True when ``tool`` is on PATH."""
    return shutil.which(tool) is not None


def du(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what ``du`` counts, sparse files included)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def herofossil_cli_has(*words: str) -> bool:
    """True when ``herofossil WORDS... --help`` succeeds (e.g. ``import git``)."""
    try:
        r = subprocess.run([sys.executable, "-m", "herofossil", *words, "--help"],
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# ---------------------------------------------------------------- formatting
def fmt(value: float | None, unit: str) -> str:
    """A figure with a readable unit (s → ms/µs, B → KB/MB, /s → k/s)."""
    if value is None:
        return "—"
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if value >= scale or name == "µs":
                return f"{value / scale:.3g} {name}"
    if unit == "B":
        for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "B")):
            if value >= scale or name == "B":
                return f"{value / scale:.3g} {name}"
    if unit.endswith("/s") and value >= 10_000:
        return f"{value / 1000:.3g}k {unit}"
    return f"{value:.3g} {unit}".strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row]) -> str:
    """The rows as one Markdown table."""
    out = ["| workload | metric | herofossil | other | other's figure | herofossil/other "
           "| better | budget | verdict | note |",
           "|---|---|---:|---|---:|---:|---|---|---|---|"]
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3g}"
        budget = f"ratio {r.budget[0]} {r.budget[1]:g}" if r.budget else ""
        cells = [r.workload, r.metric, fmt(r.hf, r.unit), r.other_name, fmt(r.other, r.unit),
                 ratio, r.better, budget, r.verdict, r.note]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(out)
