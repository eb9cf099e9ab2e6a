"""pytest-benchmark micro-benchmarks: ``pytest bench/ --benchmark-only``.

Delta create/apply (every codec in ``herofossil.delta.IMPLEMENTATIONS``), tip
read, durable single write, manifest parse.
"""

from __future__ import annotations

import itertools

import pytest

from herofossil.delta import IMPLEMENTATIONS

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def pair():
    from bench.delta_vs_fossil import make_pair

    return make_pair(1)


@pytest.mark.parametrize("codec", sorted(IMPLEMENTATIONS))
def test_delta_create(benchmark, pair, codec):
    impl = IMPLEMENTATIONS[codec]
    src, tgt = pair if codec != "reference" else (pair[0][:100_000], pair[1][:100_000])
    benchmark(impl.create, src, tgt)


@pytest.mark.parametrize("codec", sorted(IMPLEMENTATIONS))
def test_delta_apply(benchmark, pair, codec):
    impl = IMPLEMENTATIONS[codec]
    src, tgt = pair if codec != "reference" else (pair[0][:100_000], pair[1][:100_000])
    d = impl.create(src, tgt)
    assert benchmark(impl.apply, src, d) == tgt


@pytest.fixture
def repo(tmp_path):
    import herofossil
    from herofossil.store.changes import Put

    r = herofossil.open(tmp_path / "store", create=True)
    r.commit([Put(f"d{i // 100}/f{i}.txt", b"file %d\n" % i) for i in range(1000)])
    yield r
    r.close()


def test_tip_read(benchmark, repo):
    assert benchmark(repo.read, "d3/f345.txt") == b"file 345\n"


def test_single_write(benchmark, repo):
    n = itertools.count()
    benchmark(lambda: repo.write("d0/f1.txt", b"edit %d\n" % next(n), message="edit"))


def test_manifest_parse(benchmark, repo):
    from herofossil.store import manifest

    data = repo.artifact(repo.resolve("trunk"))
    m = benchmark(manifest.parse_manifest, data)
    assert len(m.files) == 1000
