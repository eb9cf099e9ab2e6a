"""Key and value codecs of the LMDB tables: the one place their byte layouts are written.

Keys that name several things join them with NUL, which no path, branch or
tag name holds, so a range scan over ``join_key(a, b"")`` finds exactly a's entries:

    tree      branch NUL folder NUL name      (``tree_key``; folder '' at the root)
    leaf      branch NUL check-in id
    tag       tag name NUL check-in id
    pathlog   path NUL u64 sequence
    meta      namespace NUL key
    seq, cseq u64 sequence                    (big-endian: keys sort by number)

Counts kept as values: ``chain`` a u16, ``deps`` a u32 (``CHAIN``, ``DEPS``).

Artifact keys are 32 bytes: a SHA3-256 id as it is, a SHA1 id of an older Fossil
repository (20 bytes) followed by 12 NUL bytes (``id_key``; a SHA3-256 id ends so with
odds of 2**-96). Names, the 64- or 40-hex forms that manifests and Fossil use, are
made from keys by ``id_name`` only.
"""

from __future__ import annotations

import struct

_U64 = struct.Struct(">Q")
CHAIN = struct.Struct("<H")  # value of the chain table: longest delta chain on an artifact
DEPS = struct.Struct("<I")  # value of the deps table: deltas based on an artifact


SHA1_PAD = bytes(12)


def id_key(name: str) -> bytes:
    """The 32-byte key of the artifact named ``name`` (64 hex digits: SHA3-256; 40:
    SHA1, padded). ValueError for anything else."""
    if len(name) == 64:
        return bytes.fromhex(name)
    if len(name) == 40:
        return bytes.fromhex(name) + SHA1_PAD
    raise ValueError(f"not an artifact name: {name[:80]!r}")


def id_name(key: bytes) -> str:
    """The name (64 or 40 hex digits) of the artifact keyed ``key``."""
    return key[:20].hex() if is_sha1_key(key) else key.hex()


def is_sha1_key(key: bytes) -> bool:
    """True for the key of a SHA1-named artifact."""
    return len(key) == 32 and key[20:] == SHA1_PAD


def pack_u64(n: int) -> bytes:
    """``n`` as 8 big-endian bytes (sequence keys and counters)."""
    return _U64.pack(n)


def unpack_u64(b: bytes) -> int:
    """The number ``pack_u64`` made ``b`` from."""
    return _U64.unpack(b)[0]


def join_key(*parts: str | bytes) -> bytes:
    """``parts`` joined by NUL, text as UTF-8; a last part ``b""`` makes a scan prefix."""
    if len(parts) == 2:  # most keys (path log, tags, leaves): half the time of the join
        a, b = parts
        return ((a.encode() if isinstance(a, str) else a) + b"\0"
                + (b.encode() if isinstance(b, str) else b))
    return b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)


def tree_key(branch: str, path: str) -> bytes:
    """The tree table's key of ``path`` on ``branch``."""
    head, _, tail = path.rpartition("/")
    return b"%s\0%s\0%s" % (branch.encode(), head.encode(), tail.encode())
