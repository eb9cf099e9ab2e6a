"""I/O faults during a commit: the write fails with StoreError and nothing is lost.

The iofault shim (see ``powerloss``) fails one chosen call, or a run of calls, among the
writes and syncs of ``data.mdb`` with ENOSPC or EIO, without doing it. A probe write
first counts the calls of one ``repo.write``; the fault then hits each of them in turn.
Real full filesystems too: a small tmpfs, and a file-size limit (RLIMIT_FSIZE).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import powerloss  # tests/powerloss.py
import pytest

import herofossil
from herofossil.errors import StoreError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the iofault shim needs Linux (LD_PRELOAD, /proc)")


@contextlib.contextmanager
def _small_tmpfs(mnt, size: str):
    """A tmpfs of ``size`` (mount's spelling) mounted at ``mnt``, unmounted after; the test
    is skipped where mounting is not allowed (not root)."""
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _data_file(store) -> str:
    return os.path.realpath(os.path.join(str(store), "data.mdb"))


def _sha(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


# Runs under the shim. Writes a baseline, probes one write's calls, then for each errno,
# call kind and index: arms the fault, tries a write (an overwrite or a new file), checks
# that it raised StoreError, left nothing visible, and that the next write works.
# Prints one JSON report; the test checks it and the store afterwards.
FAULT_RUNNER = r"""
import errno, hashlib, json, os, sys, traceback
sys.path.insert(0, sys.argv[2])
import powerloss
import herofossil
from herofossil.errors import NotFoundError, StoreError

store = sys.argv[1]
ctl = powerloss.Control()
repo = herofossil.open(store)
acked = {}  # path -> sha3 of the bytes acknowledged last
checkins = []  # (path, sha3, checkin id) of every acknowledged write

def sha(b):
    return hashlib.sha3_256(b).hexdigest()

def put(path, data, **kw):
    ci = repo.write(path, data, **kw)
    acked[path] = sha(data)
    checkins.append((path, sha(data), ci.id))

def content(n, size=3000):
    return (b"content %d " % n * (size // 10 + 1))[:size]

for i in range(8):
    put(f"base/f{i}.txt", content(i, 500 + 900 * i))

def counts():
    return ctl.calls(powerloss.WRITE_KIND), ctl.calls(powerloss.SYNC_KIND)

w0, s0 = counts()
put("probe/p.txt", content(99))
w1, s1 = counts()
per_commit = {"write": w1 - w0, "sync": s1 - s0}
report = {"per_commit": per_commit, "cases": [], "problems": []}
refused = []  # (path, sha3) of every write that raised

def fail(case, msg):
    report["problems"].append(f"{case}: {msg}")

def attempt(case, n, kind, index, err, more):
    # One faulty write (and, with more, the writes that meet the rest of the fault);
    # returns (what the write raised, calls failed, writes refused after it).
    target = f"base/f{n % 8}.txt" if n % 2 else f"new/n{n}.txt"
    before = acked.get(target)
    data = content(1000 + n)
    failed0 = ctl.failed()
    ctl.arm(powerloss.WRITE_KIND if kind == "write" else powerloss.SYNC_KIND,
            index, getattr(errno, err), more)
    raised = None
    try:
        kw = {"expect": acked[target]} if before and n % 4 == 1 else {}
        ci = repo.write(target, data, **kw)
    except StoreError as exc:
        raised = exc
    except BaseException as exc:
        fail(case, "raised " + "".join(traceback.format_exception_only(exc)).strip())
        raised = exc
    else:  # the commit made fewer calls than ``index``: the fault did not fire
        acked[target] = sha(data)
        checkins.append((target, sha(data), ci.id))
    extra = 0
    while more and raised is not None and ctl.failed() - failed0 < more + 1:
        spare = content(3000 + n + extra)
        try:
            put("spare/x.txt", spare)
        except StoreError:
            extra += 1
            refused.append(("spare/x.txt", sha(spare)))
            continue
        except BaseException as exc:
            fail(case, f"a write during the fault raised {type(exc).__name__}")
        break
    ctl.disarm()
    fired = ctl.failed() - failed0
    if raised is None:
        if fired:
            fail(case, "the write returned although a call of its commit failed")
        return None, fired, extra
    try:
        now = sha(repo.read(target))
    except NotFoundError:
        now = None
    if now != before:
        fail(case, f"{target} holds {now}, expected {before}")
    refused.append((target, sha(data)))
    lost = [p for p, h in acked.items() if sha(repo.read(p)) != h]
    if lost:
        fail(case, f"earlier writes lost: {lost}")
    try:
        put(f"after/a{n}.txt", content(2000 + n))
    except BaseException as exc:
        fail(case, f"the next write failed: {type(exc).__name__}: {exc}")
    return raised, fired, extra

n = 0
for err in ("ENOSPC", "EIO"):
    for kind in ("write", "sync"):
        for index in range(1, per_commit[kind] + 1):
            for more in (0, 3):
                case = f"{err} on {kind} #{index}" + (f" and the {more} after" if more else "")
                for _ in range(3):  # commits differ a little in how many calls they make
                    n += 1
                    raised, fired, extra = attempt(case, n, kind, index, err, more)
                    if fired:
                        break
                else:
                    fail(case, "the fault never fired (fewer calls than the probe counted)")
                report["cases"].append({"case": case, "fired": fired, "extra_failed": extra,
                                        "raised": type(raised).__name__})
for path, h in acked.items():
    if sha(repo.read(path)) != h:
        fail("end", f"{path} lost")
v = repo.verify()
if not v.ok:
    fail("end", f"verify: {v.problems[:3]}")
repo.close()
report["acked"] = acked
report["checkins"] = checkins
report["refused"] = refused
print(json.dumps(report))
"""


def _assert_store_holds(store, acked: dict, checkins=(), refused=(), history=False):
    """A fresh open of ``store`` (no shim) passes verify and holds every acked write;
    no refused write is in any check-in; ``history``: every check-in that changes a
    path is one of ``checkins`` (a refused write left none)."""
    with herofossil.open(str(store)) as repo:
        report = repo.verify()
        assert report.ok, report.problems
        for path, h in acked.items():
            assert _sha(repo.read(path)) == h, path
        for path, h, cid in checkins:
            assert _sha(repo.read(path, at=cid)) == h, (path, cid)
        if history:
            ids = {cid for _, _, cid in checkins}
            stray = [ci.id for ci in repo.log() if ci.id not in ids and repo.changed_paths(ci.id)]
            assert stray == [], "check-ins that no acknowledged write made"
        for path, h in refused:
            versions = {_sha(repo.read(path, at=ci.id)) for ci in repo.log(path)
                        if repo.exists(path, at=ci.id)}
            assert h not in versions, f"a refused write of {path} is in its history"


@linux_only
def test_shim_fails_the_chosen_lmdb_call_and_nothing_else(shim, tmp_path):
    """The shim itself: the Nth write of a bare LMDB commit fails with ENOSPC, the
    next commit (fault over) works, and the calls were counted."""
    script = r"""
import errno, os, sys
sys.path.insert(0, sys.argv[2])
import lmdb, powerloss
ctl = powerloss.Control()
env = lmdb.open(sys.argv[1], map_size=1 << 24)
with env.begin(write=True) as txn:
    txn.put(b"a", b"1")
w, s = ctl.calls(0), ctl.calls(1)
ctl.arm(0, 1, errno.ENOSPC)
try:
    with env.begin(write=True) as txn:
        txn.put(b"b", b"2" * 5000)
    print("no error")
except lmdb.Error as exc:
    print("error", exc)
ctl.disarm()
with env.begin(write=True) as txn:
    txn.put(b"c", b"3")
with env.begin() as txn:
    print(sorted(k.decode() for k, _ in txn.cursor()), w, s, ctl.failed())
"""
    env = powerloss.shim_env(shim, [_data_file(tmp_path / "env")])
    out = powerloss.run_under_shim(script, env, tmp_path / "env", powerloss.HERE).stdout
    first, second = out.splitlines()
    assert first.startswith("error") and "No space left" in first
    keys, w, s, failed = second.rsplit(" ", 3)
    assert keys == "['a', 'c']" and int(failed) == 1
    assert int(w) >= 2 and int(s) >= 2  # data pages + meta; fdatasync + O_DSYNC meta


@linux_only
def test_faults_at_each_write_and_sync_of_a_commit_raise_store_error_and_lose_nothing(
        shim, tmp_path):
    store = tmp_path / "store"
    herofossil.open(str(store), create=True).close()
    env = powerloss.shim_env(shim, [_data_file(store)])
    proc = subprocess.run([sys.executable, "-c", FAULT_RUNNER, str(store), powerloss.HERE],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    per = report["per_commit"]
    cases = report["cases"]
    print(f"faults: one commit makes {per['write']} writes and {per['sync']} syncs; "
          f"{len(cases)} faults injected ({sum(c['fired'] for c in cases)} calls failed), "
          f"{len(report['checkins'])} acknowledged writes, problems: {len(report['problems'])}")
    assert per["write"] >= 2 and per["sync"] >= 1
    assert len(cases) == 2 * 2 * (per["write"] + per["sync"])
    assert report["problems"] == []
    assert all(c["raised"] == "StoreError" for c in cases)
    assert len(report["refused"]) == len(cases) + sum(c["extra_failed"] for c in cases)
    _assert_store_holds(store, report["acked"], report["checkins"], report["refused"],
                        history=True)


# ---- real full filesystems

FILL_RUNNER = r"""
import hashlib, json, os, resource, signal, sys
import herofossil
from herofossil.errors import StoreError

store, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "fsize":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write returns EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
repo = herofossil.open(store)
acked, failed = {}, None
for i in range(10_000):
    data = os.urandom(48_000)  # incompressible: the file grows by about this much
    try:
        ci = repo.write(f"fill/f{i}.bin", data)
    except StoreError as exc:
        failed = (f"fill/f{i}.bin", str(exc))
        break
    acked[f"fill/f{i}.bin"] = (hashlib.sha3_256(data).hexdigest(), ci.id)
print(json.dumps({"acked": acked, "failed": failed}), flush=True)
sys.stdin.readline()  # the test frees space, then says go on
if mode == "fsize":
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
visible = repo.exists(failed[0]) if failed else None
data = b"after the disk was full\n"
ci = repo.write("after.txt", data)
lost = [p for p, (h, _) in acked.items() if hashlib.sha3_256(repo.read(p)).hexdigest() != h]
print(json.dumps({"visible": visible, "after": [hashlib.sha3_256(data).hexdigest(), ci.id],
                  "lost": lost, "ok": repo.verify().ok}), flush=True)
repo.close()
"""


def _fill_until_full(store, mode, limit, free_space):
    """Run the filler, free space, let it write again; returns its two reports."""
    proc = subprocess.Popen([sys.executable, "-c", FILL_RUNNER, str(store), mode, str(limit)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = json.loads(proc.stdout.readline() or "null")
        assert first is not None, proc.stderr.read()
        free_space()
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return first, json.loads(out.splitlines()[-1])


def _check_fill(store, first, second, what):
    print(f"{what}: {len(first['acked'])} writes acknowledged before the failure "
          f"({first['failed'][1] if first['failed'] else 'none failed'}), "
          f"lost: {len(second['lost'])}")
    assert first["failed"] is not None, "the filesystem never filled"
    assert len(first["acked"]) >= 3
    assert second["visible"] is False, "the refused write is visible"
    assert second["lost"] == [] and second["ok"]
    acked = {p: h for p, (h, _) in first["acked"].items()}
    acked["after.txt"] = second["after"][0]
    _assert_store_holds(store, acked, [(p, h, c) for p, (h, c) in first["acked"].items()])


@linux_only
def test_full_tmpfs_refuses_the_write_with_store_error_and_keeps_every_acknowledged_one(
        tmp_path):
    mnt = tmp_path / "small"
    with _small_tmpfs(mnt, "3m"):
        store = mnt / "store"
        herofossil.open(str(store), create=True).close()
        ballast = mnt / "ballast"
        ballast.write_bytes(os.urandom(600_000))
        first, second = _fill_until_full(store, "tmpfs", 0, ballast.unlink)
        _check_fill(store, first, second, "tmpfs of 3 MiB")


def test_file_size_limit_refuses_the_write_with_store_error_and_keeps_every_acknowledged_one(
        tmp_path):
    store = tmp_path / "store"
    herofossil.open(str(store), create=True).close()
    limit = os.path.getsize(store / "data.mdb") + 1_000_000
    first, second = _fill_until_full(store, "fsize", limit, lambda: None)
    _check_fill(store, first, second, "RLIMIT_FSIZE of 1 MB over the empty store")


def test_shim_control_reports_when_not_loaded():
    """Control() outside the shim says so instead of failing later."""
    with pytest.raises(RuntimeError, match="shim"):
        powerloss.Control()



@linux_only
@pytest.mark.parametrize("kind,err", [("write", "ENOSPC"), ("sync", "EIO"), ("sync", "ENOSPC")])
def test_cli_put_under_a_fault_exits_with_one_line_and_writes_nothing(shim, tmp_path, cli,
                                                                      store_path, kind, err):
    """The shim armed from the environment (first matching call of the process fails):
    ``herofossil put`` prints one line, exits with StoreError's code; nothing is kept."""
    cli("init")
    cli("put", "kept.txt", input=b"kept\n")
    env = powerloss.shim_env(shim, [_data_file(store_path)], kind=kind, n=1, errno=err)
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store_path), "put",
                           "refused.txt"], input=b"refused\n", env=env, capture_output=True)
    stderr = proc.stderr.decode()
    assert proc.returncode == StoreError.exit_code, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert cli("cat", "refused.txt", check=False).returncode != 0
    assert cli("cat", "kept.txt").stdout == b"kept\n"
    cli("put", "after.txt", input=b"after\n")
    assert cli("cat", "after.txt").stdout == b"after\n"
    assert cli("verify").returncode == 0


@linux_only
@pytest.mark.parametrize("kind,err,n", [("write", "ENOSPC", 2), ("sync", "EIO", 5),
                                        ("sync", "ENOSPC", 11)])
def test_a_large_streamed_put_under_a_fault_names_nothing_and_loses_nothing(
        shim, tmp_path, cli, store_path, kind, err, n):
    """A 26 MiB file goes in as 7 parts, each its own durable commit, then the check-in:
    a fault at any of those commits fails the put with one line; the parts stored before
    it are loose (verify counts them, compact drops them), nothing else changed."""
    from herofossil.store import blobs

    cli("init")
    cli("put", "kept.txt", input=b"kept\n")
    big = hashlib.shake_256(b"big").digest(blobs.LARGE + 10 * (1 << 20))
    env = powerloss.shim_env(shim, [_data_file(store_path)], kind=kind, n=n, errno=err)
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store_path), "put",
                           "big.bin"], input=big, env=env, capture_output=True)
    stderr = proc.stderr.decode()
    assert proc.returncode == StoreError.exit_code, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert cli("cat", "big.bin", check=False).returncode != 0
    assert cli("cat", "kept.txt").stdout == b"kept\n"
    with herofossil.open(str(store_path)) as repo:
        report = repo.verify()
        assert report.ok, report.problems
        repo.compact()
        assert repo.verify().loose_parts == 0
    cli("put", "big.bin", input=big)  # the fault is over: the same upload goes in whole
    assert _sha(cli("cat", "big.bin").stdout) == _sha(big)
    assert cli("verify").returncode == 0


@linux_only
@pytest.mark.parametrize("room", [0.0, 0.1, 0.3])
def test_a_compact_without_room_for_its_copy_raises_store_error_and_changes_nothing(
        tmp_path, room):
    """``compact`` writes a whole copy before it swaps it in: on a filesystem with room for
    none or part of it (``room``, of the store's size) the copy fails with StoreError (no
    SIGBUS, no damage reported), the store stays as it was (every version, verify),
    nothing of the copy is left, and a compact once space is back packs it."""
    import random

    from herofossil.store import lmdbenv

    mnt = tmp_path / "small"
    with _small_tmpfs(mnt, "6m"):
        store = mnt / "store"
        rng = random.Random(5)
        with herofossil.open(str(store), create=True) as repo:
            for n in range(300):
                words = " ".join(f"w{rng.randrange(2000)}" for _ in range(rng.randint(50, 400)))
                repo.write(f"etc/{n % 40}.toml", f"# {n}\n{words}\n".encode())
            before = {c.id: {p: repo.read(p, at=c.id) for p in repo.files(c.id)}
                      for c in repo.log()}
        used = sum(f.stat().st_blocks * 512 for f in store.iterdir())
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (free - int(used * room)))  # room for part of a copy
        marker = (store / lmdbenv.MARKER).read_text()
        with herofossil.open(str(store)) as repo:
            with pytest.raises(StoreError) as caught:
                repo.compact()
            print(f"refused: {caught.value}")
            assert "space" in str(caught.value).lower()
            assert not (store / "compact.tmp").exists()
            assert (store / lmdbenv.MARKER).read_text() == marker
            assert repo.verify().ok
            assert {c.id: {p: repo.read(p, at=c.id) for p in repo.files(c.id)}
                    for c in repo.log()} == before
        cli = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), "compact"],
                             capture_output=True, text=True)
        assert cli.returncode != 0 and "Traceback" not in cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
        ballast.unlink()
        with herofossil.open(str(store)) as repo:
            _, after = repo.compact()
            assert after > used * room  # the copy needed more room than it had
            assert repo.stats()["segmented"] > 0
            assert repo.verify().ok
            assert {c.id: {p: repo.read(p, at=c.id) for p in repo.files(c.id)}
                    for c in repo.log()} == before


@linux_only
def test_a_store_created_on_a_full_disk_is_refused_with_store_error_not_killed_by_sigbus(
        tmp_path):
    """LMDB writes its lock file through a mapping: a page without a disk block killed the
    process with SIGBUS (``herofossil init`` exited by signal 7). The lock file is now made
    with its blocks first, and a disk without room for it is a StoreError."""
    mnt = tmp_path / "full"
    with _small_tmpfs(mnt, "1m"):
        with herofossil.open(str(mnt / "made"), create=True) as repo:  # made with room
            repo.write("a.txt", b"kept\n")
        lock = mnt / "made" / "lock.mdb"
        assert lock.stat().st_blocks * 512 >= lock.stat().st_size  # no holes
        fd = os.open(mnt / "ballast", os.O_WRONLY | os.O_CREAT)  # the rest of the disk
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        cli = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(mnt / "new"),
                              "init"], capture_output=True, text=True)
        assert cli.returncode > 0, (cli.returncode, cli.stderr)  # an exit, not a signal
        assert cli.stderr.count("\n") == 1 and "no room" in cli.stderr, cli.stderr
        with pytest.raises(StoreError, match="no room on its disk"):
            herofossil.open(str(mnt / "new2"), create=True)
        with herofossil.open(str(mnt / "made")) as repo:  # the full disk's store still reads
            assert repo.read("a.txt") == b"kept\n"
            with pytest.raises(StoreError):
                repo.write("b.txt", b"x" * 200_000)
            assert repo.verify().ok


@linux_only
def test_a_sparse_lock_file_of_an_earlier_release_on_a_full_disk_is_a_store_error_not_sigbus(
        tmp_path):
    """Earlier releases (and LMDB itself, with ftruncate) left the lock file sparse: on a
    full disk LMDB's first write into one of its holes killed the process with SIGBUS. Its
    blocks are now allocated when the store opens (that changes none of its bytes, so
    others may have it mapped): with room that works, without it is a StoreError."""
    mnt = tmp_path / "full"
    with _small_tmpfs(mnt, "1m"):
        store = mnt / "old"
        with herofossil.open(str(store), create=True) as repo:
            repo.write("a.txt", b"kept\n")
        lock = store / "lock.mdb"
        lock.unlink()
        with open(lock, "wb") as f:
            f.truncate(64 << 10)  # all holes, as ftruncate makes it
        assert lock.stat().st_blocks == 0
        fd = os.open(mnt / "ballast", os.O_WRONLY | os.O_CREAT)  # the rest of the disk
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        cli = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), "cat",
                              "a.txt"], capture_output=True, text=True)
        assert cli.returncode == 10, (cli.returncode, cli.stderr)  # an exit, not a signal
        assert cli.stderr.count("\n") == 1 and "no room" in cli.stderr, cli.stderr
        os.unlink(mnt / "ballast")
        with herofossil.open(str(store)) as repo:  # room again: its blocks are allocated
            assert repo.read("a.txt") == b"kept\n"
        assert lock.stat().st_blocks * 512 >= lock.stat().st_size
