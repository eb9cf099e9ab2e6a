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
    assert len(ORDER) == 10


@pytest.mark.slow
def test_fossil_workload_measures_both_servers_and_both_clients_at_size_s(tmp_path):
    import shutil

    from bench.__main__ import run_suite

    if shutil.which("fossil") is None:
        pytest.skip("fossil is not installed")
    rows, _ = run_suite("S", ["fossil"], tmp_path)
    assert not [r for r in rows if r.metric in ("(workload)", "(corpus)")], rows
    by_what = {}
    for r in rows:
        assert r.workload.startswith("9 fossil xfer: "), r
        assert r.hf is not None and r.other is not None, f"figure missing: {r}"
        assert "WRONG" not in r.note, r
        what, _, corpus = r.workload.removeprefix("9 fossil xfer: ").partition(" (")
        by_what.setdefault(what, set()).add((corpus, r.metric))
    corpora = {c for pairs in by_what.values() for c, _ in pairs}
    assert "config-S)" in corpora, corpora
    assert set(by_what) == {"fossil clone", "fossil sync no-op",
                            "herofossil clone from fossil server"}
    for what, pairs in by_what.items():
        metrics = {"round trips", "bytes on the wire"} if "sync" in what else {
            "time", "bytes on the wire"}
        assert pairs == {(c, m) for c in corpora for m in metrics}, (what, pairs)
    for r in rows:
        if r.metric == "round trips":
            assert r.hf == 1, r  # a no-op sync with herofossil takes one round trip
        if r.workload.startswith("9 fossil xfer: fossil clone") and r.metric != "time":
            assert r.budget == ("<=", 1.0) and r.verdict in ("met", "NOT met"), r


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


def test_write_anatomy_times_every_step_it_names_and_models_every_layout():
    from bench import write_anatomy

    per_write, steps = write_anatomy.phases(writes=20, files=5)
    assert set(steps) == {label for _, _, label in write_anatomy.STEPS}
    # Every step was reached through its wrapper (a renamed or no longer called step
    # would stay at 0), and the steps inside the commit fit in it.
    assert all(seconds > 0 for seconds in steps.values()), steps
    commit = steps["write transaction and synced commit"]
    assert steps["the check-in (writer.commit)"] < commit <= per_write
    for layout in write_anatomy.LAYOUTS:
        assert write_anatomy.model(layout, commits=3, checkins_=50) > 0
    assert write_anatomy.one_key(commits=3) > 0
