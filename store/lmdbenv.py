"""The LMDB environment of a store: opening it, its transactions and map growth.

The tables are in ``schema``.

A write is durable when LMDB's own synced commit returns, and by nothing
else (see ``StoreEnv.write``). The folder holds LMDB's ``data.mdb`` and
``lock.mdb`` and the marker file, which names the store's format.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import lmdb

from herofossil.errors import IntegrityError, StoreError
from herofossil.store import legacywal
from herofossil.store.schema import ALL_TABLES, LATER_TABLES, lmdb_open

# LMDB reserves address space for the map, not disk: the file grows with the data.
# A map that never needs to grow spares every thread the wait of a resize (see
# ``MapGate``); 64 GiB leaves room for ~2,000 stores open in one 64-bit process.
DEFAULT_MAP_SIZE = (64 << 30) if sys.maxsize > 2**32 else (1 << 30)
MARKER = "herofossil-store"
# Format 1: what a store is made as. 2: it may hold stored forms compressed with a
# dictionary (``packing``), which a release reading only format 1 would take for damage;
# ``compact`` marks a store so when it packs it. 3: its ``blob`` table may hold references
# into segments of packed history (``blobs.SEGMENT``), its path log and numbered logs runs
# (``checkins.pathlog_runs``, ``sequences.runs``), which a release reading formats 1-2
# would take for damage or misread; ``compact`` marks a store so when it makes any.
# 4: its segments may be solid (``blobs.SOLID``: compressed together), which a release
# reading formats 1-3 would take for forms; ``compact`` marks a store so when it fills any.
FORMAT = 1
PACKED_FORMAT = 2
PACKED_HISTORY_FORMAT = 3
SOLID_HISTORY_FORMAT = 4
READ_FORMATS = (FORMAT, PACKED_FORMAT, PACKED_HISTORY_FORMAT, SOLID_HISTORY_FORMAT)
_MARKER_PREFIX = "herofossil store format "
_MARKER_TEXT = f"{_MARKER_PREFIX}{{}}\n" \
    "This directory is a herofossil store (LMDB). Use the herofossil command.\n"
# What release 0.1 wrote (the same format, before the marker named it).
_LEGACY_MARKER = "This directory is a herofossil store (LMDB). Use the herofossil command.\n"
# How long a map resize waits for this process's open snapshots to end.
RESIZE_WAIT = 10.0

T = TypeVar("T")

_open_envs: dict[str, StoreEnv] = {}
_open_lock = threading.Lock()
_checks = threading.local()  # .pending: the running write function's pre-commit checks


def before_commit(check: Callable[[], None]) -> bool:
    """Run ``check`` when the write function running in this thread returns, before its
    changes are kept (its exception fails the write); False outside a write."""
    pending = getattr(_checks, "pending", None)
    if pending is None:
        return False
    pending.append(check)
    return True


def _run_checked(fn: Callable[[lmdb.Transaction], T], txn: lmdb.Transaction) -> T:
    """``fn(txn)``, then the checks it registered with ``before_commit``."""
    outer = getattr(_checks, "pending", None)
    _checks.pending = checks = []
    try:
        result = fn(txn)
        for check in checks:
            check()
        return result
    finally:
        _checks.pending = outer


class MapGate:
    """Lets the LMDB map be resized only while no transaction of this process is open.

    py-lmdb ends every transaction and cursor of the environment on a resize,
    and LMDB remaps the file, so a value still held from the old map would
    point nowhere. Every transaction is opened through ``enter`` and closed
    through ``leave``; ``exclusive`` waits until none is open (new ones wait
    meanwhile, except in a thread that already holds one, which could not
    otherwise finish). Entering and leaving cost a lock and a thread-local
    counter (measured: 0.5 us, against 2.4 us with a condition variable).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._local = threading.local()  # .box: [transactions this thread has open]
        self._count = 0
        self._resizing = False

    def _held(self) -> list[int]:
        """This thread's count of open transactions, in a box that any thread can update
        (a snapshot may be closed by another thread than the one that opened it)."""
        box = getattr(self._local, "box", None)
        if box is None:
            box = self._local.box = [0]
        return box

    def enter(self) -> list[int]:
        """Count a transaction about to open; returns the token to pass to ``leave``."""
        box = self._held()
        with self._lock:
            if box[0] == 0:
                while self._resizing:
                    self._cond.wait()
            self._count += 1
            box[0] += 1
        return box

    def leave(self, token: list[int]) -> None:
        """Count a transaction closed (``token``: what ``enter`` returned)."""
        with self._lock:
            token[0] -= 1
            self._count -= 1
            if self._resizing and not self._count:
                self._cond.notify_all()

    def exclusive(self, action: Callable[[], None], what: str) -> None:
        """Run ``action`` while no transaction of this process is open."""
        if self._held()[0]:
            raise StoreError(f"cannot {what} while this thread holds a read snapshot "
                             "of the store: close it and retry; nothing was written")
        with self._lock:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            try:
                deadline = time.monotonic() + RESIZE_WAIT
                while self._count:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StoreError(
                            f"cannot {what}: {self._count} read snapshot(s) of the store stayed "
                            f"open for {RESIZE_WAIT:.0f} s in this process; nothing was written: "
                            "retry")
                    self._cond.wait(left)
            except BaseException:
                self._resizing = False
                self._cond.notify_all()
                raise
        try:  # without the lock: new transactions wait on the flag meanwhile
            action()
        finally:
            with self._lock:
                self._resizing = False
                self._cond.notify_all()


class Snapshot:
    """A read-only transaction, counted by the map gate (use as a context manager)."""

    __slots__ = ("txn", "_gate", "_owner")

    def __init__(self, env: StoreEnv, buffers: bool = False):
        self._gate = env.gate
        self._owner = env.gate.enter()
        try:
            self.txn = env._begin(buffers=buffers)
        except BaseException:
            self._gate.leave(self._owner)
            raise

    def __enter__(self) -> lmdb.Transaction:
        return self.txn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None and issubclass(exc_type, lmdb.Error):
            # Reads fail this way only on a damaged data file (a bug aside).
            raise IntegrityError(f"the store's data file is damaged ({exc}): run "
                                 "'herofossil verify' for a report") from exc

    def close(self) -> None:
        """End the snapshot (idempotent)."""
        if self._owner is not None:
            owner, self._owner = self._owner, None
            try:
                self.txn.abort()
            finally:
                self._gate.leave(owner)


class _WriteJob:
    """One ``StoreEnv.write`` call waiting in (or settled by) a group commit."""

    __slots__ = ("fn", "result", "error", "done")

    def __init__(self, fn: Callable[[lmdb.Transaction], T]):
        self.fn = fn
        self.result = None
        self.error: BaseException | None = None
        self.done = False

    def run_nested(self, env: lmdb.Environment, parent: lmdb.Transaction) -> None:
        """Run in a transaction nested in ``parent``: kept on success, rolled back on error."""
        child = env.begin(write=True, parent=parent)
        try:
            self.result = _run_checked(self.fn, child)
            child.commit()
        except lmdb.MapFullError:
            child.abort()
            raise
        except lmdb.Error as exc:
            child.abort()
            self.error = _store_error(exc, "write")
        except Exception as exc:
            child.abort()
            self.error = exc


def _store_error(exc: lmdb.Error, what: str, path: str | None = None) -> StoreError:
    """A StoreError that says which LMDB step failed and that nothing was written."""
    reason = str(exc).partition(": ")[2] or str(exc)
    if path is not None and "Input/output error" in reason:
        reason += _space_hint(path)
    err = StoreError(f"the store could not {what}: {reason}; nothing of this write was kept",
                     store=path)
    err.__cause__ = exc
    return err


def _space_hint(path: str) -> str:
    """Why a write may have failed: LMDB reports a short write (full disk, file-size
    limit) as an I/O error."""
    try:
        st = os.statvfs(path)
        if st.f_bavail * st.f_frsize < (64 << 20):
            return f" (the disk holding the store has {st.f_bavail * st.f_frsize >> 20} MiB free)"
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return f" (this process may write files of at most {limit} bytes)"
    except (OSError, ValueError):
        pass
    return ""


# What LMDB raises for a damaged data file (as opposed to a failed write: full disk, I/O
# error, file-size limit).
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadValsizeError,
           lmdb.InvalidError, lmdb.PanicError, lmdb.VersionMismatchError)


@contextlib.contextmanager
def _copy_errors(path: str):
    """A failed write of ``compact``'s copy as ``StoreError`` (a damaged read of the store
    passes on: its snapshot names it)."""
    try:
        yield
    except _DAMAGE:
        raise
    except lmdb.Error as exc:
        reason = (str(exc).partition(": ")[2] or str(exc)) + _space_hint(path)
        raise StoreError(f"cannot compact {path}: writing its copy failed: {reason}; a "
                         "compact needs free space for a whole copy of the store; nothing "
                         "was changed", store=path) from exc


def _counted(items, progress, stage: str, total: int, start: int = 0):
    """``items``, calling ``progress(stage, done, total)`` every 1,024 of them (``done``
    counted from ``start``)."""
    for n, item in enumerate(items, start + 1):
        if n % 1024 == 0:
            progress(stage, n, total)
        yield item


class StoreEnv:
    """One LMDB environment with the store's tables; shared by every Repo of a process."""

    def __init__(self, path: str, map_size: int, readonly: bool = False):
        self.path = path
        self.map_size = map_size
        self.readonly = readonly
        self.locked_readers = True  # False: opened without LMDB's reader table (see below)
        # Every process holds a shared flock on the marker while it has the store
        # open; ``compact`` needs it exclusive (no other user) to swap the file.
        self._lockfd = os.open(os.path.join(path, MARKER), os.O_RDONLY)
        self.gate = MapGate()
        self.write_lock = threading.Lock()
        self._later_lock = threading.Lock()  # see ``_later_table``
        self._queued = threading.Condition()
        self._queue: list[_WriteJob] = []
        self._leading = False
        self.commits = 0  # durable write transactions this process has committed
        self._format = FORMAT  # the format the marker names (only ever raised)
        self.db: dict = {}
        self.env = None
        try:
            self._format = _check_marker(path)
            if legacywal.present(path):
                if readonly:
                    raise StoreError(f"{path} still holds the write-ahead log of herofossil 0.1: "
                                     "open it once where you may write to it")
                self._settle_legacy_log()
            fcntl.flock(self._lockfd, fcntl.LOCK_SH)
            self._open_lmdb()
            from herofossil.store import blobs

            blobs.add_dictionary_source(self._dictionary)
        except BaseException:
            if self.env is not None:
                self.env.close()
            os.close(self._lockfd)
            raise
        self.refs = 0

    def _settle_legacy_log(self) -> None:
        """Release 0.1's log files: settle them alone with the store (``legacywal``)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not legacywal.present(self.path):
                    return  # settled by the process that had the store open
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.path} is open in a process of herofossil 0.1 (it keeps a "
                        "write-ahead log): stop that process, then open the store again"
                    ) from None
                time.sleep(0.05)
        try:
            if legacywal.present(self.path):
                legacywal.settle(self.path, os.sysconf("SC_PAGE_SIZE"), self._replay_legacy)
        finally:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    def _replay_legacy(self, ops: list) -> None:
        self._open_lmdb()
        handles = [self.db[name] for name in legacywal.TABLES]

        def apply(txn):
            for op, table, key, value in ops:
                if op == legacywal.PUT:
                    txn.put(key, value, db=handles[table])
                elif op == legacywal.DELETE:
                    txn.delete(key, db=handles[table])
                elif op == legacywal.CLEAR:
                    txn.drop(handles[table], delete=False)
                else:
                    raise StoreError(f"{self.path}: unknown operation {op} in 0.1's log; "
                                     "nothing was changed")

        self.write(apply)
        self._close_lmdb()

    def _open_lmdb(self) -> None:
        data = os.path.join(self.path, "data.mdb")
        try:
            size = os.path.getsize(data)
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc.strerror}") from exc
        if size == 0:  # LMDB would take it for a new, empty store
            raise IntegrityError(f"{data} is empty: the store is damaged; restore it from a "
                                 "backup or a peer")
        options = dict(max_readers=256, create=False, readahead=False, readonly=self.readonly)
        try:
            try:
                self.env = self._open_adopting(options)
            except lmdb.Error as exc:
                if not (self.readonly and _denied(exc)):
                    raise
                # A store this user may only read: LMDB cannot record this reader in
                # lock.mdb, so a writer elsewhere could reuse pages it reads.
                self.env = lmdb_open(self.path, self.map_size, lock=False, **options)
                self.locked_readers = False
        except lmdb.Error as exc:
            if _denied(exc):
                reason = str(exc).rpartition(": ")[2]
                raise StoreError(f"cannot open store {self.path} for writing: {reason} (reading "
                                 "works: cat, ls, log, diff, stats, verify)") from exc
            raise IntegrityError(f"cannot open store {self.path}: {exc}") from exc
        try:
            psize = self.env.stat()["psize"]
            needed = (self.env.info()["last_pgno"] + 1) * psize
            # Measured after LMDB's page count: a commit elsewhere meanwhile only grows it.
            size = os.path.getsize(data)
            if size < needed:
                raise IntegrityError(
                    f"{data} is truncated ({size} of at least {needed} bytes): the store is "
                    "damaged; restore it from a backup or a peer")
            if self.locked_readers:
                self.env.reader_check()
            self._open_tables()
        except BaseException:
            self.env.close()
            self.env = None
            raise

    def _dictionary(self, did: int) -> bytes | None:
        """Dictionary ``did`` from the ``zdict`` table, or None: ``blobs`` asks the open
        stores for one the first time a frame names it (none is loaded at open)."""
        if self.env is None:
            return None
        db = self.db.get("zdict")
        if db is None:
            db = self._later_table("zdict")
        if db is None:
            return None
        try:
            with self.read() as txn:  # the map gate lets a reader that holds it in again
                raw = txn.get(did.to_bytes(4, "big"), db=db)
                return None if raw is None else bytes(raw)
        except (lmdb.Error, IntegrityError):
            return None

    def _open_tables(self) -> None:
        """Open every table. Read-only, this takes no lock (py-lmdb opens a table in a
        read transaction only in a read-only environment); read-write, it takes LMDB's
        writer lock for a moment, as any writer must."""
        try:
            if self.readonly:
                handles = {}
                for name in ALL_TABLES:
                    try:
                        handles[name] = self.env.open_db(name.encode(), create=False)
                    except lmdb.NotFoundError:
                        if name not in LATER_TABLES:
                            raise
            else:
                with self.begin_write() as txn:
                    handles = {name: self.env.open_db(name.encode(), txn=txn)
                               for name in ALL_TABLES}
        except lmdb.NotFoundError as exc:
            raise StoreError(f"store {self.path} lacks a table of this release: open it once "
                             "read-write to add it") from exc
        except lmdb.Error as exc:
            raise IntegrityError(f"cannot open the tables of store {self.path}: {exc}") from exc
        # Updated in place: every Repo of this process holds this same dict.
        self.db.update(handles)

    def _later_table(self, name: str):
        """Table ``name`` of ``LATER_TABLES``, which the store lacked when this process
        opened it read-only (made by an earlier release) and a writer has made since (a
        sync that brought packed forms makes ``zdict``); None while it is still missing."""
        if not self.readonly or name not in LATER_TABLES:
            return None  # a read-write open made every table
        # LMDB opens a table in one transaction of a process at a time: threads of a
        # read-only server may meet the first packed frame together.
        with self._later_lock:
            if name in self.db:
                return self.db[name]
            try:
                handle = self.env.open_db(name.encode(), create=False)
            except lmdb.Error:  # not made yet
                return None
            self.db[name] = handle
            return handle

    def make_writable(self) -> None:
        """Reopen a read-only environment read-write (no transaction may be open)."""
        self._close_lmdb()
        self.readonly = False
        self.locked_readers = True
        self._open_lmdb()

    def _close_lmdb(self) -> None:
        self.env.close()
        self.env = None

    # ---- transactions
    def read(self) -> Snapshot:
        """A read-only snapshot (use as a context manager: ``with env.read() as txn``)."""
        return Snapshot(self)

    def _open_adopting(self, options: dict) -> lmdb.Environment:
        """``lmdb_open``, again when another process grew the map between LMDB reading its
        size and the first transaction of the open (``MDB_MAP_RESIZED``; seen once in CI,
        by the map-growth test): a new open reads the grown size, as ``_begin`` adopts it."""
        for _ in range(3):
            try:
                return lmdb_open(self.path, self.map_size, **options)
            except lmdb.MapResizedError:
                continue
        raise StoreError(f"cannot open store {self.path}: its map kept growing; retry")

    def _begin(self, write: bool = False, buffers: bool = False) -> lmdb.Transaction:
        """Begin a transaction (the caller counted it in the gate); adopts a map that
        another process grew, and reopens LMDB after a fatal error of a commit."""
        for _ in range(3):
            try:
                return self.env.begin(write=write, buffers=buffers)
            except lmdb.MapResizedError:
                self._outside_gate(self._adopt_map_size, "adopt the grown map")
            except lmdb.PanicError:
                self._outside_gate(self._reopen_after_panic, "reopen the store")
            except lmdb.Error as exc:
                raise _store_error(exc, "begin a transaction") from exc
        raise StoreError(f"cannot begin a transaction on store {self.path}: the map kept "
                         "changing; retry")

    def _outside_gate(self, action: Callable[[], None], what: str) -> None:
        """Run ``action`` with the gate exclusive, from a caller that counted itself in."""
        self.gate.leave(self.gate._held())
        try:
            self.gate.exclusive(action, what)
        finally:
            self.gate.enter()

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn(txn)`` in a durable write transaction; grow the map when full.

        The write is durable when LMDB's synced commit returns, and the call
        returns only then. A commit that fails (full disk, I/O error, file
        size limit) raises ``StoreError`` and keeps nothing of the write.

        Group commit: writes that threads of this process submit while another
        write is committing are run together, each in its own nested
        transaction (so one that raises is rolled back alone), and made durable
        by a single commit; every call returns (or raises) only once its own
        changes are durable, exactly as when it runs alone. ``fn`` may run more
        than once (after a map growth), so it must not have side effects
        outside the transaction before it returns.
        """
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only; nothing was written")
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
                owner = self.gate.enter()
                try:
                    full = self._commit_batch(batch)
                finally:
                    self.gate.leave(owner)
                if not full:
                    break
                for job in batch:
                    job.result = job.error = None
                self.grow()
        except BaseException as exc:  # nothing of the batch was written
            for job in batch:
                job.result, job.error = None, exc
        finally:
            for job in batch:
                job.done = True

    def _commit_batch(self, batch: list[_WriteJob]) -> bool:
        """One attempt at the batch; True when the map is full (nothing was written)."""
        txn = self._begin(write=True)
        try:
            if len(batch) == 1:
                batch[0].result = _run_checked(batch[0].fn, txn)
            else:
                for job in batch:
                    job.run_nested(self.env, txn)
        except lmdb.MapFullError:
            txn.abort()
            return True
        except lmdb.Error as exc:
            txn.abort()
            raise _store_error(exc, "write") from exc
        except BaseException:
            txn.abort()
            raise
        try:
            txn.commit()
        except lmdb.MapFullError:
            return True
        except lmdb.Error as exc:  # LMDB has ended the transaction: nothing was written
            raise _store_error(exc, "commit", self.path) from exc
        self.commits += 1
        return False

    def begin_write(self) -> lmdb.Transaction:
        """A raw LMDB write transaction (LMDB's writer lock) for opening tables; store
        writes go through ``write``."""
        while True:
            try:
                return self.env.begin(write=True)
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def grow(self) -> None:
        """Double the map (waits until no transaction of this process is open)."""
        def double():
            size = self.env.info()["map_size"]
            try:
                self.env.set_mapsize(size * 2)
            except lmdb.Error as exc:
                raise _store_error(exc, f"grow its map beyond {size} bytes") from exc

        self.gate.exclusive(double, "grow the store's map")

    def _adopt_map_size(self) -> None:
        # Another process grew the map: re-reading the size from the file adopts it.
        self.env.set_mapsize(0)

    def _reopen_after_panic(self) -> None:
        # A commit whose meta page could not be written leaves LMDB's environment
        # unusable (MDB_PANIC) until it is opened again; the file holds the last
        # good commit.
        try:
            self.env.begin().abort()
            return  # another thread reopened it already
        except lmdb.PanicError:
            pass
        self._close_lmdb()
        self._open_lmdb()

    def disk_size(self) -> int:
        """Bytes the store occupies on disk (``du``, not the sparse map size)."""
        total = 0
        for name in os.listdir(self.path):
            st = os.stat(os.path.join(self.path, name))
            total += st.st_blocks * 512
        return total

    def compact(self, pack: bool = True, progress=None) -> tuple[int, int]:
        """Rewrite the store densely; returns (bytes on disk before, after); ``progress``:
        called (stage, done, total) along the way.

        Every table is copied in key order with LMDB's append mode, so the copy
        has no free pages and full leaf pages (random-key inserts leave pages
        about two thirds full); parts of large artifacts that none names are
        left out (``chunks``); with ``pack``, stored forms are compressed with a
        dictionary trained on them (``packing``). Only when no other process has
        the store open (else ``StoreError``), and no transaction of this process
        may be open.

        Another process may open the store and read while the copy is made (it never
        waits for a compact); the store is then in use and the copy is dropped, nothing
        changed (``StoreError``). Only the swap of the files excludes other opens.
        """
        from herofossil.store.reports import quiet

        with self.write_lock:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError("the store is open in another process: compact it when "
                                 "nothing else uses it") from exc
            tmpdir = os.path.join(self.path, "compact.tmp")
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_SH)  # others may open it meanwhile
                before = self.disk_size()
                shutil.rmtree(tmpdir, ignore_errors=True)
                fmt, copied = self._dense_copy(tmpdir, pack, progress or quiet)
                try:
                    fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise StoreError("another process opened the store during the compact: "
                                     "nothing was changed; compact it when nothing else uses "
                                     "it") from exc
                if self.env.info()["last_txnid"] != copied:  # one opened, wrote and left
                    raise StoreError("another process wrote to the store during the compact: "
                                     "nothing was changed; compact it again")
                self._mark(fmt)  # before any packed form, segment or run is in
                self.gate.exclusive(lambda: self._swap_in(tmpdir), "compact the store")
                return before, self.disk_size()
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
                fcntl.flock(self._lockfd, fcntl.LOCK_SH)

    def mark_packed(self) -> None:
        """Mark the store's format as one that may hold packed forms (``PACKED_FORMAT``),
        before the first is stored (a sync can bring them)."""
        self._mark(PACKED_FORMAT)

    def _mark(self, fmt: int) -> None:
        if self._format < fmt:
            _mark_format(self.path, fmt)
            self._format = fmt

    def _swap_in(self, tmpdir: str) -> None:
        """Replace the data file by the synced copy in ``tmpdir`` and open it."""
        self._close_lmdb()
        os.replace(os.path.join(tmpdir, "data.mdb"), os.path.join(self.path, "data.mdb"))
        shutil.rmtree(tmpdir, ignore_errors=True)
        dirfd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self._open_lmdb()

    def _dense_copy(self, dest: str, pack: bool, progress) -> tuple[int, int]:
        """Copy the store into ``dest``: (the format the copy needs: ``FORMAT``,
        ``PACKED_FORMAT`` when forms there are packed, ``PACKED_HISTORY_FORMAT`` when local
        tables are in runs, ``SOLID_HISTORY_FORMAT`` when forms are in segments; the id of
        the transaction copied)."""
        from herofossil.store import blobs, checkins, chunks, packing, sequences

        size = max(self.env.info()["map_size"], self.map_size)
        # No lock file: the copy is this compact's alone, and LMDB writes its lock file
        # through a mapping, which on a full disk kills the process with SIGBUS.
        with _copy_errors(self.path):
            out = lmdb_open(dest, size, sync=False, metasync=False, lock=False)
        try:
            # ``_copy_errors`` sees the copy's commit fail before the snapshot ends.
            with self.read() as src, _copy_errors(self.path), out.begin(write=True) as dst:
                copied = src.id()
                forms = blobs.BlobReader(src, self.db)

                def stored_forms():  # a segment of an earlier compact: the form it names
                    for aid, value in src.cursor(db=self.db["blob"]):
                        yield aid, forms.form(aid, value)

                packer = segmenter = None
                runs = 0  # entries of local tables folded into runs

                def counted(items, folded):  # counts the entries that are runs
                    nonlocal runs
                    for key, value in items:
                        runs += folded(value)
                        yield key, value

                if pack:
                    forms_total = src.stat(self.db["blob"])["entries"]
                    raw = packing.train(_counted(stored_forms(), progress,
                                                 "compact: train a dictionary", forms_total))
                    progress("compact: train a dictionary", forms_total, forms_total)
                    packer = packing.Packer(raw) if raw is not None else None
                    segmenter = packing.Segmenter(
                        dst.cursor(db=out.open_db(b"segment", txn=dst)), out.stat()["psize"],
                        packing.tip_artifacts(src, self.db),
                        packer.did if packer is not None else 0)
                    segmenter.fill(forms, src.cursor(db=self.db["blob"]).iternext(),
                                   {bytes(k) for k in src.cursor(db=self.db["checkin"])
                                    .iternext(values=False)},
                                   lambda n, total: progress("compact: pack history", n, total))
                # Parts no artifact names (a cut or refused upload) are dropped, but not
                # those an upload of this process staged and has yet to name; ``blob`` is
                # copied before ``chunk``, ``zdict`` and ``segment`` (ALL_TABLES), noting
                # the parts it names, packing its forms and filling the segments.
                keep = chunks.live_parts()
                total = sum(src.stat(self.db[name])["entries"] for name in ALL_TABLES
                            if name != "segment")
                done = 0
                for name in ALL_TABLES:
                    target = out.open_db(name.encode(), txn=dst)
                    cur = dst.cursor(db=target)
                    items = src.cursor(db=self.db[name]).iternext()
                    entries = src.stat(self.db[name])["entries"] if name != "segment" else 0
                    if name == "blob":  # most of a store's entries: its progress shown
                        items = chunks.noting_parts(
                            _counted(stored_forms(), progress, "compact: copy", total, done),
                            keep)
                        if segmenter is not None:
                            items = segmenter.segmented(items)
                        if packer is not None:  # the forms left in ``blob``
                            items = packer.packed(items)
                    elif name == "segment":
                        continue  # made anew before ``blob`` was copied (or none: not packed)
                    elif name == "pathlog" and pack:
                        items = counted(checkins.pathlog_runs(items), bool)
                    elif name in ("seq", "cseq") and pack:
                        items = counted(sequences.runs(items), lambda v: len(v) > 32)
                    elif name == "chunk":
                        items = (item for item in items if item[0] in keep)
                    elif name == "checkin" and packer is not None:
                        # ``blob`` was copied before: whether the dictionary stays is known.
                        items = packer.packed_records(
                            items, bool(packer.count or segmenter.segments))
                    elif name == "zdict" and packer is not None:
                        # Every form of another dictionary was rewritten: only this one
                        # is named, if any form or segment took it (then the records did).
                        items = iter([(packer.key, packer.raw)]
                                     if packer.count or segmenter.segments else [])
                    try:
                        cur.putmulti(items, append=True)
                    except ValueError as exc:  # an entry that does not decode (runs)
                        raise IntegrityError(
                            f"cannot compact {self.path}: table {name} is damaged ({exc}); "
                            "nothing was changed: run 'herofossil verify', then 'herofossil "
                            "rebuild'") from exc
                    done += entries
                    progress("compact: copy", done, total)
            with _copy_errors(self.path):
                out.sync(True)
        finally:
            out.close()
        if segmenter is not None and segmenter.count:
            return SOLID_HISTORY_FORMAT, copied
        if runs:
            return PACKED_HISTORY_FORMAT, copied
        return PACKED_FORMAT if packer is not None and packer.count else FORMAT, copied

    def close(self) -> None:
        with _open_lock:
            self.refs -= 1
            if self.refs <= 0:
                from herofossil.store import blobs

                blobs.remove_dictionary_source(self._dictionary)
                _open_envs.pop(self.path, None)
                with self.write_lock:
                    self._close_lmdb()
                os.close(self._lockfd)


def _check_marker(path: str) -> int:
    """The format the store's marker names; refuse one this release does not read."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8", errors="replace") as f:
            text = f.read(4096)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from exc
    if text == _LEGACY_MARKER:
        return FORMAT
    first = text.partition("\n")[0]
    prefix = _MARKER_PREFIX
    if not first.startswith(prefix) or not first[len(prefix):].isdigit():
        raise StoreError(f"{path} is not a herofossil store (its marker file {MARKER} holds "
                         f"{first[:60]!r})")
    found = int(first[len(prefix):])
    if found not in READ_FORMATS:
        newest = max(READ_FORMATS)
        raise StoreError(f"the store at {path} has format {found}; this herofossil reads "
                         f"formats {FORMAT}-{newest}: " + (
                             "upgrade herofossil" if found > newest else
                             "open it with the release that wrote it"))
    return found


def _mark_format(path: str, fmt: int) -> None:
    """Write format ``fmt`` into the store's marker, in place and synced: other processes
    hold their lock on this file (a renamed new one would not be locked)."""
    fd = os.open(os.path.join(path, MARKER), os.O_RDWR)
    try:
        text = _MARKER_TEXT.format(fmt).encode()
        # One write within one block: the old or the new text, both readable by this
        # release (1 and 2 differ by one byte; a release 0.1 marker is shorter).
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        os.fsync(fd)
    finally:
        os.close(fd)


def _denied(exc: lmdb.Error) -> bool:
    return "Permission denied" in str(exc) or "Read-only file system" in str(exc)


def is_store(path: str) -> bool:
    """True when ``path`` is a directory holding an LMDB store made by herofossil."""
    return os.path.isfile(os.path.join(path, "data.mdb")) and os.path.isfile(
        os.path.join(path, MARKER)
    )


def open_env(path: str, *, create: bool = False, map_size: int = DEFAULT_MAP_SIZE,
             readonly: bool = False) -> StoreEnv:
    """Open (or with ``create`` make) the store environment at ``path``.

    ``readonly``: open it for reading only; this takes no lock a writer holds
    and works on a store the user may only read. A process shares one
    environment per store: read-write once any of its users asked for it.
    """
    path = os.path.abspath(path)
    with _open_lock:
        env = _open_envs.get(path)
        if env is not None and env.readonly and not readonly:
            env.gate.exclusive(env.make_writable, "open the store read-write")
        if env is None:
            if not is_store(path):
                if not create:
                    raise StoreError(
                        f"no herofossil store at {path}: create one with 'herofossil init'"
                    )
                _create(path, map_size)
            env = StoreEnv(path, map_size, readonly=readonly and not create)
            _open_envs[path] = env
        env.refs += 1
        return env


def _create(path: str, map_size: int) -> None:
    if os.path.exists(path) and os.listdir(path) and not is_store(path):
        raise StoreError(f"cannot create a store in {path}: the directory is not empty")
    try:
        os.makedirs(path, exist_ok=True)
        env = lmdb_open(path, map_size)
        with env.begin(write=True) as txn:
            for name in ALL_TABLES:
                env.open_db(name.encode(), txn=txn)
        env.close()
        with open(os.path.join(path, MARKER), "w") as f:
            f.write(_MARKER_TEXT.format(FORMAT))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise StoreError(f"cannot create a store in {path}: {exc.strerror}") from exc
    except lmdb.Error as exc:
        raise StoreError(f"cannot create a store in {path}: {exc}") from exc
