"""Workload 6: verify and rebuild on the imported history vs fossil test-integrity / rebuild."""

from __future__ import annotations

import time

from bench.util import Row, run_measured

NAME = "maint"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(ctx) -> list[Row]:
    """verify and rebuild per corpus, herofossil in-process, fossil as a process."""
    import herofossil

    rows = []
    for kind in ("config", "code"):
        c = ctx.corpus(kind)
        made = ctx.store(kind)
        w = f"6 verify/rebuild ({c.label})"
        note = "" if made.how == "import git" else (
            "herofossil store built by replaying the corpus through repo.commit "
            "(import git not available)")
        repo = herofossil.open(made.path)
        try:
            t_verify = _timed(repo.verify)
            t_rebuild = _timed(repo.rebuild)
        finally:
            repo.close()
        fossil = ctx.fossil(kind)
        if fossil is None:
            rows.append(Row(w, "verify", t_verify, "s", note="fossil not installed"))
            rows.append(Row(w, "rebuild", t_rebuild, "s", note="fossil not installed"))
            continue
        fi = run_measured(["fossil", "test-integrity", "-R", str(fossil[0])]).seconds
        fr = run_measured(["fossil", "rebuild", str(fossil[0])]).seconds
        rows.append(Row(w, "verify", t_verify, "s", "fossil test-integrity", fi, note=note))
        rows.append(Row(w, "rebuild", t_rebuild, "s", "fossil rebuild", fr, note=note))
    return rows
