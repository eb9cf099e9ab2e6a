"""When a delta is worth computing: a cheap similarity test first, a bounded encoder after.

Fossil's encoder tries up to 250 source blocks per target position. On an
unrelated pair most positions find candidates that do not match (its rolling
hash leaves many blocks in one bucket), so a rewrite of an unrelated large
file cost minutes. Above ``SAMPLE_FROM`` bytes the store first compares
content-defined anchors of the two versions (``similar``, linear in the
source and bounded in the target) and only encodes a pair that shares enough
of them; every encoding also runs under a work budget (``budget``) and is
abandoned past it. ``COUNTERS`` records what was decided, for tests and the
benchmark.
"""

from __future__ import annotations

from herofossil import delta

SAMPLE_FROM = 64 << 10   # smaller pairs are always encoded: that costs milliseconds
MIN_SHARED = 0.2         # share of the target's anchors the source must hold
TRIES_PER_BYTE = 1       # the encoder's budget: candidate blocks per target byte, on average
TRIES_BASE = 1 << 20

try:
    from herofossil.cext._delta import similarity as _similarity
except ImportError:  # not built: a pure-Python sample serves
    _similarity = None

COUNTERS = {"created": 0, "created_bytes": 0, "skipped_dissimilar": 0, "abandoned": 0}


def _similarity_py(source: bytes, target: bytes) -> tuple[int, int]:
    step = max(len(target) // 64, 1)
    probes = [target[i:i + 32] for i in range(0, len(target) - 32, step)][:64]
    return len(probes), sum(1 for p in probes if source.find(p) >= 0)


def similar(source: bytes, target: bytes) -> bool:
    """True when ``target`` shares enough content with ``source`` to try a delta."""
    if len(target) < SAMPLE_FROM or len(source) < SAMPLE_FROM:
        return True
    looked, found = (_similarity or _similarity_py)(source, target)
    if looked < 16:  # too few anchors to judge (degenerate content): the budget decides
        return True
    return found >= looked * MIN_SHARED


def budget(target_len: int) -> int:
    """Candidate source blocks the encoder may try for a target of ``target_len`` bytes."""
    return TRIES_BASE + TRIES_PER_BYTE * target_len


def create(source: bytes, target: bytes) -> bytes | None:
    """A delta from ``source`` to ``target``, or None when it is not worth computing."""
    if not similar(source, target):
        COUNTERS["skipped_dissimilar"] += 1
        return None
    COUNTERS["created"] += 1
    COUNTERS["created_bytes"] += len(target)
    d = delta.create(source, target, budget(len(target)))
    if d is None:
        COUNTERS["abandoned"] += 1
    return d
