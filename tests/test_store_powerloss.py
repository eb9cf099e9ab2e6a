"""Power loss: every acknowledged write survives losing the page cache at any sync point.

A writer subprocess runs under the iofault shim in trace mode (see ``powerloss``): every
write to the store's ``data.mdb`` and every sync is recorded, and so is each
acknowledgement (a line written to an "ack" file the shim copies into the trace, then
fsynced) once ``repo.write`` returned. For each crash point and several choices of which
unsynced writes reached the disk, a copy of the store gets the crash image as its data
file; it must open, pass ``verify``, and hold every write acknowledged before the end of
that crash window with its bytes. The control runs show the simulator catches a store
that acknowledges before its commit is durable (LMDB with sync disabled).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import lmdb
import powerloss  # tests/powerloss.py
import pytest

import herofossil
from herofossil.errors import HeroFossilError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the iofault shim needs Linux (LD_PRELOAD, /proc)")


# The writer: ``herofossil.open`` + ``repo.write``; each write that returned is
# acknowledged by a JSON line on the ack fd (copied into the trace by the shim), fsynced.
# "try" lines say what is about to be written, so the reader knows every version a path
# may hold. ``sync_off`` wraps lmdb.open to disable LMDB's sync (1) or its meta page's
# sync (2): the broken-store controls.
STORE_WRITER = r"""
import hashlib, json, os, random, sys, threading
store, ackpath, count, threads, seed, sync_off = sys.argv[1:]
count, threads, seed = int(count), int(threads), int(seed)
if sync_off != "0":  # "1": no sync at all; "2": data synced, the meta page not
    import lmdb
    _open = lmdb.open
    off = dict(sync=False, metasync=False) if sync_off == "1" else dict(metasync=False)
    lmdb.open = lambda *a, **kw: _open(*a, **dict(kw, **off))
import herofossil
from herofossil.errors import ConflictError

ackfd = os.open(ackpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()

def note(**rec):
    line = (json.dumps(rec) + "\n").encode()
    with lock:
        os.write(ackfd, line)
        if rec["kind"] == "ack":
            os.fsync(ackfd)

repo = herofossil.open(store)

def writer(t):
    rng = random.Random(seed * 100 + t)
    mine = {}
    for i in range(count):
        path = f"t{t}/f{rng.randrange(max(2, count // 3))}.txt"
        size = rng.choice([12, 300, 2500, 9000, 30000])
        data = (f"{path} {i} ".encode() * (size // 10 + 1))[:size] + rng.randbytes(8)
        h = hashlib.sha3_256(data).hexdigest()
        expect = None
        if path in mine and rng.random() < 0.5:
            expect = mine[path]
        if path in mine and rng.random() < 0.1:  # a stale precondition: refused, not acked
            try:
                repo.write(path, b"stale", expect="0" * 64)
            except ConflictError:
                pass
            else:
                raise SystemExit("a stale expect= was accepted")
        note(kind="try", path=path, sha3=h)
        ci = repo.write(path, data, expect=expect, message=f"w{t}.{i}")
        mine[path] = h
        note(kind="ack", path=path, sha3=h, checkin=ci.id)

ts = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
repo.close()
"""


@dataclass
class Tally:
    images: int = 0
    points: set = field(default_factory=set)
    checked: int = 0
    lost: int = 0
    broken: int = 0  # images that did not open or verify
    distinct: int = 0  # distinct images (verify ran once on each)
    failures: list = field(default_factory=list)
    variants: Counter = field(default_factory=Counter)

    def count(self, img) -> None:
        self.images += 1
        self.points.add(img.point)
        self.variants[img.variant] += 1

    def line(self, what: str) -> str:
        return (f"{what}: {self.images} crash images ({self.distinct} distinct), "
                f"{len(self.points)} crash points, "
                f"{self.checked} acknowledged writes checked, {self.lost} lost, "
                f"{self.broken} images unopenable or failing verify")


def _acks(trace: powerloss.Trace) -> list[dict]:
    """The writer's notes in trace order; each ack gets ``allowed``: the versions its
    path may hold at the tip while it is the path's last ack (it, or any tried later)."""
    notes = [json.loads(line) for rec in trace.acks()
             for line in rec.decode().splitlines() if line]
    tried: dict[str, list[tuple[int, str]]] = {}
    for i, n in enumerate(notes):
        if n["kind"] == "try":
            tried.setdefault(n["path"], []).append((i, n["sha3"]))
    for i, n in enumerate(notes):
        if n["kind"] == "ack":
            versions = tried[n["path"]]
            start = max(k for k, (j, h) in enumerate(versions) if j < i and h == n["sha3"])
            n["allowed"] = {h for _, h in versions[start:]}
    return notes


def _trace_run(shim, tmp_path, script, *args, store="store", name="run", kill_after=None):
    """Run ``script`` under the shim tracing the store at ``tmp_path/store``; returns
    (store path, data file before the run, trace). ``kill_after``: SIGKILL the writer
    once it has acknowledged that many writes."""
    store = str(tmp_path / store)
    data = os.path.realpath(os.path.join(store, "data.mdb"))
    with open(data, "rb") as f:
        base = f.read()
    trace_path = str(tmp_path / f"{name}.trace")
    ack_path = str(tmp_path / f"{name}.acks")
    env = powerloss.shim_env(shim, [data], trace=trace_path, ack=ack_path)
    if kill_after is None:
        powerloss.run_under_shim(script, env, store, ack_path, *args, timeout=300)
    else:
        proc = subprocess.Popen([sys.executable, "-c", script, store, ack_path, *map(str, args)],
                                env=env, stderr=subprocess.PIPE)
        try:
            while proc.poll() is None and _ack_lines(ack_path) < kill_after:
                time.sleep(0.01)
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            proc.kill()
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
    trace = powerloss.Trace.load(trace_path)
    with open(ack_path, "rb") as f:
        acks = f.read()
    if kill_after is None:
        assert acks == b"".join(trace.acks()), "the trace's acks differ from the ack file"
    else:  # the kill may fall between the trace record and the ack file write
        assert b"".join(trace.acks()).startswith(acks)
    return store, base, trace


def _ack_lines(path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b'"kind": "ack"')
    except FileNotFoundError:
        return 0


def _check_store_image(store, dest, img, notes, tally, verified):
    """Open the store with ``img`` as its data file; check every acked write.

    ``verified``: image digest -> verify's problems, since many crash images are the
    same bytes (verify runs a checker process: once per distinct image is enough).
    """
    powerloss.place_image(store, dest, img.data)
    seen = notes[: img.acked]
    acked = [n for n in seen if n["kind"] == "ack"]
    tally.count(img)
    try:
        repo = herofossil.open(dest)
    except (HeroFossilError, lmdb.Error) as exc:
        tally.broken += 1
        tally.checked += len(acked)
        tally.lost += len(acked)
        tally.failures.append((img.point, img.variant, f"open: {exc}"))
        return
    try:
        digest = hashlib.sha256(img.data).digest()
        if digest not in verified:
            verified[digest] = repo.verify().problems
        if verified[digest]:
            tally.broken += 1
            tally.failures.append((img.point, img.variant, verified[digest][:3]))
        for n in acked:
            tally.checked += 1
            try:
                got = hashlib.sha3_256(repo.read(n["path"], at=n["checkin"])).hexdigest()
            except (HeroFossilError, lmdb.Error) as exc:
                got = f"error {type(exc).__name__}: {exc}"
            if got != n["sha3"]:
                tally.lost += 1
                tally.failures.append((img.point, img.variant, n["path"], got))
        # At the tip each path holds its last acknowledged version or a later attempt.
        last = {n["path"]: n["allowed"] for n in acked}
        for path, allowed in last.items():
            try:
                got = hashlib.sha3_256(repo.read(path)).hexdigest()
            except (HeroFossilError, lmdb.Error) as exc:
                got = f"error {type(exc).__name__}: {exc}"
            if got not in allowed:
                tally.lost += 1
                tally.failures.append((img.point, img.variant, path, "tip", got))
    finally:
        repo.close()


def _store_campaign(shim, tmp_path, *, count, threads, seed, sync_off=False,
                    sample=None, seeds=(0, 1), kill_after=None):
    herofossil.open(str(tmp_path / "store"), create=True).close()
    store, base, trace = _trace_run(shim, tmp_path, STORE_WRITER, count, threads, seed,
                                    int(sync_off), kill_after=kill_after)
    notes = _acks(trace)
    acks = sum(n["kind"] == "ack" for n in notes)
    if kill_after is None:
        assert acks == count * threads
    else:
        assert kill_after <= acks < count * threads
    windows = len(powerloss.crash_windows(trace))
    points = None
    if sample is not None and windows > sample:
        # the last points (where the run ended or was killed) and a seeded sample
        last = set(range(windows - 8, windows))
        points = sorted(last | set(random.Random(seed).sample(range(windows - 8), sample - 8)))
    tally, verified = Tally(), {}
    dest = str(tmp_path / "crashed")
    for img in powerloss.crash_images(base, trace, points=points, seeds=seeds):
        _check_store_image(store, dest, img, notes, tally, verified)
        shutil.rmtree(dest, ignore_errors=True)
    tally.distinct = len(verified)
    return tally, trace


PLAIN_WRITER = r"""
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"a" * 4096, 0)
os.fdatasync(fd)
os.pwrite(fd, b"b" * 1024, 4096)
os.pwrite(fd, b"c" * 2048, 0)
os.fsync(fd)
os.lseek(fd, 5120, os.SEEK_SET)
os.write(fd, b"d" * 1536)
dsync = os.open(path, os.O_WRONLY | os.O_DSYNC)
os.pwrite(dsync, b"e" * 100, 8192)
os.pwrite(fd, b"f" * 4096, 8192)
"""


def test_crash_images_of_a_plain_file_follow_its_syncs(shim, tmp_path):
    """The image builder's model on writes made by hand: what a sync covers is kept, what
    came after it is lost, kept, kept in part or torn at a sector."""
    path = os.path.realpath(str(tmp_path / "f.dat"))
    env = powerloss.shim_env(shim, [path], trace=str(tmp_path / "t"))
    powerloss.run_under_shim(PLAIN_WRITER, env, path)
    trace = powerloss.Trace.load(str(tmp_path / "t"))
    assert [r.kind for r in trace.records if r.kind != "O"] == list("WSWWSWWSW")
    a, b, c, d, e = (b"a" * 4096, b"b" * 1024, b"c" * 2048, b"d" * 1536, b"e" * 100)
    after1 = c + a[2048:]  # sync 1 made "a" durable; "c" overwrote its start
    after2 = after1 + b + d
    after3 = after2 + bytes(8192 - len(after2)) + e  # "e" lands past the end: a hole
    images = {(i.point, i.variant): i.data for i in powerloss.crash_images(b"", trace)}
    assert images[0, "none"] == b"" and images[0, "all"] == a
    assert images[1, "none"] == a and images[1, "all"] == after1 + b
    torn = images[1, "torn"]  # "b" kept, "c" cut at a sector inside it
    cut = len(torn) - len(torn.lstrip(b"c"))
    assert 0 < cut < 2048 and cut % 512 == 0
    assert torn == c[:cut] + a[cut:] + b
    assert images[2, "none"] == after1 + b and images[2, "all"] == after3
    assert images[2, "random-0"] in {after1 + b, after2, after1 + b + bytes(4096) + e, after3}
    # the O_DSYNC write is a sync (the model: of everything written before it)
    assert images[3, "none"] == after3 and images[3, "all"] == after3[:8192] + b"f" * 4096
    assert images[3, "random-0"] in (after3, after3[:8192] + b"f" * 4096)
    assert {i.pending for i in powerloss.crash_images(b"", trace) if i.point == 1} == {2}
    assert len(powerloss.crash_windows(trace)) == 4


def test_trace_replayed_onto_the_first_copy_rebuilds_the_data_file(shim, tmp_path):
    """The trace misses no write: replaying all of it gives the file byte for byte."""
    store = str(tmp_path / "store")
    herofossil.open(store, create=True).close()
    _, base, trace = _trace_run(shim, tmp_path, STORE_WRITER, 6, 1, 3, 0)
    assert trace.of("W") and trace.of("S")
    image = bytearray(base)
    for rec in trace.records:
        if rec.kind in "WT":
            powerloss._apply(image, rec)
    with open(os.path.join(store, "data.mdb"), "rb") as f:
        assert bytes(image) == f.read()


def test_acknowledged_store_writes_survive_every_crash_point(shim, tmp_path):
    tally, trace = _store_campaign(shim, tmp_path, count=6, threads=1, seed=1, seeds=(0,))
    print(tally.line("store, one thread"))
    assert tally.checked > 0 and len(tally.points) == len(powerloss.crash_windows(trace))
    assert (tally.lost, tally.broken) == (0, 0), tally.failures[:5]


@pytest.mark.slow
def test_acknowledged_store_writes_survive_power_loss_with_group_commit(shim, tmp_path):
    """Four threads write at once (group commit); a seeded sample of crash points."""
    tally, trace = _store_campaign(shim, tmp_path, count=15, threads=4, seed=2, sample=40,
                                   seeds=(0,))
    commits = len(trace.of("S")) // 2  # a data sync and the meta page's O_DSYNC write each
    print(tally.line("store, four threads") + f"; {commits} commits for 60 writes")
    assert tally.checked > 0 and commits < 60
    assert (tally.lost, tally.broken) == (0, 0), tally.failures[:5]


@pytest.mark.slow
def test_acknowledged_store_writes_survive_power_loss_long_run(shim, tmp_path):
    tally, _ = _store_campaign(shim, tmp_path, count=60, threads=1, seed=3, sample=40)
    print(tally.line("store, long run"))
    assert tally.checked > 0
    assert (tally.lost, tally.broken) == (0, 0), tally.failures[:5]


@pytest.mark.slow
def test_acknowledged_store_writes_survive_power_loss_when_the_writer_is_killed(shim, tmp_path):
    """Two threads writing; SIGKILL mid-run, then the power cut: the trace ends where the
    kill stopped it, mid-commit or not."""
    tally, trace = _store_campaign(shim, tmp_path, count=400, threads=2, seed=5, sample=40,
                                   seeds=(0,), kill_after=30)
    print(tally.line("store, writer killed"))
    assert tally.checked > 0
    assert (tally.lost, tally.broken) == (0, 0), tally.failures[:5]


def test_control_store_without_lmdb_sync_loses_acknowledged_writes(shim, tmp_path):
    """The same writer with LMDB's sync turned off: the simulator must see losses."""
    tally, trace = _store_campaign(shim, tmp_path, count=8, threads=1, seed=4, sync_off=True)
    print(tally.line("control: store with LMDB sync off"))
    assert not trace.of("S"), "with sync off the store must not sync data.mdb"
    assert tally.lost > 0


def test_control_store_without_lmdb_meta_sync_loses_acknowledged_writes(shim, tmp_path):
    """The subtler break: data pages synced, the meta page that commits them not; every
    image opens and verifies, yet acknowledged writes are missing."""
    tally, trace = _store_campaign(shim, tmp_path, count=8, threads=1, seed=4, sync_off=2,
                                   seeds=(0,))
    print(tally.line("control: store with LMDB meta sync off"))
    assert len(trace.of("S")) >= 8
    assert tally.lost > 0


# ---- the simulator checked on a bare LMDB environment (LMDB's own promise)

BARE_WRITER = r"""
import hashlib, os, random, sys
path, ackpath, count, sync, metasync = sys.argv[1:]
import lmdb
env = lmdb.open(path, map_size=1 << 26, sync=sync == "1", metasync=metasync == "1")
ackfd = os.open(ackpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
rng = random.Random(7)
for i in range(int(count)):
    key = b"k%d" % rng.randrange(int(count))
    value = rng.randbytes(rng.choice([20, 900, 5000, 20000]))
    h = hashlib.sha3_256(value).hexdigest().encode()
    os.write(ackfd, b"try %s %s\n" % (key, h))
    with env.begin(write=True) as txn:
        txn.put(key, value)
        txn.put(b"n%d" % i, b"x" * 50)
    os.write(ackfd, b"ack %s %s\n" % (key, h))
    os.fsync(ackfd)
env.close()
"""


def _bare_campaign(shim, tmp_path, *, count, sync, metasync):
    lmdb.open(str(tmp_path / "env"), map_size=1 << 26).close()
    store, base, trace = _trace_run(shim, tmp_path, BARE_WRITER, count, int(sync),
                                    int(metasync), store="env")
    acks = [line.split() for rec in trace.acks() for line in rec.decode().splitlines()]
    tally = Tally()
    dest = str(tmp_path / "crashed")
    digests = set()
    for img in powerloss.crash_images(base, trace):
        powerloss.place_image(store, dest, img.data)
        tally.count(img)
        digests.add(hashlib.sha256(img.data).digest())
        tally.distinct = len(digests)
        # A key holds its last acknowledged value or one written after it.
        want: dict[bytes, set] = {}
        for i, (kind, key, h) in enumerate(acks[: img.acked]):
            if kind == "ack":
                want[key.encode()] = {h} | {later for k2, key2, later in acks[i:]
                                            if k2 == "try" and key2 == key}
        try:
            crashed = lmdb.open(dest, map_size=1 << 26)
            with crashed.begin() as txn:
                got = {k: hashlib.sha3_256(v).hexdigest()
                       for k, v in txn.cursor()}
            crashed.close()
        except lmdb.Error as exc:
            tally.broken += 1
            tally.checked += len(want)
            tally.lost += len(want)
            tally.failures.append((img.point, img.variant, str(exc)))
            continue
        for key, h in want.items():
            tally.checked += 1
            if got.get(key) not in h:
                tally.lost += 1
                tally.failures.append((img.point, img.variant, key))
    return tally, trace


def test_bare_lmdb_with_sync_keeps_every_acknowledged_commit(shim, tmp_path):
    tally, trace = _bare_campaign(shim, tmp_path, count=30, sync=True, metasync=True)
    print(tally.line("bare LMDB, sync on"))
    # Each commit: a data fdatasync and the meta page on the O_DSYNC fd.
    assert len(trace.of("S")) >= 2 * 30
    assert tally.checked > 0 and {"none", "all", "random-0", "torn"} <= set(tally.variants)
    assert (tally.lost, tally.broken) == (0, 0), tally.failures[:5]


def test_control_bare_lmdb_without_sync_loses_acknowledged_commits(shim, tmp_path):
    tally, trace = _bare_campaign(shim, tmp_path, count=30, sync=False, metasync=False)
    print(tally.line("control: bare LMDB, sync off"))
    assert not trace.of("S")
    assert tally.lost > 0


def test_control_bare_lmdb_without_meta_sync_loses_the_last_commit(shim, tmp_path):
    """Data synced but the meta page not: a commit is durable only at the next one's sync,
    so acknowledged commits are lost in the windows that drop their meta page."""
    tally, trace = _bare_campaign(shim, tmp_path, count=30, sync=True, metasync=False)
    print(tally.line("control: bare LMDB, meta sync off"))
    assert len(trace.of("S")) >= 30
    assert tally.lost > 0 and tally.broken == 0
