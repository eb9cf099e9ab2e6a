"""The schema of a store: its tables (named LMDB databases) and how LMDB opens them.

global state (the repository itself)
    ``blob``     artifact key (32 bytes: the SHA3-256, or a SHA1 padded, see ``keys``)
                 -> stored form (see ``blobs``)
    ``chunk``    part id (SHA3-256 of its bytes) -> whole stored form of a large
                 artifact's part (see ``blobs``; ``compact`` drops unreferenced ones)
    ``zdict``    dictionary id (4 bytes, big-endian) -> a zstd dictionary that stored
                 forms of ``blob`` are compressed with (see ``packing``)
    ``segment``  segment number (4 bytes, big-endian) -> stored forms of packed history
                 end to end, compressed together, which ``blob`` refers to (see
                 ``blobs``; made by ``compact``)

local state (``rebuild`` regenerates it from ``blob``)
    ``seq``      insert sequence (8-byte big-endian) -> artifact id (after ``compact``: runs
                 of consecutive numbers, see ``sequences``)
    ``phantom``  id of an artifact referenced but not yet present -> b""
    ``chain``    id of a whole-stored artifact -> longest delta chain ending on it
    ``deps``     artifact id -> how many stored deltas use it as their base
    ``checkin``  check-in id -> its metadata (a compact binary record, see ``checkins``)
    ``cseq``     check-in sequence (8-byte big-endian) -> check-in id (runs, as ``seq``)
    ``child``    parent id + child id -> b""
    ``leaf``     branch + NUL + check-in id -> b""
    ``tip``      branch -> check-in id whose tree ``tree`` indexes
    ``tree``     branch + NUL + dir + NUL + name -> entry (see ``tree``)
    ``pathlog``  path + NUL + check-in sequence -> b"" (``cseq`` names the check-in); after
                 ``compact`` one run per path: the steps to its next ones (``checkins``)
    ``tag``      tag name + NUL + check-in id -> tag value (sym-tags in force)
    ``info``     counters and settings

outside the versioned tree, kept by ``rebuild``
    ``meta``     namespaced key -> value (WebDAV dead properties and locks, ...)
"""

from __future__ import annotations

import errno
import os

import lmdb

from herofossil.errors import StoreError

GLOBAL_TABLES = ("blob", "chunk", "zdict", "segment")
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
# Tables a store made by an earlier release may lack: opened read-only, it reads as if
# they were empty (they are made the first time the store is opened read-write).
LATER_TABLES = ("chunk", "zdict", "segment")


# The size a lock file is made with when none is there: LMDB keeps a larger one as it is
# (its reader table then has more slots: about 900 here) and needs 24.8 KB for 256 readers.
LOCK_BYTES = 64 << 10


def lmdb_open(path: str, map_size: int, **options) -> lmdb.Environment:
    """An LMDB environment in directory ``path`` with room for every table of the schema;
    ``options`` are the rest of ``lmdb.open``'s (sync, readonly, lock, ...)."""
    if options.get("lock", True):
        allocate_lock_file(path)
    return lmdb.open(path, map_size=map_size, max_dbs=len(ALL_TABLES) + 2, subdir=True,
                     **options)


def allocate_lock_file(path: str) -> None:
    """Give ``path``'s LMDB lock file its disk blocks before LMDB maps it: LMDB writes the
    file through a shared mapping, and on a full disk a page without a block kills the
    process with SIGBUS. A missing one is made whole; one with holes (made by an earlier
    release, or by LMDB's ftruncate) has them allocated, which changes none of its bytes,
    so others may have it mapped. ``StoreError`` when the disk has no room; nothing when
    the file cannot be written (LMDB then says why, or reads without a lock file)."""
    lock = os.path.join(path, "lock.mdb")
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        pass
    except OSError:
        return
    else:
        if st.st_blocks * 512 < st.st_size:  # holes: one fstat when there are none
            _fill_holes(path, lock, st.st_size)
        return
    tmp = f"{lock}.{os.getpid()}.new"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return  # a directory missing or not writable: LMDB reports it
    try:
        try:
            os.posix_fallocate(fd, 0, LOCK_BYTES)
        except OSError as exc:
            _no_room(path, exc)
        try:  # put in place whole: another process may be making one too, the first wins
            os.link(tmp, lock)
        except FileExistsError:
            pass
    finally:
        os.close(fd)
        os.unlink(tmp)


def _fill_holes(path: str, lock: str, size: int) -> None:
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return  # not ours to write: LMDB opens it or says why
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        _no_room(path, exc)
    finally:
        os.close(fd)


def _no_room(path: str, exc: OSError) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise StoreError(f"cannot open store {path}: no room on its disk for LMDB's lock "
                         f"file ({exc.strerror})", store=path) from exc
    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without it
        raise StoreError(f"cannot open store {path}: its lock file: {exc.strerror}",
                         store=path) from exc
