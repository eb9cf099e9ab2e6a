# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fossil's delta format, compiled: create, apply, output_size, checksum.

Same algorithm and output, byte for byte, as the reference in
``herofossil.delta.reference`` (whose docstring states the format) and as Fossil
2.21's ``delta_create`` on x86 (bytes hashed as signed char). Imports nothing of
the project; malformed input raises ``ValueError`` with the reason.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cdef extern from *:
    void __builtin_prefetch(const void*) nogil


cdef enum:
    AHEAD = 8              # positions hashed ahead of the scan, see _create
    RING = 16              # ring of hashed-ahead bucket numbers (power of 2 > AHEAD)
    NHASH = 16             # hash window and source block size, bytes
    SEARCH_LIMIT = 250     # candidate blocks tried per target position (Fossil's)
    MAX_INPUT = 0x7FFFFFFF  # Fossil's encoder indexes with C int

cdef const char* DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
cdef signed char VALUES[256]


cdef void _init_values() noexcept:
    cdef int i
    for i in range(256):
        VALUES[i] = -1
    for i in range(64):
        VALUES[<unsigned char>DIGITS[i]] = i


_init_values()

cdef unsigned char EMPTY[1]


cdef inline const unsigned char* _ptr(const unsigned char[::1] mv) noexcept:
    return &mv[0] if mv.shape[0] > 0 else EMPTY


cdef inline char* _put_int(uint32_t v, char* z) noexcept nogil:
    cdef char buf[8]
    cdef int i = 0
    if v == 0:
        z[0] = b'0'
        return z + 1
    while v > 0:
        buf[i] = DIGITS[v & 0x3F]
        i += 1
        v >>= 6
    while i > 0:
        i -= 1
        z[0] = buf[i]
        z += 1
    return z


cdef inline int _digit_count(int64_t v) noexcept nogil:
    cdef int n = 1
    cdef int64_t x = 64
    while v >= x:
        n += 1
        x <<= 6
    return n


cdef uint32_t _checksum(const unsigned char* z, Py_ssize_t n) noexcept nogil:
    cdef uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    # Four byte lanes summed separately, shifted into place at the end.
    while i + 16 <= n:
        s0 += <uint32_t>z[i] + z[i + 4] + z[i + 8] + z[i + 12]
        s1 += <uint32_t>z[i + 1] + z[i + 5] + z[i + 9] + z[i + 13]
        s2 += <uint32_t>z[i + 2] + z[i + 6] + z[i + 10] + z[i + 14]
        s3 += <uint32_t>z[i + 3] + z[i + 7] + z[i + 11] + z[i + 15]
        i += 16
    while i + 4 <= n:
        s0 += z[i]
        s1 += z[i + 1]
        s2 += z[i + 2]
        s3 += z[i + 3]
        i += 4
    if i < n:
        s0 += z[i]
    if i + 1 < n:
        s1 += z[i + 1]
    if i + 2 < n:
        s2 += z[i + 2]
    return (s0 << 24) + (s1 << 16) + (s2 << 8) + s3


cdef inline uint32_t _hash_once(const signed char* z) noexcept nogil:
    cdef uint16_t a = <uint16_t>z[0]
    cdef uint16_t b = a
    cdef int i
    for i in range(1, NHASH):
        a = <uint16_t>(a + z[i])
        b = <uint16_t>(b + a)
    return a | (<uint32_t>b << 16)


cdef inline Py_ssize_t _match_forward(
    const unsigned char* s, const unsigned char* t, Py_ssize_t limit
) noexcept nogil:
    cdef Py_ssize_t n = 0
    cdef uint64_t ws, wt
    while n + 8 <= limit:
        memcpy(&ws, s + n, 8)
        memcpy(&wt, t + n, 8)
        if ws != wt:
            break
        n += 8
    while n < limit and s[n] == t[n]:
        n += 1
    return n


cdef Py_ssize_t _create(
    const unsigned char* src, Py_ssize_t len_src,
    const unsigned char* out, Py_ssize_t len_out,
    char* z, int* collide, int64_t budget,
) noexcept nogil:
    """Write the delta into ``z`` (len_out + 64 bytes); return its length.

    ``budget`` caps the candidate blocks tried over the whole target (-1: no
    cap); past it the encoder gives up and returns -1.
    """
    cdef char* z0 = z
    cdef const signed char* ssrc = <const signed char*>src
    cdef const signed char* sout = <const signed char*>out
    cdef Py_ssize_t n_hash, i, base, i_src, y, j, k, cnt, ofst, sz, lim
    cdef Py_ssize_t best_cnt, best_ofst, best_litsz
    cdef int* landmark
    cdef Py_ssize_t q
    cdef int block, tries
    cdef uint32_t h
    cdef uint32_t ring[RING]
    cdef uint16_t a, b, old

    z = _put_int(<uint32_t>len_out, z)
    z[0] = b'\n'
    z += 1
    if len_src <= NHASH:
        z = _put_int(<uint32_t>len_out, z)
        z[0] = b':'
        z += 1
        memcpy(z, out, len_out)
        z += len_out
        z = _put_int(_checksum(out, len_out), z)
        z[0] = b';'
        return z + 1 - z0

    n_hash = len_src // NHASH
    landmark = collide + n_hash
    i = 0
    while i < len_src - NHASH:
        h = _hash_once(ssrc + i) % <uint32_t>n_hash
        collide[i // NHASH] = landmark[h]
        landmark[h] = <int>(i // NHASH)
        i += NHASH

    base = 0
    while base + NHASH < len_out:
        h = _hash_once(sout + base)
        a = <uint16_t>h
        b = <uint16_t>(h >> 16)
        q = base
        i = 0
        best_cnt = best_ofst = best_litsz = 0
        while True:
            # The scan is bound by cache misses on landmark[] and on the source
            # block it names. Rolling a second hash AHEAD positions in front and
            # prefetching both made unrelated 2 MB inputs 1.9x faster (70 -> 37 ms).
            while q <= base + i + AHEAD and q + NHASH <= len_out:
                h = ((<uint32_t>b << 16) | a) % <uint32_t>n_hash
                ring[q & (RING - 1)] = h
                __builtin_prefetch(&landmark[h])
                if q + NHASH < len_out:
                    old = <uint16_t>sout[q]
                    a = <uint16_t>(a - old + sout[q + NHASH])
                    b = <uint16_t>(b - NHASH * old + a)
                q += 1
            if base + i + AHEAD // 2 < q:
                block = landmark[ring[(base + i + AHEAD // 2) & (RING - 1)]]
                if block >= 0:
                    __builtin_prefetch(src + <Py_ssize_t>block * NHASH)
            block = landmark[ring[(base + i) & (RING - 1)]]
            tries = SEARCH_LIMIT
            while block >= 0 and tries > 0:
                tries -= 1
                if budget >= 0:
                    budget -= 1
                    if budget < 0:
                        return -1
                i_src = <Py_ssize_t>block * NHASH
                y = base + i
                lim = len_src - i_src
                if len_out - y < lim:
                    lim = len_out - y
                j = _match_forward(src + i_src, out + y, lim)
                k = 0
                while k + 1 < i_src and k + 1 <= i and src[i_src - k - 1] == out[y - k - 1]:
                    k += 1
                cnt = j + k
                ofst = i_src - k
                sz = _digit_count(i - k) + _digit_count(cnt) + _digit_count(ofst) + 3
                if cnt >= sz and cnt > best_cnt:
                    best_cnt = cnt
                    best_ofst = ofst
                    best_litsz = i - k
                block = collide[block]

            if best_cnt > 0:
                if best_litsz > 0:
                    z = _put_int(<uint32_t>best_litsz, z)
                    z[0] = b':'
                    z += 1
                    memcpy(z, out + base, best_litsz)
                    z += best_litsz
                    base += best_litsz
                base += best_cnt
                z = _put_int(<uint32_t>best_cnt, z)
                z[0] = b'@'
                z = _put_int(<uint32_t>best_ofst, z + 1)
                z[0] = b','
                z += 1
                break

            if base + i + NHASH >= len_out:
                z = _put_int(<uint32_t>(len_out - base), z)
                z[0] = b':'
                z += 1
                memcpy(z, out + base, len_out - base)
                z += len_out - base
                base = len_out
                break

            i += 1

    if base < len_out:
        z = _put_int(<uint32_t>(len_out - base), z)
        z[0] = b':'
        z += 1
        memcpy(z, out + base, len_out - base)
        z += len_out - base
    z = _put_int(_checksum(out, len_out), z)
    z[0] = b';'
    return z + 1 - z0


def create(const unsigned char[::1] source, const unsigned char[::1] target,
           int64_t budget=-1):
    """Return a delta that carries ``source`` into ``target`` (identical to Fossil's).

    With ``budget`` >= 0, give up (return None) once that many candidate source
    blocks have been tried: the cost of an unrelated pair stays bounded.
    """
    cdef Py_ssize_t len_src = source.shape[0], len_out = target.shape[0], n
    cdef const unsigned char* src = _ptr(source)
    cdef const unsigned char* out = _ptr(target)
    cdef char* buf
    cdef int* collide = NULL
    cdef size_t table_bytes
    if len_src > MAX_INPUT or len_out > MAX_INPUT:
        raise ValueError("input larger than 2 GiB cannot be encoded in Fossil's delta format")
    buf = <char*>malloc(len_out + 64)
    if buf == NULL:
        raise MemoryError()
    if len_src > NHASH:
        table_bytes = <size_t>(len_src // NHASH) * 2 * sizeof(int)
        collide = <int*>malloc(table_bytes)
        if collide == NULL:
            free(buf)
            raise MemoryError()
        memset(collide, 0xFF, table_bytes)
    try:
        with nogil:
            n = _create(src, len_src, out, len_out, buf, collide, budget)
        if n < 0:
            return None
        return PyBytes_FromStringAndSize(buf, n)
    finally:
        free(collide)
        free(buf)


def checksum(const unsigned char[::1] data) -> int:
    """Fossil's 32-bit checksum: sum of big-endian words, last one zero-padded."""
    cdef uint32_t s
    cdef const unsigned char* z = _ptr(data)
    with nogil:
        s = _checksum(z, data.shape[0])
    return s


cdef inline Py_ssize_t _get_int(
    const unsigned char* d, Py_ssize_t n, Py_ssize_t pos, uint32_t* value
) except -1:
    """Decode the integer at ``pos`` into ``value``; return the position after it."""
    cdef Py_ssize_t start = pos
    cdef uint64_t v = 0
    cdef signed char c
    while pos < n:
        c = VALUES[d[pos]]
        if c < 0:
            break
        v = (v << 6) | <uint64_t>c
        if v > 0xFFFFFFFF:
            raise ValueError(f"base-64 integer at offset {start} overflows 32 bits")
        pos += 1
    if pos == start:
        if pos >= n:
            raise ValueError(f"delta truncated at offset {pos}: expected a base-64 integer")
        raise ValueError(f"bad base-64 integer at offset {pos}: byte {d[pos]:#04x}")
    value[0] = <uint32_t>v
    return pos


def output_size(const unsigned char[::1] delta) -> int:
    """Size of the target that ``delta`` produces, read from its first line."""
    cdef uint32_t size
    cdef Py_ssize_t pos = _get_int(_ptr(delta), delta.shape[0], 0, &size)
    if pos >= delta.shape[0] or delta[pos] != b'\n':
        raise ValueError("delta size is not terminated by a newline")
    return size


def apply(const unsigned char[::1] source, const unsigned char[::1] delta) -> bytes:
    """Apply ``delta`` to ``source`` and return the target; ValueError if malformed."""
    cdef const unsigned char* src = _ptr(source)
    cdef const unsigned char* d = _ptr(delta)
    cdef Py_ssize_t n = delta.shape[0], len_src = source.shape[0]
    cdef Py_ssize_t pos, op_at, total = 0
    cdef uint32_t limit, cnt, ofst, sum_out
    cdef unsigned char op
    cdef char* z
    limit = output_size(delta)
    pos = _get_int(d, n, 0, &limit) + 1
    # Each copy takes at least 4 delta bytes, so a bigger declared size is a lie;
    # checking first keeps a forged size from costing memory.
    if <uint64_t>limit > <uint64_t>(n // 4) * <uint64_t>len_src + <uint64_t>n:
        raise ValueError(f"declared output size {limit} is impossible for this delta and source")
    result = PyBytes_FromStringAndSize(NULL, limit)
    z = PyBytes_AS_STRING(result)
    while pos < n:
        op_at = pos
        pos = _get_int(d, n, pos, &cnt)
        if pos >= n:
            raise ValueError(f"delta truncated at offset {pos}: expected an operator")
        op = d[pos]
        pos += 1
        if op == b'@':
            pos = _get_int(d, n, pos, &ofst)
            if pos >= n or d[pos] != b',':
                raise ValueError(f"copy command at offset {op_at} is not terminated by ','")
            pos += 1
            if total + cnt > limit:
                raise ValueError(f"copy at offset {op_at} exceeds the declared output size")
            if <Py_ssize_t>ofst + cnt > len_src:
                raise ValueError(
                    f"copy at offset {op_at} reads past the end of the source "
                    f"({ofst}+{cnt} > {len_src})"
                )
            memcpy(z + total, src + ofst, cnt)
            total += cnt
        elif op == b':':
            if total + cnt > limit:
                raise ValueError(f"insert at offset {op_at} exceeds the declared output size")
            if pos + cnt > n:
                raise ValueError(f"insert at offset {op_at} runs past the end of the delta")
            memcpy(z + total, d + pos, cnt)
            total += cnt
            pos += cnt
        elif op == b';':
            if pos != n:
                raise ValueError(f"{n - pos} bytes of trailing garbage after the checksum")
            if total != limit:
                raise ValueError(f"output is {total} bytes but the delta declares {limit}")
            with nogil:
                sum_out = _checksum(<const unsigned char*>z, total)
            if sum_out != cnt:
                raise ValueError("checksum mismatch: delta does not fit this source or is damaged")
            return result
        else:
            raise ValueError(f"unknown delta operator {bytes([op])!r} at offset {pos - 1}")
    raise ValueError("delta truncated: no terminating checksum")


cdef enum:
    WINDOW = 32            # bytes of the rolling hash that picks anchors
    ANCHOR_BITS = 8        # one position in 2**ANCHOR_BITS is an anchor
    REGIONS = 64           # target regions sampled by ``similarity``

cdef uint64_t MULT = 0x100000001B3
cdef uint64_t MIX = 0xFF51AFD7ED558CCD


cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= MIX
    h ^= h >> 33
    return h


cdef Py_ssize_t _anchors(const unsigned char* z, Py_ssize_t n, uint64_t* table, uint64_t mask,
                         bint insert, Py_ssize_t* found, Py_ssize_t* filled) noexcept nogil:
    """Anchors of ``z`` (content-defined positions of a rolling hash): inserted into the
    open-addressing ``table``, or looked up (``found`` counts hits); returns how many."""
    cdef uint64_t h = 0, top = 1, m, slot
    cdef Py_ssize_t i, count = 0
    if n < WINDOW:
        return 0
    for i in range(WINDOW - 1):
        top *= MULT
    for i in range(WINDOW):
        h = h * MULT + z[i]
    i = WINDOW
    while True:
        m = _mix(h) | 1  # 0 marks an empty slot
        if (m >> (64 - ANCHOR_BITS)) == 0:
            count += 1
            slot = m & mask
            while table[slot] != 0 and table[slot] != m:
                slot = (slot + 1) & mask
            if insert:
                if table[slot] == 0 and filled[0] * 2 < <Py_ssize_t>mask:
                    table[slot] = m
                    filled[0] += 1
            elif table[slot] == m:
                found[0] += 1
        if i >= n:
            break
        h = (h - z[i - WINDOW] * top) * MULT + z[i]
        i += 1
    return count


def similarity(const unsigned char[::1] source, const unsigned char[::1] target,
               Py_ssize_t sample=1 << 22):
    """(anchors of ``target`` looked at, how many of them are in ``source``).

    Anchors are the positions where a rolling hash of the last 32 bytes has its
    top 8 bits clear, so the same content has the same anchors wherever it
    sits. Every anchor of ``source`` is indexed (one linear pass); ``target``
    is read whole up to ``sample`` bytes, else in 64 evenly spread regions of
    ``sample / 64`` bytes. The cost is linear in the source and bounded in the
    target, whatever the content.
    """
    cdef Py_ssize_t len_src = source.shape[0], len_out = target.shape[0]
    cdef Py_ssize_t slots = 1024, found = 0, filled = 0, looked = 0, r, start, step, size
    cdef const unsigned char* src = _ptr(source)
    cdef const unsigned char* out = _ptr(target)
    cdef uint64_t* table
    while slots < 4 * (len_src >> ANCHOR_BITS) and slots < (1 << 26):
        slots <<= 1
    table = <uint64_t*>malloc(slots * sizeof(uint64_t))
    if table == NULL:
        raise MemoryError()
    memset(table, 0, slots * sizeof(uint64_t))
    try:
        with nogil:
            _anchors(src, len_src, table, slots - 1, True, &found, &filled)
            if len_out <= sample:
                looked = _anchors(out, len_out, table, slots - 1, False, &found, &filled)
            else:
                size = sample // REGIONS
                step = (len_out - size) // (REGIONS - 1)
                for r in range(REGIONS):
                    start = r * step
                    looked += _anchors(out + start, size, table, slots - 1, False, &found,
                                       &filled)
        return looked, found
    finally:
        free(table)
