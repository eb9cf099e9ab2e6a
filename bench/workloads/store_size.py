"""Workload 2: size on disk after import: herofossil vs git gc --aggressive vs fossil."""

from __future__ import annotations

from bench.util import Row, du, have, progress
from bench.util import run as tool

NAME = "size"


def run_git_gc(git_dir) -> int:
    """``git gc --aggressive`` then the bytes of its pack files."""
    tool(["git", f"--git-dir={git_dir}", "gc", "--aggressive", "--quiet", "--prune=now"])
    return sum(p.stat().st_size for p in (git_dir / "objects" / "pack").glob("*.pack"))


def run(ctx) -> list[Row]:
    """Rows per corpus: du of the store against the two packed forms."""
    rows: list[Row] = []
    for kind in ctx.kinds():
        c = ctx.corpus(kind)
        w = f"2 store size ({c.title}, {c.raw_bytes / 1e6:.0f} MB raw)"
        made = ctx.store(kind)
        hf = du(made.path)
        how = "" if made.how == "import git" else (
            "herofossil store built by replaying the corpus (import git not available)")
        git_dir, _ = ctx.git_copy(kind)
        progress(f"git gc --aggressive {c.label}")
        pack = run_git_gc(git_dir)
        rows.append(Row(w, "bytes on disk", hf, "B", "git pack after gc --aggressive", pack,
                        budget=("<=", 1.0), note="; ".join(x for x in (
                            "budget: no larger than git's pack", how) if x)))
        fossil = ctx.fossil(kind)
        if fossil and have("fossil"):
            progress(f"fossil rebuild --compress {c.label}")
            tool(["fossil", "rebuild", "--compress", str(fossil[0])])
            rows.append(Row(w, "bytes on disk", hf, "B", "fossil repo after rebuild --compress",
                            du(fossil[0]), note=how))
        else:
            rows.append(Row(w, "bytes on disk", hf, "B", note="fossil not installed"))
    return rows

