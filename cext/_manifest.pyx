# cython: language_level=3, boundscheck=False, wraparound=False
"""The F cards of a manifest, compiled: ``file_cards``.

A fast path of ``herofossil.store.manifest._CardReader.file_card``, the readable twin:
it takes the plain cards (no escape, no dot segment, nothing odd) and stops at the
first other one, which the twin then reads, with its exact error if it has one (tested
on the same cases). Imports nothing of the project.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from libc.string cimport memchr, memcmp

DEF SPACE = 32
DEF SLASH = 47
DEF DOT = 46
DEF BACKSLASH = 92


cdef inline bint _plain_path(const unsigned char* s, Py_ssize_t n) noexcept:
    """A name the twin's simple-path check passes at a glance: not empty, no leading,
    trailing or double slash, no NUL, no segment starting with a dot (those the twin
    judges)."""
    cdef Py_ssize_t i
    if n == 0 or s[0] == SLASH or s[0] == DOT or s[n - 1] == SLASH:
        return False
    for i in range(n):
        if s[i] == 0:
            return False
        if s[i] == SLASH and (s[i + 1] == SLASH or s[i + 1] == DOT):
            return False  # s[n - 1] is no slash: i + 1 < n
    return True


cdef inline int _cmp(const unsigned char* a, Py_ssize_t alen,
                     const unsigned char* b, Py_ssize_t blen) noexcept:
    cdef Py_ssize_t m = alen if alen < blen else blen
    cdef int c = memcmp(a, b, m)
    if c != 0:
        return c
    return (alen > blen) - (alen < blen)


cdef inline str _text(const unsigned char* s, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>s, n, "surrogateescape")


def file_cards(list lines, Py_ssize_t start, reader, card_type):
    """Read the plain F cards of ``lines`` from ``start`` into ``reader`` (a
    ``_CardReader``: its files, uuids, ni, nfile, fnames_prev; ``card_type``: FileCard);
    returns the index of the first line it did not take (``start`` if none)."""
    cdef Py_ssize_t idx = start, nlines = len(lines), n, i, nargs
    cdef Py_ssize_t pos[4]
    cdef Py_ssize_t end[4]
    cdef bint odd
    cdef const unsigned char* s
    cdef const unsigned char* prev
    cdef Py_ssize_t prev_len
    cdef bytes line, prev_obj = reader.fnames_prev
    cdef bint has_baseline = reader.baseline is not None
    cdef Py_ssize_t nfile = reader.nfile, ulen
    cdef list files = reader.files, uuids = reader.uuids
    cdef bint first_hash = reader.ni < 0
    prev = <const unsigned char*>prev_obj
    prev_len = len(prev_obj)
    while idx < nlines:
        line = <bytes>lines[idx]
        s = <const unsigned char*>line
        n = len(line)
        if n < 3 or s[0] != 70 or s[1] != SPACE or memchr(s, BACKSLASH, n) != NULL:
            break
        # The arguments after "F ": 1 to 4, none empty (else the twin reads the line).
        nargs = 0
        pos[0] = 2
        odd = False
        for i in range(2, n):
            if s[i] == SPACE:
                if nargs == 3:  # a fifth argument
                    odd = True
                    break
                end[nargs] = i
                nargs += 1
                pos[nargs] = i + 1
        if odd:
            break
        end[nargs] = n
        nargs += 1
        for i in range(nargs):
            if end[i] == pos[i]:
                odd = True
        if odd:
            break
        if not _plain_path(s + pos[0], end[0] - pos[0]):
            break
        if nfile and _cmp(s + pos[0], end[0] - pos[0], prev, prev_len) <= 0:
            break  # out of sort order
        if nargs == 1:
            if not has_baseline:
                break
            card = card_type(_text(s + 2, end[0] - 2), None)
        else:
            ulen = end[1] - pos[1]
            if ulen != 40 and ulen != 64:
                break
            uuid = PyUnicode_DecodeASCII(<const char*>s + pos[1], ulen, "replace")
            if nargs == 2:
                card = card_type(_text(s + 2, end[0] - 2), uuid)
            elif nargs == 3:
                card = card_type(_text(s + 2, end[0] - 2), uuid,
                                 _text(s + pos[2], end[2] - pos[2]))
            else:
                if not _plain_path(s + pos[3], end[3] - pos[3]):
                    break
                if end[2] - pos[2] == 1 and s[pos[2]] == 119:  # "w": no flag, renamed
                    perm = ""
                else:
                    perm = _text(s + pos[2], end[2] - pos[2])
                card = card_type(_text(s + 2, end[0] - 2), uuid, perm,
                                 _text(s + pos[3], end[3] - pos[3]))
            uuids.append(line[pos[1]:end[1]])
            if first_hash:
                reader.ni = idx
                first_hash = False
        files.append(card)
        prev = s + pos[0]
        prev_len = end[0] - pos[0]
        prev_obj = line
        nfile += 1
        idx += 1
    if idx > start:
        reader.fnames_prev = (<bytes>lines[idx - 1])[2:2 + prev_len]
        reader.nfile = nfile
    return idx
