"""The LMDB environment of a store: its tables, transactions and map growth.

Tables (named LMDB databases):

global state (the repository itself)
    ``blob``     artifact id (32-byte SHA3-256) -> stored form (see ``blobs``)

local state (``rebuild`` regenerates it from ``blob``)
    ``seq``      insert sequence (8-byte big-endian) -> artifact id
    ``phantom``  id of an artifact referenced but not yet present -> b""
    ``chain``    id of a whole-stored artifact -> longest delta chain ending on it
    ``deps``     artifact id -> how many stored deltas use it as their base
    ``checkin``  check-in id -> its metadata (a compact binary record, see ``checkins``)
    ``cseq``     check-in sequence (8-byte big-endian) -> check-in id
    ``child``    parent id + child id -> b""
    ``leaf``     branch + NUL + check-in id -> b""
    ``tip``      branch -> check-in id whose tree ``tree`` indexes
    ``tree``     branch + NUL + dir + NUL + name -> entry (see ``tree``)
    ``pathlog``  path + NUL + check-in sequence -> b"" (``cseq`` names the check-in)
    ``tag``      tag name + NUL + check-in id -> tag value (sym-tags in force)
    ``info``     counters and settings

outside the versioned tree, kept by ``rebuild``
    ``meta``     namespaced key -> value (WebDAV dead properties and locks, ...)

LMDB commits without syncing; a write is durable when its call returns
because its changes are in the synced write-ahead log (files ``wal`` and
``checkpoint`` next to ``data.mdb``; see ``wal`` and ``durability``).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import threading
from collections.abc import Callable
from typing import TypeVar

import lmdb

from herofossil.errors import StoreError
from herofossil.store.durability import WAL_MAX_RECORD, Durability, restore_checkpoint
from herofossil.store.txnlog import LoggedTxn
from herofossil.store.wal import WriteAheadLog

GLOBAL_TABLES = ("blob",)
LOCAL_TABLES = (
    "seq",
    "phantom",
    "chain",
    "deps",
    "checkin",
    "cseq",
    "child",
    "leaf",
    "tip",
    "tree",
    "pathlog",
    "tag",
    "info",
)
KEPT_TABLES = ("meta",)
ALL_TABLES = GLOBAL_TABLES + LOCAL_TABLES + KEPT_TABLES

DEFAULT_MAP_SIZE = 1 << 30
MARKER = "herofossil-store"

T = TypeVar("T")

_open_envs: dict[str, StoreEnv] = {}
_open_lock = threading.Lock()


class _WriteJob:
    """One ``StoreEnv.write`` call waiting in (or settled by) a group commit."""

    __slots__ = ("fn", "result", "error", "done")

    def __init__(self, fn: Callable[[lmdb.Transaction], T]):
        self.fn = fn
        self.result = None
        self.error: BaseException | None = None
        self.done = False

    def run_nested(self, env: lmdb.Environment, parent: lmdb.Transaction,
                   log: LoggedTxn) -> None:
        """Run in a transaction nested in ``parent``: kept on success (its changes added
        to ``log``), rolled back on error."""
        child = env.begin(write=True, parent=parent)
        logged = log.child(child)
        try:
            self.result = self.fn(logged)
            child.commit()
        except lmdb.MapFullError:
            child.abort()
            raise
        except Exception as exc:
            child.abort()
            self.error = exc
            return
        log.adopt(logged)


class StoreEnv:
    """One LMDB environment with the store's tables; shared by every Repo of a process."""

    def __init__(self, path: str, map_size: int):
        self.path = path
        self.map_size = map_size
        # Every process holds a shared flock on the marker while it has the store
        # open; ``compact`` needs it exclusive (no other user) to swap the file.
        self._lockfd = os.open(os.path.join(path, MARKER), os.O_RDONLY)
        try:  # alone with the store: the moment to recover it (see ``_open_lmdb``)
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            fcntl.flock(self._lockfd, fcntl.LOCK_SH)
            alone = False
        self.write_lock = threading.Lock()
        self._queued = threading.Condition()
        self._queue: list[_WriteJob] = []
        self._leading = False
        self.commits = 0  # durable write transactions this process has committed
        self.db: dict = {}
        self.durability: Durability | None = None
        self.datafd = -1
        try:
            self._open_lmdb(recover=alone)
        except BaseException:
            self._close_files()
            raise
        self.refs = 0

    def _open_lmdb(self, recover: bool = False) -> None:
        """Open LMDB. ``recover`` (the marker locked exclusive: no other process has
        the store open): first put the store back at its checkpoint if later commits
        may not be on disk, and replay the log (see ``wal``); then share the lock."""
        data = os.path.join(self.path, "data.mdb")
        try:
            self.datafd = os.open(data, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror}") from exc
        # LMDB's page size is the OS's: the log knows it before LMDB is open.
        wal = WriteAheadLog(self.path, os.sysconf("SC_PAGE_SIZE"))
        try:
            try:
                restored = restore_checkpoint(wal, self.datafd) if recover else None
                self._open_lmdb_env()
            except BaseException:
                wal.close()
                raise
            self.durability = Durability(self, wal)
            if restored is not None:
                self.durability.replay(restored, [self.db[name] for name in ALL_TABLES])
        finally:
            if recover:
                fcntl.flock(self._lockfd, fcntl.LOCK_SH)
        if recover and os.stat(data).st_ino != os.fstat(self.datafd).st_ino:
            # A compact slipped in while the lock changed hands: open its file.
            self._close_lmdb()
            self._open_lmdb()

    def _open_lmdb_env(self) -> None:
        try:
            self.env = lmdb.open(
                self.path,
                map_size=self.map_size,
                max_dbs=len(ALL_TABLES) + 2,
                max_readers=256,
                subdir=True,
                create=False,
                readahead=False,
                sync=False,  # durability comes from the write-ahead log and checkpoints
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self.env.reader_check()
        with self.begin_write() as txn:
            # Updated in place: every Repo of this process holds this same dict.
            self.db.update({name: self.env.open_db(name.encode(), txn=txn)
                            for name in ALL_TABLES})
        self._tables = {self.db[name]: i for i, name in enumerate(ALL_TABLES)}

    def _close_lmdb(self) -> None:
        self.durability.stop()
        self.durability.close()
        self.env.close()
        os.close(self.datafd)
        self.datafd = -1

    def read(self) -> lmdb.Transaction:
        """A read-only snapshot transaction (use as a context manager)."""
        try:
            return self.env.begin(buffers=False)
        except lmdb.MapResizedError:
            self._adopt_map_size()
            return self.env.begin(buffers=False)

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn(txn)`` in a durable write transaction; grow the map when full.

        Group commit: writes that threads of this process submit while another
        write is committing are run together, each in its own nested
        transaction (so one that raises is rolled back alone), and made durable
        by a single commit; every call returns (or raises) only once its own
        changes are durable, exactly as when it runs alone. ``fn`` may run more
        than once (after a map growth), so it must not have side effects
        outside the transaction before it returns.
        """
        job = _WriteJob(fn)
        with self._queued:
            self._queue.append(job)
            try:
                while not job.done and self._leading:
                    self._queued.wait()
            except BaseException:  # interrupted while waiting: withdraw if still queued
                if job in self._queue:
                    self._queue.remove(job)
                raise
            if not job.done:  # lead: run everything queued so far
                self._leading = True
                batch, self._queue = self._queue, []
        led = not job.done
        if led:
            try:
                with self.write_lock:
                    self._run_batch(batch)
            finally:
                with self._queued:
                    self._leading = False
                    self._queued.notify_all()
        if job.error is not None:
            if not led and not isinstance(job.error, Exception):  # e.g. Ctrl-C in the leader
                raise StoreError("the write was interrupted in another thread; nothing was "
                                 "written: retry it") from job.error
            raise job.error
        return job.result

    def _run_batch(self, batch: list[_WriteJob]) -> None:
        """Run ``batch`` in one write transaction and one durable commit; settle each job."""
        try:
            while True:
                txn = self.begin_write()
                try:
                    log = LoggedTxn(txn, self._tables, WAL_MAX_RECORD)
                    if len(batch) == 1:
                        batch[0].result = batch[0].fn(log)
                    else:
                        for job in batch:
                            job.run_nested(self.env, txn, log)
                    self.durability.commit(txn, log.ops)
                    self.commits += 1
                    break
                except lmdb.MapFullError:
                    txn.abort()
                    for job in batch:
                        job.result = job.error = None
                    self.grow()
                except BaseException:
                    txn.abort()
                    raise
        except BaseException as exc:  # nothing of the batch was written
            for job in batch:
                job.result, job.error = None, exc
        finally:
            for job in batch:
                job.done = True

    @property
    def checkpoints(self) -> int:
        """Checkpoints this process has written since the store was opened."""
        return self.durability.checkpoints

    def begin_write(self) -> lmdb.Transaction:
        """An LMDB write transaction (LMDB's writer lock), adopting a grown map."""
        while True:
            try:
                return self.env.begin(write=True)
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def grow(self) -> None:
        # py-lmdb ends every transaction of the process on a resize, the checkpoint's
        # pin too: ``Durability.owner`` notices, and the next commit checkpoints first.
        size = self.env.info()["map_size"]
        self.env.set_mapsize(size * 2)

    def _adopt_map_size(self) -> None:
        # Another process grew the map: re-reading the size from the file adopts it.
        self.env.set_mapsize(0)

    def disk_size(self) -> int:
        """Bytes the store occupies on disk (``du``, not the sparse map size)."""
        total = 0
        for name in os.listdir(self.path):
            st = os.stat(os.path.join(self.path, name))
            total += st.st_blocks * 512
        return total

    def compact(self) -> tuple[int, int]:
        """Rewrite the store densely; returns (bytes on disk before, after).

        Every table is copied in key order with LMDB's append mode, so the copy
        has no free pages and full leaf pages (random-key inserts leave pages
        about two thirds full). Only when no other process has the store open
        (else ``StoreError``), and no transaction of this process may be open.
        """
        with self.write_lock:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError("the store is open in another process: compact it when "
                                 "nothing else uses it") from exc
            try:
                before = self.disk_size()
                tmpdir = os.path.join(self.path, "compact.tmp")
                shutil.rmtree(tmpdir, ignore_errors=True)
                self._dense_copy(tmpdir)
                # The old file, synced, needs no log; the log's checkpoints describe it only.
                self.durability.stop()
                self.env.sync(True)
                self.durability.forget()
                self._close_lmdb()
                os.replace(os.path.join(tmpdir, "data.mdb"), os.path.join(self.path, "data.mdb"))
                shutil.rmtree(tmpdir, ignore_errors=True)
                dirfd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(dirfd)
                finally:
                    os.close(dirfd)
                self._open_lmdb(recover=True)
                return before, self.disk_size()
            finally:
                fcntl.flock(self._lockfd, fcntl.LOCK_SH)

    def _dense_copy(self, dest: str) -> None:
        size = max(self.env.info()["map_size"], self.map_size)
        out = lmdb.open(dest, map_size=size, max_dbs=len(ALL_TABLES) + 2, subdir=True,
                        sync=False, metasync=False)
        try:
            with self.env.begin() as src, out.begin(write=True) as dst:
                for name in ALL_TABLES:
                    target = out.open_db(name.encode(), txn=dst)
                    cur = dst.cursor(db=target)
                    cur.putmulti(src.cursor(db=self.db[name]).iternext(), append=True)
            out.sync(True)
        finally:
            out.close()

    def flush(self) -> None:
        """Checkpoint what this process logged, so the next open has nothing to replay."""
        self.durability.flush()

    def close(self) -> None:
        with _open_lock:
            self.refs -= 1
            if self.refs <= 0:
                _open_envs.pop(self.path, None)
                try:
                    self.durability.stop()
                    self.flush()
                finally:
                    with self.write_lock:
                        self._close_lmdb()
                    self._close_files()

    def _close_files(self) -> None:
        if self.datafd >= 0:
            os.close(self.datafd)
            self.datafd = -1
        os.close(self._lockfd)


def _flush_open_envs() -> None:
    """At exit: checkpoint the stores still open, so their next open replays nothing."""
    for env in list(_open_envs.values()):
        try:
            env.durability.flush(timeout=5)
        except Exception:  # noqa: BLE001 - the log keeps every write; replay will do
            pass


atexit.register(_flush_open_envs)


def is_store(path: str) -> bool:
    """True when ``path`` is a directory holding an LMDB store made by herofossil."""
    return os.path.isfile(os.path.join(path, "data.mdb")) and os.path.isfile(
        os.path.join(path, MARKER)
    )


def open_env(path: str, *, create: bool = False, map_size: int = DEFAULT_MAP_SIZE) -> StoreEnv:
    """Open (or with ``create`` make) the store environment at ``path``."""
    path = os.path.abspath(path)
    with _open_lock:
        env = _open_envs.get(path)
        if env is None:
            if not is_store(path):
                if not create:
                    raise StoreError(
                        f"no herofossil store at {path}: create one with 'herofossil init'"
                    )
                _create(path, map_size)
            env = StoreEnv(path, map_size)
            _open_envs[path] = env
        env.refs += 1
        return env


def _create(path: str, map_size: int) -> None:
    if os.path.exists(path) and os.listdir(path) and not is_store(path):
        raise StoreError(f"cannot create a store in {path}: the directory is not empty")
    try:
        os.makedirs(path, exist_ok=True)
        env = lmdb.open(path, map_size=map_size, max_dbs=len(ALL_TABLES) + 2, subdir=True)
        with env.begin(write=True) as txn:
            for name in ALL_TABLES:
                env.open_db(name.encode(), txn=txn)
        env.close()
        with open(os.path.join(path, MARKER), "w") as f:
            f.write("This directory is a herofossil store (LMDB). Use the herofossil command.\n")
    except OSError as exc:
        raise StoreError(f"cannot create a store in {path}: {exc.strerror}") from exc
