"""The Fossil delta codec: byte-identical to Fossil 2.21, round-trips, rejects malformed deltas.

Every test runs against each codec in ``IMPLEMENTATIONS`` (reference and, when
built, Cython); the interop tests drive the real ``fossil`` binary.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herofossil.delta import IMPLEMENTATIONS, reference
from herofossil.errors import DeltaError

FOSSIL = shutil.which("fossil")
needs_fossil = pytest.mark.skipif(FOSSIL is None, reason="fossil binary not on PATH")
# The ``codec`` fixture is a constant per test, so reusing it across examples is fine.
FIXTURE_OK = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def codec(request):
    """Each available codec in turn."""
    return IMPLEMENTATIONS[request.param]


def fossil_create(tmp_path: Path, source: bytes, target: bytes) -> bytes:
    """Run ``fossil test-delta-create`` and return its delta."""
    (tmp_path / "src").write_bytes(source)
    (tmp_path / "tgt").write_bytes(target)
    subprocess.run([FOSSIL, "test-delta-create", "src", "tgt", "delta"], cwd=tmp_path, check=True)
    return (tmp_path / "delta").read_bytes()


def fossil_apply(tmp_path: Path, source: bytes, delta: bytes) -> bytes:
    """Run ``fossil test-delta-apply`` and return the target it writes."""
    (tmp_path / "src").write_bytes(source)
    (tmp_path / "delta").write_bytes(delta)
    subprocess.run([FOSSIL, "test-delta-apply", "src", "delta", "out"], cwd=tmp_path, check=True)
    return (tmp_path / "out").read_bytes()


def edit_lines(rnd: random.Random, text: bytes, edits: int) -> bytes:
    """Change, insert and delete a few lines of ``text``."""
    lines = text.splitlines(keepends=True)
    for _ in range(edits):
        at = rnd.randint(0, len(lines))
        kind = rnd.choice("cid")
        new = f"edited line {rnd.randint(0, 10**6)} \u00e9\u00e8 {'x' * rnd.randint(0, 40)}\n"
        if kind == "c" and at < len(lines):
            lines[at] = new.encode()
        elif kind == "i":
            lines.insert(at, new.encode())
        elif at < len(lines):
            del lines[at]
    return b"".join(lines)


def random_text(rnd: random.Random, n_lines: int) -> bytes:
    """Deterministic source-code-like text with some non-ASCII."""
    words = ["def", "return", "self", "value", "x", "=", "(", ")", "caf\u00e9", "\u00fcber", "#"]
    return "".join(
        " " * rnd.randint(0, 8)
        + " ".join(rnd.choice(words) for _ in range(rnd.randint(0, 10)))
        + "\n"
        for _ in range(n_lines)
    ).encode()


def mutate_bytes(rnd: random.Random, data: bytes, n: int) -> bytes:
    """Overwrite, insert and delete a few random runs of ``data``."""
    out = bytearray(data)
    for _ in range(n):
        at = rnd.randint(0, len(out))
        out[at : at + rnd.randint(0, 64)] = rnd.randbytes(rnd.randint(0, 64))
    return bytes(out)


def pairs(seed: int, big: bool = False) -> list[tuple[str, bytes, bytes]]:
    """Named (source, target) pairs: text edits, binary edits and edge cases."""
    rnd = random.Random(seed)
    text = random_text(rnd, 300)
    blob = rnd.randbytes(3000)
    cases = [
        ("empty-both", b"", b""),
        ("empty-source", b"", text[:500]),
        ("empty-target", text, b""),
        ("tiny-source", b"0123456789abcdef", text[:200]),
        ("tiny-source-empty-target", b"abc", b""),
        ("identical-text", text, text),
        ("identical-binary", blob, blob),
        ("text-edits", text, edit_lines(rnd, text, 10)),
        ("text-many-edits", text, edit_lines(rnd, text, 80)),
        ("binary-edits", blob, mutate_bytes(rnd, blob, 5)),
        ("binary-unrelated", blob, rnd.randbytes(2000)),
        ("high-bytes", bytes(range(128, 256)) * 40, bytes(range(255, 127, -1)) * 40),
        ("repetitive", b"\xff" * 5000, b"\xff" * 4000 + b"\x80" * 100 + b"\xff" * 900),
        ("short-target", blob, blob[100:117]),
    ]
    for n in range(6):
        src = rnd.randbytes(rnd.randint(0, 600))
        cases.append((f"small-binary-{n}", src, mutate_bytes(rnd, src, rnd.randint(0, 4))))
    if big:
        big_blob = rnd.randbytes(200_000)
        big_text = random_text(rnd, 5000)
        cases += [
            ("big-binary", big_blob, mutate_bytes(rnd, big_blob, 40)),
            ("big-text", big_text, edit_lines(rnd, big_text, 100)),
        ]
    return cases


PAIRS = pairs(2021)
BIG_PAIRS = pairs(221, big=True)[-2:]


# (a) byte-identical to Fossil


@needs_fossil
@pytest.mark.parametrize("name,source,target", PAIRS, ids=[p[0] for p in PAIRS])
def test_create_is_byte_identical_to_fossil(codec, tmp_path, name, source, target):
    assert codec.create(source, target) == fossil_create(tmp_path, source, target)


@needs_fossil
@pytest.mark.parametrize("seed", range(6))
def test_create_matches_fossil_on_random_edits(codec, tmp_path, seed):
    rnd = random.Random(seed)
    for _ in range(5):
        if rnd.random() < 0.5:
            source = random_text(rnd, rnd.randint(1, 200))
            target = edit_lines(rnd, source, rnd.randint(0, 20))
        else:
            source = rnd.randbytes(rnd.randint(0, 5000))
            target = mutate_bytes(rnd, source, rnd.randint(0, 10))
        assert codec.create(source, target) == fossil_create(tmp_path, source, target)


@needs_fossil
@pytest.mark.parametrize("name,source,target", BIG_PAIRS, ids=[p[0] for p in BIG_PAIRS])
def test_create_is_byte_identical_to_fossil_on_200kb(codec, tmp_path, name, source, target):
    assert codec.create(source, target) == fossil_create(tmp_path, source, target)


@needs_fossil
@settings(max_examples=60, **FIXTURE_OK)
@given(
    source=st.binary(min_size=17, max_size=400).map(lambda b: b * 3),
    at=st.integers(0, 1200),
    new=st.binary(max_size=30),
)
def test_create_matches_fossil_on_generated_binary(codec, tmp_path, source, at, new):
    target = source[:at] + new + source[at + len(new) // 2 :]
    assert codec.create(source, target) == fossil_create(tmp_path, source, target)


@needs_fossil
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_create_is_byte_identical_to_fossil_on_2mb_text(codec, tmp_path, seed):
    rnd = random.Random(seed)
    source = random_text(rnd, 50_000)
    target = edit_lines(rnd, source, 300)
    assert codec.create(source, target) == fossil_create(tmp_path, source, target)


# (b) interoperability both ways


@needs_fossil
@pytest.mark.parametrize("name,source,target", PAIRS, ids=[p[0] for p in PAIRS])
def test_fossil_applies_our_deltas_and_we_apply_fossils(codec, tmp_path, name, source, target):
    ours = codec.create(source, target)
    assert fossil_apply(tmp_path, source, ours) == target
    assert codec.apply(source, fossil_create(tmp_path, source, target)) == target


@pytest.mark.parametrize("name,source,target", PAIRS, ids=[p[0] for p in PAIRS])
def test_all_codecs_agree(name, source, target):
    deltas = {impl.create(source, target) for impl in IMPLEMENTATIONS.values()}
    assert len(deltas) == 1


def test_known_delta():
    source = b"hello world this is a test of the delta\nline two\n"
    target = b"hello world this is a test of the delta\nline 2\nmore\n"
    assert reference.create(source, target) == b"p\ni@0,7:2\nmore\n3c6y4L;"


# (c) properties


@settings(max_examples=150, **FIXTURE_OK)
@given(source=st.binary(max_size=600), target=st.binary(max_size=600))
def test_round_trip_unrelated(codec, source, target):
    delta = codec.create(source, target)
    assert codec.apply(source, delta) == target
    assert codec.output_size(delta) == len(target)


@settings(max_examples=150, **FIXTURE_OK)
@given(
    source=st.binary(min_size=17, max_size=2000),
    edits=st.lists(
        st.tuples(st.integers(0, 2000), st.integers(0, 40), st.binary(max_size=40)), max_size=6
    ),
)
def test_round_trip_edited(codec, source, edits):
    target = bytearray(source)
    for at, cut, new in edits:
        target[at : at + cut] = new
    target = bytes(target)
    delta = codec.create(source, target)
    assert codec.apply(source, delta) == target


@settings(max_examples=100, **FIXTURE_OK)
@given(data=st.binary(max_size=100))
def test_checksum_is_sum_of_big_endian_words(codec, data):
    padded = data + b"\0" * (-len(data) % 4)
    words = [int.from_bytes(padded[i : i + 4], "big") for i in range(0, len(padded), 4)]
    assert codec.checksum(data) == sum(words) % 2**32


def test_accepts_bytearray_and_memoryview(codec):
    source, target = bytearray(b"a" * 40 + b"b" * 40), memoryview(b"a" * 40 + b"c" * 40)
    delta = codec.create(source, target)
    assert codec.apply(memoryview(source), bytearray(delta)) == bytes(target)


# (d) malformed deltas

SRC = b"The quick brown fox jumps over the lazy dog.\n" * 4
TGT = SRC[:60] + b"INSERTED TEXT" + SRC[60:]


def good_delta() -> bytes:
    """A valid delta from SRC to TGT with copies and an insert."""
    return reference.create(SRC, TGT)


def test_good_delta_has_copies_and_inserts():
    delta = good_delta()
    assert b"@" in delta and b":" in delta


MALFORMED = {
    "empty": (b"", "truncated"),
    "size-without-newline": (b"1A", "newline"),
    "size-not-a-number": (b"!\n", "bad base-64 integer"),
    "truncated-after-size": (b"1\n", "no terminating checksum"),
    "truncated-mid-command": (b"3\n3", "expected an operator"),
    "truncated-insert": (b"3\n3:ab", "past the end of the delta"),
    "bad-operator": (b"3\n3!abc0;", "unknown delta operator"),
    "bad-integer": (b"3\n@0,0;", "bad base-64 integer"),
    "high-byte-is-not-a-digit": (b"3\n\xb3:abc0;", "bad base-64 integer"),
    "integer-overflow": (b"3\n3:abc" + b"~" * 7 + b";", "overflows 32 bits"),
    "copy-without-comma": (b"3\n3@0;", "not terminated by ','"),
    "copy-past-source": (b"3\n3@zz,0;", "past the end of the source"),
    "copy-beyond-declared-size": (b"3\n9@0,0;", "exceeds the declared output size"),
    "insert-beyond-declared-size": (b"2\n3:abc0;", "exceeds the declared output size"),
    "output-shorter-than-declared": (b"5\n3:abc0;", "declares"),
    "impossible-declared-size": (b"~~~~~\n0;", "impossible"),
    "bad-checksum": (b"3\n3:abc0;", "checksum mismatch"),
    "trailing-garbage": (good_delta() + b"x", "trailing garbage"),
    "missing-checksum": (good_delta()[: good_delta().rindex(b",") + 1], "no terminating checksum"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_delta_raises_delta_error(codec, case):
    delta, reason = MALFORMED[case]
    with pytest.raises(DeltaError, match=reason):
        codec.apply(SRC, delta)


def test_valid_minimal_delta(codec):
    body = b"abc"
    delta = b"3\n3:abc" + reference.put_int(reference.checksum(body)) + b";"
    assert codec.apply(SRC, delta) == body


@pytest.mark.parametrize("delta", [b"", b"A", b"\n", b"!\n"])
def test_output_size_rejects_unreadable_size(codec, delta):
    with pytest.raises(DeltaError):
        codec.output_size(delta)


def test_output_size_reads_first_line(codec):
    assert codec.output_size(b"1A\nwhatever") == 74


# (e) fuzzing


@settings(max_examples=400, **FIXTURE_OK)
@given(
    seed=st.integers(0, 2**32),
    ops=st.lists(
        st.tuples(st.sampled_from("rid"), st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_delta_is_rejected_or_consistent(codec, seed, ops):
    rnd = random.Random(seed)
    source = SRC if seed % 2 else mutate_bytes(rnd, SRC, 3)
    delta = bytearray(reference.create(source, TGT))
    for kind, at, new in ops:
        at %= len(delta) + 1
        if kind == "r":
            delta[at : at + len(new)] = new
        elif kind == "i":
            delta[at:at] = new
        else:
            del delta[at : at + len(new)]
    try:
        out = codec.apply(source, bytes(delta))
    except DeltaError:
        for other in IMPLEMENTATIONS.values():
            with pytest.raises(DeltaError):
                other.apply(source, bytes(delta))
        return
    assert len(out) == codec.output_size(bytes(delta))
    assert bytes(delta).endswith(reference.put_int(reference.checksum(out)) + b";")
    for other in IMPLEMENTATIONS.values():
        assert other.apply(source, bytes(delta)) == out
