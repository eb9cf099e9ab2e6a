"""Workload 4b: cost against tree size (100 / 10,000 / 100,000 files): write, read, list.

DESIGN.md: a single-file write on 100,000 files costs at most twice what it
costs on 100; a tip read is O(1); listing a folder is O(its entries). Every
tree has folders of 100 files, so the listed folder has the same size at
every tree size.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from bench.util import Row, have, per_op, progress
from bench.workloads.write import fossil_rate, git_rate

NAME = "scale"


def populate(tmp: Path, n_files: int):
    """A store holding ``n_files`` small files in folders of 100; (repo, seconds)."""
    import herofossil
    from herofossil.store.changes import Put

    repo = herofossil.open(tmp / f"hf{n_files}", create=True)
    t0 = time.perf_counter()
    repo.commit([Put(f"d{i // 100}/f{i}.txt", b"file %d\n" % i) for i in range(n_files)],
                message="populate")
    return repo, time.perf_counter() - t0


def ops(repo, n_files: int) -> dict:
    """The timed operations on one store, each ``fn(i)``."""
    folders = n_files // 100
    serial = itertools.count()  # every write changes content, across rounds too

    def write(i: int) -> None:
        k = (i * 7) % folders
        ci = repo.write(f"d{k}/f{k * 100 + i % 100}.txt", b"edit %d\n" % next(serial),
                        message="edit")
        assert ci is not None, "a benchmark write made no check-in"

    def read(i: int) -> bytes:
        k = (i * 13) % folders
        return repo.read(f"d{k}/f{k * 100 + 1}.txt")

    return {"write": write, "read": read, "ls": lambda i: repo.ls(f"d{(i * 13) % folders}")}


def measure(tmp: Path, sizes: tuple[int, ...], counts: dict[str, int], rounds: int = 3) -> dict:
    """Seconds per op at each size: rounds interleave the sizes, the best round counts.

    Interleaving keeps a burst of load from other work on the machine from
    landing on one size only.
    """
    stores, got = {}, {n: {} for n in sizes}
    try:
        for n in sizes:
            progress(f"scale: populate herofossil with {n:,} files")
            stores[n], got[n]["populate"] = populate(tmp, n)
        timed = {n: ops(stores[n], n) for n in sizes}
        for r in range(rounds):
            progress(f"scale: round {r + 1}/{rounds} of writes, reads, listings")
            for n in sizes:
                for key, fn in timed[n].items():
                    t = per_op(fn, counts[key], repeats=1)
                    got[n][key] = min(got[n].get(key, t), t)
    finally:
        for repo in stores.values():
            repo.close()
    return got


def run(ctx) -> list[Row]:
    """herofossil at three sizes (ratios against the smallest), fossil and git where sensible."""
    sizes = (100, 1_000, 10_000) if ctx.size == "S" else (100, 10_000, 100_000)
    if ctx.size == "S":
        counts = {"write": 20, "read": 1_000, "ls": 50}
    else:
        counts = {"write": 70, "read": 10_000, "ls": 300}
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as t:
        got = measure(Path(t), sizes, counts)
        small, big = sizes[0], sizes[-1]
        note_s = "" if ctx.size != "S" else "size S: trees of 100/1,000/10,000 only"
        rows = []
        for mid in sizes[1:]:
            w = f"4 scaling: {mid:,} vs {small} files"
            last = mid == big
            for key, metric, label in (("write", "time per durable write", "write"),
                                       ("read", "time per tip read", "tip read"),
                                       ("ls", "time per ls of a 100-entry folder", "listing")):
                note = f"herofossil at {small} files; budget: {label} at most 2x" if last else (
                    f"herofossil at {small} files")
                rows.append(Row(w, metric, got[mid][key], "s", f"same at {small} files",
                                got[small][key], budget=("<=", 2.0) if last else None,
                                note="; ".join(x for x in (note, note_s) if x)))
        rows.append(Row("4 scaling", f"populate {big:,} files in one commit",
                        got[big]["populate"], "s", note="one repo.commit of small files"))
        rows += _tools(ctx, Path(t), got)
    return rows


def _tools(ctx, tmp: Path, got: dict) -> list[Row]:
    """fossil and git single writes on the bigger trees, capped to keep the run short."""
    cap = 1_000 if ctx.size == "S" else 10_000
    n = 2 if ctx.size == "S" else 5
    rows = []
    w = f"4 scaling: write on {cap:,} files"
    hf_at = 1 / got[cap]["write"]
    reason = (f"fossil and git measured up to {cap:,} files only "
              "(a 100,000-file checkout takes minutes to populate and commit)")
    if have("fossil"):
        progress(f"scale: fossil commit on {cap} files x{n}")
        rows.append(Row(w, "writes/s", hf_at, "/s", f"fossil commit on {cap:,} files",
                        fossil_rate(tmp, cap, n), better="higher", budget=(">=", 10.0),
                        note=reason))
    progress(f"scale: git commit on {cap} files x{n}")
    rows.append(Row(w, "writes/s", hf_at, "/s", f"git commit -a on {cap:,} files",
                    git_rate(tmp, cap, n), better="higher", note=reason))
    return rows
