"""The numbered logs (``seq``, ``cseq``): runs of packed history read as single entries."""

from __future__ import annotations

import lmdb
import pytest
from damage import put_raw, refused

import herofossil
from herofossil.store import exchange
from herofossil.store.keys import pack_u64
from herofossil.store.sequences import RUN_IDS, Numbered, entry_ids, runs


def _id(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


# numbers 1-150 (a gap at 100), then 200 and 201 appended after a compact
NUMBERS = [*range(1, 100), *range(101, 151)]


@pytest.fixture
def table(tmp_path):
    env = lmdb.open(str(tmp_path / "t"), max_dbs=3)
    db = env.open_db(b"seq")
    with env.begin(write=True) as txn:
        folded = list(runs((pack_u64(n), _id(n)) for n in NUMBERS))
        txn.cursor(db=db).putmulti(folded, append=True)
        for n in (200, 201):
            txn.put(pack_u64(n), _id(n), db=db)
    yield env, db, folded
    env.close()


def test_runs_fold_consecutive_numbers_and_stop_at_gaps_and_at_their_size(table):
    _, _, folded = table
    assert [(int.from_bytes(k, "big"), len(v) // 32) for k, v in folded] == \
        [(1, RUN_IDS), (61, 39), (101, 50)]
    assert [p for k, v in folded for p in entry_ids(k, v)] == [(n, _id(n)) for n in NUMBERS]
    assert list(runs(folded)) == folded  # folding again changes nothing


def test_every_read_sees_runs_and_single_entries_alike(table):
    env, db, _ = table
    every = [*NUMBERS, 200, 201]
    with env.begin() as txn:
        seq = Numbered(txn, db)
        for n in range(0, 203):
            assert seq.get(n) == (_id(n) if n in every else None), n
        for n in (0, 1, 59, 60, 61, 99, 100, 149, 150, 199, 200, 201, 500):
            assert list(seq.after(n)) == [(m, _id(m)) for m in every if m > n], n
        assert seq.last() == (201, _id(201))
        assert list(seq.newest_first()) == [(m, _id(m)) for m in reversed(every)]
    empty = env.open_db(b"empty")
    with env.begin() as txn:
        assert Numbered(txn, empty).last() is None and list(Numbered(txn, empty).after(0)) == []


def test_a_number_deleted_from_a_run_leaves_the_rest_of_it(table):
    env, db, _ = table
    every = [*NUMBERS, 200, 201]
    with env.begin(write=True) as txn:
        seq = Numbered(txn, db)
        for n in (30, 1, 60, 61, 150, 201, 100, 7000):
            assert seq.delete(n) == (n in every)
            if n in every:
                every.remove(n)
            assert list(seq.after(0)) == [(m, _id(m)) for m in every], n
            assert all(seq.get(m) == _id(m) for m in every)


def test_a_damaged_entry_of_a_numbered_table_does_not_decode():
    with pytest.raises(ValueError, match="31-byte value"):
        entry_ids(pack_u64(1), b"x" * 31)
    with pytest.raises(ValueError, match="0-byte value"):
        entry_ids(pack_u64(1), b"")


def _many(repo, n: int) -> None:
    for i in range(n):
        repo.write(f"f/{i % 40}.txt", b"version %d of a file\n" % i)


def test_a_sync_from_inside_a_run_sends_what_came_after_it(store_path):
    with herofossil.open(store_path, create=True) as repo:
        _many(repo, 150)
        env = repo._env
        before = {n: [a for a, _ in exchange.artifacts_after(env, n, max_bytes=1 << 30)[0]]
                  for n in (0, 17, 61, 200)}
        last = exchange.last_seq(env)
        ids = {n: exchange.seq_id(env, n) for n in range(0, last + 2)}
        checkins = repo.plumbing.checkins_after(0)
        cseq = repo.plumbing.last_seq()
        repo.compact()
        with repo._read() as txn:  # the numbered logs are runs now
            assert txn.stat(repo._db["seq"])["entries"] < last / 10
            assert txn.stat(repo._db["cseq"])["entries"] < cseq / 10
        assert exchange.last_seq(env) == last
        assert {n: exchange.seq_id(env, n) for n in ids} == ids
        for n, sent in before.items():
            assert [a for a, _ in exchange.artifacts_after(env, n, max_bytes=1 << 30)[0]] == sent
        in_order = [ids[n] for n in range(1, last + 1)]
        assert exchange.in_insert_order(env, reversed(in_order)) == in_order
        assert repo.plumbing.checkins_after(0) == checkins
        assert repo.plumbing.checkins_after(70) == checkins[70:]
        _many(repo, 3)  # new check-ins are numbered after the runs
        assert repo.plumbing.last_seq() == cseq + 3
        assert repo.plumbing.checkins_after(cseq)[0][0] == cseq + 1
        assert repo.verify().ok


def test_verify_names_a_damaged_run(store_path):
    with herofossil.open(store_path, create=True) as repo:
        _many(repo, 80)
        repo.compact()
        with repo._read() as txn:
            key, value = next(iter(txn.cursor(db=repo._db["seq"])))
            key, value = bytes(key), bytes(value)
    put_raw(store_path, "seq", key, value[:-1])
    said = refused(store_path, "verify")
    assert f"{len(value) - 1}-byte value: not NUMBER -> id(s) of 32 bytes" in said


@pytest.mark.parametrize("compact", [False, True])
def test_check_ins_indexed_again_leave_no_stale_number_in_the_logs(tmp_path, compact):
    """Children that arrived before their parents (packed into runs by a compact, or not)
    are indexed again when the parents come: their numbers leave ``cseq`` and the path log
    (runs too: ``Numbered.delete``, ``CheckinIndex._unlog``), also for the paths they
    deleted or renamed away, which their files do not name."""
    from test_store_crosslink import _assert_same, _contents, _history, _receive

    source = herofossil.open(tmp_path / "a", create=True)
    _history(source)
    first = {bytes.fromhex(c.id) for c in source.log()[-4:]}  # the oldest four check-ins
    artifacts = _contents(source)
    target = herofossil.open(tmp_path / "b", create=True)
    _receive(target, [a for a in artifacts if a[0] not in first])  # children before parents
    if compact:
        target.compact()
        with target._read() as txn:
            assert txn.stat(target._db["cseq"])["entries"] == 1  # one run
            assert any(v for _, v in txn.cursor(db=target._db["pathlog"]))  # path-log runs
    _receive(target, [a for a in artifacts if a[0] in first])
    _assert_same(source, target)
    source.close()
    target.close()
