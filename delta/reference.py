"""Fossil's delta format: a readable pure-Python codec (the reference for ``cext._delta``).

Format (Fossil ``src/delta.c``; all numbers are base-64 integers written with the
digits ``0-9 A-Z _ a-z ~``, most significant first)::

    SIZE "\\n"                       size of the target in bytes
    { CNT "@" OFFSET ","            copy CNT bytes of the source from OFFSET
    | CNT ":" CNT-BYTES }           insert CNT literal bytes
    CHECKSUM ";"                    32-bit checksum of the target, then end

The checksum is the sum, modulo 2**32, of the target read as big-endian 32-bit
words, the last one zero-padded.

The encoder is Fossil's: the source is cut into 16-byte blocks indexed by a
rolling hash (``len(source) // 16`` buckets, newest block first in each chain);
the target is scanned with a 16-byte window, up to 250 blocks are tried per
position, each candidate is extended forwards and backwards, and the first
position with a match worth its encoding emits (literal +) copy. Fossil hashes
bytes as C ``char``, which is signed on x86; this module does the same so its
output is byte-identical to Fossil 2.21's ``delta_create``.

The decoder is stricter than Fossil's: it always checks the checksum, requires
the ``,`` after every copy, rejects trailing bytes after ``;`` and 32-bit
overflow, and raises :class:`~herofossil.errors.DeltaError` saying what is wrong.
"""

from __future__ import annotations

import struct

from herofossil.errors import DeltaError

NHASH = 16
"""Width of the hash window and size of a source block, in bytes."""
SEARCH_LIMIT = 250
"""Candidate blocks examined per target position (Fossil's ``limit``)."""
MAX_INPUT = 0x7FFFFFFF
"""Largest source or target: Fossil's encoder indexes with C ``int``."""
_MAX_INT = 0xFFFFFFFF

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUES = [-1] * 256
for _v, _c in enumerate(_DIGITS):
    _VALUES[_c] = _v
del _v, _c
_SIGNED = [b - 256 if b >= 128 else b for b in range(256)]


def put_int(v: int) -> bytes:
    """Encode a non-negative integer in Fossil's base-64."""
    if v == 0:
        return b"0"
    out = bytearray()
    while v > 0:
        out.append(_DIGITS[v & 0x3F])
        v >>= 6
    out.reverse()
    return bytes(out)


def digit_count(v: int) -> int:
    """Number of base-64 digits ``put_int(v)`` writes."""
    n, x = 1, 64
    while v >= x:
        n += 1
        x <<= 6
    return n


def checksum(data: bytes) -> int:
    """Fossil's 32-bit checksum: sum of big-endian words, last one zero-padded."""
    n4 = len(data) & ~3
    total = sum(struct.unpack_from(f">{n4 // 4}I", data))
    if n4 < len(data):
        total += int.from_bytes(bytes(data[n4:]).ljust(4, b"\0"), "big")
    return total & 0xFFFFFFFF


def hash_once(data: bytes, start: int) -> int:
    """Rolling-hash value of the 16 bytes at ``start`` (bytes taken as signed char)."""
    a = b = _SIGNED[data[start]]
    for i in range(start + 1, start + NHASH):
        a += _SIGNED[data[i]]
        b += a
    return (a & 0xFFFF) | ((b & 0xFFFF) << 16)


def _match_forward(source: bytes, x: int, target: bytes, y: int, limit: int) -> int:
    """Length of the common run of ``source[x:]`` and ``target[y:]``, at most ``limit``."""
    n = 0
    step = 64
    while n < limit:
        m = min(step, limit - n)
        if source[x + n : x + n + m] == target[y + n : y + n + m]:
            n += m
            step *= 2
        elif m == 1:
            break
        else:
            step = max(1, m // 2)
    return n


def create(source: bytes, target: bytes) -> bytes:
    """Return a delta that carries ``source`` into ``target`` (identical to Fossil's)."""
    source, target = bytes(source), bytes(target)
    len_src, len_out = len(source), len(target)
    if len_src > MAX_INPUT or len_out > MAX_INPUT:
        raise DeltaError("input larger than 2 GiB cannot be encoded in Fossil's delta format")
    out = [put_int(len_out), b"\n"]

    if len_src <= NHASH:
        out += [put_int(len_out), b":", target, put_int(checksum(target)), b";"]
        return b"".join(out)

    n_hash = len_src // NHASH
    collide = [-1] * n_hash
    landmark = [-1] * n_hash
    for i in range(0, len_src - NHASH, NHASH):
        hv = hash_once(source, i) % n_hash
        collide[i // NHASH] = landmark[hv]
        landmark[hv] = i // NHASH

    base = 0
    while base + NHASH < len_out:
        h = hash_once(target, base)
        a, b = h & 0xFFFF, h >> 16
        i = 0
        best_cnt = best_ofst = best_litsz = 0
        while True:
            block = landmark[((b << 16) | a) % n_hash]
            tries = SEARCH_LIMIT
            while block >= 0 and tries > 0:
                tries -= 1
                i_src = block * NHASH
                y = base + i
                j = _match_forward(source, i_src, target, y, min(len_src - i_src, len_out - y))
                k = 0
                while k + 1 < i_src and k + 1 <= i and source[i_src - k - 1] == target[y - k - 1]:
                    k += 1
                cnt = j + k
                ofst = i_src - k
                sz = digit_count(i - k) + digit_count(cnt) + digit_count(ofst) + 3
                if cnt >= sz and cnt > best_cnt:
                    best_cnt, best_ofst, best_litsz = cnt, ofst, i - k
                block = collide[block]

            if best_cnt > 0:
                if best_litsz > 0:
                    out += [put_int(best_litsz), b":", target[base : base + best_litsz]]
                    base += best_litsz
                base += best_cnt
                out += [put_int(best_cnt), b"@", put_int(best_ofst), b","]
                break

            if base + i + NHASH >= len_out:
                out += [put_int(len_out - base), b":", target[base:]]
                base = len_out
                break

            old = _SIGNED[target[base + i]]
            a = (a - old + _SIGNED[target[base + i + NHASH]]) & 0xFFFF
            b = (b - NHASH * old + a) & 0xFFFF
            i += 1

    if base < len_out:
        out += [put_int(len_out - base), b":", target[base:]]
    out += [put_int(checksum(target)), b";"]
    return b"".join(out)


def _get_int(delta: bytes, pos: int) -> tuple[int, int]:
    """Decode the base-64 integer at ``pos``; return ``(value, position after it)``."""
    start = pos
    v = 0
    while pos < len(delta) and (d := _VALUES[delta[pos]]) >= 0:
        v = (v << 6) | d
        pos += 1
        if v > _MAX_INT:
            raise DeltaError(f"base-64 integer at offset {start} overflows 32 bits")
    if pos == start:
        if pos >= len(delta):
            raise DeltaError(f"delta truncated at offset {pos}: expected a base-64 integer")
        raise DeltaError(f"bad base-64 integer at offset {pos}: byte {delta[pos]:#04x}")
    return v, pos


def output_size(delta: bytes) -> int:
    """Size of the target that ``delta`` produces, read from its first line."""
    size, pos = _get_int(delta, 0)
    if pos >= len(delta) or delta[pos] != 0x0A:
        raise DeltaError("delta size is not terminated by a newline")
    return size


def apply(source: bytes, delta: bytes) -> bytes:
    """Apply ``delta`` to ``source`` and return the target; raise DeltaError if malformed."""
    source, delta = bytes(source), bytes(delta)
    limit = output_size(delta)
    pos = delta.index(b"\n") + 1
    # Each copy takes at least 4 delta bytes, so a bigger declared size is a lie;
    # checking first keeps a forged size from costing memory.
    if limit > (len(delta) // 4) * len(source) + len(delta):
        raise DeltaError(f"declared output size {limit} is impossible for this delta and source")
    out = bytearray()
    while pos < len(delta):
        op_at = pos
        cnt, pos = _get_int(delta, pos)
        if pos >= len(delta):
            raise DeltaError(f"delta truncated at offset {pos}: expected an operator")
        op = delta[pos]
        pos += 1
        if op == 0x40:  # '@' copy
            ofst, pos = _get_int(delta, pos)
            if pos >= len(delta) or delta[pos] != 0x2C:
                raise DeltaError(f"copy command at offset {op_at} is not terminated by ','")
            pos += 1
            if len(out) + cnt > limit:
                raise DeltaError(f"copy at offset {op_at} exceeds the declared output size")
            if ofst + cnt > len(source):
                raise DeltaError(
                    f"copy at offset {op_at} reads past the end of the source "
                    f"({ofst}+{cnt} > {len(source)})"
                )
            out += source[ofst : ofst + cnt]
        elif op == 0x3A:  # ':' insert
            if len(out) + cnt > limit:
                raise DeltaError(f"insert at offset {op_at} exceeds the declared output size")
            if pos + cnt > len(delta):
                raise DeltaError(f"insert at offset {op_at} runs past the end of the delta")
            out += delta[pos : pos + cnt]
            pos += cnt
        elif op == 0x3B:  # ';' checksum, end
            if pos != len(delta):
                raise DeltaError(f"{len(delta) - pos} bytes of trailing garbage after the checksum")
            if len(out) != limit:
                raise DeltaError(f"output is {len(out)} bytes but the delta declares {limit}")
            if checksum(out) != cnt:
                raise DeltaError("checksum mismatch: delta does not fit this source or is damaged")
            return bytes(out)
        else:
            raise DeltaError(f"unknown delta operator {bytes([op])!r} at offset {pos - 1}")
    raise DeltaError("delta truncated: no terminating checksum")
