"""Reading and writing files through Repo: every write is a durable check-in."""

from __future__ import annotations

import pytest

import herofossil
from herofossil.store.changes import ABSENT, EXISTS, Delete, MakeDir, Put, PutArtifact, Rename


def test_write_then_read_returns_same_bytes(repo):
    ci = repo.write("a/b.txt", b"hello\n")
    assert ci is not None and ci.branch == "trunk"
    assert repo.read("a/b.txt") == b"hello\n"


def test_each_write_is_one_checkin_with_parent_the_previous_tip(repo):
    first = repo.write("x", b"1")
    second = repo.write("x", b"2")
    assert second.parents == [first.id]
    assert [c.id for c in repo.log(limit=2)] == [second.id, first.id]


def test_writing_identical_content_makes_no_checkin(repo):
    repo.write("x", b"same")
    assert repo.write("x", b"same") is None
    assert len(repo.log()) == 2  # initial empty check-in + one write


def test_str_content_is_stored_as_utf8(repo):
    repo.write("u.md", "héllo")
    assert repo.read("u.md") == "héllo".encode()


def test_listing_shows_files_and_folders_sorted(repo):
    repo.commit([Put("b.txt", b"b"), Put("a/x", b"x"), Put("a/y/z", b"z")])
    assert [(e.name, e.is_dir) for e in repo.ls()] == [("a", True), ("b.txt", False)]
    assert [(e.name, e.is_dir) for e in repo.ls("a")] == [("x", False), ("y", True)]
    assert [e.path for e in repo.walk()] == ["a/x", "a/y/z", "b.txt"]


def test_stat_reports_artifact_id_size_and_permission(repo):
    repo.write("run.sh", b"#!/bin/sh\n", perm="x")
    st = repo.stat("run.sh")
    assert st.size == 10 and st.perm == "x" and not st.is_dir
    assert st.id == __import__("hashlib").sha3_256(b"#!/bin/sh\n").hexdigest()


def test_delete_removes_file_and_empty_parent_folders(repo):
    repo.write("a/b/c.txt", b"c")
    repo.delete("a/b/c.txt")
    assert repo.ls() == []
    with pytest.raises(herofossil.NotFoundError):
        repo.read("a/b/c.txt")


def test_delete_of_folder_needs_recursive(repo):
    repo.commit([Put("d/1", b"1"), Put("d/2", b"2")])
    with pytest.raises(herofossil.UsageError):
        repo.delete("d")
    repo.delete("d", recursive=True)
    assert not repo.exists("d")


def test_rename_file_and_folder_each_one_checkin(repo):
    repo.commit([Put("d/1", b"1"), Put("d/sub/2", b"2")])
    before = len(repo.log())
    repo.rename("d", "e")
    assert len(repo.log()) == before + 1
    assert [e.path for e in repo.walk()] == ["e/1", "e/sub/2"]
    repo.rename("e/1", "f")
    assert repo.read("f") == b"1"


def test_rename_onto_existing_file_needs_overwrite(repo):
    repo.commit([Put("a", b"a"), Put("b", b"b")])
    with pytest.raises(herofossil.ConflictError):
        repo.rename("a", "b")
    repo.rename("a", "b", overwrite=True)
    assert repo.read("b") == b"a" and not repo.exists("a")


def test_folder_cannot_move_into_itself(repo):
    repo.write("d/x", b"x")
    with pytest.raises(herofossil.InvalidPathError):
        repo.rename("d", "d/inner")


def test_empty_folder_survives_and_is_versioned(repo):
    ci = repo.mkdir("empty/inner")
    assert repo.stat("empty/inner").is_dir
    assert repo.ls("empty/inner") == []
    repo.write("other", b"o")
    assert repo.stat("empty/inner", at=ci.id).is_dir


def test_file_and_folder_cannot_share_a_name(repo):
    repo.write("a", b"file")
    with pytest.raises(herofossil.InvalidPathError):
        repo.write("a/b", b"x")
    repo.write("d/x", b"x")
    with pytest.raises(herofossil.InvalidPathError):
        repo.write("d", b"x")


def test_file_replaced_by_folder_in_one_checkin(repo):
    repo.write("a", b"file")
    repo.commit([Delete("a"), Put("a/b", b"now a folder")])
    assert repo.stat("a").is_dir and repo.read("a/b") == b"now a folder"


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a\0b",
                                 "a/.herofossil-dir"])
def test_bad_paths_are_rejected_and_nothing_is_written(repo, bad):
    before = repo.log()
    with pytest.raises(herofossil.InvalidPathError):
        repo.write(bad, b"x")
    assert repo.log() == before


def test_expect_matching_id_writes(repo):
    ci = repo.write("f", b"v1")
    seen = repo.stat("f").id
    assert repo.write("f", b"v2", expect=seen).parents == [ci.id]


def test_expect_stale_id_raises_conflict_and_writes_nothing(repo):
    repo.write("f", b"v1")
    stale = repo.stat("f").id
    repo.write("f", b"v2 by someone else")
    tip = repo.resolve()
    with pytest.raises(herofossil.ConflictError):
        repo.write("f", b"v3", expect=stale)
    assert repo.resolve() == tip and repo.read("f") == b"v2 by someone else"


def test_expect_absent_and_exists(repo):
    repo.write("new", b"1", expect=ABSENT)
    with pytest.raises(herofossil.ConflictError):
        repo.write("new", b"2", expect=ABSENT)
    with pytest.raises(herofossil.ConflictError):
        repo.write("missing", b"2", expect=EXISTS)


def test_failed_change_in_a_commit_writes_none_of_it(repo):
    repo.write("keep", b"k")
    tip = repo.resolve()
    with pytest.raises(herofossil.NotFoundError):
        repo.commit([Put("new", b"n"), Delete("no-such-file")])
    assert repo.resolve() == tip and not repo.exists("new")


def test_commit_of_several_changes_is_one_checkin(repo):
    repo.commit([Put("a", b"a"), Put("b", b"b")])
    n = len(repo.log())
    ci = repo.commit([Put("c", b"c"), Delete("a"), Rename("b", "bb"), MakeDir("m")],
                     message="several")
    assert len(repo.log()) == n + 1 and ci.comment == "several"
    assert sorted(repo.files()) == ["bb", "c"]
    assert [(e.path, e.is_dir) for e in repo.ls()] == [("bb", False), ("c", False), ("m", True)]


@pytest.mark.parametrize("make", [lambda: b"compressible line\n" * 200_000,
                                  lambda: __import__("os").urandom(3_000_000)])
def test_open_artifact_streams_in_chunks_identical_bytes(repo, make):
    data = make()
    repo.write("big", data)
    with repo.plumbing.open_artifact(repo.stat("big").id) as stream:
        first = stream.read(4096)
        rest = stream.read()
    assert len(first) == 4096 and first + rest == data


def test_open_artifact_of_an_old_delta_version(repo):
    text = b"".join(b"line %d\n" % i for i in range(20_000))
    old = repo.write("f", text)
    repo.write("f", text + b"tail\n")
    aid = repo.files(old.id)["f"][0]
    with repo.plumbing.open_artifact(aid) as stream:
        assert stream.read() == text


def test_open_artifact_seeks_forward_and_back(repo):
    data = bytes(range(256)) * 10_000
    repo.write("s", data)
    with repo.plumbing.open_artifact(repo.stat("s").id) as stream:
        stream.seek(1000)
        assert stream.read(10) == data[1000:1010]
        stream.seek(5)
        assert stream.read(5) == data[5:10]
        assert stream.seek(0, 2) == len(data)


def test_no_change_puts_a_file_where_a_folder_is(repo):
    repo.write("a.txt", b"x")
    repo.write("d/b.txt", b"y")
    before = repo.checkin().id
    aid = repo.stat("a.txt").id
    for change in (Put("d", b"z"), PutArtifact("d", aid), Rename("a.txt", "d", None, True)):
        with pytest.raises((herofossil.InvalidPathError, herofossil.ConflictError)):
            repo.commit([change])
    assert repo.checkin().id == before
    assert repo.stat("d").is_dir and repo.read("d/b.txt") == b"y"


def test_a_tip_read_kept_in_the_content_cache_still_sees_another_process_write(tmp_path):
    import subprocess
    import sys

    from herofossil.store.artifacts import KNOWN

    path = tmp_path / "s"
    with herofossil.open(path, create=True) as repo:
        repo.write("c.toml", b"a = 1\n" * 40)  # compressed when stored
        KNOWN.clear()
        first = repo.read("c.toml")
        assert repo.read("c.toml") is first  # the second read came from the cache
        subprocess.run([sys.executable, "-m", "herofossil", "-R", str(path), "put", "c.toml",
                        "-"], input=b"a = 2\n" * 40, check=True)
        assert repo.read("c.toml") == b"a = 2\n" * 40
        assert repo.read("c.toml", at=repo.log(limit=2)[1].id) == b"a = 1\n" * 40


def test_makedir_expecting_nothing_there_conflicts_with_a_folder_or_a_file(repo):
    from herofossil.errors import ConflictError

    repo.commit([MakeDir("d", expect=ABSENT)])
    assert repo.stat("d").is_dir
    repo.write("f.txt", b"x")
    before = repo.checkin().id
    for path in ("d", "f.txt"):
        with pytest.raises(ConflictError):
            repo.commit([MakeDir(path, expect=ABSENT)])
    assert repo.checkin().id == before
    repo.commit([MakeDir("d")])  # without expect: a folder already there is no change
    assert repo.checkin().id == before
