"""verify finds damage and names it; rebuild regenerates local state from artifacts alone."""

from __future__ import annotations

import os

import pytest
import zstandard

import herofossil
from herofossil import delta
from herofossil.store import blobs
from herofossil.store.artifacts import KnownContents
from herofossil.store.changes import Put
from herofossil.store.checkins import RECORDS, _decode_record
from herofossil.store.manifest import date_to_datetime


def _stored(repo, aid_hex):
    with repo._env.read() as txn:
        return txn.get(bytes.fromhex(aid_hex), db=repo._env.db["blob"])


def test_verify_passes_on_a_healthy_store(repo):
    repo.commit([Put(f"d/{i}", os.urandom(100) * 5) for i in range(20)])
    report = repo.verify()
    assert report.ok and report.artifacts >= 22 and report.checkins == 2


def test_verify_detects_flipped_bytes_in_a_stored_value_and_names_the_artifact(repo, store_path):
    data = b"precious configuration\n" * 200
    repo.write("conf.toml", data)
    aid = repo.stat("conf.toml").id
    stored = _stored(repo, aid)
    raw = bytearray((store_path / "data.mdb").read_bytes())
    at = raw.find(stored)
    assert at > 0
    with open(store_path / "data.mdb", "r+b") as f:
        f.seek(at + len(stored) // 2)
        f.write(bytes([raw[at + len(stored) // 2] ^ 0xFF]))
    report = repo.verify()
    assert not report.ok
    assert any(aid in p for p in report.problems)


def test_rebuild_regenerates_indexes_and_verify_passes(repo):
    repo.commit([Put("a/1", b"1"), Put("a/2", b"2")])
    repo.tag_add("t1")
    repo.branch_new("side")
    repo.write("s", b"side", branch="side")
    repo.mkdir("keep/me")
    before = (repo.files(), repo.files("side"), [c.id for c in repo.log()], repo.tags(),
              repo.branches(), repo.log("a/1"))

    def wipe(txn):
        for name in ("tree", "tip", "checkin", "leaf", "tag", "pathlog"):
            txn.drop(repo._env.db[name], delete=False)

    repo._env.write(wipe)
    repo.rebuild()
    assert repo.verify().ok
    after = (repo.files(), repo.files("side"), [c.id for c in repo.log()], repo.tags(),
             repo.branches(), repo.log("a/1"))
    assert after == before


def test_verify_reports_a_stale_tip_index_and_rebuild_fixes_it(repo):
    repo.write("f", b"1")

    def damage(txn):
        from herofossil.store.tree import Tree
        Tree(txn, repo._env.db["tree"], "trunk").remove("f", 0.0)

    repo._env.write(damage)
    report = repo.verify()
    assert not report.ok and "rebuild" in report.problems[0]
    repo.rebuild()
    assert repo.verify().ok and repo.read("f") == b"1"


def test_old_versions_become_bounded_reverse_deltas(repo):
    text = [f"line {i}: some configuration value = {i * 7}\n" for i in range(300)]
    versions = []
    for n in range(blobs.MAX_CHAIN * 2 + 5):
        text[n % 300] = f"line {n % 300}: changed in version {n}\n"
        versions.append(repo.write("big.txt", "".join(text)).id)
    stats = repo.stats()
    assert stats["deltas"] > blobs.MAX_CHAIN
    with repo._env.read() as txn:
        db = repo._env.db["blob"]
        assert txn.get(bytes.fromhex(repo.stat("big.txt").id), db=db)[:1] == blobs.WHOLE
        for aid in txn.cursor(db=db).iternext(values=False):
            depth, cur = 0, aid
            while (base := blobs.delta_base(txn.get(cur, db=db))) is not None:
                depth, cur = depth + 1, base
            assert depth <= blobs.MAX_CHAIN
    for n, cid in enumerate(versions):
        assert f"changed in version {n}\n" in repo.read("big.txt", at=cid).decode()
    assert repo.verify().ok
    repo.rebuild()
    assert repo.verify().ok


def test_full_map_grows_instead_of_failing(store_path):
    repo = herofossil.open(store_path, create=True, map_size=256 * 1024)
    for i in range(40):
        repo.write(f"f{i}", os.urandom(50_000))
    assert repo.stats()["map_bytes"] > 256 * 1024
    assert repo.verify().ok and len(repo.ls()) == 40
    repo.close()


def test_stats_counts_sizes(repo):
    repo.write("a", b"x" * 10_000)
    s = repo.stats()
    assert s["raw_bytes"] >= 10_000 and s["stored_bytes"] < s["raw_bytes"]
    assert s["disk_bytes"] > 0 and s["checkins"] == 2


def test_table_sizes_show_what_compact_gives_back(repo, store_path):
    for i in range(20):
        repo.write("big", os.urandom(100_000), message=f"v{i}")
    before = repo.table_sizes()
    assert sum(t["bytes"] for t in before.values()) == os.path.getsize(store_path / "data.mdb")
    assert before["blob"]["bytes"] >= 20 * 100_000
    assert before["blob"]["entries"] == repo.stats()["artifacts"]
    assert before["checkin"]["entries"] == repo.stats()["checkins"]
    assert before["(free)"]["bytes"] > 0
    repo.compact()
    after = repo.table_sizes()
    assert after["(free)"]["bytes"] < before["(free)"]["bytes"]
    assert after["blob"]["entries"] == before["blob"]["entries"]


def test_incompressible_artifacts_are_kept_raw_and_read_back(repo):
    data = os.urandom(200)
    repo.write("noise.bin", data)
    assert _stored(repo, repo.stat("noise.bin").id)[:1] == blobs.RAW
    assert repo.read("noise.bin") == data and repo.stat("noise.bin").size == 200
    repo.write("noise.bin", data + b"more")
    assert repo.read("noise.bin", at=repo.log(limit=2)[1].id) == data
    assert repo.verify().ok


def test_compact_gives_free_pages_back_and_keeps_everything(repo, store_path):
    for i in range(30):
        repo.write(f"f{i % 5}", os.urandom(20_000))
    files, log = repo.files(), [c.id for c in repo.log()]
    before, after = repo.compact()
    assert after < before
    assert repo.files() == files and [c.id for c in repo.log()] == log
    assert repo.verify().ok
    repo.write("after-compact", b"still writable")
    assert repo.read("after-compact") == b"still writable"


def test_compact_refuses_while_another_process_has_the_store_open(repo, store_path):
    import subprocess
    import sys

    import pytest

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, herofossil; r = herofossil.open(sys.argv[1]);"
         "print('open', flush=True); sys.stdin.read()", str(store_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(herofossil.StoreError, match="another process"):
            repo.compact()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    repo.compact()
    assert repo.verify().ok


def _deps_table(repo):
    with repo._env.read() as txn:
        return dict(txn.cursor(db=repo._env.db["deps"]))


def test_versions_on_sibling_branches_are_stored_as_deltas_and_read_back(repo):
    base = os.urandom(60_000)
    repo.write("blob.bin", base)
    tips = {}
    for n in range(6):
        name = f"side{n}"
        repo.branch_new(name)
        data = bytearray(base)
        data[n * 1000:n * 1000 + 64] = os.urandom(64)
        repo.write("blob.bin", bytes(data), branch=name)
        tips[name] = bytes(data)
    with repo._env.read() as txn:
        db = repo._env.db["blob"]
        kinds = [txn.get(bytes.fromhex(repo.stat("blob.bin", at=b).id), db=db)[:1]
                 for b in tips]
    assert sum(k in (blobs.DELTA, blobs.RAW_DELTA) for k in kinds) >= len(tips) - 1
    assert repo.stats()["stored_bytes"] < 3 * 60_000
    for name, data in tips.items():
        assert repo.read("blob.bin", at=name) == data
    assert repo.read("blob.bin") == base
    repo.write("blob.bin", tips["side3"] + b"next", branch="side3")  # side3 moves on: re-rooted
    assert repo.read("blob.bin", at="side3") == tips["side3"] + b"next"
    assert repo.read("blob.bin", at=repo.log(at="side3", limit=2)[1].id) == tips["side3"]
    before = _deps_table(repo)
    repo.rebuild()
    assert _deps_table(repo) == before
    assert repo.verify().ok


def test_the_tip_delta_manifest_is_stored_uncompressed_until_its_successor(repo):
    def kind(cid):
        with repo._env.read() as txn:
            return txn.get(bytes.fromhex(cid), db=repo._env.db["blob"])[:1]

    repo.commit([Put(f"d/f{i:03d}", b"file %d\n" % i * 20) for i in range(300)])
    checkins = []
    while True:  # edit until a check-in writes a full manifest again
        n = len(checkins)
        checkins.append(repo.write(f"d/f{n:03d}", b"edit %d\n" % n * 20))
        if n > 2 and checkins[-1].baseline is None:
            break
    tip_delta, last_delta = checkins[2], checkins[-2]
    assert kind(tip_delta.id) in blobs.DELTAS  # became a delta on its successor
    assert kind(last_delta.id) == blobs.WHOLE  # no successor delta-manifest: compressed
    repo.write("d/f000", b"again")
    assert kind(repo.checkin().id) == blobs.RAW  # the tip's, waiting for the next write
    assert repo.verify().ok


def _edit_until_the_manifest_is_a_delta_on_a_known_one(repo):
    """A tree where the next write turns the tip's delta-manifest (written by this
    process, so its bytes are known) into a delta."""
    repo.commit([Put(f"d/f{i:03d}", b"file %d\n" % i * 20) for i in range(100)])
    repo.write("d/f000", b"first edit\n" * 20)
    assert repo.checkin().baseline is not None


def _corrupt_manifest_deltas(monkeypatch):
    real = delta.create

    def create(source, target, *budget):
        d = real(source, target, *budget)
        if target.startswith((b"B ", b"C ")):  # a manifest: reconstruct something else
            d = real(source, target.replace(b"F d/", b"F e/", 1), *budget)
        return d

    monkeypatch.setattr(delta, "create", create)


def test_a_manifest_delta_that_does_not_rebuild_its_known_bytes_is_refused(repo, monkeypatch):
    _edit_until_the_manifest_is_a_delta_on_a_known_one(repo)
    before = repo.checkin().id
    _corrupt_manifest_deltas(monkeypatch)
    with pytest.raises(herofossil.IntegrityError, match="did not verify"):
        repo.write("d/f001", b"second edit\n" * 20)
    monkeypatch.undo()
    assert repo.checkin().id == before
    assert repo.read("d/f001") == b"file 1\n" * 20
    assert repo.verify().ok


def test_a_compressed_form_that_does_not_decompress_to_its_bytes_is_refused(repo, monkeypatch):
    repo.write("keep.txt", b"kept\n" * 50)
    real = blobs.encode_whole
    monkeypatch.setattr(blobs, "encode_whole",
                        lambda data, level=blobs.ZSTD_LEVEL: real(data[:-1] + b"?", level))
    with pytest.raises(herofossil.IntegrityError, match="did not verify"):
        repo.write("new.txt", b"fresh content\n" * 50)
    monkeypatch.undo()
    assert sorted(repo.files()) == ["keep.txt"]
    assert repo.verify().ok


def test_known_contents_keep_the_newest_within_their_byte_budget():
    known = KnownContents(max_bytes=1000)
    known.add(b"too big", b"z" * 251)  # over a quarter of the budget: not kept
    for key in (b"a", b"b", b"c", b"d"):
        known.add(key, key * 250)
    known.add(b"a", b"a" * 250)  # re-adding does not count twice: "a" is now the newest
    assert all(known.get(k) == k * 250 for k in (b"a", b"b", b"c", b"d"))
    known.add(b"e", b"e" * 10)  # over budget: the oldest goes
    assert known.get(b"b") is None and known.get(b"too big") is None
    assert known.get(b"a") == b"a" * 250 and known.get(b"e") == b"e" * 10


def test_manifests_are_compressed_at_the_card_text_level(repo):
    repo.commit([Put(f"d/f{i:04d}", b"%d" % i) for i in range(2000)])
    stored = _stored(repo, repo.checkin().id)
    assert stored[:1] == blobs.WHOLE
    data = repo.artifact(repo.checkin().id)
    level = blobs.ZSTD_LEVEL_CARDS
    assert stored[1:] == zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)
    assert level != blobs.ZSTD_LEVEL


def test_check_in_records_cached_at_write_time_equal_their_decoded_form(repo):
    RECORDS._items.clear()
    written = [repo.write(f"f{i}", b"content %d\n" % i) for i in range(5)]
    with repo._env.read() as txn:
        for rec in written:
            cid = bytes.fromhex(rec.id)
            raw = txn.get(cid, db=repo._env.db["checkin"])
            cached = RECORDS._items[cid]
            assert cached[0] == raw
            assert cached[1] == _decode_record(cid, raw) == rec
            assert rec.time == date_to_datetime(rec.date).timestamp()
