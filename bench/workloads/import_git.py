"""Workload 1: import a Git history, time and peak memory, against git and fossil."""

from __future__ import annotations

from bench.util import Row, missing

NAME = "import"


def run(ctx) -> list[Row]:
    """Rows per corpus: herofossil import git vs git fast-import and fossil import --git."""
    rows: list[Row] = []
    for kind in ("config", "code"):
        c = ctx.corpus(kind)
        w = f"1 import git ({c.label}: {c.commits} commits, {c.raw_bytes / 1e6:.0f} MB)"
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
