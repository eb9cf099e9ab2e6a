"""Packed history: ``compact`` compresses stored forms with a dictionary trained on them."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys

import lmdb
import pytest
import zstandard

import herofossil
from herofossil.errors import IntegrityError, StoreError
from herofossil.store import blobs, exchange, lmdbenv, packing
from herofossil.store.changes import Put
from herofossil.store.keys import id_key
from herofossil.sync import client

sys.path.insert(0, os.path.dirname(__file__))
from damage import put_raw, refused  # noqa: E402
from test_gitimport_helpers import build_rich  # noqa: E402

FOSSIL = shutil.which("fossil")


def _config(rng: random.Random, name: str, old: bytes | None) -> bytes:
    """A TOML-like config file, or a small edit of ``old`` (most changes are small)."""
    if old is not None and rng.random() < 0.8:
        lines = old.decode().split("\n")
        lines[rng.randrange(len(lines))] = f"port = {rng.randrange(1 << 16)}"
        return "\n".join(lines).encode()
    keys = [f'{k}_{rng.randrange(50)} = "{rng.choice(["on", "off", "auto"])}"'
            for k in ("name", "mode", "path", "retries") for _ in range(rng.randint(2, 12))]
    return (f"[{name}]\n" + "\n".join(keys) + "\n").encode()


_WORDS = [f"w{i}" for i in range(3000)]


def _prose(rng: random.Random) -> bytes:
    """About 8 KB of text that compresses to about 3 KB: a form too large for a leaf page
    of LMDB, and no version a delta of another."""
    return " ".join(rng.choice(_WORDS) for _ in range(1300)).encode()


def _make_history(repo, versions: int = 240, seed: int = 7) -> dict[str, list[bytes]]:
    """Small config files edited many times, on two branches, and a few larger documents
    rewritten (their old versions go into segments); every version by path."""
    rng = random.Random(seed)
    seen: dict[str, list[bytes]] = {}
    repo.branch_new("feature")
    for n in range(versions):
        path = f"etc/{rng.randrange(16)}.toml"
        data = _config(rng, path, seen.get(path, [None])[-1])
        if n % 20 == 0:
            path, data = f"doc/{n % 3}.md", _prose(rng)
        repo.write(path, data, branch="feature" if n % 5 == 0 else None)
        seen.setdefault(path, []).append(data)
    repo.tag_add("v1")
    return seen


def _every_version(repo) -> dict[str, bytes]:
    """Every file of every check-in of both branches: path@check-in -> bytes."""
    out = {}
    for branch in ("trunk", "feature"):
        for c in repo.log(at=branch):
            for path in repo.files(c.id):
                out[f"{path}@{c.id}"] = repo.read(path, at=c.id)
    return out


def _zdict(repo) -> dict[bytes, bytes]:
    """The store's dictionaries, by key."""
    with repo._read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=repo._db["zdict"])}


@pytest.fixture
def packed(store_path):
    """A store of small configs edited many times, compacted (packed); and every version
    read before the compact."""
    repo = herofossil.open(store_path, create=True)
    _make_history(repo)
    before = _every_version(repo)
    stats = repo.stats()
    repo.compact()
    yield repo, before, stats
    repo.close()


def test_compact_packs_history_into_segments_and_the_tips_with_one_dictionary(
        packed, store_path):
    repo, before, stats = packed
    after = repo.stats()
    assert after["dictionaries"] == 1 and after["packed"] > 0
    assert after["segmented"] > 0.8 * after["artifacts"]
    # The dictionary's bytes count as stored: the store still holds less than before (the
    # documents, random words, gain little).
    assert after["stored_bytes"] < 0.9 * stats["stored_bytes"]
    assert _every_version(repo) == before
    assert (store_path / lmdbenv.MARKER).read_text().startswith(
        f"herofossil store format {lmdbenv.SOLID_HISTORY_FORMAT}\n")
    assert repo.verify().ok
    # A new process (no dictionary registered yet) reads them too.
    some = sorted(before)[::25]
    script = ("import sys, herofossil\n"
              "r = herofossil.open(sys.argv[1], readonly=True)\n"
              "for arg in sys.argv[2:]:\n"
              "    path, _, at = arg.partition('@')\n"
              "    sys.stdout.buffer.write(r.read(path, at=at))\n")
    out = subprocess.run([sys.executable, "-c", script, str(store_path), *some],
                         capture_output=True, check=True).stdout
    assert out == b"".join(before[k] for k in some)


def test_writes_rebuild_and_a_second_compact_on_a_packed_store_keep_one_dictionary(
        packed, store_path):
    repo, before, _ = packed
    first = _zdict(repo)
    assert len(first) == 1
    rng = random.Random(3)
    for n in range(40):  # new versions of packed tips: the old tips become deltas
        path = f"etc/{n % 16}.toml"
        repo.write(path, _config(rng, path, repo.read(path)))
    grown = _every_version(repo)
    assert all(grown[k] == v for k, v in before.items())
    assert repo.verify().ok
    repo.rebuild()
    assert _every_version(repo) == grown
    repo.compact()
    second = _zdict(repo)
    assert len(second) == 1 and second != first  # trained again; the old one is gone
    assert _every_version(repo) == grown
    assert repo.verify().ok


def test_compacting_a_packed_store_again_keeps_its_dictionary(packed):
    repo, before, _ = packed
    first = _zdict(repo)
    repo.compact()  # the same forms: the same dictionary is trained again
    assert _zdict(repo) == first
    assert _every_version(repo) == before
    assert repo.verify().ok


def test_a_packed_artifact_streams_and_seeks_back(packed):
    from herofossil.store.streams import ArtifactStream

    repo, before, _ = packed
    whole = []
    with repo._read() as txn:
        for key, data in before.items():
            path, _, at = key.partition("@")
            aid = id_key(repo.stat(path, at=at).id)
            stored = txn.get(aid, db=repo._db["blob"])
            if stored[:1] == blobs.WHOLE and blobs.stored_dictionary(stored):
                whole.append((aid, data))
    assert whole
    for aid, data in whole[:5]:
        with ArtifactStream(repo._env, aid) as f:
            assert f.read(10) == data[:10]
            f.seek(2)  # backwards: decompression starts again, with the dictionary
            assert f.read() == data[2:]
    with repo.plumbing.open_artifact(whole[0][0].hex()) as f:
        assert f.read() == whole[0][1]


def test_a_packed_store_round_trips_git_history_with_the_same_ids(tmp_path):
    g = build_rich(tmp_path / "src")
    rng = random.Random(5)
    old: dict[str, bytes] = {}
    for n in range(160):
        name = f"conf/{rng.randrange(10)}.toml"
        old[name] = _config(rng, name, old.get(name))
        g.write(name, old[name])
        g.commit(f"tune {name} ({n})")
    from herofossil.gitimport import export_git, import_git

    with herofossil.open(tmp_path / "s", create=True) as repo:
        import_git(repo, g.path)
        repo.compact()
        assert repo.stats()["segmented"] > 300
        export_git(repo, str(tmp_path / "out.git"))
        assert repo.verify().ok
    got = subprocess.run(["git", "-C", str(tmp_path / "out.git"), "for-each-ref",
                          "--format=%(refname) %(objectname)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert got == g.refs()
    fsck = subprocess.run(["git", "-C", str(tmp_path / "out.git"), "fsck", "--no-dangling"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_a_clone_of_a_packed_store_takes_its_packed_forms_and_its_dictionary_once(
        packed, store_path, tmp_path, serve):
    repo, before, _ = packed
    srv = serve(store_path)
    copy, report = client.clone(srv.url, tmp_path / "copy")
    with copy:
        stats = copy.stats()
        # The forms of segments came one by one, packed with the dictionary (where that
        # is smaller: not for the smallest deltas), as a compact without segments leaves them.
        assert stats["packed"] > repo.stats()["packed"] + 0.6 * repo.stats()["segmented"]
        assert stats["dictionaries"] == 1
        assert _zdict(copy) == _zdict(repo)
        assert (tmp_path / "copy" / lmdbenv.MARKER).read_text().startswith(
            f"herofossil store format {lmdbenv.PACKED_FORMAT}\n")
        assert _every_version(copy) == before
        # Forms in segments came as the forms (the copy makes segments of its own when
        # it is compacted): it is of the packed format, not of the segmented one.
        assert repo.stats()["segmented"] > 0 and stats["segmented"] == 0
        assert copy.verify().ok  # in a child process: the dictionary is the copy's own
    # What came is the packed forms the copy stored and the dictionary once (stored_bytes
    # counts it), 36 bytes of id and length each, and the headers.
    assert report.bytes_received < stats["stored_bytes"] + 36 * stats["artifacts"] + 4096
    srv.stop()
    # A request that names the dictionary (each after the first) does not get it again.
    (raw,) = _zdict(repo).values()
    forms, _ = exchange.artifacts_after(repo._env, 0, max_bytes=1 << 30)
    assert exchange.for_peer(forms, set())[1] == [raw]
    assert exchange.for_peer(forms, {blobs.check_dictionary(raw)}) == (forms, [])
    # An older client (no "packs" in its requests) gets every form without a dictionary.
    from herofossil.sync import wire
    from herofossil.sync.backend import SyncBackend

    old = tmp_path / "old"
    with herofossil.open(old, create=True) as fresh:
        request = SyncBackend(fresh).request({}, pull=True, push=False)
    request.header.pop("packs")
    answer = SyncBackend(repo).answer(wire.decode(wire.encode(request)))
    assert answer.artifacts and not answer.dictionaries
    assert not any(blobs.stored_dictionary(form) for _, form in answer.artifacts)


def test_a_packed_store_pushes_plain_forms(packed, store_path, tmp_path, serve):
    repo, before, _ = packed
    srv = serve(store_path)
    client.clone(srv.url, tmp_path / "copy")[0].close()
    srv.stop()
    rng = random.Random(11)
    for n in range(30):  # new versions, packed, pushed to the copy
        path = f"etc/{n % 16}.toml"
        repo.write(path, _config(rng, path, repo.read(path)))
    repo.compact()
    grown = _every_version(repo)
    with herofossil.open(tmp_path / "copy") as copy:  # the copy holds no new packed form
        plain_before = copy.stats()["packed"]
    srv2 = serve(tmp_path / "copy")
    report = client.sync(repo, srv2.url)
    assert report.artifacts_sent > 30
    srv2.stop()
    with herofossil.open(tmp_path / "copy", readonly=True) as other:
        assert other.stats()["packed"] == plain_before
        assert _every_version(other) == grown


@pytest.mark.skipif(FOSSIL is None, reason="needs fossil")
def test_fossil_clones_a_packed_store(packed, store_path, tmp_path, serve):
    repo, _, _ = packed
    srv = serve(store_path)
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), USER="tester", FOSSIL_HOME=str(home))

    def fsl(*args):
        return subprocess.run([FOSSIL, *map(str, args)], env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120, check=True)

    clone = tmp_path / "x.fossil"
    fsl("clone", srv.url, clone)
    assert " 0 errors" in fsl("test-integrity", "--parse", "-R", clone).stdout
    for path in repo.files():
        got = subprocess.run([FOSSIL, "cat", path, "-R", clone, "-r", "trunk"], env=env,
                             capture_output=True, check=True).stdout
        assert got == repo.read(path)


def test_fossil_reconstructs_the_artifacts_of_a_packed_store(packed, tmp_path, fossil):
    repo, before, _ = packed
    assert repo.stats()["segmented"] > 0  # forms of segments are exported too
    out = tmp_path / "artifacts"
    assert repo.export_artifacts(str(out)) == repo.stats()["artifacts"]
    repo_file = tmp_path / "r.fossil"
    fossil("reconstruct", repo_file, out)
    assert " 0 errors" in fossil("test-integrity", "--parse", "-R", repo_file).stdout
    for key in sorted(before)[::40]:
        path, _, at = key.partition("@")
        got = subprocess.run([shutil.which("fossil"), "cat", path, "-R", str(repo_file), "-r",
                              at], capture_output=True, check=True).stdout
        assert got == before[key]


def test_a_peer_sending_packed_forms_without_a_good_dictionary_is_refused(packed,
                                                                           tmp_path):
    repo, _, _ = packed
    (raw,) = _zdict(repo).values()
    did = blobs.check_dictionary(raw)
    data = b"a file a peer compressed with a dictionary of its own\n" * 4
    form = blobs.WHOLE + blobs.dictionary_compressor(did, 3, True).compress(data)
    aid = blobs.artifact_id(data)
    with herofossil.open(tmp_path / "other", create=True) as other:
        before = other.stats()["artifacts"]
        damaged = raw[:-1] + bytes([raw[-1] ^ 1])
        for sent, said in (([], "which it did not send and this store lacks"),
                           ([damaged], "bad compression dictionary"),
                           ([b"not a dictionary" * 4], "bad compression dictionary")):
            with pytest.raises(IntegrityError, match=said):
                exchange.receive(other._env, [(aid, form)], dictionaries=sent)
            assert other.stats()["artifacts"] == before and other.stats()["dictionaries"] == 0
        # With its dictionary the form is taken as it is, the dictionary kept beside it.
        exchange.receive(other._env, [(aid, form)], dictionaries=[raw])
        assert other.artifact(aid.hex()) == data
        assert other.stats()["packed"] == 1 and _zdict(other) == _zdict(repo)
    # A dictionary whose bytes do not give its id is refused on the wire's side too.
    with pytest.raises(IntegrityError, match="does not hash to its id"):
        blobs.check_dictionary(raw[:8] + raw[8:][::-1])


def test_a_sync_message_carries_dictionaries_within_its_limits():
    from herofossil.errors import SyncError
    from herofossil.sync import wire

    msg = wire.Message({"x": 1}, [(b"\1" * 32, b"W" + b"\0" * 10)], None, [b"d" * 100])
    back = wire.decode(wire.encode(msg))
    assert back.dictionaries == [b"d" * 100] and back.artifacts == msg.artifacts
    data = wire.encode(msg)
    for bad in (data[:-20], data.replace(b'"zd":1', b'"zd":99'),
                data.replace(b'"zd":1', b'"zd":-1'),
                wire.encode(wire.Message({}, [], None, [b"d" * (wire.MAX_DICTIONARY + 1)]))):
        with pytest.raises(SyncError):
            wire.decode(bad)


def test_verify_names_a_missing_and_a_damaged_dictionary(packed, store_path, tmp_path):
    repo, _, _ = packed
    (did_key, raw), = _zdict(repo).items()
    repo.close()
    for name, change in (("missing", None), ("damaged", raw[:-1] + bytes([raw[-1] ^ 1]))):
        copy = tmp_path / name
        shutil.copytree(store_path, copy)
        put_raw(copy, "zdict", did_key, change)
        said = refused(copy, "verify")
        did = int.from_bytes(did_key, "big")
        assert f"compressed with dictionary {did}, which the store lacks" in said
        if change is not None:
            assert f"dictionary {did}: compression dictionary {did} does not hash" in said


def test_a_dictionary_must_carry_the_id_its_bytes_give():
    samples = [b"key_%d = %d\n" % (i, i * 7) * 5 for i in range(200)]
    raw = zstandard.train_dictionary(4096, samples, k=64, d=8).as_bytes()
    fixed = blobs.with_dictionary_id(raw)
    assert blobs.check_dictionary(fixed) == blobs.dictionary_id(fixed)
    assert 32768 <= blobs.dictionary_id(fixed) < 2**31
    with pytest.raises(IntegrityError, match="does not hash to its id"):
        blobs.check_dictionary(fixed[:4] + (1 + blobs.dictionary_id(fixed)).to_bytes(4, "little")
                               + fixed[8:])
    with pytest.raises(IntegrityError, match="not a zstd dictionary"):
        blobs.check_dictionary(b"\0" * 64)


def test_a_store_too_small_to_train_on_is_compacted_without_a_dictionary(repo, store_path):
    repo.commit([Put(f"f{i}", b"x%d\n" % i) for i in range(10)])
    repo.compact()
    assert repo.stats()["dictionaries"] == 0
    # its numbered logs are runs now (``sequences``) and the first check-in's manifest is
    # in a segment: a format releases 1-3 do not read
    assert (store_path / lmdbenv.MARKER).read_text().startswith(
        f"herofossil store format {lmdbenv.SOLID_HISTORY_FORMAT}\n")
    assert [repo.read(f"f{i}") for i in range(10)] == [b"x%d\n" % i for i in range(10)]
    assert repo.verify().ok
    assert packing.train(iter([])) is None


def test_a_store_of_an_unknown_later_format_is_refused_with_upgrade_advice(packed,
                                                                          store_path):
    repo, _, _ = packed
    repo.close()
    marker = store_path / lmdbenv.MARKER
    newest = max(lmdbenv.READ_FORMATS)
    text = marker.read_text()
    marker.write_text(f"herofossil store format {newest + 1}\n" + text.partition("\n")[2])
    with pytest.raises(StoreError, match=f"has format {newest + 1}; this herofossil reads "
                                         f"formats 1-{newest}: upgrade herofossil"):
        herofossil.open(store_path)


def _compact_in_background(store):
    """``herofossil compact`` in a process of its own, once its copy has begun."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "herofossil", "-R", str(store), "compact"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = store / "compact.tmp"
    while not tmp.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    return proc


@pytest.mark.slow
def test_a_process_opening_the_store_during_a_compact_reads_at_once_and_nothing_changes(
        tmp_path):
    store = tmp_path / "s"
    with herofossil.open(store, create=True) as repo:
        _make_history(repo, versions=1500)
        files = repo.files()
        sample = repo.read("etc/1.toml")
    # A reader: it opens and reads while the copy is made (before, it waited for the
    # whole compact); the store is then in use, so the compact drops its copy.
    proc = _compact_in_background(store)
    with herofossil.open(store, readonly=True) as reader:
        assert reader.read("etc/1.toml") == sample
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 10 and "opened the store during the compact" in err, err
    # A writer that opens, writes and leaves during the copy: its write is kept.
    proc = _compact_in_background(store)
    with herofossil.open(store) as writer:
        writer.write("during.txt", b"written while a compact copied the store\n")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 10 and "wrote to the store during the compact" in err, err
    with herofossil.open(store) as repo:
        assert repo.read("during.txt") == b"written while a compact copied the store\n"
        assert {p: v for p, v in repo.files().items() if p != "during.txt"} == files
        assert not (store / "compact.tmp").exists() and repo.stats()["dictionaries"] == 0
        repo.compact()  # alone now: it packs
        assert repo.stats()["dictionaries"] == 1 and repo.verify().ok


def test_compact_packs_checkin_records_and_verify_names_a_damaged_one(packed, store_path,
                                                                      tmp_path):
    repo, _, _ = packed
    with repo._read() as txn:
        records = {bytes(k): bytes(v) for k, v in txn.cursor(db=repo._db["checkin"])}
    assert sum(v[:1] == b"\x02" for v in records.values()) > 0.9 * len(records)
    log = [(c.id, c.comment, c.user, c.date, c.parents) for c in repo.log(at="feature")]
    repo.rebuild()  # derives plain records again: the same check-ins
    assert [(c.id, c.comment, c.user, c.date, c.parents) for c in repo.log(at="feature")] == log
    repo.compact()
    cid = max(records, key=lambda k: len(records[k]))
    repo.close()
    env = lmdb.open(str(store_path), max_dbs=32)
    with env.begin(write=True) as txn:
        db = env.open_db(b"checkin", txn=txn)
        raw = txn.get(cid, db=db)
        assert raw[:1] == b"\x02"
        txn.put(cid, raw[:-3] + bytes([raw[-3] ^ 0x55]) + raw[-2:], db=db)
    env.close()
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store_path),
                           "verify"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"check-in {cid.hex()}" in proc.stdout + proc.stderr


def test_a_refused_exchange_leaves_no_dictionary_of_its_own_in_the_process(packed, tmp_path):
    repo, _, _ = packed
    samples = [b"[peer]\nkey_%d = %d\nname = \"x%d\"\n" % (i, i * 7, i) * 4 for i in range(300)]
    raw = blobs.with_dictionary_id(
        zstandard.train_dictionary(8192, samples, k=64, d=8).as_bytes())
    did = blobs.check_dictionary(raw)
    assert blobs.dictionary_bytes(did) is None
    data = samples[5]
    form = blobs.WHOLE + zstandard.ZstdCompressor(
        level=3, dict_data=zstandard.ZstdCompressionDict(raw), write_dict_id=True,
        write_checksum=True).compress(data)
    wrong = blobs.artifact_id(data + b"!")  # the bytes do not hash to it: refused
    with herofossil.open(tmp_path / "other", create=True) as other:
        with pytest.raises(IntegrityError, match="do not hash"):
            exchange.receive(other._env, [(wrong, form)], dictionaries=[raw])
        assert blobs.dictionary_bytes(did) is None and other.stats()["dictionaries"] == 0


def test_a_dictionary_the_process_has_not_loaded_is_found_in_the_open_store(packed):
    """As when another process's sync brought it after this one opened the store."""
    repo, before, _ = packed
    (key,) = _zdict(repo)
    did = int.from_bytes(key, "big")
    blobs.forget_dictionaries([did])
    assert did not in blobs._dictionaries
    assert _every_version(repo) == before  # each packed form looked the dictionary up
    assert did in blobs._dictionaries


# ---- segments: the forms of history compressed together in the ``segment`` table
def _blob_values(repo) -> dict[bytes, bytes]:
    with repo._read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=repo._db["blob"])}


def _segments(repo) -> dict[bytes, bytes]:
    with repo._read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=repo._db["segment"])}


def test_compact_puts_every_old_form_into_solid_segments_and_leaves_the_tips_in_place(packed):
    repo, before, _ = packed
    values = _blob_values(repo)
    hot = {id_key(repo.stat(path, at=branch).id) for branch in ("trunk", "feature")
           for path in repo.files(branch)}
    hot |= {id_key(repo.log(at=branch, limit=1)[0].id) for branch in ("trunk", "feature")}
    refs = {aid: v for aid, v in values.items() if v[:1] == blobs.SEGMENT}
    # Every artifact but those of the tips (files and manifests) is in a segment.
    assert set(values) - set(refs) == hot
    assert len(refs) == repo.stats()["segmented"]
    segments = _segments(repo)
    assert len(segments) >= 2 and all(v[:1] == blobs.SOLID for v in segments.values())
    with repo._read() as txn:
        forms = [blobs.resolve(txn, repo._db, aid, v) for aid, v in refs.items()]
    # Kept uncompressed in their segment, compressed together there: smaller than the
    # same forms compressed one by one.
    assert {f[:1] for f in forms} == {blobs.RAW, blobs.RAW_DELTA}
    alone = sum(len(blobs.compressed_form(f)) for f in forms)
    assert sum(map(len, segments.values())) < 0.8 * alone
    assert _every_version(repo) == before


def test_a_segment_read_again_comes_from_the_cache_and_a_damaged_one_is_named(packed,
                                                                              store_path):
    repo, before, _ = packed
    key, value = next(iter(_segments(repo).items()))
    forms = blobs.segment_forms(value)
    assert blobs.SEGMENTS.get(value[1:17]) is forms  # decompressed once
    assert blobs.segment_forms(value) is forms
    assert blobs.segment_digest_holds(value)
    # Other forms under this digest: verify's check decompresses the value itself, even
    # while the genuine forms are cached.
    forged = value[:17] + zstandard.ZstdCompressor().compress(forms[:-1] + b"!")
    assert not blobs.segment_digest_holds(forged)
    blobs.SEGMENTS.clear()
    flipped = value[:-8] + bytes([value[-8] ^ 1]) + value[-7:]
    with pytest.raises(IntegrityError, match="segment of packed history holding artifact "
                                             "(ab)+ is damaged"):
        blobs.segment_forms(flipped, b"\xab" * 32)
    # Another digest: the frame still decompresses; verify names the mismatch.
    other = value[:1] + bytes(16) + value[17:]
    assert not blobs.segment_digest_holds(other)
    repo.close()
    for name, bad in (("frame", flipped), ("digest", other)):
        blobs.SEGMENTS.clear()
        put_raw(store_path, "segment", key, bad)
        said = refused(store_path, "verify")
        seg = int.from_bytes(key, "big")
        assert f"segment {seg}: " in said
        assert ("do not hash to its digest" in said) == (name == "digest")
    put_raw(store_path, "segment", key, value)
    with herofossil.open(store_path) as again:
        assert again.verify().ok
        assert _every_version(again) == before


def test_a_store_with_plain_segments_of_the_previous_format_still_reads(packed, store_path):
    """Format 3 (an earlier release's ``compact``) kept forms end to end, uncompressed
    together: the same references name them there."""
    repo, before, _ = packed
    segments = _segments(repo)
    repo.close()
    for key, value in segments.items():
        put_raw(store_path, "segment", key, blobs.segment_forms(value))
    marker = store_path / lmdbenv.MARKER
    marker.write_text(marker.read_text().replace("format 4", "format 3", 1))
    blobs.SEGMENTS.clear()
    with herofossil.open(store_path) as again:
        assert _every_version(again) == before
        assert again.verify().ok


def test_a_version_written_over_segmented_history_replaces_its_reference(packed, tmp_path):
    repo, before, _ = packed
    values = _blob_values(repo)
    docs = {id_key(repo.stat("doc/0.md", at=c.id).id) for c in repo.log(at="feature")
            if "doc/0.md" in repo.files(c.id)}
    old = next(aid for aid in sorted(docs) if values[aid][:1] == blobs.SEGMENT)
    data = repo.artifact(old.hex())
    # The old version comes back, then a small edit of it: the writer turns the one in
    # the segment into a delta on the new one.
    repo.write("doc/0.md", data)
    repo.write("doc/0.md", data[:-20] + b" the new ending")
    after = _blob_values(repo)
    assert after[old][:1] in blobs.DELTAS
    assert repo.read("doc/0.md") == data[:-20] + b" the new ending"
    assert _every_version(repo).items() >= before.items()
    assert repo.verify().ok
    repo.compact()  # the bytes of the replaced form are dropped with their segment
    with repo._read() as txn:
        total = sum(len(blobs.segment_forms(v)) for v in _segments(repo).values())
        assert total == sum(len(blobs.resolve(txn, repo._db, a, v))
                            for a, v in _blob_values(repo).items() if v[:1] == blobs.SEGMENT)
    assert _blob_values(repo)[old][:1] == blobs.SEGMENT  # history again
    assert repo.verify().ok


def test_verify_names_a_missing_segment_and_a_damaged_reference(packed, store_path,
                                                                 tmp_path):
    repo, _, _ = packed
    values = _blob_values(repo)
    aid, ref = next((a, v) for a, v in values.items() if v[:1] == blobs.SEGMENT)
    seg = int.from_bytes(ref[1:5], "big")
    repo.close()
    for name, change in (("missing", None), ("damaged", blobs.segment_ref(seg, 1 << 30, 9))):
        copy = tmp_path / name
        shutil.copytree(store_path, copy)
        if change is None:
            put_raw(copy, "segment", blobs.segment_key(seg), None)
        else:
            put_raw(copy, "blob", aid, change)
        said = refused(copy, "verify")
        if change is None:
            assert f"is kept in segment {seg}, which the store lacks" in said
        else:
            assert f"damaged reference into segment {seg}" in said
        assert aid.hex() in said


def test_a_peer_sending_a_reference_into_its_segments_is_refused(packed, tmp_path):
    repo, _, _ = packed
    aid, ref = next((a, v) for a, v in _blob_values(repo).items() if v[:1] == blobs.SEGMENT)
    with herofossil.open(tmp_path / "other", create=True) as other:
        with pytest.raises(IntegrityError, match="malformed artifact"):
            exchange.receive(other._env, [(aid, ref)])
        assert other.stats()["artifacts"] == 0


def test_a_compact_without_packing_takes_forms_out_of_their_segments(packed):
    """What an import or a clone into a packed store does to give free pages back."""
    repo, before, _ = packed
    assert repo.stats()["segmented"] > 0
    repo.compact(pack=False)
    assert repo.stats()["segmented"] == 0
    with repo._read() as txn:
        assert txn.stat(repo._db["segment"])["entries"] == 0
    assert _every_version(repo) == before
    assert repo.verify().ok


# ---- path-log runs: the path log of packed history, one entry per path
def _path_logs(repo) -> dict[str, list[str]]:
    return {p: [c.id for c in repo.log(path=p, at=b)] for b in ("trunk", "feature")
            for p in repo.files(b)}


def _pathlog(repo) -> dict[bytes, bytes]:
    with repo._read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=repo._db["pathlog"])}


def test_compact_folds_the_path_log_into_one_run_per_path(store_path):
    from herofossil.store.checkins import run_seqs

    with herofossil.open(store_path, create=True) as repo:
        _make_history(repo)
        logs, entries = _path_logs(repo), _pathlog(repo)
        repo.compact()
        runs = _pathlog(repo)
        assert _path_logs(repo) == logs
        # as many entries as paths; together they name every check-in they named before
        assert len(runs) == len({k[:-8] for k in entries}) < len(entries) / 5
        assert sorted((k[:-8], n) for k, v in runs.items() for n in run_seqs(k, v)) == \
            sorted((k[:-8], int.from_bytes(k[-8:], "big")) for k in entries)
        assert repo.verify().ok
        for n in range(5):  # check-ins after the compact add entries of their own
            repo.write("etc/1.toml", b"after %d\n" % n)
        assert len(_pathlog(repo)) == len(runs) + 5
        assert [c.id for c in repo.log(path="etc/1.toml")][:5] == \
            [c.id for c in repo.log()][:5]
        assert repo.verify().ok
        repo.rebuild()  # the rebuild's path log is one entry per check-in and path
        assert len(_pathlog(repo)) == len(entries) + 5
        assert repo.verify().ok


def test_a_check_in_taken_out_of_the_path_log_leaves_the_rest_of_its_run(repo):
    from herofossil.store.checkins import CheckinIndex, pathlog_runs, run_seqs
    from herofossil.store.keys import join_key, pack_u64

    prefix = join_key("a.txt", b"")
    runs = dict(pathlog_runs([(prefix + pack_u64(n), b"") for n in (3, 5, 8, 13, 21)]))
    single = join_key("b.txt", b"") + pack_u64(9)

    def unlog(seq: int, path: bytes = prefix) -> dict[int, bytes]:
        def fn(txn):
            ci = CheckinIndex(txn, repo._db)
            ci._unlog(path, seq)
            return {n: k for k, v in txn.cursor(db=repo._db["pathlog"])
                    for n in run_seqs(bytes(k), bytes(v))}
        return repo._env.write(fn)

    def reset(txn):
        txn.drop(repo._db["pathlog"], delete=False)
        for k, v in [*runs.items(), (single, b"")]:
            txn.put(k, v, db=repo._db["pathlog"])

    repo._env.write(reset)
    assert sorted(unlog(8)) == [3, 5, 9, 13, 21]  # inside the run
    assert sorted(unlog(3)) == [5, 9, 13, 21]  # its first: the run is keyed by the next
    assert unlog(5)[13] == prefix + pack_u64(13)
    assert sorted(unlog(21)) == [9, 13]  # its last
    assert sorted(unlog(4)) == [9, 13]  # one it does not hold: nothing changes
    assert sorted(unlog(13)) == [9]
    assert sorted(unlog(9, join_key("b.txt", b""))) == []


def test_verify_names_a_damaged_path_log_run(packed, store_path, tmp_path):
    repo, _, _ = packed
    key, value = next((k, v) for k, v in _pathlog(repo).items() if v)
    repo.close()
    put_raw(store_path, "pathlog", key, value + b"\x80")
    assert "value is not a run of check-ins: a truncated varint at the end" in \
        refused(store_path, "verify")


def test_the_inline_limit_is_where_lmdb_starts_a_page_of_its_own(tmp_path):
    env = lmdb.open(str(tmp_path / "l"), max_dbs=4)
    psize = env.stat()["psize"]
    limit = packing.inline_limit(psize)
    for n, size in enumerate((limit, limit + 1)):
        db = env.open_db(b"t%d" % n)
        with env.begin(write=True) as txn:
            txn.put(b"k" * 32, b"v" * size, db=db)
            assert txn.stat(db)["overflow_pages"] == (size > limit)
    env.close()


def test_compacting_a_store_whose_numbered_log_is_damaged_changes_nothing(packed, store_path):
    repo, before, _ = packed
    with repo._read() as txn:
        key, value = (bytes(x) for x in next(iter(txn.cursor(db=repo._db["seq"]))))
    repo.close()
    put_raw(store_path, "seq", key, value[:-3])
    said = refused(store_path, "compact")
    assert "table seq is damaged" in said and "nothing was changed" in said
    assert not (store_path / "compact.tmp").exists()
    with herofossil.open(store_path, readonly=True) as again:  # its data as it was
        assert _every_version(again) == before


def test_a_reader_opened_before_the_store_had_dictionaries_reads_packed_forms_a_sync_brought(
        packed, tmp_path):
    """A store of an earlier release (no ``zdict`` table), open read-only here, while
    another process stores packed forms and their dictionary into it."""
    repo, before, _ = packed
    forms, _ = exchange.artifacts_after(repo._env, 0, max_bytes=1 << 30)
    sent, dictionaries = exchange.for_peer(forms, set())
    (did,) = {blobs.stored_dictionary(f) for _, f in sent} - {0}
    repo.close()
    blobs.forget_dictionaries([did])
    old = tmp_path / "old"
    with herofossil.open(old, create=True) as fresh:
        fresh.write("kept.txt", b"from before\n")
    env = lmdb.open(str(old), max_dbs=32)
    with env.begin(write=True) as txn:  # as an earlier release made it
        txn.drop(env.open_db(b"zdict", txn=txn), delete=True)
    env.close()
    with herofossil.open(old, readonly=True) as reader:
        assert "zdict" not in reader._db
        script = ("import pickle, sys, herofossil\n"
                  "from herofossil.store import exchange\n"
                  "forms, dicts = pickle.load(sys.stdin.buffer)\n"
                  "with herofossil.open(sys.argv[1]) as w:\n"
                  "    exchange.receive(w._env, forms, dictionaries=dicts)\n")
        import pickle

        subprocess.run([sys.executable, "-c", script, str(old)], check=True,
                       input=pickle.dumps((sent, dictionaries)))
        packed_ids = [aid for aid, f in sent if blobs.stored_dictionary(f) == did]
        assert packed_ids and did not in blobs._dictionaries
        with reader._read() as txn:
            got = blobs.BlobReader(txn, reader._db).content(packed_ids[0])
        assert blobs.hashes_to(packed_ids[0], got)
        assert reader.read("kept.txt") == b"from before\n"


def test_segments_are_compressed_with_the_store_dictionary(
        packed, store_path):
    repo, before, _ = packed
    (did_key,) = _zdict(repo)
    segments = list(_segments(repo).values())
    assert len(segments) >= 3
    assert {blobs.frame_dictionary(v[17:]) for v in segments} == \
        {int.from_bytes(did_key, "big")}
    repo.close()
    put_raw(store_path, "zdict", did_key, None)
    blobs.forget_dictionaries([int.from_bytes(did_key, "big")])
    blobs.SEGMENTS.clear()
    said = refused(store_path, "verify")
    assert "segment 1: a segment of packed history is compressed with dictionary " \
        f"{int.from_bytes(did_key, 'big')}, which the store lacks" in said


def test_compact_reports_each_stage_up_to_its_total(store_path):
    repo = herofossil.open(store_path, create=True)
    _make_history(repo)
    calls = []
    repo.compact(progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["compact: train a dictionary", "compact: pack history", "compact: copy"]
    for stage in stages:
        seen = [(done, total) for s, done, total in calls if s == stage]
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never backwards
        assert seen[-1][0] == seen[-1][1] > 0  # ends at its total
    assert repo.verify().ok
    repo.close()


def test_a_segment_takes_forms_until_its_last_page_is_nearly_full(tmp_path):
    """A large value takes whole pages of its own (a 16-byte header on the first)."""
    rnd = random.Random(7)
    words = [bytes(rnd.choices(b"abcdefghijklmnop", k=rnd.randint(3, 9))) for _ in range(400)]
    env = lmdb.open(str(tmp_path / "s"), max_dbs=2)
    psize = env.stat()["psize"]
    with env.begin(write=True) as txn:
        seg = packing.Segmenter(txn.cursor(db=env.open_db(b"segment", txn=txn)), psize, set())
        pending = [(bytes([n % 256, n // 256]) * 16,
                    blobs.RAW + b" ".join(rnd.choices(words, k=rnd.randint(30, 60))))
                   for n in range(2000)]
        forms = dict(pending)
        while len(pending) > 200:
            seg._write(pending)
        values = [bytes(v) for v in txn.cursor(db=env.open_db(b"segment", txn=txn))
                  .iternext(keys=False)]
    env.close()
    assert len(values) >= 5
    for value in values:
        free = -(-(len(value) + 16) // psize) * psize - 16 - len(value)
        assert free < psize // 8
        assert len(blobs.segment_forms(value)) >= packing.SEGMENT_BYTES
    # Every form taken is in its segment at the place its reference names.
    for aid, ref in seg.refs.items():
        assert blobs.form_in_segment(aid, ref, lambda key, _: blobs.segment_forms(
            values[int.from_bytes(key, "big") - 1])) == forms[aid]


def test_checkin_records_take_the_dictionary_when_only_segments_did(store_path, monkeypatch):
    # Whether a tip's form is smaller with the dictionary depends on the data (the dates
    # of its manifests): none is here, and the records still pack, as the segments did.
    monkeypatch.setattr(packing.Packer, "pack", lambda self, aid, stored: stored)
    with herofossil.open(store_path, create=True) as repo:
        _make_history(repo)
        log = [(c.id, c.comment, c.date) for c in repo.log(at="feature")]
        repo.compact()
        stats = repo.stats()
        assert stats["packed"] == 0 and stats["segmented"] > 0 and stats["dictionaries"] == 1
        with repo._read() as txn:
            records = [bytes(v) for v in txn.cursor(db=repo._db["checkin"]).iternext(
                keys=False)]
        assert sum(v[:1] == b"\x02" for v in records) > 0.9 * len(records)
    with herofossil.open(store_path) as repo:  # a new process's view: read from zdict
        assert [(c.id, c.comment, c.date) for c in repo.log(at="feature")] == log
        assert repo.verify().ok
