"""How a store's commits become durable: the write-ahead log and its checkpoints.

The protocol (why it is safe) is described in ``wal``. This module runs it
for one open store: each commit's record is logged and synced before LMDB
commits without a sync; a checkpoint after every ``WAL_COMMITS`` logged
commits syncs LMDB in a background thread while writes go on, so no write
waits for it; a process that does not own the log, a transaction too large
to log, and a log grown past ``WAL_LIMIT`` checkpoint in line, restarting
the log.
"""

from __future__ import annotations

import os
import threading

import lmdb

from herofossil.errors import StoreError
from herofossil.store.txnlog import replay
from herofossil.store.wal import Checkpoint, WriteAheadLog, datasync, decode_ops, encode_ops

# A transaction whose record would be larger is made durable by a checkpoint instead.
WAL_MAX_RECORD = 1 << 20
# A checkpoint is due after this many logged commits, or a log this long. Fewer
# checkpoints mean fewer LMDB syncs competing with the log's (32 commits: writes 4%
# slower); more would grow the data file, since the pages that commits free cannot
# be reused until the next checkpoint.
WAL_COMMITS = 64
WAL_LIMIT = 2 << 20


def restore_checkpoint(wal: WriteAheadLog, datafd: int) -> Checkpoint | None:
    """Before LMDB opens a store no other process has open: the checkpoint to replay
    from, with its meta pages put back into the data file; None when nothing was
    committed after it (the meta pages are its own and the log has no record)."""
    ck = wal.checkpoint()
    if ck is None:
        return None
    if os.pread(datafd, len(ck.metas), 0) != ck.metas:
        os.pwrite(datafd, ck.metas, 0)
        datasync(datafd)
    elif next(wal.records(ck), None) is None:
        return None
    return ck


class Durability:
    """The log, the checkpoint this process owns (if any) and the pin that protects it.

    ``commit`` and the in-line checkpoints run with the store's write lock
    held and an LMDB write transaction open (LMDB's writer lock: no commit
    anywhere meanwhile); the background checkpoint takes both for its two
    short steps and syncs in between without them.
    """

    def __init__(self, store, wal: WriteAheadLog):
        self.store = store  # the StoreEnv: env, write lock, data file descriptor
        self.wal = wal  # closed by ``close``
        self.pin: lmdb.Transaction | None = None  # read transaction on the checkpoint
        self.token: bytes | None = None  # this process's, while it owns the log
        self.epoch = 0
        self.seq = 0
        self.base = 0  # transaction id of the checkpoint
        self.logged = 0  # commits logged since it
        self.checkpoints = 0  # written by this process
        self.background = 0  # of which in the background
        self._wake = threading.Condition()
        self._due = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- commits
    def commit(self, txn: lmdb.Transaction, ops: list | None) -> None:
        """Commit ``txn`` durably: its record (``ops``) logged and synced first; or, when
        ``ops`` is None (too large to log), a checkpoint after."""
        if ops is None:
            if not self.owner():  # pin the checkpoint before anything is overwritten
                self.checkpoint_in_line()
            txn.commit()
            self.checkpoint_now()
            return
        if not ops:
            txn.commit()
            return
        if (not self.owner() or self.wal.offset > WAL_LIMIT
                or self.logged >= 4 * WAL_COMMITS):  # the background one fell behind
            self.checkpoint_in_line()
        body = encode_ops(ops)
        try:
            self.wal.append(self.epoch, txn.id(), body)
        except OSError as exc:
            raise StoreError(f"cannot write the store's log: {exc.strerror}; nothing "
                             "was written") from exc
        txn.commit()
        self.logged += 1
        if self.logged >= WAL_COMMITS:
            self._kick()

    def owner(self) -> bool:
        """True when this process owns the log and still pins its checkpoint.

        A resize (``set_mapsize``) ends the pin, but never while a write
        transaction is open, so the answer holds until the commit that asks.
        """
        return _alive(self.pin) and self.owns_log()

    def owns_log(self) -> bool:
        """True when the checkpoint in force is this process's."""
        if self.token is None:
            return False
        # Another process taking over writes a newer checkpoint into the other slot.
        other = self.wal.slot((self.seq + 1) % 2)
        return other is None or other.seq < self.seq

    # ---- checkpoints
    def checkpoint_in_line(self) -> None:
        """Sync what is committed, make it the checkpoint and restart the log (this
        process owns it then). LMDB's writer lock must be held."""
        pin = self.store.env.begin()
        try:
            self.store.env.sync(True)
            metas = os.pread(self.store.datafd, 2 * self.wal.page_size, 0)
            newest = self.wal.checkpoint(with_metas=False)
            seq, epoch = (newest.seq, newest.epoch) if newest else (0, 0)
            token = self.token if self.owns_log() else os.urandom(16)
            ck = Checkpoint(seq + 1, epoch + 1, 0, pin.id(), token, metas)
            self.wal.write_checkpoint(ck)
        except OSError as exc:
            pin.abort()
            raise StoreError(f"cannot write the store's checkpoint: {exc.strerror}; "
                             "nothing was written") from exc
        except BaseException:
            pin.abort()
            raise
        self.wal.offset = 0
        self.token, self.epoch, self.logged = token, ck.epoch, 0
        self._adopt(ck, pin)

    def checkpoint_now(self) -> None:
        """An in-line checkpoint of everything committed (takes LMDB's writer lock)."""
        txn = self.store.begin_write()
        try:
            self.checkpoint_in_line()
        finally:
            txn.abort()

    def _adopt(self, ck: Checkpoint, pin: lmdb.Transaction) -> None:
        self.release_pin()
        self.pin, self.seq, self.base = pin, ck.seq, ck.base
        self.checkpoints += 1

    def _background_checkpoint(self) -> None:
        """Checkpoint the last commit while writes go on: pin it and read its meta pages,
        sync without holding a lock, then write the checkpoint if still the owner."""
        if not self._lock_unless_stopping():
            return
        try:
            txn = self.store.begin_write()
            try:
                if not self.owner():
                    return
                pin = self.store.env.begin()
                metas = os.pread(self.store.datafd, 2 * self.wal.page_size, 0)
                epoch, start, logged = self.epoch, self.wal.offset, self.logged
            finally:
                txn.abort()
        finally:
            self.store.write_lock.release()
        try:
            self.store.env.sync(True)
            if not self._lock_unless_stopping():
                pin.abort()
                return
            try:
                txn = self.store.begin_write()
                try:
                    if not (self.owner() and self.epoch == epoch and _alive(pin)):
                        pin.abort()
                        return
                    ck = Checkpoint(self.seq + 1, epoch, start, pin.id(), self.token, metas)
                    self.wal.write_checkpoint(ck)
                    self.logged -= logged
                    self._adopt(ck, pin)
                    self.background += 1
                finally:
                    txn.abort()
            finally:
                self.store.write_lock.release()
        except BaseException:
            if _alive(pin):
                pin.abort()
            raise

    def _lock_unless_stopping(self) -> bool:
        """Take the store's write lock; False if ``stop`` is called meanwhile (it may be
        called by a thread that holds the lock, as ``compact`` does)."""
        while not self.store.write_lock.acquire(timeout=0.05):
            if self._stopping:
                return False
        if self._stopping:
            self.store.write_lock.release()
            return False
        return True

    def _kick(self) -> None:
        with self._wake:
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="herofossil-checkpoint",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                self._due = False
            if self.logged < WAL_COMMITS:  # kicked again while the last one ran
                continue
            try:
                self._background_checkpoint()
            except (lmdb.Error, OSError, StoreError):
                pass  # the log still holds every write; the next kick or close retries

    # ---- lifetime
    def replay(self, ck: Checkpoint, handles: list) -> None:
        """Re-apply the logged transactions after checkpoint ``ck``; then checkpoint."""
        records = [body for _txnid, body in self.wal.records(ck)]
        while True:
            try:
                with self.store.begin_write() as txn:
                    for body in records:
                        replay(txn, handles, decode_ops(body))
                break
            except lmdb.MapFullError:
                self.store.grow()
        with self.store.write_lock:
            self.checkpoint_now()

    def flush(self, timeout: float = -1) -> None:
        """Checkpoint what this process logged, so the next open has nothing to replay.

        ``timeout``: give up (the log keeps every write) if a write in another
        thread holds the store that long.
        """
        if not self.store.write_lock.acquire(timeout=timeout):
            return
        try:
            if self.owns_log() and self.store.env.info()["last_txnid"] != self.base:
                self.checkpoint_now()
        finally:
            self.store.write_lock.release()

    def stop(self) -> None:
        """Stop the background checkpoints (waits for one in progress)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def forget(self) -> None:
        """The data file on disk is whole and current: drop the log and the checkpoints."""
        self.wal.forget()
        self.release_pin()
        self.token = None

    def release_pin(self) -> None:
        if _alive(self.pin):
            self.pin.abort()
        self.pin = None

    def close(self) -> None:
        self.release_pin()
        self.wal.close()


def _alive(txn: lmdb.Transaction | None) -> bool:
    """False for None and for a transaction py-lmdb ended (a resize ends them all)."""
    if txn is None:
        return False
    try:
        txn.id()
    except lmdb.Error:
        return False
    return True
