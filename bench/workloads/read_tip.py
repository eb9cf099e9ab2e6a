"""Workload 3: read a small file at the tip: repo.read vs open()+read() vs git cat-file."""

from __future__ import annotations

import subprocess

from bench import corpus as corpusmod
from bench.util import TOOL_ENV, Row, per_op, progress

NAME = "read"


def small_files(git_dir, limit: int = 64) -> list[str]:
    """Up to ``limit`` paths of files under 4 KB at ``main``'s tip, sorted."""
    out = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-l", "main"],
                         capture_output=True, check=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if size != "-" and int(size) < 4096:
            paths.append(path)
    return sorted(paths)[:limit]


def cat_file_per_op(git_dir, paths: list[str], n: int) -> float:
    """Seconds per object read through one long-running ``git cat-file --batch``."""
    p = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=TOOL_ENV)
    names = [f"main:{q}\n".encode() for q in paths]

    def one(i: int) -> None:
        p.stdin.write(names[i % len(names)])
        p.stdin.flush()
        size = int(p.stdout.readline().split()[2])
        p.stdout.read(size + 1)

    try:
        return per_op(one, n)
    finally:
        p.stdin.close()
        p.wait()


def run(ctx) -> list[Row]:
    """Per-read times on the config corpus' tip."""
    import herofossil
    from herofossil.store.artifacts import KNOWN

    c = ctx.corpus("config")
    made = ctx.store("config")
    paths = small_files(c.git_dir)
    wt = corpusmod.checkout(c, ctx.workdir / f"worktree-{c.label}")
    n = 20_000 if ctx.full else 5_000
    repo = herofossil.open(made.path)
    try:
        if paths[0] not in {e.path for e in repo.walk()}:
            # the import kept Git's branch name: read from it as the default branch
            repo.default_branch = "main"
        assert repo.read(paths[0]) == (wt / paths[0]).read_bytes()
        progress(f"tip reads of {len(paths)} small files x {n}")
        hf = per_op(lambda i: repo.read(paths[i % len(paths)]), n)

        def uncached(i: int) -> bytes:
            KNOWN.clear()
            return repo.read(paths[i % len(paths)])

        hf_cold = per_op(uncached, n)
    finally:
        repo.close()
    files = [str(wt / q) for q in paths]

    def fs(i: int) -> bytes:
        with open(files[i % len(files)], "rb") as f:
            return f.read()

    fs_t = per_op(fs, n)
    git_t = cat_file_per_op(c.git_dir, paths, n // 4)
    w = f"3 tip read, small file ({c.label})"
    note = "" if made.how == "import git" else "store built by replay"
    return [
        Row(w, "time per read", hf, "s", "open()+read() on local fs", fs_t, budget=("<=", 1.0),
            note="; ".join(x for x in ("budget: at least as fast as the filesystem", note) if x)),
        Row(w, "time per read", hf, "s", "git cat-file --batch (one process)", git_t, note=note),
        Row(w, "time per read, content cache emptied before each", hf_cold, "s",
            "open()+read() on local fs", fs_t, note="; ".join(x for x in (
                "a file read again is served from the bytes kept by artifact id (an LRU of "
                "16 MB); this row decodes every time", note) if x)),
    ]
