"""The one builder: artifacts that arrive in any order give the local state writes gave."""

from __future__ import annotations

import functools
import random

import pytest

import herofossil
from herofossil import Put, delta
from herofossil.store import blobs
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader
from herofossil.store.crosslink import crosslink


def _history(repo) -> None:
    """Writes, a branch, tags, a merge, a rename and a delete."""
    for i in range(30):
        repo.write(f"src/f{i % 7}.txt", b"version %d\n" % i * (i + 3), message=f"edit {i}")
    repo.branch_new("feature")
    for i in range(5):
        repo.write(f"feat/{i}.md", b"# feature %d\n" % i, branch="feature")
    repo.tag_add("v1")
    repo.rename("src/f1.txt", "src/renamed.txt")
    repo.delete("src/f2.txt")
    repo.merge("feature")
    repo.tag_add("v2")
    repo.tag_remove("v1")


def _state(repo) -> dict:
    """Everything a reader can see, version by version."""
    log = repo.log()
    return {
        # Sorted: check-ins of one millisecond keep their local arrival order (the seq).
        "log": sorted((c.id, c.branch, c.parents, c.comment, c.nfiles, sorted(c.tags), c.time)
                      for c in log),
        "branches": repo.branches(),
        "leaves": {b: sorted(repo.leaves(b)) for b in repo.branches()},
        "tags": {k: sorted(v) for k, v in repo.tags().items()},
        "files": {c.id: repo.files(at=c.id) for c in log},
        "tip": repo.files(),
        "paths": {p: [c.id for c in repo.log(p)] for p in repo.files()},
    }


def _assert_same(source, target) -> None:
    """``target`` shows what ``source`` shows, version by version, and verifies."""
    want, got = _state(source), _state(target)
    for key in want:
        assert got[key] == want[key], key
    assert target.verify().ok


def _contents(repo) -> list[tuple[bytes, bytes]]:
    """(id, bytes) of every artifact of ``repo``, in id order."""
    with repo._env.read() as txn:
        reader = BlobReader(txn, repo._env.db)
        return [(bytes(aid), reader.content(aid)) for aid in
                txn.cursor(db=repo._env.db["blob"]).iternext(values=False)]


def _receive(repo, artifacts: list[tuple[bytes, bytes]]):
    """Store ``artifacts`` (id, bytes) in ``repo`` and derive their local state, in one
    write, as a sync does; what ``crosslink`` linked."""
    def fn(txn):
        aw = ArtifactWriter(txn, repo._env.db)
        for aid, data in artifacts:
            aw.add(data, aid)
        aw.verify_touched()
        return crosslink(txn, repo._env.db, [aid for aid, _ in artifacts], aw=aw)
    return repo._env.write(fn)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_artifacts_arriving_in_any_order_are_indexed_as_the_writes_indexed_them(tmp_path,
                                                                               seed):
    source = herofossil.open(tmp_path / "a", create=True)
    _history(source)
    artifacts = _contents(source)
    random.Random(seed).shuffle(artifacts)
    target = herofossil.open(tmp_path / "b", create=True)
    assert target.log() == []  # a new store has no check-in until its first write
    linked = _receive(target, artifacts)
    assert len(linked.checkins) == len(source.log())
    _assert_same(source, target)
    source.close()
    target.close()


def test_check_ins_arriving_newest_first_in_batches_are_derived_again_only_where_needed(
        tmp_path, monkeypatch):
    """As a clone brings them (an older manifest is a delta on its successor): each batch's
    oldest check-in comes ahead of its parent, and its descendants inherit no branch until
    the parent is here. They then take the branch; only the check-in that came ahead of
    its parent is derived again in full (before, every descendant of it was)."""
    from herofossil.store import checkins

    source = herofossil.open(tmp_path / "a", create=True)
    _history(source)
    artifacts = _contents(source)
    records = {bytes.fromhex(c.id): c for c in source.log()}
    files = [(aid, data) for aid, data in artifacts if aid not in records]
    newest_first = sorted((a for a in artifacts if a[0] in records),
                          key=lambda a: records[a[0]].seq, reverse=True)
    batches = [files] + [newest_first[i:i + 6] for i in range(0, len(newest_first), 6)]
    full = []
    unindex = checkins.CheckinIndex.unindex
    monkeypatch.setattr(checkins.CheckinIndex, "unindex",
                        lambda self, cid, *a: (full.append(cid), unindex(self, cid, *a))[1])
    target = herofossil.open(tmp_path / "b", create=True)
    for batch in batches:
        _receive(target, batch)
    assert len(records) > 30 and 0 < len(full) <= 2 * len(batches)
    _assert_same(source, target)
    source.close()
    target.close()


def test_imported_artifacts_are_stored_as_reverse_deltas_as_written_ones_are(tmp_path):
    source = herofossil.open(tmp_path / "a", create=True)
    for i in range(40):  # versions that differ a little: deltas pay
        body = b"".join(b"line %d of the file, version %d\n" % (n, i if n == i else 0)
                        for n in range(200))
        source.write("big.txt", body, message=f"v{i}")
    source.export_artifacts(str(tmp_path / "artifacts"))
    want = source.stats()
    target = herofossil.open(tmp_path / "b", create=True)
    assert target.import_artifacts(str(tmp_path / "artifacts")) == want["artifacts"]
    got = target.stats()
    assert got["deltas"] >= want["deltas"] - 2 and got["deltas"] > 30
    assert got["stored_bytes"] <= 1.1 * want["stored_bytes"]
    assert target.read("big.txt") == source.read("big.txt")
    assert target.verify().ok
    source.close()
    target.close()


def _stored_form(txn, store, aid: str) -> bytes:
    return txn.get(bytes.fromhex(aid), db=store._env.db["blob"])


def test_a_merged_branchs_last_version_becomes_a_delta_on_the_merges(tmp_path):
    text = b"".join(b"line %d of the specification, long enough to delta\n" % n
                    for n in range(200))
    source = herofossil.open(tmp_path / "a", create=True)
    source.commit([Put(f"notes/{n}.md", b"note %d\n" % n) for n in range(12)])  # a manifest
    source.write("spec.md", text)                                # long enough to delta
    source.branch_new("side")
    for i in (1, 2):  # two versions on the side: the first becomes a delta on the second
        source.write("spec.md", text.replace(b"line 10 ", b"line 10 (side %d) " % i),
                     branch="side")
    source.write("spec.md", text.replace(b"line 150 ", b"line 150 (trunk) "))
    side_last = source.stat("spec.md", at="side").id
    side_manifest = source.checkin("side").id
    source.merge("side", strategy="ours")  # the merge keeps trunk's version
    source.export_artifacts(str(tmp_path / "artifacts"))
    target = herofossil.open(tmp_path / "b", create=True)
    target.import_artifacts(str(tmp_path / "artifacts"))
    versions = {source.stat("spec.md", at=c.id).id for c in source.log(at="side")
                if "spec.md" in source.files(c.id)} | {source.stat("spec.md").id}
    assert len(versions) == 4
    for store in (source, target):  # written, and imported
        with store._env.read() as txn:
            stored = functools.partial(_stored_form, txn, store)
            # The four versions are one family: one of them whole, the rest deltas. Written,
            # the side's last is a delta on the merge's; imported, check-ins of the two
            # branches made in the same millisecond may be crosslinked in either order, and
            # the family's whole one may then be the side's last.
            whole = [v for v in versions if blobs.delta_base(stored(v)) is None]
            assert len(whole) == 1, f"{store}: {len(whole)} of the versions whole"
            if store is source:
                assert blobs.delta_base(stored(side_last)) is not None
            assert blobs.delta_base(stored(side_manifest)) is not None, \
                f"{store}: the side's last manifest whole"
        assert store.verify().ok
    assert target.read("spec.md", at="side") == source.read("spec.md", at="side")
    assert target.verify().ok
    source.close()
    target.close()


def test_an_import_in_many_small_batches_gives_the_same_store_and_a_bad_file_adds_nothing(
        tmp_path):
    from herofossil.store.artifactio import import_artifacts

    source = herofossil.open(tmp_path / "a", create=True)
    _history(source)
    source.export_artifacts(str(tmp_path / "artifacts"))
    target = herofossil.open(tmp_path / "b", create=True)
    before = target._env.commits
    new = import_artifacts(target._env, str(tmp_path / "artifacts"), batch_bytes=2000)
    assert new == source.stats()["artifacts"]
    assert target._env.commits - before > 5  # many transactions, each a bounded batch
    assert _state(target) == _state(source)
    assert target.stats()["deltas"] > 0
    assert target.verify().ok
    bad = tmp_path / "bad"
    source.export_artifacts(str(bad))
    victim = next(p for p in bad.rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"tampered")
    third = herofossil.open(tmp_path / "c", create=True)
    with pytest.raises(herofossil.IntegrityError):
        import_artifacts(third._env, str(bad), batch_bytes=2000)
    assert third.stats()["artifacts"] == 0  # checked before anything is stored
    for repo in (source, target, third):
        repo.close()


def test_a_rebuild_numbers_files_first_then_check_ins_parents_first(tmp_path):
    from herofossil.store.keys import unpack_u64

    repo = herofossil.open(tmp_path / "s", create=True)
    repo.write("f0.txt", b"first\n")
    repo.branch_new("side")
    for i in range(30):  # enough check-ins that id order and history order differ
        repo.write(f"f{i % 4}.txt", b"version %d\n" % i, branch="trunk" if i % 3 else "side")
    repo.rebuild()
    with repo._env.read() as txn:
        order = {bytes(aid).hex(): unpack_u64(k) for k, aid in txn.cursor(db=repo._env.db["seq"])}
    checkins = [c for b in repo.branches() for c in repo.log(at=b)]
    assert len({c.id for c in checkins}) > 20
    for c in checkins:
        assert all(order[p] < order[c.id] for p in c.parents), c.id
        for _, (aid, _) in repo.files(c.id).items():
            assert order[aid] < order[c.id]
    assert repo.verify().ok
    repo.close()




def test_a_whole_version_becomes_a_delta_on_a_version_that_is_a_delta_itself(tmp_path):
    # What an import meets at a merge: the merge's version is a delta on a later one by
    # then, and a delta on the end of that chain would be larger (58 KB more on a real
    # history); the chain through it is counted and bounded.
    rnd = random.Random(5)
    lines = [b"line %d: %x\n" % (n, rnd.getrandbits(160)) for n in range(300)]
    side = b"".join(lines).replace(b"line 10:", b"line 10 (side):")
    merged = b"".join(lines)
    later = b"".join(x.upper() if k % 15 == 0 else x for k, x in enumerate(lines))
    repo = herofossil.open(tmp_path / "a", create=True)
    for text in (side, merged, later):
        repo.write(f"v{len(repo.files())}.txt", text)

    def link(txn):
        aw = ArtifactWriter(txn, repo._env.db)
        a, b, c = (blobs.artifact_id(t) for t in (side, merged, later))
        assert aw.deltify(b, c) and blobs.delta_base(aw.stored(b)) == c
        assert aw.deltify_onto(a, b)
        assert blobs.delta_base(aw.stored(a)) == b and aw.chain_len(c) == 2
        assert not aw.deltify_onto(c, a)  # a loop
        return a

    a = repo._env.write(link)
    with repo._env.read() as txn:
        assert BlobReader(txn, repo._env.db).content(a) == side
    assert repo.read("v0.txt") == side and repo.verify().ok
    repo.close()


def _full_chain(repo, rnd):
    """MAX_CHAIN + 1 versions of a text, each with one more line changed, stored as a
    reverse chain: the oldest is MAX_CHAIN hops from the whole newest."""
    lines = [b"line %d: %x\n" % (n, rnd.getrandbits(160)) for n in range(300)]
    versions = []
    for k in range(blobs.MAX_CHAIN + 1):
        versions.append(b"".join(x.upper() if n <= k * 3 else x for n, x in enumerate(lines)))
    for n, text in enumerate(versions):
        repo.write(f"v{n}.txt", text)

    def chain(txn):
        aw = ArtifactWriter(txn, repo._env.db)
        ids = [blobs.artifact_id(t) for t in versions]
        for old, new in zip(ids, ids[1:], strict=False):
            assert aw.deltify(old, new)
        assert aw.chain_len(ids[-1]) == blobs.MAX_CHAIN
        return ids

    return versions, repo._env.write(chain)


def test_a_merged_sides_version_becomes_a_delta_on_the_nearest_version_its_chain_allows(
        tmp_path):
    # The merge's version is MAX_CHAIN hops from the chain's whole end: a delta on it is
    # too deep, and the chain's end is far from the side's text (the fallback it had, 10-15
    # times larger on a real history); the version after the merge's is one hop nearer.
    from herofossil.store.crosslink import _deltify_on_later

    repo = herofossil.open(tmp_path / "a", create=True)
    versions, ids = _full_chain(repo, random.Random(7))
    side = versions[0].replace(b"line 200:", b"line 200 (side):")
    repo.write("side.txt", side)
    sid = blobs.artifact_id(side)

    def link(txn):
        aw = ArtifactWriter(txn, repo._env.db)
        _deltify_on_later(aw, sid, ids[0])
        return blobs.delta_base(aw.stored(sid)), len(aw.stored(sid))

    base, size = repo._env.write(link)
    assert base == ids[1]
    far = blobs.encode_delta(ids[-1], delta.create(versions[-1], side))
    assert size < len(far) / 3
    assert repo.read("side.txt") == side and repo.verify().ok
    repo.close()


def test_a_merged_sides_version_that_is_a_delta_already_stays_on_its_near_base(tmp_path):
    from herofossil.store.crosslink import _deltify_on_later

    repo = herofossil.open(tmp_path / "a", create=True)
    versions, ids = _full_chain(repo, random.Random(8))
    sibling = versions[0].replace(b"line 250:", b"line 250 (sibling):")
    side = sibling.replace(b"line 200:", b"line 200 (side):")
    repo.write("sibling.txt", sibling)
    repo.write("side.txt", side)
    sib, sid = blobs.artifact_id(sibling), blobs.artifact_id(side)

    def link(txn):
        aw = ArtifactWriter(txn, repo._env.db)
        assert aw.deltify_onto(sid, sib)  # the side's version: a delta on its sibling
        before = aw.stored(sid)
        _deltify_on_later(aw, sid, ids[0])
        return before, aw.stored(sid)

    before, after = repo._env.write(link)
    assert after == before and blobs.delta_base(after) == sib
    assert repo.read("side.txt") == side and repo.verify().ok
    repo.close()


def test_a_write_whose_branch_tip_names_another_branchs_check_in_is_refused(tmp_path):
    """The writer never lands a write on a branch other than the one written: a tip that
    names another branch's check-in (damage) is a StoreError, and nothing is written."""
    from herofossil.errors import StoreError

    with herofossil.open(tmp_path / "s", create=True) as repo:
        repo.write("a.txt", b"trunk\n")
        feature = repo.branch_new("feature")
        before = repo.checkin("trunk").id
        repo._env.write(lambda txn: txn.put(b"trunk", bytes.fromhex(feature.id),
                                            db=repo._env.db["tip"]))
        with pytest.raises(StoreError, match="of branch 'feature' as its tip"):
            repo.write("b.txt", b"where?\n")
        assert repo.leaves("feature") == [feature.id]
        assert repo.leaves("trunk") == [before]
        assert not repo.exists("b.txt", at="feature")
