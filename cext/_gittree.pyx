# cython: language_level=3, boundscheck=False, wraparound=False
"""Git tree scanning, compiled: ``plain_tree``.

Same contract and results as ``herofossil.gitimport.objects.plain_tree_reference``
(tested on the same cases). Imports nothing of the project.
"""

from libc.string cimport memcmp

DEF ID_LEN = 20


cdef inline int _at(const unsigned char* s, Py_ssize_t length, bint tree,
                    Py_ssize_t i) noexcept:
    """Byte ``i`` of a Git sort key (the name, then '/' for a subtree); -1 past its end."""
    if i < length:
        return s[i]
    if i == length and tree:
        return 47
    return -1


cdef inline int _key_cmp(const unsigned char* a, Py_ssize_t alen, bint atree,
                         const unsigned char* b, Py_ssize_t blen, bint btree) noexcept:
    """Compare two Git sort keys bytewise (a key that ends first sorts first)."""
    cdef Py_ssize_t i = alen if alen < blen else blen
    cdef int c = memcmp(a, b, i)
    cdef int ca, cb
    if c != 0:
        return c
    while True:
        ca = _at(a, alen, atree, i)
        cb = _at(b, blen, btree, i)
        if ca != cb:
            return ca - cb
        if ca == -1:
            return 0
        i += 1


def plain_tree(const unsigned char[:] raw):
    """(has a file, ids of its subtrees) of a well-formed tree whose entries are files
    (100644, 100755, 120000) and subtrees (40000) only, in Git's order; None for anything
    else (an odd mode, an empty name, entries out of order, a damaged tree)."""
    cdef Py_ssize_t n = raw.shape[0]
    cdef Py_ssize_t pos = 0, mode_start, mode_len, name_start, name_len
    cdef Py_ssize_t prev_start = 0, prev_len = -1
    cdef bint prev_tree = False, tree, has_file = False
    cdef const unsigned char* p
    subtrees = []
    if n == 0:
        return (False, subtrees)
    p = &raw[0]
    while pos < n:
        mode_start = pos
        while pos < n and p[pos] != 32:
            if p[pos] < 48 or p[pos] > 57:
                return None
            pos += 1
        if pos >= n:
            return None
        mode_len = pos - mode_start
        if mode_len == 5 and memcmp(p + mode_start, b"40000", 5) == 0:
            tree = True
        elif mode_len == 6 and (memcmp(p + mode_start, b"100644", 6) == 0
                                or memcmp(p + mode_start, b"100755", 6) == 0
                                or memcmp(p + mode_start, b"120000", 6) == 0):
            tree = False
        else:
            return None
        pos += 1
        name_start = pos
        while pos < n and p[pos] != 0:
            pos += 1
        if pos >= n:
            return None
        name_len = pos - name_start
        if name_len == 0 or pos + 1 + ID_LEN > n:
            return None
        if prev_len >= 0 and _key_cmp(p + prev_start, prev_len, prev_tree,
                                      p + name_start, name_len, tree) > 0:
            return None
        prev_start, prev_len, prev_tree = name_start, name_len, tree
        pos += 1
        if tree:
            subtrees.append(bytes(raw[pos:pos + ID_LEN]))
        else:
            has_file = True
        pos += ID_LEN
    return (has_file, subtrees)
