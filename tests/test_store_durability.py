"""Durability is LMDB's own commit: opening, format checks, map growth, stores left by 0.1.

``fixtures/legacy_wal_stores.tar.xz`` holds three stores written by release 0.1
(write-ahead log beside LMDB), each of files ``dir{i%3}/f{i}.txt`` holding
``b"version %d\\n" % i * (i + 1)``:
- ``clean``: 20 writes, closed normally;
- ``killed``: 10 writes, a checkpoint, 20 logged writes, the process gone
  without closing (data.mdb as the page cache held it);
- ``powerloss``: the same, but data.mdb as the checkpoint synced it (the 20
  later writes only in the log).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import lmdb
import pytest

import herofossil
from herofossil.errors import IntegrityError, StoreError
from herofossil.store import lmdbenv

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_wal_stores.tar.xz"


def _content(i: int) -> bytes:
    return b"version %d\n" % i * (i + 1)


def _expected(count: int) -> dict[str, bytes]:
    return {f"dir{i % 3}/f{i}.txt": _content(i) for i in range(count)}


@pytest.fixture
def legacy(tmp_path):
    """The folder the three 0.1 stores are unpacked in."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def _files(path) -> dict[str, bytes]:
    with herofossil.open(path) as repo:
        return {name: repo.read(name) for name in repo.files()}


def _data(path) -> bytes:
    return (Path(path) / "data.mdb").read_bytes()


def test_a_store_closed_by_release_0_1_opens_and_drops_its_log(legacy):
    store = legacy / "clean"
    assert _files(store) == _expected(20)
    assert not (store / "wal").exists() and not (store / "checkpoint").exists()
    with herofossil.open(store) as repo:
        repo.write("after.txt", b"new\n")
        assert repo.verify().ok
    assert _files(store) == {**_expected(20), "after.txt": b"new\n"}


def test_a_store_of_release_0_1_after_a_power_loss_is_replayed_once(legacy):
    store = legacy / "powerloss"
    with herofossil.open(store) as repo:
        assert len(repo.files()) == 30  # 10 in data.mdb, 20 from the log
        assert repo.verify().ok
    assert not (store / "wal").exists() and not (store / "checkpoint").exists()
    assert _files(store) == _expected(30)


def test_a_store_of_release_0_1_that_cannot_be_checked_is_refused_untouched(legacy):
    store = legacy / "killed"
    before = _data(store)
    with pytest.raises(StoreError, match="remove those two files"):
        herofossil.open(store)
    assert _data(store) == before and (store / "wal").exists()
    # What the message offers: after a crash without a power loss, data.mdb holds it all.
    os.remove(store / "wal")
    os.remove(store / "checkpoint")
    assert _files(store) == _expected(30)


@pytest.mark.parametrize("data_from", ["new store", "other store"])
def test_a_checkpoint_that_is_not_the_data_files_is_never_written_into_it(legacy, tmp_path,
                                                                         data_from):
    store = legacy / "powerloss"
    if data_from == "new store":  # a data file older than the checkpoint: a backup
        herofossil.open(tmp_path / "fresh", create=True).close()
        shutil.copy(tmp_path / "fresh" / "data.mdb", store / "data.mdb")
        kept = {}
    else:  # another store's data file beside this one's log
        shutil.copy(legacy / "clean" / "data.mdb", store / "data.mdb")
        kept = _expected(20)
    before = _data(store)
    with pytest.raises(StoreError, match="nothing was changed"):
        herofossil.open(store)
    assert _data(store) == before
    os.remove(store / "wal")
    os.remove(store / "checkpoint")
    files = _files(store)
    assert files == kept


@pytest.mark.parametrize("damage", ["deleted", "truncated", "first record flipped"])
def test_a_damaged_log_of_release_0_1_never_rolls_the_data_file_back(legacy, damage):
    store = legacy / "killed"
    wal = store / "wal"
    if damage == "deleted":
        os.remove(wal)
    elif damage == "truncated":
        os.truncate(wal, 0)
    else:
        raw = bytearray(wal.read_bytes())
        start = raw.index(b"HFWL")
        raw[start + 40] ^= 0x01  # inside the first record's body: its checksum fails
        wal.write_bytes(bytes(raw))
    assert _files(store) == _expected(30)  # not the checkpoint's 10
    assert not wal.exists() and not (store / "checkpoint").exists()


def test_an_unknown_store_format_is_refused(tmp_path):
    store = tmp_path / "s"
    herofossil.open(store, create=True).close()
    marker = store / lmdbenv.MARKER
    assert marker.read_text().startswith(f"herofossil store format {lmdbenv.FORMAT}\n")
    marker.write_text("herofossil store format 99\n")
    with pytest.raises(StoreError, match="format 99.*upgrade herofossil"):
        herofossil.open(store)
    marker.write_text("something else\n")
    with pytest.raises(StoreError, match="not a herofossil store"):
        herofossil.open(store)


def _cli(store, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), *args],
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("keep", [0, 0.5])
def test_an_empty_or_truncated_data_file_is_damage_not_an_empty_store(tmp_path, keep):
    store = tmp_path / "s"
    with herofossil.open(store, create=True) as repo:
        for i in range(200):
            repo.write(f"f{i}", os.urandom(3000))
    size = os.path.getsize(store / "data.mdb")
    os.truncate(store / "data.mdb", int(size * keep))
    with pytest.raises(IntegrityError, match="empty|truncated"):
        herofossil.open(store)
    for command in (["cat", "f1"], ["ls"], ["verify"]):
        proc = _cli(store, *command)
        assert proc.returncode == IntegrityError.exit_code, proc.stderr
        err = proc.stderr.decode()
        assert "Traceback" not in err and err.count("\n") == 1 and "damaged" in err
    assert os.path.getsize(store / "data.mdb") == int(size * keep)  # nothing written


HOLD_WRITER = """
import sys, time, lmdb
env = lmdb.open(sys.argv[1], max_dbs=32, map_size=64 << 30)
txn = env.begin(write=True)   # LMDB's writer lock, held as a long write would
print("holding", flush=True)
time.sleep(300)
"""


def test_reading_never_waits_for_a_writer(tmp_path):
    store = tmp_path / "s"
    with herofossil.open(store, create=True) as repo:
        repo.write("small.txt", b"read me\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITER, str(store)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        for command in (["cat", "small.txt"], ["ls"], ["log", "-n", "1"], ["stats"]):
            proc = _cli(store, *command, timeout=60)  # it waited before: until the writer ended
            assert proc.returncode == 0, proc.stderr
            assert holder.poll() is None  # the writer still holds its lock
        assert _cli(store, "cat", "small.txt").stdout == b"read me\n"
        with herofossil.open(store, readonly=True) as repo:
            assert repo.read("small.txt") == b"read me\n"
            with pytest.raises(StoreError, match="read-only"):
                repo.write("x", b"y")
    finally:
        holder.kill()
        holder.wait()


GROWER = """
import os, sys, herofossil
repo = herofossil.open(sys.argv[1], map_size=1 << 20)
for i in range(int(sys.argv[2])):
    repo.write(f"proc/{i}", os.urandom(150_000))
    print(i, flush=True)
"""


def test_map_growth_is_safe_for_every_thread_and_process(tmp_path):
    store = tmp_path / "s"
    repo = herofossil.open(store, create=True, map_size=1 << 20)  # grows many times
    repo.write("seed.txt", b"seed\n")
    errors: list[BaseException] = []
    written: dict[str, bytes] = {}
    stop = threading.Event()
    reads = [0]

    def reader():
        try:
            while not stop.is_set():
                assert repo.read("seed.txt") == b"seed\n"
                for name, data in list(written.items())[-3:]:
                    assert repo.read(name) == data
                repo.ls("")
                reads[0] += 1
                # py-lmdb 3.0 aborts a write transaction (here: the map was full) only
                # once no LMDB call of another thread is in flight: readers that never
                # pause can starve it (seen: minutes on a loaded machine).
                time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer(n):
        rnd = random.Random(n)
        try:
            for i in range(25):
                name, data = f"t{n}/{i}", rnd.randbytes(120_000)
                repo.write(name, data)
                written[name] = data
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    other = subprocess.Popen([sys.executable, "-c", GROWER, str(store), "25"],
                             stdout=subprocess.PIPE, text=True)
    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    out, _ = other.communicate(timeout=300)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    try:
        assert not errors, errors[:3]
        assert other.returncode == 0 and len(out.split("\n")) == 26
        assert reads[0] > 0 and len(written) == 50
        assert repo._env.env.info()["map_size"] >= 8 << 20  # it did grow, several times
        for name, data in written.items():
            assert repo.read(name) == data
        assert len([p for p in repo.files() if p.startswith("proc/")]) == 25
        assert repo.verify().ok
    finally:
        repo.close()


def test_a_resize_waits_for_open_snapshots_and_a_thread_holding_one_is_told(tmp_path):
    store = tmp_path / "s"
    with herofossil.open(store, create=True, map_size=1 << 20) as repo:
        env = repo._env
        with env.read() as txn:  # this thread holds a snapshot: growing here would end it
            with pytest.raises(StoreError, match="holds a read snapshot"):
                env.grow()
            assert txn.stat(env.db["blob"])["entries"] >= 0  # still usable
        done = threading.Event()
        snapshot = env.read()
        grower = threading.Thread(target=lambda: (env.grow(), done.set()))
        grower.start()
        assert not done.wait(0.3)  # waits for the snapshot held here...
        assert snapshot.txn.stat(env.db["blob"])["entries"] >= 0
        snapshot.close()
        grower.join(timeout=30)
        assert done.is_set()  # ...and grows once it is closed
        assert env.env.info()["map_size"] == 2 << 20


def test_a_write_to_a_damaged_environment_is_a_store_error_not_an_lmdb_traceback(tmp_path):
    store = tmp_path / "s"
    with herofossil.open(store, create=True) as repo:
        def bad(txn):
            txn.put(b"", b"x", db=repo._env.db["info"])  # LMDB refuses an empty key

        with pytest.raises(StoreError, match="nothing of this write was kept") as info:
            repo._env.write(bad)
        assert isinstance(info.value.__cause__, lmdb.Error)
        repo.write("after", b"ok")  # later writes are not affected
        assert repo.read("after") == b"ok"


@pytest.fixture
def read_only_mount(tmp_path):
    """A small tmpfs at tmp_path/ro that the test can remount read-only (root only)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_store_on_a_read_only_file_system_can_be_read(read_only_mount):
    store = read_only_mount / "s"
    with herofossil.open(store, create=True) as repo:
        repo.write("a.txt", b"hello\n")
        repo.write("a.txt", b"hello again\n")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    assert _cli(store, "cat", "a.txt").stdout == b"hello again\n"
    log = _cli(store, "log", "--oneline")
    assert log.returncode == 0 and log.stdout.count(b"\n") == 3
    assert _cli(store, "verify").returncode == 0
    put = _cli(store, "put", "b.txt")
    err = put.stderr.decode()
    assert put.returncode == StoreError.exit_code and "Read-only file system" in err
    assert "Traceback" not in err and "reading works" in err
    with herofossil.open(store, readonly=True) as repo:
        assert repo.read("a.txt", at=repo.log()[-2].id) == b"hello\n"


def test_an_open_that_meets_a_map_another_process_grew_opens_again(tmp_path, monkeypatch):
    # The race the map-growth test met once: another process grows the map between LMDB
    # reading its size and the open's first transaction (MDB_MAP_RESIZED). Injected here
    # (the real window is microseconds wide): the open tries again; one that keeps meeting
    # it says so as a StoreError.
    with herofossil.open(tmp_path / "s", create=True) as repo:
        repo.write("a.txt", b"kept\n")
    real = lmdbenv.lmdb_open
    raised = []

    def resized_once(*args, **kw):
        if len(raised) < 1:
            raised.append(1)
            raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED (injected)")
        return real(*args, **kw)

    monkeypatch.setattr(lmdbenv, "lmdb_open", resized_once)
    with herofossil.open(tmp_path / "s") as repo:
        assert raised and repo.read("a.txt") == b"kept\n"

    def always(*args, **kw):
        raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED (injected)")

    monkeypatch.setattr(lmdbenv, "lmdb_open", always)
    with pytest.raises(StoreError, match="map kept growing"):
        herofossil.open(tmp_path / "s")
