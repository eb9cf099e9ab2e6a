"""The schema of a store: its tables (named LMDB databases) and how LMDB opens them.

global state (the repository itself)
    ``blob``     artifact key (32 bytes: the SHA3-256, or a SHA1 padded, see ``keys``)
                 -> stored form (see ``blobs``)
    ``chunk``    part id (SHA3-256 of its bytes) -> whole stored form of a large
                 artifact's part (see ``blobs``; ``compact`` drops unreferenced ones)
    ``zdict``    dictionary id (4 bytes, big-endian) -> a zstd dictionary that stored
                 forms of ``blob`` are compressed with (see ``packing``)
    ``segment``  segment number (4 bytes, big-endian) -> stored forms of packed history
                 end to end, which ``blob`` refers to (see ``blobs``; made by ``compact``)

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

import lmdb

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


def lmdb_open(path: str, map_size: int, **options) -> lmdb.Environment:
    """An LMDB environment in directory ``path`` with room for every table of the schema;
    ``options`` are the rest of ``lmdb.open``'s (sync, readonly, lock, ...)."""
    return lmdb.open(path, map_size=map_size, max_dbs=len(ALL_TABLES) + 2, subdir=True,
                     **options)
