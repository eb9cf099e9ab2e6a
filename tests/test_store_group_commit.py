"""Group commit: concurrent writes of one process share a durable commit, each on its own."""

from __future__ import annotations

import os
import threading
import time

import pytest

import herofossil
from herofossil.errors import ConflictError
from herofossil.store.changes import Put
from herofossil.store.lmdbenv import open_env


def _meta_writer(env, key: bytes, value: bytes):
    def fn(txn):
        txn.put(key, value, db=env.db["meta"])
        return key

    return fn


def _queued_behind_a_blocked_leader(env, jobs):
    """Start a leader write that blocks, queue ``jobs`` (fns) behind it, then release it.

    Returns {index: result or exception} for the queued jobs.
    """
    started, release = threading.Event(), threading.Event()

    def blocking(txn):
        started.set()
        assert release.wait(10)
        txn.put(b"leader", b"1", db=env.db["meta"])

    leader = threading.Thread(target=env.write, args=(blocking,))
    leader.start()
    assert started.wait(10)
    outcome: dict[int, object] = {}

    def run(i, fn):
        try:
            outcome[i] = env.write(fn)
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(jobs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(env._queue) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(env._queue) == len(jobs)
    release.set()
    leader.join(10)
    for t in threads:
        t.join(10)
    return outcome


def test_writes_queued_during_a_commit_share_the_next_one(store_path):
    herofossil.open(store_path, create=True).close()
    env = open_env(store_path)
    try:
        before = env.commits
        jobs = [_meta_writer(env, b"k%d" % i, b"v%d" % i) for i in range(5)]
        outcome = _queued_behind_a_blocked_leader(env, jobs)
        assert outcome == {i: b"k%d" % i for i in range(5)}
        assert env.commits - before == 2  # the leader's, then one for all five
        with env.read() as txn:
            assert [txn.get(b"k%d" % i, db=env.db["meta"]) for i in range(5)] == [
                b"v%d" % i for i in range(5)
            ]
    finally:
        env.close()


def test_a_failing_write_in_a_batch_is_rolled_back_alone(store_path):
    herofossil.open(store_path, create=True).close()
    env = open_env(store_path)

    def failing(txn):
        txn.put(b"half-done", b"x", db=env.db["meta"])
        raise ConflictError("precondition failed")

    try:
        jobs = [_meta_writer(env, b"a", b"1"), failing, _meta_writer(env, b"b", b"2")]
        outcome = _queued_behind_a_blocked_leader(env, jobs)
        assert outcome[0] == b"a" and outcome[2] == b"b"
        assert isinstance(outcome[1], ConflictError)
        with env.read() as txn:
            meta = env.db["meta"]
            assert txn.get(b"a", db=meta) == b"1" and txn.get(b"b", db=meta) == b"2"
            assert txn.get(b"half-done", db=meta) is None
    finally:
        env.close()


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt inside a write."""


def test_an_interrupt_in_a_batch_writes_nothing_and_tells_every_writer(store_path):
    herofossil.open(store_path, create=True).close()
    env = open_env(store_path)

    def interrupted(txn):
        raise _Interrupt()

    try:
        jobs = [_meta_writer(env, b"a", b"1"), interrupted, _meta_writer(env, b"b", b"2")]
        outcome = _queued_behind_a_blocked_leader(env, jobs)
        kinds = sorted(type(v).__name__ for v in outcome.values())
        # the thread that ran the batch sees the interrupt itself, the others a StoreError
        assert kinds == ["StoreError", "StoreError", "_Interrupt"]
        with env.read() as txn:
            assert txn.get(b"a", db=env.db["meta"]) is None
            assert txn.get(b"b", db=env.db["meta"]) is None
    finally:
        env.close()


def test_a_batch_that_fills_the_map_grows_it_and_writes_everything(store_path):
    herofossil.open(store_path, create=True, map_size=256 * 1024).close()
    env = open_env(store_path)
    try:
        big = [_meta_writer(env, b"big%d" % i, os.urandom(60_000)) for i in range(8)]
        outcome = _queued_behind_a_blocked_leader(env, big)
        assert outcome == {i: b"big%d" % i for i in range(8)}
        assert env.env.info()["map_size"] > 256 * 1024
        with env.read() as txn:
            assert all(len(txn.get(b"big%d" % i, db=env.db["meta"])) == 60_000 for i in range(8))
    finally:
        env.close()


@pytest.mark.slow
def test_threads_committing_at_once_lose_nothing(repo):
    n_threads, per_thread = 8, 25
    results: list = []
    errors: list = []

    def work(k):
        try:
            for i in range(per_thread):
                ci = repo.commit([Put(f"t{k}/f{i}", b"%d-%d" % (k, i))], message=f"t{k} {i}")
                results.append(ci.id)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(set(results)) == n_threads * per_thread
    assert len(repo.log(limit=10_000)) == n_threads * per_thread + 1
    for k in range(n_threads):
        assert [repo.read(f"t{k}/f{i}") for i in range(per_thread)] == [
            b"%d-%d" % (k, i) for i in range(per_thread)
        ]
    assert repo.verify().ok
