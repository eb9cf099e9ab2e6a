"""Past versions, refs, log, diff, branches, tags and merges."""

from __future__ import annotations

import time

import pytest

import herofossil
from herofossil.store.changes import Put


def test_any_past_version_is_readable_by_checkin_id_and_prefix(repo):
    v1 = repo.write("f", b"one")
    repo.write("f", b"two")
    assert repo.read("f", at=v1.id) == b"one"
    assert repo.read("f", at=v1.id[:8]) == b"one"
    assert repo.read("f") == b"two"


def test_ambiguous_or_unknown_ref_gives_clear_error(repo):
    with pytest.raises(herofossil.NotFoundError, match="no version"):
        repo.read("f", at="no-such-branch")


def test_read_by_branch_tag_and_date(repo):
    repo.write("f", b"trunk-1")
    repo.tag_add("release")
    repo.branch_new("feature")
    repo.write("f", b"feature-1", branch="feature")
    repo.write("f", b"trunk-2")
    assert repo.read("f", at="feature") == b"feature-1"
    assert repo.read("f", at="release") == b"trunk-1"
    assert repo.read("f", at="trunk") == b"trunk-2"
    with pytest.raises(herofossil.NotFoundError):
        repo.read("f", at="1990-01-01")


def test_date_ref_selects_last_checkin_before_that_moment(repo):
    first = repo.write("f", b"old")
    when = repo.checkin(first.id).date  # exactly the first write's time
    time.sleep(0.01)
    repo.write("f", b"new")
    assert repo.read("f", at=when.replace("T", " ")) == b"old"
    assert repo.read("f", at="trunk@" + when.replace("T", " ")) == b"old"


def test_log_of_path_lists_only_checkins_that_changed_it(repo):
    a1 = repo.write("a", b"1")
    repo.write("b", b"1")
    a2 = repo.write("a", b"2")
    assert [c.id for c in repo.log("a")] == [a2.id, a1.id]
    assert len(repo.log(limit=2)) == 2


def test_log_of_folder_lists_changes_below_it(repo):
    c = repo.write("d/x", b"1")
    repo.write("e", b"1")
    assert [x.id for x in repo.log("d")] == [c.id]


def test_diff_lists_added_modified_deleted(repo):
    base = repo.commit([Put("keep", b"k"), Put("mod", b"1"), Put("gone", b"g")])
    repo.commit([Put("mod", b"2"), Put("new", b"n")])
    repo.delete("gone")
    got = {(d.path, d.status) for d in repo.diff(base.id, None)}
    assert got == {("mod", "M"), ("new", "A"), ("gone", "D")}


def test_branch_writes_do_not_touch_trunk(repo):
    repo.write("f", b"trunk")
    repo.branch_new("exp")
    repo.write("f", b"exp", branch="exp")
    assert repo.read("f") == b"trunk" and repo.read("f", at="exp") == b"exp"
    assert set(repo.branches()) == {"trunk", "exp"}


def test_writing_to_unknown_branch_starts_it_from_trunk(repo):
    repo.write("f", b"base")
    repo.write("g", b"new", branch="auto")
    assert repo.read("f", at="auto") == b"base"
    assert repo.checkin("auto").branch == "auto"


def test_tag_add_and_remove(repo):
    ci = repo.write("f", b"1")
    repo.tag_add("v1", ci.id)
    assert repo.tags()["v1"] == [ci.id]
    repo.tag_remove("v1", ci.id)
    assert "v1" not in repo.tags()


def _fork(repo):
    """Two leaves on trunk: one check-in made on an older parent (as a sync would bring)."""
    base = repo.commit([Put("shared", b"s"), Put("left", b"l0"), Put("right", b"r0")])
    ours = repo.write("left", b"l1")
    theirs = repo.commit([Put("right", b"r1")], parent=base.id)
    return base, ours, theirs


def test_commit_on_older_parent_forks_and_newest_leaf_is_read(repo):
    base, ours, theirs = _fork(repo)
    assert set(repo.leaves()) == {ours.id, theirs.id}
    assert repo.resolve() == theirs.id
    assert repo.read("left") == b"l0" and repo.read("right") == b"r1"
    assert repo.read("left", at=ours.id) == b"l1"


def test_merge_joins_two_leaves_when_files_changed_on_one_side(repo):
    base, ours, theirs = _fork(repo)
    merged = repo.merge()
    assert len(merged.parents) == 2
    assert repo.leaves() == [merged.id]
    assert repo.read("left") == b"l1" and repo.read("right") == b"r1"


def test_merge_conflict_is_reported_and_nothing_is_written(repo):
    base = repo.write("f", b"base")
    repo.write("f", b"ours")
    repo.commit([Put("f", b"theirs")], parent=base.id)
    leaves = repo.leaves()
    with pytest.raises(herofossil.ConflictError, match="f"):
        repo.merge()
    assert repo.leaves() == leaves
    assert {repo.read("f", at=c) for c in leaves} == {b"ours", b"theirs"}


def test_merge_conflict_resolved_by_strategy(repo):
    base = repo.write("f", b"base")
    older = repo.write("f", b"older leaf")
    repo.commit([Put("f", b"newest leaf")], parent=base.id)
    assert repo.read("f") == b"newest leaf"  # reads use the newest leaf
    repo.merge(strategy="theirs")  # theirs: the other leaf, joined into the newest
    assert repo.read("f") == b"older leaf"
    assert repo.read("f", at=older.id) == b"older leaf"


def test_merge_branch_into_trunk(repo):
    repo.write("f", b"1")
    repo.branch_new("feat")
    repo.write("g", b"feature", branch="feat")
    repo.write("h", b"trunk")
    m = repo.merge("feat")
    assert repo.read("g") == b"feature" and repo.read("h") == b"trunk"
    assert len(m.parents) == 2


def test_checkout_writes_files_modes_links_and_empty_folders(repo, tmp_path):
    repo.write("bin/run", b"#!/bin/sh\n", perm="x")
    repo.write("link", b"bin/run", perm="l")
    repo.write("a/b.txt", b"b")
    repo.mkdir("empty")
    dest = tmp_path / "out"
    repo.checkout(None, str(dest))
    assert (dest / "a" / "b.txt").read_bytes() == b"b"
    assert (dest / "bin" / "run").stat().st_mode & 0o100
    assert (dest / "link").is_symlink() and str((dest / "link").readlink()) == "bin/run"
    assert (dest / "empty").is_dir() and not list((dest / "empty").iterdir())


def test_commit_dir_snapshots_a_tree_and_roundtrips_through_checkout(repo, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.toml").write_text("x = 1\n")
    (src / "top.md").write_text("# hi\n")
    (src / "void").mkdir()
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    repo.commit_dir(str(src), message="snap")
    assert sorted(e.path for e in repo.walk()) == ["sub/f.toml", "top.md"]
    assert repo.stat("void").is_dir
    (src / "top.md").unlink()
    (src / "sub" / "f.toml").write_text("x = 2\n")
    ci = repo.commit_dir(str(src), message="snap 2")
    assert {d.path for d in repo.diff(ci.parents[0], ci.id)} == {"top.md", "sub/f.toml"}
    assert repo.commit_dir(str(src)) is None
    out = tmp_path / "out"
    repo.checkout(None, str(out))
    assert (out / "sub" / "f.toml").read_text() == "x = 2\n"


def test_checkout_refuses_non_empty_directory(repo, tmp_path):
    (tmp_path / "x").write_text("mine")
    with pytest.raises(herofossil.UsageError):
        repo.checkout(None, str(tmp_path))
    assert (tmp_path / "x").read_text() == "mine"


def test_imported_branch_is_read_from_manifests_until_first_write(repo, tmp_path):
    import herofossil
    from herofossil.store.checkins import CheckinIndex

    repo.write("f", b"trunk")
    repo.branch_new("side")
    repo.commit([Put("f", b"side"), Put("d/g", b"g")], branch="side")
    repo.export_artifacts(str(tmp_path / "arts"))
    other = herofossil.open(tmp_path / "other", create=True)
    other.import_artifacts(str(tmp_path / "arts"))

    def indexed(branch):
        with other._read() as txn:
            return CheckinIndex(txn, other._db).indexed(branch)

    assert indexed("trunk") and not indexed("side")
    assert other.read("f", at="side") == b"side"
    assert [e.name for e in other.ls("d", at="side")] == ["g"]
    other.write("h", b"new", branch="side")
    assert indexed("side")
    assert other.read("d/g", at="side") == b"g" and other.read("h", at="side") == b"new"
    assert other.verify().ok
    other.close()


def test_a_fork_disjoint_from_a_conflicting_pair_is_still_joined(tmp_path):
    for salt in range(50):  # until the conflicting pair sorts first, as it did in the run
        with herofossil.open(tmp_path / f"s{salt}", create=True) as repo:
            repo.write("same.txt", b"base\n")
            base = repo.checkin().id
            x = repo.commit([Put("same.txt", b"left\n")], message="x").id
            y = repo.commit([Put("same.txt", b"right\n")], message="y", parent=base).id
            z = repo.commit([Put("other.txt", b"%d\n" % salt)], message="z", parent=base).id
            if sorted([x, y, z])[2] != z:
                continue
            made, forked = repo.merge_forks()
            assert forked == ["trunk"]
            assert len(made) == 1 and len(repo.leaves("trunk")) == 2, (
                f"{len(repo.leaves('trunk'))} leaves: z ({z[:12]}) was not joined")
            return
    pytest.fail("no salt sorted the conflicting pair first")


@pytest.mark.parametrize("name", ["2001-01-01", "trunk@2001-01-01", "a\x01b", "tab\tbed"])
def test_a_branch_or_tag_name_that_reads_as_a_version_or_holds_a_control_character_is_refused(
        repo, name):
    from herofossil.errors import UsageError

    repo.write("a.txt", b"a")
    before = (repo.branches(), repo.tags())
    with pytest.raises(UsageError, match="bad (branch|tag) name"):
        repo.branch_new(name)
    with pytest.raises(UsageError, match="bad (branch|tag) name"):
        repo.tag_add(name)
    with pytest.raises(UsageError, match="bad branch name"):
        repo.write("b.txt", b"b", branch=name)
    assert (repo.branches(), repo.tags()) == before


def test_a_fork_merge_made_first_elsewhere_is_returned_not_made_again(repo):
    # What two processes of one store (a server answering a push, a sync client) met in
    # the five-peer run: both saw the same fork, the other committed the merge first.
    repo.write("base.txt", b"base\n")
    base = repo.checkin().id
    repo.commit([Put("left.txt", b"l\n")], message="left")
    repo.commit([Put("right.txt", b"r\n")], message="right", parent=base)
    stale = sorted(repo.leaves("trunk"))
    (made,), forked = repo.merge_forks()
    before = repo.stats()["artifacts"]
    again = repo._merge_first_pair("trunk", stale)  # what the slower process then ran
    assert again is not None and again.id == made.id
    assert repo.leaves("trunk") == [made.id] and repo.stats()["artifacts"] == before
    assert set(repo.files()) == {"base.txt", "left.txt", "right.txt"}
    assert repo.verify().ok


def _merge_forks_after(barrier, path, out):
    barrier.wait()
    with herofossil.open(path) as repo:
        made, _ = repo.merge_forks()
        out.put([c.id for c in made])


def test_processes_merging_the_same_fork_at_once_all_end_on_one_merge(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for rnd in range(4):
        path = tmp_path / f"s{rnd}"
        with herofossil.open(path, create=True) as repo:
            repo.write("base.txt", b"base\n")
            base = repo.checkin().id
            repo.commit([Put("left.txt", b"l%d\n" % rnd)], message="left")
            repo.commit([Put("right.txt", b"r\n")], message="right", parent=base)
        barrier, out = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_merge_forks_after, args=(barrier, path, out))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        made = {cid for _ in procs for cid in out.get(timeout=5)}
        with herofossil.open(path) as repo:
            assert len(made) == 1 and repo.leaves("trunk") == list(made)
            assert repo.verify().ok
