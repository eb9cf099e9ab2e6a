"""The benchmark suite runs end to end at size S and every row has a figure or a reason.

No wall-clock assertion: the machines are shared and noisy.
"""

from __future__ import annotations

import pytest

pytest.importorskip("zstandard")


@pytest.mark.slow
def test_suite_at_size_s_completes_with_a_figure_or_reason_per_row(tmp_path):
    from bench.__main__ import report, run_suite
    from bench.workloads import ORDER

    rows, ctx = run_suite("S", None, tmp_path)
    assert rows
    assert not [r for r in rows if r.metric == "(workload)"], "a workload failed"
    for r in rows:
        assert r.hf is not None or r.note, f"row without figure or reason: {r}"
        assert r.other is not None or r.note or not r.other_name, f"other figure missing: {r}"
    seen = {r.workload.split()[0] for r in rows}
    assert {"1", "2", "3", "4", "5", "6", "7", "8"} <= seen, seen
    text = report(rows, ctx, "python -m bench --size S", 0.0)
    assert text.count("\n|") >= len(rows) + 1
    assert len(ORDER) == 9


def test_corpus_is_deterministic():
    from bench import corpus

    def digest(kind):
        import hashlib

        h = hashlib.sha256()
        for c in corpus.commits(kind, "S", seed=3):
            h.update(repr((c.branch, c.mark, c.parent, c.merge, c.when, c.message)).encode())
            for ch in c.changes:
                h.update(repr(ch[:4]).encode())
        return h.hexdigest()

    for kind in corpus.KINDS:
        assert digest(kind) == digest(kind)
