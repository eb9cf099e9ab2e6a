"""The tree scan of a Git import: the compiled ``plain_tree`` and its readable twin give
the same answer on every case, and the import judges odd trees as before."""

from __future__ import annotations

import random

import pytest

from herofossil.gitimport import objects

SCANS = {"reference": objects.plain_tree_reference}
try:
    from herofossil.cext import _gittree

    SCANS["cython"] = _gittree.plain_tree
except ImportError:  # not built: the reference alone
    pass

A, B, C = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20


def entry(mode: bytes, name: bytes, oid: bytes = A) -> bytes:
    return mode + b" " + name + b"\0" + oid


CASES = [
    ("empty", b"", (False, [])),
    ("one file", entry(b"100644", b"a.txt"), (True, [])),
    ("files and subtrees in Git's order",
     entry(b"100755", b"run") + entry(b"120000", b"src.link") + entry(b"40000", b"src", B)
     + entry(b"40000", b"tests", C), (True, [B, C])),
    # Git's order sorts a subtree as "name/": "a.b" < "a/" < "a0"
    ("a subtree sorts as name/", entry(b"100644", b"a.b") + entry(b"40000", b"a", B)
     + entry(b"100644", b"a0"), (True, [B])),
    ("subtrees only", entry(b"40000", b"x", B), (False, [B])),
    ("equal keys pass (they re-serialise the same)",
     entry(b"100644", b"a") + entry(b"100644", b"a", B), (True, [])),
    ("out of order", entry(b"100644", b"b") + entry(b"100644", b"a"), None),
    ("a subtree out of Git's order", entry(b"40000", b"a", B) + entry(b"100644", b"a.b"), None),
    ("old zero-padded tree mode", entry(b"040000", b"d", B), None),
    ("a gitlink", entry(b"160000", b"sub", B), None),
    ("a group-writable file mode", entry(b"100664", b"f"), None),
    ("an empty name", entry(b"100644", b""), None),
    ("a truncated id", entry(b"100644", b"f")[:-1], None),
    ("no NUL after the name", b"100644 f", None),
    ("a letter in the mode", b"10064x f\0" + A, None),
    ("no space after the mode", b"100644", None),
]


@pytest.mark.parametrize("scan", sorted(SCANS))
@pytest.mark.parametrize(("case", "raw", "want"), CASES, ids=[c[0] for c in CASES])
def test_plain_tree_answers_each_case(scan, case, raw, want):
    assert SCANS[scan](raw) == want, case


def test_the_compiled_scan_is_built_and_agrees_on_random_trees():
    assert "cython" in SCANS, "herofossil.cext._gittree is not built"
    rnd = random.Random(5)
    modes = [b"100644", b"100755", b"120000", b"40000", b"040000", b"160000"]
    for _ in range(2000):
        names = [bytes(rnd.choice(b"ab./-0") for _ in range(rnd.randint(0, 3)))
                 for _ in range(rnd.randint(0, 6))]
        items = [(rnd.choice(modes), n, bytes([rnd.randrange(256)]) * 20) for n in names]
        if rnd.random() < 0.7:  # mostly in Git's order, as real trees are
            items.sort(key=lambda e: e[1] + b"/" if e[0] == b"40000" else e[1])
        raw = b"".join(entry(*e) for e in items)
        if rnd.random() < 0.1:
            raw = raw[:rnd.randrange(len(raw) + 1)]
        assert SCANS["cython"](raw) == SCANS["reference"](raw), raw
