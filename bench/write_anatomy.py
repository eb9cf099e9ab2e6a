"""What a durable single-file check-in's time is made of (issue 12's write rate).

``phases``: real ``Repo.write`` calls into a store on disk, with the main steps of
the write path timed one by one (``time.perf_counter`` around each; the steps nest,
so they do not add up to the whole). ``model``: the same commit's page writes in bare
LMDB, with no Python work but the puts, for today's tables and for layouts of integer
ids, against the bench's one-key durable transaction (tables filled as a store of
``--checkins`` check-ins).

    python -m bench.write_anatomy phases [--writes N]
    python -m bench.write_anatomy model [--commits N] [--checkins N]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import lmdb

import herofossil
from bench.workloads.write import lmdb_rate
from herofossil.store import artifacts, checkins, crosslink, lmdbenv, manifest, writer
from herofossil.store import repo as repo_module

# (owner, attribute, label): the steps ``phases`` times, outermost first; each is wrapped
# where its caller looks it up (``store.repo`` calls writer.commit as ``commit_changes``).
STEPS = (
    (lmdbenv.StoreEnv, "_commit_batch", "write transaction and synced commit"),
    (lmdbenv, "_run_checked", "the write's function and the checks before commit"),
    (repo_module, "commit_changes", "the check-in (writer.commit)"),
    (writer, "_store_manifest", "  the manifest and its reverse delta"),
    (writer, "crosslink", "  crosslink"),
    (checkins.CheckinIndex, "index_checkin", "    index_checkin"),
    (crosslink, "_update_tip", "    the branch tip"),
    (writer._Pending, "apply", "  applying the change"),
    (manifest.Manifest, "to_bytes", "  the manifest's bytes"),
    (artifacts.ArtifactWriter, "verify_touched", "the check before commit"),
)


@contextmanager
def _timed(spent: Counter):
    """Wrap every step of ``STEPS`` so that its time adds up in ``spent``."""
    saved = []
    for owner, name, label in STEPS:
        plain = getattr(owner, name)
        saved.append((owner, name, plain))

        def timed(*args, _plain=plain, _label=label, **kw):
            t0 = time.perf_counter()
            try:
                return _plain(*args, **kw)
            finally:
                spent[_label] += time.perf_counter() - t0

        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, name, plain in saved:
            setattr(owner, name, plain)


def phases(writes: int = 3000, files: int = 500) -> tuple[float, dict[str, float]]:
    """(seconds per write, seconds per write in each step) of ``writes`` durable writes of
    512 random bytes, over ``files`` paths of one folder, into a new store."""
    spent: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="hf-anatomy-") as tmp:
        repo = herofossil.open(os.path.join(tmp, "store"), create=True)
        try:
            for i in range(100):
                repo.write(f"d/w{i}.txt", os.urandom(512))
            bodies = [os.urandom(512) for _ in range(writes)]
            with _timed(spent):
                t0 = time.perf_counter()
                for i in range(writes):
                    repo.write(f"d/f{i % files:05d}.txt", bodies[i])
                total = time.perf_counter() - t0
        finally:
            repo.close()
    return total / writes, {label: spent[label] / writes for _, _, label in STEPS}


LAYOUTS = {
    "today": ["blob", "seq", "chain", "deps", "checkin", "cseq", "child", "leaf", "tip",
              "tree", "pathlog", "info"],
    "integer ids": ["blob", "rid", "local", "tree", "pathlog", "tip"],
    "integer ids in blob": ["blob", "local", "tree", "pathlog", "tip"],
}
LAYOUT_NOTES = {
    "today": "a single-file check-in's puts into today's 12 tables (store/schema.py)",
    "integer ids": "blob 3 puts; artifact id -> rid for the 2 new artifacts; the check-in's "
                   "other records appended under its rid in one table; tree, path log, tip",
    "integer ids in blob": "the same, the rid kept in the blob value (no rid table)",
}


def _u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def _fill(env, db, keys, value: bytes) -> None:
    with env.begin(write=True) as txn:
        for key in keys:
            txn.put(key, value, db=db)


def model(layout: str, commits: int = 400, checkins_: int = 3000) -> float:
    """Seconds per durable commit of ``layout``'s puts (best of 3 runs of ``commits``)."""
    rnd = random.Random(layout)

    def ids(n):
        return (rnd.randbytes(32) for _ in range(n))

    paths = [b"trunk\0d\0f%05d.txt" % i for i in range(checkins_)]
    with tempfile.TemporaryDirectory(prefix="hf-model-") as tmp:
        env = lmdb.open(tmp, map_size=1 << 32, max_dbs=len(LAYOUTS["today"]) + 2)
        try:
            db = {name: env.open_db(name.encode()) for name in LAYOUTS[layout]}
            fills = {
                "blob": (ids(2 * checkins_), b"x" * 200),
                "checkin": (ids(checkins_), b"x" * 220), "deps": (ids(checkins_), b"1234"),
                "rid": (ids(checkins_), b"1234"), "chain": (ids(70), b"\1\0"),
                "seq": (map(_u64, range(2 * checkins_)), b"i" * 32),
                "cseq": (map(_u64, range(checkins_)), b"i" * 32),
                "child": ((rnd.randbytes(64) for _ in range(checkins_)), b""),
                "local": ((struct.pack(">QB", i // 4, i % 4) for i in range(4 * checkins_)),
                          b"x" * 60),
                "tree": (paths, b"x" * 40), "pathlog": (paths, b""),
            }
            for name in db:
                keys, value = fills.get(name, (ids(2), b"x" * 32))
                _fill(env, db[name], keys, value)
            seq = [10 * checkins_]

            def commit(txn):
                for _ in range(3):  # the new file, the new manifest, the parent's as a delta
                    txn.put(rnd.randbytes(32), b"x" * 200, db=db["blob"])
                seq[0] += 1
                if layout == "today":
                    for k in (seq[0] * 2, seq[0] * 2 + 1):
                        txn.put(_u64(k), b"i" * 32, db=db["seq"])
                    txn.put(rnd.randbytes(32), b"\1\0", db=db["chain"])
                    txn.put(rnd.randbytes(32), b"1234", db=db["deps"])
                    txn.put(rnd.randbytes(32), b"x" * 220, db=db["checkin"])
                    txn.put(_u64(seq[0]), b"i" * 32, db=db["cseq"])
                    txn.put(rnd.randbytes(64), b"", db=db["child"])
                    txn.put(b"trunk\0" + rnd.randbytes(32), b"", db=db["leaf"])
                    txn.put(b"next", _u64(seq[0]), db=db["info"])
                else:
                    if layout == "integer ids":
                        for _ in range(2):
                            txn.put(rnd.randbytes(32), b"1234", db=db["rid"])
                    for kind in range(4):
                        txn.put(struct.pack(">QB", seq[0], kind), b"x" * 60, db=db["local"])
                txn.put(b"trunk", rnd.randbytes(32), db=db["tip"])
                path = rnd.choice(paths)
                txn.put(path, b"y" * 40, db=db["tree"])
                txn.put(path + _u64(seq[0]), b"", db=db["pathlog"])

            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(commits):
                    with env.begin(write=True) as txn:
                        commit(txn)
                best = min(best, (time.perf_counter() - t0) / commits)
            return best
        finally:
            env.close()


def one_key(commits: int = 400) -> float:
    """Seconds per durable one-key commit, as ``python -m bench``'s bare LMDB row measures
    it (best of 3 runs of ``commits``)."""
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory(prefix="hf-model-") as tmp:
            best = min(best, 1 / lmdb_rate(Path(tmp), commits))
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    ph = sub.add_parser("phases", help="time the steps of real durable writes")
    ph.add_argument("--writes", type=int, default=3000)
    mo = sub.add_parser("model", help="bare-LMDB models of a check-in's page writes")
    mo.add_argument("--commits", type=int, default=400)
    mo.add_argument("--checkins", type=int, default=3000, help="check-ins the tables hold")
    args = p.parse_args(argv)
    if args.what == "phases":
        per_write, steps = phases(args.writes)
        print(f"{per_write * 1e6:8.1f} us  per durable write ({args.writes} writes)")
        for label, seconds in steps.items():
            print(f"{seconds * 1e6:8.1f} us  {label}")
        return 0
    results = {}
    for _ in range(2):  # alternate the layouts: a slow spell of the machine hits all
        for layout in ("one-key", *LAYOUTS):
            got = (one_key(args.commits) if layout == "one-key"
                   else model(layout, args.commits, args.checkins))
            results[layout] = min(results.get(layout, got), got)
    notes = {"one-key": "bench's bare LMDB durable txn (bench.workloads.write.lmdb_rate)",
             **LAYOUT_NOTES}
    for layout, seconds in results.items():
        print(f"{seconds * 1e3:6.3f} ms  {results['one-key'] / seconds:5.2f} of one-key  "
              f"{layout}: {notes[layout]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
