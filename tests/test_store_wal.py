"""Write-ahead log: one log sync per write, and nothing acknowledged is lost on a crash.

A power loss is simulated on a copy of the store: the log and checkpoint files
as they were synced, and ``data.mdb`` as the last checkpoint synced it with
any subset of the pages written since (the page cache writes pages back in
no particular order).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import herofossil
from herofossil.store import durability
from herofossil.store.wal import CHECKPOINT_FILE, WAL_FILE

PAGE = os.sysconf("SC_PAGE_SIZE")


def _data(store) -> bytes:
    with open(os.path.join(store, "data.mdb"), "rb") as f:
        return f.read()


def _power_loss_copy(store, dest, synced: bytes, newer_page) -> None:
    """``store`` as a machine that lost power would leave it, at ``dest``.

    ``synced``: data.mdb at the last checkpoint; ``newer_page(n)``: whether
    page n written since reached the disk.
    """
    shutil.copytree(store, dest)
    os.remove(os.path.join(dest, "lock.mdb"))  # a reboot: nobody has it open
    now = _data(store)
    out = bytearray()
    for pos in range(0, max(len(synced), len(now)), PAGE):
        old, new = synced[pos : pos + PAGE], now[pos : pos + PAGE]
        if not old or (new and new != old and newer_page(pos // PAGE)):
            out += new
        else:
            out += old
    with open(os.path.join(dest, "data.mdb"), "wb") as f:
        f.write(out)


@pytest.fixture
def no_background_checkpoints(monkeypatch):
    """Checkpoints only when a test asks (so it knows what was synced when)."""
    monkeypatch.setattr(durability, "WAL_COMMITS", 10**9)


@pytest.fixture
def open_store(tmp_path):
    """(path, repo) of a new store, left open for the test (closing would checkpoint)."""
    path = str(tmp_path / "store")
    repo = herofossil.open(path, create=True)
    yield path, repo
    repo.close()


def _write_some(repo, written, first, count):
    for i in range(first, first + count):
        name, data = f"dir{i % 3}/f{i}.txt", b"version %d\n" % i * (i + 1)
        repo.write(name, data)
        written[name] = data


@pytest.fixture
def logged_store(tmp_path, no_background_checkpoints):
    """A store with a checkpoint after its first write, then 32 logged writes.

    Yields (path, synced data.mdb at the checkpoint, {path: bytes} acknowledged).
    The repo stays open (closing would checkpoint).
    """
    path = str(tmp_path / "store")
    repo = herofossil.open(path, create=True)
    written = {"first.txt": b"first\n"}
    repo.write("first.txt", written["first.txt"])
    repo._env.flush()
    synced = _data(path)
    checkpoints = repo._env.checkpoints
    _write_some(repo, written, 0, 30)
    repo.write("first.txt", b"changed\n")
    written["first.txt"] = b"changed\n"
    repo.delete("dir0/f0.txt")
    del written["dir0/f0.txt"]
    assert repo._env.checkpoints == checkpoints  # every write since went to the log
    yield path, synced, written
    repo.close()


def _assert_recovered(path, written, checkins):
    with herofossil.open(path) as repo:
        assert repo._env.checkpoints == 1  # the replay ends with one
        assert {e.path for e in repo.walk() if not e.is_dir} == set(written)
        for name, data in written.items():
            assert repo.read(name) == data
        report = repo.verify()
        assert report.ok, report.problems
        assert len(repo.log()) == checkins


def _recovered_after_power_loss(tmp_path, path, synced, newer_page, written, checkins):
    """Lose power on a copy of the store at ``path`` (see ``_power_loss_copy``), check that
    opening it recovers ``written`` and ``checkins`` check-ins; returns the copy's path."""
    dest = str(tmp_path / "after-power-loss")
    _power_loss_copy(path, dest, synced, newer_page)
    _assert_recovered(dest, written, checkins)
    return dest


def test_small_writes_are_logged_not_checkpointed(logged_store):
    path, _, _ = logged_store
    assert os.path.getsize(os.path.join(path, WAL_FILE)) > 0


@pytest.mark.parametrize("seed", range(12))
def test_power_loss_keeps_every_acknowledged_write(logged_store, tmp_path, seed):
    path, synced, written = logged_store
    rng = random.Random(seed)
    share = rng.random()
    _recovered_after_power_loss(tmp_path, path, synced, lambda n: rng.random() < share,
                                written, checkins=34)


@pytest.mark.parametrize("on_disk", [True, False], ids=["every-later-page", "no-later-page"])
def test_power_loss_with_all_or_none_of_the_later_pages(logged_store, tmp_path, on_disk):
    path, synced, written = logged_store
    _recovered_after_power_loss(tmp_path, path, synced, lambda n: on_disk, written, checkins=34)


def test_a_torn_last_record_ends_the_log(logged_store, tmp_path):
    path, synced, written = logged_store
    dest = str(tmp_path / "after-power-loss")
    _power_loss_copy(path, dest, synced, lambda n: n % 2 == 0)
    log = os.path.join(dest, WAL_FILE)
    with open(log, "r+b") as f:  # the last record (the delete) half written
        end = len(f.read().rstrip(b"\0"))  # the log ends in zeros written ahead
        f.seek(end - 7)
        f.write(b"\xff" * 7)
    written["dir0/f0.txt"] = b"version 0\n"
    with herofossil.open(dest) as repo:
        assert repo.read("dir0/f0.txt") == b"version 0\n"
        assert len(repo.log()) == 33
        assert repo.verify().ok


def test_checkpoints_taken_while_writing_keep_the_log_going(tmp_path, no_background_checkpoints):
    """Background checkpoints (run here in the test's thread, at known moments) move the
    pinned snapshot on without restarting the log; a torn newest checkpoint falls back."""
    path = str(tmp_path / "store")
    repo = herofossil.open(path, create=True)
    try:
        written = {}
        _write_some(repo, written, 0, 5)
        images = []
        for round_ in range(3):
            repo._env.durability._background_checkpoint()
            images.append(_data(path))
            _write_some(repo, written, 5 + 10 * round_, 10)
        assert repo._env.durability.epoch == 1  # one log since the first write
        rng = random.Random(7)
        # Power lost after the last writes; or while the newest checkpoint was being
        # written (so before those writes): its slot is torn and the previous one counts.
        for n, tear in enumerate((False, True)):
            dest = str(tmp_path / f"after-power-loss-{n}")
            later = (lambda _page: False) if tear else (lambda _page: rng.random() < 0.5)
            _power_loss_copy(path, dest, images[-1], later)
            if tear:
                ck = repo._env.durability.wal.checkpoint()
                slot_size = repo._env.durability.wal.slot_size
                with open(os.path.join(dest, CHECKPOINT_FILE), "r+b") as f:
                    f.seek((ck.seq % 2) * slot_size + 100)
                    f.write(b"\0" * 200)
            _assert_recovered(dest, written, checkins=36)
    finally:
        repo.close()


def test_background_checkpoints_run_while_writes_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr(durability, "WAL_COMMITS", 4)
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        written = {}
        _write_some(repo, written, 0, 60)
        deadline = time.monotonic() + 10  # the thread may not have had its turn yet
        while repo._env.durability.background == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert repo._env.durability.background > 0
        _write_some(repo, written, 60, 10)
    with herofossil.open(path) as repo:
        assert repo._env.checkpoints == 0  # closed cleanly: nothing to replay
        for name, data in written.items():
            assert repo.read(name) == data
        assert repo.verify().ok


def test_power_loss_after_the_map_grew(tmp_path, no_background_checkpoints):
    """A resize ends every transaction of the process, the checkpoint's pin too: the next
    write checkpoints before it commits, and the log protects what follows."""
    path = str(tmp_path / "store")
    repo = herofossil.open(path, create=True, map_size=1 << 20)
    try:
        written, n = {}, 0
        size = repo._env.env.info()["map_size"]
        while repo._env.env.info()["map_size"] == size:
            checkpoints = repo._env.checkpoints
            written[f"big/f{n}"] = os.urandom(8000)
            repo.write(f"big/f{n}", written[f"big/f{n}"])
            n += 1
        # The write that filled the map grew it, which ended the pin, and took a
        # checkpoint (a new pin) before it committed.
        assert repo._env.checkpoints == checkpoints + 1
        assert repo._env.durability.owner()
        repo.write("after", b"grown")
        written["after"] = b"grown"
        repo._env.flush()
        synced, size = _data(path), repo._env.env.info()["map_size"]
        _write_some(repo, written, 0, 10)
        assert repo._env.env.info()["map_size"] == size
        rng = random.Random(3)
        _recovered_after_power_loss(tmp_path, path, synced, lambda _page: rng.random() < 0.5,
                                    written, checkins=n + 12)
    finally:
        repo.close()


def test_power_loss_after_compact(tmp_path, open_store, no_background_checkpoints):
    path, repo = open_store
    written = {}
    _write_some(repo, written, 0, 10)
    repo.compact()
    assert not os.path.getsize(os.path.join(path, CHECKPOINT_FILE))  # the old log is gone
    _write_some(repo, written, 10, 5)
    repo._env.flush()
    synced = _data(path)
    _write_some(repo, written, 15, 10)
    _recovered_after_power_loss(tmp_path, path, synced, lambda page: page % 3 == 0,
                                written, checkins=26)


def test_power_loss_after_a_logged_rebuild(tmp_path, open_store, no_background_checkpoints):
    """``rebuild`` empties and refills every index: the log replays the emptying too."""
    path, repo = open_store
    written = {}
    _write_some(repo, written, 0, 12)
    stale = b"\x01" * 32  # an index entry rebuild drops: it must stay dropped
    repo._env.write(lambda txn: txn.put(stale, b"", db=repo._env.db["phantom"]))
    repo._env.flush()
    synced, offset = _data(path), repo._env.durability.wal.offset
    repo.rebuild()
    assert repo._env.durability.wal.offset > offset  # logged, not checkpointed
    dest = _recovered_after_power_loss(tmp_path, path, synced, lambda page: page % 2 == 1,
                                       written, checkins=13)
    with herofossil.open(dest) as recovered, recovered._env.read() as txn:
        assert txn.get(stale, db=recovered._env.db["phantom"]) is None


def test_writes_the_log_cannot_record_fail_loudly(tmp_path):
    with herofossil.open(str(tmp_path / "store"), create=True) as repo:
        env = repo._env
        with pytest.raises(NotImplementedError):
            env.write(lambda txn: txn.cursor(env.db["meta"]).put(b"k", b"v"))
        with pytest.raises(AttributeError):
            env.write(lambda txn: txn.replace(b"k", b"v", db=env.db["meta"]))
        assert repo.meta_get("x", "k") is None


def test_stopping_checkpoints_while_holding_the_write_lock_does_not_hang(tmp_path):
    """``compact`` stops the background checkpoints with the write lock held: one waiting
    for that lock gives up instead of deadlocking."""
    import threading

    with herofossil.open(str(tmp_path / "store"), create=True) as repo:
        repo.write("a", b"1")
        durable = repo._env.durability
        with repo._env.write_lock:
            durable.logged = durability.WAL_COMMITS
            durable._kick()  # the thread now waits for the lock this test holds
            time.sleep(0.1)
            stopper = threading.Thread(target=durable.stop)
            stopper.start()
            stopper.join(10)
            assert not stopper.is_alive()
        assert durable.background == 0
        repo.compact()  # which does the same
        assert repo.read("a") == b"1"


def test_reopening_after_a_clean_close_replays_nothing(tmp_path):
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        for i in range(5):
            repo.write(f"f{i}", b"%d" % i)
    with herofossil.open(path) as repo:
        assert repo._env.checkpoints == 0
        assert repo.read("f4") == b"4"


def test_a_process_that_exits_without_closing_checkpoints_at_exit(tmp_path):
    path = str(tmp_path / "store")
    herofossil.open(path, create=True).close()
    code = "import sys, herofossil\nherofossil.open(sys.argv[1]).write('a.txt', b'kept')\n"
    subprocess.run([sys.executable, "-c", code, path], check=True)
    with herofossil.open(path) as repo:
        assert repo._env.checkpoints == 0  # nothing to replay
        assert repo.read("a.txt") == b"kept"


@pytest.mark.parametrize("owner", [True, False], ids=["appending", "checkpointing"])
def test_a_full_disk_fails_the_write_and_loses_nothing(tmp_path, monkeypatch, owner):
    """ENOSPC (injected: a full disk cannot be made here without mounting one) while the
    log or the checkpoint is written: a clear error, nothing of that write, the rest intact."""
    import errno

    from herofossil.store import wal

    path = str(tmp_path / "store")
    repo = herofossil.open(path, create=True)
    try:
        repo.write("kept.txt", b"kept")
        if not owner:
            repo._env.durability.token = None  # as if another process had written since
        real_pwrite = wal.os.pwrite

        def full(fd, data, offset):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(wal.os, "pwrite", full)
        with pytest.raises(herofossil.StoreError, match="No space left"):
            repo.write("lost.txt", b"lost")
        monkeypatch.setattr(wal.os, "pwrite", real_pwrite)
        assert not repo.exists("lost.txt")
        repo.write("after.txt", b"after")
        assert repo.read("kept.txt") == b"kept"
        assert repo.verify().ok
    finally:
        repo.close()
    with herofossil.open(path) as repo:
        assert {e.path for e in repo.walk()} == {"kept.txt", "after.txt"}
        assert len(repo.log()) == 3


def test_a_large_write_is_checkpointed_instead_of_logged(tmp_path):
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        repo.write("small", b"x")
        before = repo._env.checkpoints
        log = repo._env.durability.wal
        assert log.offset > 0
        repo.write("big.bin", os.urandom(durability.WAL_MAX_RECORD + 1000))
        assert repo._env.checkpoints == before + 1
        assert log.offset == 0  # restarted by the checkpoint, the big write not in it


_WRITER = (
    "import sys, herofossil\n"
    "r = herofossil.open(sys.argv[1])\n"
    "for i in range(int(sys.argv[3])):\n"
    "    r.write(f'{sys.argv[2]}/f{i}', b'%d' % i)\n"
    "    print(i, flush=True)\n"
    "r.close()\n"
)


def _writer(path: str, folder: str, count: int) -> subprocess.Popen:
    """A process writing ``folder/f0`` .. ``f{count-1}``, printing each i once it returned."""
    return subprocess.Popen([sys.executable, "-c", _WRITER, path, folder, str(count)],
                            stdout=subprocess.PIPE, text=True)


def test_killed_writer_loses_no_acknowledged_write(tmp_path):
    path = str(tmp_path / "store")
    herofossil.open(path, create=True).close()
    child = _writer(path, "d", 10**6)
    try:
        acked = [int(child.stdout.readline()) for _ in range(60)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with herofossil.open(path) as repo:
        for i in acked:
            assert repo.read(f"d/f{i}") == b"%d" % i
        assert repo.verify().ok


def test_two_processes_take_turns_owning_the_log(tmp_path, no_background_checkpoints):
    path = str(tmp_path / "store")
    code = (
        "import sys, herofossil\n"
        "r = herofossil.open(sys.argv[1])\n"
        "for line in sys.stdin:\n"
        "    r.write(line.strip(), b'child')\n"
        "    print('ok', flush=True)\n"
    )
    with herofossil.open(path, create=True) as repo:
        child = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            for i in range(4):
                repo.write(f"parent{i}", b"parent")
                child.stdin.write(f"child{i}\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "ok"
            assert repo._env.checkpoints == 4  # took the log back after each child write
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        names = {e.path for e in repo.walk()}
        assert names == {f"parent{i}" for i in range(4)} | {f"child{i}" for i in range(4)}
    with herofossil.open(path) as repo:
        assert repo.verify().ok
        assert len(repo.log()) == 9


def test_processes_writing_at_once_lose_no_acknowledged_write(tmp_path):
    """Three processes write at once (the log changes hands all the time, background
    checkpoints run), two are killed mid-stream: every write any of them saw return is there."""
    path = str(tmp_path / "store")
    herofossil.open(path, create=True).close()
    procs = {name: _writer(path, name, 400) for name in ("a", "b", "c")}
    acked = {name: [] for name in procs}
    try:
        for _ in range(150):
            for name in ("a", "b"):
                acked[name].append(int(procs[name].stdout.readline()))
        for name in ("a", "b"):
            procs[name].send_signal(signal.SIGKILL)
        acked["c"] = [int(line) for line in procs["c"].stdout]
        assert procs["c"].wait() == 0
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert len(acked["c"]) == 400
    with herofossil.open(path) as repo:
        for name, done in acked.items():
            for i in done:
                assert repo.read(f"{name}/f{i}") == b"%d" % i
        assert repo.verify().ok

