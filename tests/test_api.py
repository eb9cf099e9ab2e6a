"""The public API: what ``import herofossil`` offers, and errors that carry fields."""

from __future__ import annotations

import pytest

import herofossil


def test_the_package_exports_what_a_caller_needs(tmp_path):
    from herofossil.store import changes, checkins, tree

    assert herofossil.Put is changes.Put and herofossil.MakeDir is changes.MakeDir
    assert herofossil.Checkin is checkins.Checkin and herofossil.Entry is tree.Entry
    for name in herofossil.__all__:
        assert getattr(herofossil, name) is not None
    with herofossil.open(tmp_path / "s", create=True) as repo:
        ci = repo.commit([herofossil.Put("a.txt", b"a"), herofossil.MakeDir("d")])
        assert isinstance(ci, herofossil.Checkin)
        assert isinstance(repo.stat("a.txt"), herofossil.Entry)


def test_errors_carry_what_they_are_about(tmp_path):
    with herofossil.open(tmp_path / "s", create=True) as repo:
        first = repo.write("f.txt", b"one")
        seen = repo.stat("f.txt").id
        repo.write("f.txt", b"two")
        with pytest.raises(herofossil.ConflictError) as conflict:
            repo.write("f.txt", b"three", expect=seen)
        assert conflict.value.path == "f.txt"
        assert conflict.value.expected == seen
        assert conflict.value.found == repo.stat("f.txt").id != seen
        with pytest.raises(herofossil.NotFoundError) as missing:
            repo.read("nope.txt", at=first.id)
        assert (missing.value.path, missing.value.ref) == ("nope.txt", first.id)
        with pytest.raises(herofossil.NotFoundError) as version:
            repo.read("f.txt", at="no-such-branch")
        assert version.value.ref == "no-such-branch"
    with pytest.raises(TypeError, match="no field"):
        herofossil.ConflictError("x", colour="red")


def test_write_returns_the_check_in_and_the_id_of_the_bytes_written(tmp_path):
    with herofossil.open(tmp_path / "s", create=True) as repo:
        written = repo.write("a.txt", b"hello\n")
        assert isinstance(written, herofossil.Written)
        assert isinstance(written, herofossil.Checkin)
        assert written.id == repo.checkin().id
        assert written.file_id == repo.stat("a.txt").id
        assert repo.write("a.txt", b"hello\n") is None  # unchanged: no check-in


ADAPTER_PLUMBING = ("meta_get", "meta_put", "meta_delete", "meta_any", "meta_items", "bulk",
                    "stat_each", "open_artifact", "checkins_after", "last_seq")


def test_adapter_plumbing_is_behind_repo_plumbing_not_on_repo(tmp_path):
    repo = herofossil.open(tmp_path / "s", create=True)
    try:
        for name in ADAPTER_PLUMBING:
            assert not hasattr(repo, name), name
            assert callable(getattr(repo.plumbing, name)), name
        repo.write("a.txt", b"one")
        repo.plumbing.meta_put("test-ns", "k", b"v")
        assert repo.plumbing.meta_get("test-ns", "k") == b"v"
        seq, ci = repo.plumbing.checkins_after(0)[-1]
        assert seq == repo.plumbing.last_seq() and ci.id == repo.checkin().id
        with repo.plumbing.open_artifact(repo.stat("a.txt").id) as stream:
            assert stream.read() == b"one"
    finally:
        repo.close()
