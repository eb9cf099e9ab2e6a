"""Workload 1: import a Git history, time and peak memory, against git and fossil."""

from __future__ import annotations

import shutil
import sys

from bench.util import Measured, Row, missing, progress, run_measured
from bench.util import run as tool

NAME = "import"
ROUNDS = 3  # on the full run: the first import, then two more of each, alternating


def _fastest(ctx, kind: str, hm: Measured, gm: Measured) -> tuple[Measured, Measured]:
    """Import the corpus again with herofossil and with git, alternately, into scratch
    places; keep each one's fastest run, so a slow spell of this shared machine (which
    hits one run, not all) does not decide the ratio."""
    c = ctx.corpus(kind)
    for r in range(1, ROUNDS):
        progress(f"import round {r + 1}/{ROUNDS} {c.label}: herofossil, git")
        dest = ctx.workdir / f"hf-{c.label}-round"
        m = run_measured([sys.executable, "-m", "herofossil", "-q", "-R", str(dest), "import",
                          "git", str(c.git_dir)], check=False)
        shutil.rmtree(dest, ignore_errors=True)
        if m.returncode == 0 and m.seconds < hm.seconds:
            hm = m
        gdest = ctx.workdir / f"{c.label}-round.git"
        tool(["git", "init", "-q", "--bare", str(gdest)])
        m = run_measured(f"git --git-dir='{c.git_dir}' fast-export --all "
                         f"| git --git-dir='{gdest}' fast-import --quiet")
        shutil.rmtree(gdest, ignore_errors=True)
        if m.seconds < gm.seconds:
            gm = m
    return hm, gm


def run(ctx) -> list[Row]:
    """Rows per corpus: herofossil import git vs git fast-import and fossil import --git
    (on the full run, the fastest of ``ROUNDS`` alternating runs of herofossil and git)."""
    rows: list[Row] = []
    for kind in ctx.kinds():
        c = ctx.corpus(kind)
        w = f"1 import git ({c.title}: {c.commits} commits, {c.raw_bytes / 1e6:.0f} MB)"
        _, gm = ctx.git_copy(kind)
        fossil = ctx.fossil(kind)
        made = ctx.store(kind)
        if made.how != "import git":
            reason = made.error or "herofossil import git not available"
            reason += (f" (replaying the history through repo.commit took "
                       f"{made.measured.seconds:.1f} s)")
            rows.append(Row(w, "time", None, "s", "git fast-export | git fast-import",
                            gm.seconds, note=reason))
            if fossil:
                rows.append(Row(w, "time", None, "s", "git fast-export | fossil import --git",
                                fossil[1].seconds, note=reason))
            rows.append(Row(w, "peak RSS", None, "B", "git fast-import", gm.peak_rss,
                            note=reason))
            continue
        hm = made.measured
        if ctx.full:
            hm, gm = _fastest(ctx, kind, hm, gm)
        rows.append(Row(w, "time", hm.seconds, "s", "git fast-export | git fast-import",
                        gm.seconds, budget=("<=", 1.0), note="budget: faster than git"))
        if fossil:
            rows.append(Row(w, "time", hm.seconds, "s", "git fast-export | fossil import --git",
                            fossil[1].seconds, budget=("<=", 0.5),
                            note="budget: at most half of fossil's time"))
        else:
            rows.append(missing(w, "time vs fossil", "fossil not installed"))
        rows.append(Row(w, "peak RSS", hm.peak_rss, "B", "git (largest pipeline stage)",
                        gm.peak_rss))
        if fossil:
            rows.append(Row(w, "peak RSS", hm.peak_rss, "B", "fossil (largest pipeline stage)",
                            fossil[1].peak_rss))
    return rows
