"""Artifacts: content-addressed bytes kept zstd-compressed, whole or as a Fossil delta.

Stored form of an artifact (the value of the ``blob`` table, keyed by the
32-byte SHA3-256 of the artifact):

    b"W" + zstd frame                 the whole artifact
    b"R" + bytes                      the whole artifact, uncompressed (when zstd does not help)
    b"D" + base id (32) + zstd frame  a Fossil delta that turns ``base`` into it
    b"d" + base id (32) + bytes       the same, uncompressed (small deltas)

Whole frames carry zstd's content checksum; delta frames do not, since a
Fossil delta ends in a checksum of its own that ``apply`` always checks.

The stored form is what sync sends as-is. Reverse deltas: the newest version
of a file is whole and older versions become deltas on newer ones; the
``chain`` table bounds the length of every delta chain to ``MAX_CHAIN``.
"""

from __future__ import annotations

import hashlib
import threading

import zstandard

from herofossil import delta
from herofossil.errors import DeltaError, IntegrityError, NotFoundError
from herofossil.store.keys import pack_u64, unpack_u64  # noqa: F401  (verify, sync, tests)

WHOLE = b"W"
RAW = b"R"
DELTA = b"D"
RAW_DELTA = b"d"
DELTAS = (DELTA, RAW_DELTA)
ID_LEN = 32
MAX_CHAIN = 32
# Below this size a delta saves too little to pay for the chain it creates.
MIN_DELTA_SIZE = 256
# A delta is kept only when its compressed form is at most this share of the whole's.
DELTA_GAIN = 0.75
ZSTD_LEVEL = 3
# Manifests (card text, mostly hex hashes) come out as small at level 1, twice as fast.
ZSTD_LEVEL_CARDS = 1
# A zstd frame costs at least 9 bytes of header and checksum: below this, keep bytes raw.
MIN_COMPRESS_SIZE = 32

_local = threading.local()


def _zc(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    name = f"zc{level}"
    c = getattr(_local, name, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level, write_checksum=True)
        setattr(_local, name, c)
    return c


def _zc_delta() -> zstandard.ZstdCompressor:
    c = getattr(_local, "zcd", None)
    if c is None:
        c = _local.zcd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
    return c


def _zd() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = zstandard.ZstdDecompressor()
    return d


def artifact_id(data: bytes) -> bytes:
    """The binary SHA3-256 of ``data`` (its artifact id; ``.hex()`` is Fossil's name).

    With ``artifact_hex`` the one place artifacts are hashed: the store keys
    the binary form, names, ETags and the deconstruct layout use the hex one.
    """
    return hashlib.sha3_256(data).digest()


def artifact_hex(data: bytes) -> str:
    """The artifact id of ``data`` as Fossil names it (lowercase hex SHA3-256)."""
    return hashlib.sha3_256(data).hexdigest()


def encode_whole(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """The stored form of ``data`` kept whole (compressed unless that makes it larger)."""
    if len(data) < MIN_COMPRESS_SIZE:
        return RAW + data
    packed = _zc(level).compress(data)
    if len(packed) >= len(data):
        return RAW + data
    return WHOLE + packed


def is_whole(stored: bytes) -> bool:
    """True for a stored form that holds the whole artifact (no delta base)."""
    return stored[:1] in (WHOLE, RAW)


def decode_whole(stored: bytes, what: bytes) -> bytes:
    """The artifact a whole stored form holds."""
    if stored[:1] == RAW:
        return stored[1:]
    return decompress(stored[1:], what)


def encode_delta(base_id: bytes, delta_bytes: bytes) -> bytes:
    """The stored form of an artifact kept as ``delta_bytes`` against ``base_id``."""
    packed = _zc_delta().compress(delta_bytes)
    if len(packed) >= len(delta_bytes):
        return RAW_DELTA + base_id + delta_bytes
    return DELTA + base_id + packed


def delta_payload(stored: bytes, what: bytes) -> bytes:
    """The Fossil delta a delta stored form holds."""
    if stored[:1] == RAW_DELTA:
        return bytes(stored[1 + ID_LEN :])
    return decompress(stored[1 + ID_LEN :], what)


def decompress(frame: bytes, what: bytes) -> bytes:
    """Decompress a zstd frame of a stored form, naming the artifact on damage."""
    try:
        return _zd().decompress(frame)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"artifact {what.hex()} is damaged: {exc}") from exc


def stored_size(stored: bytes) -> int | None:
    """The size of the artifact a whole stored form holds, without decompressing."""
    if stored[:1] == WHOLE:
        size = zstandard.frame_content_size(stored[1:])
        return size if size >= 0 else None
    if stored[:1] == RAW:
        return len(stored) - 1
    return None


def delta_base(stored: bytes) -> bytes | None:
    """The base id of a delta stored form, or None for a whole one."""
    return stored[1 : 1 + ID_LEN] if stored[:1] in DELTAS else None


class BlobReader:
    """Reconstructs artifacts from their stored forms inside one transaction."""

    def __init__(self, txn, blob_db):
        self.txn = txn
        self.db = blob_db

    def stored(self, aid: bytes) -> bytes | None:
        """The stored form of ``aid``, or None."""
        return self.txn.get(aid, db=self.db)

    def has(self, aid: bytes) -> bool:
        return self.stored(aid) is not None

    def content(self, aid: bytes) -> bytes:
        """The bytes of artifact ``aid``; follows its delta chain."""
        chain: list[tuple[bytes, bytes]] = []
        cur = aid
        while True:
            stored = self.stored(cur)
            if stored is None:
                if cur == aid:
                    raise NotFoundError(f"artifact {aid.hex()} is not in the store")
                raise IntegrityError(
                    f"artifact {chain[-1][0].hex()} is a delta on {cur.hex()}, which is missing"
                )
            kind = stored[:1]
            if kind == WHOLE or kind == RAW:
                data = decode_whole(stored, cur)
                break
            if kind not in DELTAS or len(stored) < 1 + ID_LEN:
                raise IntegrityError(f"artifact {cur.hex()} has an unknown stored form")
            chain.append((cur, stored))
            if len(chain) > MAX_CHAIN * 4:
                raise IntegrityError(f"artifact {aid.hex()} has a delta chain that loops")
            cur = stored[1 : 1 + ID_LEN]
        for cid, stored in reversed(chain):
            try:
                data = delta.apply(data, delta_payload(stored, cid))
            except DeltaError as exc:
                raise IntegrityError(f"artifact {cid.hex()} is damaged: {exc}") from exc
        return data

    def size(self, aid: bytes) -> int:
        stored = self.stored(aid)
        if stored is None:
            raise NotFoundError(f"artifact {aid.hex()} is not in the store")
        size = stored_size(stored)
        if size is None:
            try:
                size = delta.output_size(delta_payload(stored, aid))
            except DeltaError as exc:
                raise IntegrityError(f"artifact {aid.hex()} is damaged: {exc}") from exc
        return size
