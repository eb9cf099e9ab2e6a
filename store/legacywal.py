"""Opening a store left by herofossil 0.1, which kept a write-ahead log beside LMDB.

Release 0.1 committed LMDB without syncing and made each write durable by a
synced record in ``wal``; ``checkpoint`` held LMDB's two meta pages as of the
last synced snapshot. This release relies on LMDB's own synced commit alone.
On the first open of such a store (no other process may have it open) its
log is settled once, then both files are removed:

- nothing logged after the checkpoint (0.1 closed the store, or the log is
  missing or damaged): the data file is opened as it is, never rolled back;
- records after it: the data file is put back at the checkpoint's snapshot
  and the records are applied in one durable LMDB commit. A record that 0.1
  logged for a commit LMDB then refused (a full disk) is followed by a
  record with the same transaction id: the later one counts.

The meta pages are put back only when the data file is shown to be the
checkpoint's: its meta pages are the checkpoint's, or the one LMDB has not
overwritten since is. Otherwise (a data file restored from a backup, another
store's files, or a store that moved on by more than one commit after its
checkpoint) opening refuses, changes nothing, and says what to do.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator

from herofossil.errors import StoreError

CHECKPOINT_FILE = "checkpoint"
WAL_FILE = "wal"
FILES = (WAL_FILE, CHECKPOINT_FILE)

PUT, DELETE, CLEAR = 1, 2, 3
# What a record's table index names: the tables of release 0.1, in its order.
TABLES = ("blob", "seq", "phantom", "chain", "deps", "checkin", "cseq", "child", "leaf",
          "tip", "tree", "pathlog", "tag", "info", "meta")
_SLOT_HEAD = struct.Struct("<4sIIQQQQ16sI")  # magic, crc, version, seq, epoch, start, base, ...
_SLOT_MAGIC = b"HFCK"
_REC_HEAD = struct.Struct("<4sIQQI")  # magic, crc, epoch, txnid, body length
_REC_MAGIC = b"HFWL"
_OP = struct.Struct("<BBII")  # op, table index, key length, value length

# LMDB 0.9 meta page: page header (pgno, pad, flags, lower, upper), then MDB_meta with
# magic and version first and the transaction id last (after two 48-byte MDB_db records).
_META_HEAD = struct.Struct("<QHH")
_P_META = 0x08
_MDB_MAGIC = 0xBEEFC0DE
_META_MAGIC = struct.Struct("<II")
_META_TXNID = struct.Struct("<Q")
_TXNID_AT = 16 + 8 + 8 + 8 + 2 * 48 + 8


def present(path: str) -> bool:
    """True when the store folder still holds 0.1's log files."""
    return any(os.path.exists(os.path.join(path, name)) for name in FILES)


def _meta_txnid(page: bytes, pgno: int) -> int | None:
    """The transaction id of LMDB meta page ``pgno``, or None if it is not one."""
    if len(page) < _TXNID_AT + 8:
        return None
    number, _pad, flags = _META_HEAD.unpack_from(page)
    magic, version = _META_MAGIC.unpack_from(page, 16)
    if number != pgno or not flags & _P_META or magic != _MDB_MAGIC or version != 1:
        return None
    return _META_TXNID.unpack_from(page, _TXNID_AT)[0]


def _checkpoint(raw: bytes, page_size: int) -> tuple[int, int, int, bytes] | None:
    """(epoch, start, base, metas) of the newest valid slot of a checkpoint file."""
    best = None
    slot_size = _SLOT_HEAD.size + 2 * page_size
    for n in (0, 1):
        slot = raw[n * slot_size:(n + 1) * slot_size]
        if len(slot) < slot_size:
            continue
        magic, crc, version, seq, epoch, start, base, _token, metas_crc = \
            _SLOT_HEAD.unpack_from(slot)
        metas = slot[_SLOT_HEAD.size:]
        if (magic != _SLOT_MAGIC or crc != zlib.crc32(slot[8:_SLOT_HEAD.size])
                or version != 1 or zlib.crc32(metas) != metas_crc):
            continue
        if best is None or seq > best[0]:
            best = (seq, epoch, start, base, metas)
    return best[1:] if best else None


def _records(log: bytes, epoch: int, start: int, base: int) -> list[bytes]:
    """Bodies of the records after snapshot ``base``, in commit order."""
    kept: list[tuple[int, bytes]] = []
    pos = start
    while pos + _REC_HEAD.size <= len(log):
        magic, crc, rec_epoch, txnid, length = _REC_HEAD.unpack_from(log, pos)
        body = log[pos + _REC_HEAD.size:pos + _REC_HEAD.size + length]
        if (magic != _REC_MAGIC or rec_epoch != epoch or txnid <= base or len(body) < length
                or zlib.crc32(body, zlib.crc32(log[pos + 8:pos + _REC_HEAD.size])) != crc):
            break
        while kept and kept[-1][0] >= txnid:  # LMDB refused that commit: this one replaced it
            kept.pop()
        kept.append((txnid, body))
        pos += _REC_HEAD.size + length
    return [body for _txnid, body in kept]


def _ops(body: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    pos = 0
    while pos < len(body):
        op, table, klen, vlen = _OP.unpack_from(body, pos)
        pos += _OP.size
        key, value = body[pos:pos + klen], body[pos + klen:pos + klen + vlen]
        pos += klen + vlen
        yield op, table, key, value


def _read(path: str, name: str) -> bytes:
    try:
        with open(os.path.join(path, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _refuse(path: str, why: str) -> StoreError:
    return StoreError(
        f"{path} holds the write-ahead log of herofossil 0.1 (files {WAL_FILE}, "
        f"{CHECKPOINT_FILE}) and {why}; nothing was changed. To open data.mdb as it is, "
        "remove those two files (writes after the last checkpoint may then be missing)")


def settle(path: str, page_size: int, apply: Callable[[list], None]) -> None:
    """Bring the data file of 0.1's store at ``path`` up to date, then remove the log.

    ``apply(ops)`` is called (once, with LMDB not yet open) only when records
    must be replayed; it opens LMDB and applies ``ops`` — (op, table index,
    key, value) with ``PUT``/``DELETE``/``CLEAR`` — in one durable commit.
    No other process may have the store open.
    """
    data = os.path.join(path, "data.mdb")
    found = _checkpoint(_read(path, CHECKPOINT_FILE), page_size)
    if found is not None:
        epoch, start, base, metas = found
        records = _records(_read(path, WAL_FILE), epoch, start, base)
        if records:
            _restore_metas(path, data, metas, base, page_size)
            apply([op for body in records for op in _ops(body)])
        # Nothing logged after the checkpoint: data.mdb holds every commit (0.1
        # logged each one), whatever its meta pages say: it is opened as it is.
    dirfd = os.open(path, os.O_RDONLY)
    try:
        for name in FILES:
            try:
                os.remove(os.path.join(path, name))
            except FileNotFoundError:
                pass
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _restore_metas(path: str, data: str, metas: bytes, base: int, page_size: int) -> None:
    """Put the data file back at the checkpoint's snapshot, once it is shown to be
    that file's: its meta pages equal the checkpoint's, or the one LMDB has not
    overwritten since the snapshot (one commit after it) does."""
    pages = [metas[n * page_size:(n + 1) * page_size] for n in (0, 1)]
    saved = [_meta_txnid(page, n) for n, page in enumerate(pages)]
    if None in saved or max(saved) != base:
        raise _refuse(path, "its checkpoint does not hold LMDB meta pages of the snapshot it "
                            "names")
    fd = os.open(data, os.O_RDWR)
    try:
        current = os.pread(fd, 2 * page_size, 0)
        if current == metas:
            return
        now = [_meta_txnid(current[n * page_size:(n + 1) * page_size], n) for n in (0, 1)]
        if None in now or max(now) < base:
            raise _refuse(path, "data.mdb is older than its checkpoint (restored from a "
                                "backup, or the files of another store)")
        slot = base % 2
        if current[slot * page_size:(slot + 1) * page_size] != pages[slot]:
            raise _refuse(path, "data.mdb has moved on since its checkpoint in a way this "
                                "release cannot check (or the files belong to another "
                                "store): herofossil 0.1 replays the log when it opens the "
                                "store; after a crash without a power loss, data.mdb alone "
                                "holds every write")
        os.pwrite(fd, metas, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
