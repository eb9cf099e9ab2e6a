"""verify finds every damage to every table, names it, and never crashes with the store.

One store with history (branches, tags added and cancelled, a merge, renames,
deletions, delta chains, an import with a missing artifact, a fork, writes
after the import) is built once; each test damages a copy of it.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import struct
import subprocess
import sys
import threading

import pytest

import herofossil
from herofossil.store.blobs import pack_u64, unpack_u64
from herofossil.store.changes import Delete, Put
from herofossil.store.lmdbenv import MARKER
from herofossil.store.schema import LOCAL_TABLES

REBUILD = "herofossil rebuild"


def _text(rng: random.Random, i: int, n: int = 60) -> bytes:
    """A file that changes in a few lines from version to version (deltas pay off)."""
    return "".join(f"line {j} of file {i}: {rng.random() if j % 9 == 0 else j}\n"
                   for j in range(n)).encode()


def _write_history(repo, rng: random.Random) -> None:
    repo.commit([Put(f"src/m{i}.py", _text(rng, i)) for i in range(8)]
                + [Put("bin/run", b"#!/bin/sh\necho run\n", perm="x"),
                   Put("link", b"bin/run", perm="l"),
                   Put("docs/a.md", b"# a\n" * 80), Put("docs/b/c.md", b"# c\n" * 80)],
                message="start")
    repo.mkdir("empty/dir")
    repo.tag_add("v1")
    for n in range(12):
        repo.write(f"src/m{n % 3}.py", _text(rng, n % 3))
    repo.branch_new("feature")
    for _ in range(4):  # versions on a sibling branch: deltas across branches
        repo.write("src/m0.py", _text(rng, 0), branch="feature")
    repo.write("feature.txt", b"on feature\n" * 40, branch="feature")
    repo.rename("docs/a.md", "docs/renamed.md")
    repo.delete("src/m7.py")
    repo.rename("docs", "manual")
    repo.merge("feature", message="merge feature")
    repo.tag_add("v2")
    repo.tag_add("gone")
    repo.tag_remove("gone")
    repo.branch_new("hotfix", at="v1")
    repo.commit([Put("src/m1.py", _text(rng, 1)), Delete("docs", recursive=True)],
                branch="hotfix")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A store written over time, imported with one artifact missing, then written more
    (and forked)."""
    base = tmp_path_factory.mktemp("history")
    rng = random.Random(12)
    first = herofossil.open(base / "first", create=True)
    _write_history(first, rng)
    missing = first.stat("src/m0.py", at="v1").id  # an old version, at no tip
    first.export_artifacts(str(base / "artifacts"))
    first.close()
    os.remove(base / "artifacts" / missing[:2] / missing[2:])
    repo = herofossil.open(base / "store", create=True)
    repo.import_artifacts(str(base / "artifacts"))
    for n in range(10):
        repo.write(f"src/m{n % 3}.py", _text(rng, n % 3))
    repo.write("src/m0.py", _text(rng, 0), branch="feature")
    repo.tag_add("after-import")
    old = repo.log()[3].id  # a fork: a second leaf on trunk
    repo.commit([Put("fork.txt", b"on the other leaf\n" * 30)], parent=old)
    repo.write("src/m1.py", _text(rng, 1))
    assert repo.stats()["phantoms"] == 1 and len(repo.leaves("trunk")) == 2
    repo.close()
    return base / "store"


@pytest.fixture
def copy(history, tmp_path):
    dest = tmp_path / "store"
    shutil.copytree(history, dest)
    return dest


def _keys(repo, table: str) -> list[tuple[bytes, bytes]]:
    with repo._env.read() as txn:
        return list(txn.cursor(db=repo._env.db[table]))


def _put(repo, table: str, key: bytes, value: bytes) -> None:
    repo._env.write(lambda txn: txn.put(key, value, db=repo._env.db[table]))


def _delete(repo, table: str, key: bytes) -> None:
    repo._env.write(lambda txn: txn.delete(key, db=repo._env.db[table]))


def _pick(repo, table: str, want=lambda k, v: True) -> tuple[bytes, bytes]:
    items = [kv for kv in _keys(repo, table) if want(*kv)]
    assert items, f"the history has nothing in table {table} to damage"
    return items[len(items) // 2]


def _cid(repo, ref: str = "trunk") -> bytes:
    return bytes.fromhex(repo.resolve(ref))


BOGUS = bytes(range(100, 132))


def _named(key: bytes) -> str:
    return key[:-33].decode()


# Each damage returns a text the problem line must contain (the key, decoded).
def _change(repo, table: str) -> str:
    if table in ("phantom", "child", "leaf", "pathlog", "tag"):  # their values are empty
        key, _ = _pick(repo, table)
        _put(repo, table, key, b"x")
        if table == "pathlog":
            return key[:-9].decode()
        return key[-32:].hex()
    if table == "seq":
        key, _ = _pick(repo, table)
        _put(repo, table, key, BOGUS)
        return f"sequence {unpack_u64(key)}"
    if table == "chain":
        key, _ = _pick(repo, table)
        _put(repo, table, key, b"\0\0")
        return key.hex()
    if table == "deps":
        key, value = _pick(repo, table)
        _put(repo, table, key, (struct.unpack("<I", value)[0] + 1).to_bytes(4, "little"))
        return key.hex()
    if table == "checkin":
        key, value = _pick(repo, table)
        nfiles = struct.unpack_from("<I", value, 17)[0]
        _put(repo, table, key, value[:17] + struct.pack("<I", nfiles + 1) + value[21:])
        return key.hex()
    if table == "cseq":
        key, value = _pick(repo, table)
        _put(repo, table, key, _cid(repo, "v1"))
        return f"sequence {unpack_u64(key)}"
    if table == "tip":  # a check-in of another branch
        _put(repo, table, b"trunk", _cid(repo, "feature") + b"I")
        return "branch 'trunk'"
    if table == "tree":
        key, value = _pick(repo, table, lambda k, v: v[:1] == b"F")
        size = struct.unpack_from("<Q", value, 2)[0]
        _put(repo, table, key, value[:2] + struct.pack("<Q", size + 1) + value[10:])
        return key.split(b"\0")[2].decode()
    assert table == "info"
    _put(repo, table, b"next_seq", pack_u64(1))
    return "next_seq"


def _remove(repo, table: str) -> str:
    if table == "chain":  # an artifact some delta is stored on: its chain is real
        deps = {k for k, _ in _keys(repo, "deps")}
        key, _ = _pick(repo, table, lambda k, v: k in deps)
    elif table == "info":
        key = b"next_cseq"
    elif table == "tip":  # a branch with a tree index (one without may lack a tip)
        key = b"trunk"
    else:
        key, _ = _pick(repo, table)
    _delete(repo, table, key)
    if table in ("seq", "cseq"):
        return "no sequence number"
    if table in ("leaf", "tag"):
        return key[-32:].hex()
    if table == "child":
        return key[32:].hex()
    if table == "pathlog":
        return key[:-9].decode()
    if table == "tree":
        return key.split(b"\0")[2].decode()
    if table in ("info", "tip"):
        return key.decode()
    return key.hex()


def _add(repo, table: str) -> str:
    cid = _cid(repo)
    seq_top = max(unpack_u64(k) for k, _ in _keys(repo, "seq"))
    bogus = {
        "seq": (pack_u64(seq_top + 100), cid, f"sequence {seq_top + 100}"),
        "phantom": (BOGUS, b"", BOGUS.hex()),
        "chain": (BOGUS, b"\x01\0", BOGUS.hex()),
        "deps": (BOGUS, b"\x01\0\0\0", BOGUS.hex()),
        "checkin": (BOGUS, _keys(repo, "checkin")[0][1], BOGUS.hex()),
        "cseq": (pack_u64(10_000), cid, "sequence 10000"),
        "child": (cid + BOGUS, b"", BOGUS.hex()),
        "leaf": (b"trunk\0" + BOGUS, b"", BOGUS.hex()),
        "tip": (b"bogus", cid + b"I", "branch 'bogus'"),
        "tree": (b"trunk\0\0bogus.txt", _pick(repo, "tree", lambda k, v: v[:1] == b"F")[1],
                 "bogus.txt"),
        "pathlog": (b"nowhere.txt\0" + _keys(repo, "cseq")[-1][0], b"", "nowhere.txt"),
        "tag": (b"bogus\0" + cid, b"", "bogus"),
        "info": (b"bogus", pack_u64(1), "bogus"),
    }[table]
    _put(repo, table, bogus[0], bogus[1])
    return bogus[2]


DAMAGES = {"change": _change, "remove": _remove, "add": _add}


@pytest.mark.parametrize("how", sorted(DAMAGES))
@pytest.mark.parametrize("table", LOCAL_TABLES)
def test_one_damaged_entry_of_a_local_table_is_named_and_rebuild_repairs_it(copy, table, how):
    repo = herofossil.open(copy)
    try:
        expect = DAMAGES[how](repo, table)
        report = repo.verify()
        assert not report.ok
        named = [p for p in report.problems if p.startswith(f"table {table}:")]
        assert named, report.problems
        assert any(expect in p and REBUILD in p for p in named), named
        repo.rebuild()
        after = repo.verify()
        assert after.ok, after.problems
    finally:
        repo.close()


def test_a_check_in_record_with_one_flipped_bit_is_found_wherever_the_bit_is(copy):
    repo = herofossil.open(copy)
    try:
        key, value = _pick(repo, "checkin")
        # The format, sequence, time, file count, parent count, baseline flag, then bytes
        # spread over the ids and texts (lengths and contents).
        spread = range(23, len(value), max(1, (len(value) - 23) // 10))
        for n, at in enumerate([0, 1, 9, 17, 21, 22, *spread]):
            damaged = bytearray(value)
            damaged[at] ^= 1 << (n % 8)
            _put(repo, "checkin", key, bytes(damaged))
            report = repo.verify()
            assert any(key.hex() in p for p in report.problems), (at, report.problems)
        _put(repo, "checkin", key, value)
        assert repo.verify().ok
    finally:
        repo.close()


def test_a_dependents_count_off_by_one_either_way_is_reported(copy):
    repo = herofossil.open(copy)
    try:
        key, value = _pick(repo, "deps")
        n = struct.unpack("<I", value)[0]
        for wrong in (n + 1, n - 1):
            if wrong:
                _put(repo, "deps", key, struct.pack("<I", wrong))
            else:  # the write path keeps no zero counts
                _delete(repo, "deps", key)
            said = f"counts {wrong} deltas on it, {n} are stored" if wrong else "missing"
            assert [p for p in repo.verify().problems
                    if p.startswith("table deps:") and key.hex() in p and said in p]
    finally:
        repo.close()


def test_a_missing_phantom_is_reported_and_rebuild_restores_it(copy):
    repo = herofossil.open(copy)
    try:
        (key, _), = _keys(repo, "phantom")
        _delete(repo, "phantom", key)
        report = repo.verify()
        assert report.phantoms == 0
        assert any(p.startswith("table phantom:") and key.hex() in p and "missing" in p
                   for p in report.problems)
        repo.rebuild()
        assert repo.verify().ok and repo.stats()["phantoms"] == 1
    finally:
        repo.close()


def test_problem_lines_of_one_table_are_capped_with_a_count_of_the_rest(copy):
    repo = herofossil.open(copy)
    try:
        def wipe(txn):
            txn.drop(repo._env.db["child"], delete=False)

        n = len(_keys(repo, "child"))
        repo._env.write(wipe)
        lines = [p for p in repo.verify().problems if p.startswith("table child:")]
        assert len(lines) == 6 and lines[-1].startswith(f"table child: and {n - 5} more")
    finally:
        repo.close()


def test_an_artifact_whose_bytes_changed_is_named(copy):
    repo = herofossil.open(copy)
    try:
        key, value = _pick(repo, "blob", lambda k, v: v[:1] == b"R" and len(v) > 40)
        _put(repo, "blob", key, value[:-1] + bytes([value[-1] ^ 1]))
        report = repo.verify()
        assert any(p.startswith("table blob:") and key.hex() in p and "hash" in p
                   for p in report.problems)
    finally:
        repo.close()


# ---- no false positives
def test_an_undamaged_store_with_history_verifies_ok_before_and_after_compact(copy):
    repo = herofossil.open(copy)
    try:
        seen = []
        report = repo.verify(lambda label, done, total: seen.append((label, done, total)))
        assert report.ok, report.problems
        assert ("verify: compare tables", len(LOCAL_TABLES) + 1, len(LOCAL_TABLES) + 1) in seen
        assert all(done <= total for _, done, total in seen if total)
        assert report.artifacts == len(_keys(repo, "blob")) and report.phantoms == 1
        assert report.checkins == len(_keys(repo, "checkin"))
        repo.compact()
        assert repo.verify().ok
    finally:
        repo.close()


WRITER = """
import sys, herofossil
repo = herofossil.open(sys.argv[1])
for i in range(int(sys.argv[3])):
    repo.write(f"{sys.argv[2]}/{i % 4}.txt", (f"{sys.argv[2]} version {i}\\n" * 40).encode())
"""


def test_a_store_written_by_several_processes_and_threads_at_once_verifies_ok(repo, store_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store_path), name, "25"])
             for name in ("p1", "p2", "p3")]

    def threads_write(name):
        for i in range(25):
            repo.write(f"{name}/{i % 4}.txt", (f"{name} version {i}\n" * 40).encode())

    workers = [threading.Thread(target=threads_write, args=(f"t{i}",)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert len(repo.log()) == 1 + 6 * 25
    report = repo.verify()
    assert report.ok, report.problems


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_store_imported_from_git_verifies_ok(tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_gitimport_helpers import build_rich

    from herofossil.gitimport import import_git

    rich = build_rich(tmp_path / "git")
    repo = herofossil.open(tmp_path / "store", create=True)
    try:
        import_git(repo, rich.path)
        repo.write("after.txt", b"written after the import\n")
        report = repo.verify()
        assert report.ok, report.problems
    finally:
        repo.close()


def test_tips_an_interrupted_bulk_import_leaves_behind_are_not_damage(repo):
    from herofossil.store import manifest as mf

    repo.write("a.txt", b"a\n" * 50)
    parent, a_id = repo.resolve(), repo.stat("a.txt").id
    bulk = repo.plumbing.bulk()
    b_id = bulk.add_blob(b"imported\n" * 50)
    on_trunk = bulk.add_checkin(mf.Manifest(
        comment="imported", date=mf.date_now(), user="tester", parents=[parent],
        files=[mf.FileCard("a.txt", a_id), mf.FileCard("b.txt", b_id)]), nfiles=2,
        changed=["b.txt"])
    new_branch = bulk.add_checkin(mf.Manifest(
        comment="a new branch", date=mf.date_now(), user="tester", parents=[on_trunk],
        files=[mf.FileCard("a.txt", a_id)],
        tags=[mf.TagCard("*", "branch", "*", "imported"), mf.TagCard("*", "sym-imported", "*")]),
        nfiles=1, changed=["b.txt"])
    bulk.flush()  # the check-ins are in, the tips not yet: as when an import is killed here
    assert repo.resolve() == parent and "imported" not in repo.branches()
    report = repo.verify()
    assert report.ok, report.problems
    bulk.close()
    assert repo.resolve() == on_trunk and repo.branches()["imported"] == new_branch
    report = repo.verify()
    assert report.ok, report.problems


def test_verify_leaves_the_store_folder_as_it_was(copy):
    before = {name: (copy / name).read_bytes() for name in os.listdir(copy)
              if name != "lock.mdb"}
    repo = herofossil.open(copy)
    try:
        assert repo.verify().ok
    finally:
        repo.close()
    assert {name: (copy / name).read_bytes() for name in os.listdir(copy)
            if name != "lock.mdb"} == before


# ---- damage to LMDB's file: a report or a refusal, never a traceback or a signal
def _cli_verify(store):
    return subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), "verify"],
                          capture_output=True, text=True)


def _assert_reported(proc):
    assert proc.returncode in (5, 10), (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("herofossil: ") for line in lines), proc.stderr


@pytest.mark.slow
def test_random_bytes_over_ten_pages_of_the_data_file_are_damage_for_every_seed(copy,
                                                                               tmp_path):
    repo = herofossil.open(copy)
    rng = random.Random(5)
    # Enough pages (about 500) that the two meta pages are rarely among the ten.
    repo.commit([Put(f"data/{i}.bin", rng.randbytes(2500)) for i in range(300)])
    for n in range(30):
        repo.write(f"src/m{n % 3}.py", _text(rng, n % 3, 400))
    repo.compact()  # no free pages: every page damaged below holds data
    repo.close()
    pages = os.path.getsize(copy / "data.mdb") // 4096
    for seed in range(12):
        rng = random.Random(seed)
        store = tmp_path / f"seed{seed}"
        shutil.copytree(copy, store)
        with open(store / "data.mdb", "r+b") as f:
            for page in rng.sample(range(pages), 10):
                f.seek(page * 4096)
                f.write(rng.randbytes(4096))
        proc = _cli_verify(store)
        _assert_reported(proc)
        shutil.rmtree(store)


@pytest.mark.parametrize("fraction", [0.5, 0])
def test_a_truncated_data_file_is_damage_not_an_empty_store(copy, fraction):
    repo = herofossil.open(copy)
    repo.compact()
    repo.close()
    size = os.path.getsize(copy / "data.mdb")
    os.truncate(copy / "data.mdb", int(size * fraction))
    proc = _cli_verify(copy)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert "damaged" in proc.stderr


def test_an_unknown_store_format_is_reported_in_one_line(copy):
    (copy / MARKER).write_text("herofossil store format 99\n")
    proc = _cli_verify(copy)
    assert proc.returncode == 5 and len(proc.stderr.splitlines()) == 1
    assert "format 99" in proc.stderr and "Traceback" not in proc.stderr


def _children_running(module: str) -> list[int]:
    """Pids of this process's children whose command line runs ``module``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == os.getpid() and module.encode() in cmdline:
            found.append(int(name))
    return found


def _waits_for_a_lock(pid: int) -> bool:
    with open("/proc/locks") as f:  # a waiter's line: "N: -> FLOCK ADVISORY READ PID ..."
        return any("->" in line and line.split()[5] == str(pid) for line in f)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the checker through /proc")
def test_a_checker_killed_by_a_signal_is_a_problem_line_not_a_crash(copy):
    import signal
    import time

    from herofossil.store.verify import verify

    # Holding the marker's lock exclusively keeps the checker waiting in its open.
    fd = os.open(copy / MARKER, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    result = []
    runner = threading.Thread(target=lambda: result.append(verify(str(copy))))
    runner.start()
    try:
        pids = []
        while not pids and runner.is_alive():
            time.sleep(0.05)
            pids = [pid for pid in _children_running("herofossil.store.verify")
                    if _waits_for_a_lock(pid)]
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGSEGV)
    finally:
        os.close(fd)
        runner.join()
    (report,) = result
    assert not report.ok
    assert report.problems == ["the data file is damaged: opening the store killed the "
                               "checker with SIGSEGV; restore the store from a backup or "
                               "a peer"]


def test_a_damaged_delta_base_is_found_though_old_versions_were_just_read_through_it(
        tmp_path):
    # Old versions are read through a cache of delta bases (blobs.BASES); verify reads
    # every byte from the stored forms, so a base damaged after it was cached is found.
    from herofossil.store import blobs

    repo = herofossil.open(tmp_path / "s", create=True)
    rng = random.Random(3)
    lines = [b"%x\n" % rng.getrandbits(128) for _ in range(400)]
    versions = []
    for k in range(12):
        lines[k * 7] = b"edit %d\n" % k
        versions.append(repo.write("f.txt", b"".join(lines)).id)
    olds = [repo.files(v)["f.txt"][0] for v in versions]
    with repo._env.read() as txn:
        bases = {blobs.delta_base(txn.get(bytes.fromhex(a), db=repo._env.db["blob"]))
                 for a in olds}
    base = next(b for b in bases if b is not None and b.hex() != olds[-1])
    blobs.BASES.clear()
    for v, a in zip(versions, olds, strict=True):
        assert repo.read("f.txt", at=v) == repo.artifact(a)
    assert blobs.BASES.get(base) is not None  # read through the cache
    with repo._env.read() as txn:
        stored = txn.get(base, db=repo._env.db["blob"])
    assert blobs.delta_base(stored) is not None
    _put(repo, "blob", base, stored[:-3] + bytes(3))  # its delta's end: damaged
    problems = repo.verify().problems
    assert any(base.hex() in p for p in problems), problems
    blobs.BASES.clear()
    with pytest.raises(herofossil.HeroFossilError):
        repo.read("f.txt", at=versions[0])
    repo.close()
