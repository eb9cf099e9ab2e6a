"""Fossil reads what we write, and we read what Fossil writes (real fossil binary)."""

from __future__ import annotations

import pytest

from herofossil.store.changes import Delete, Put

pytestmark = pytest.mark.usefixtures("fossil")


def _fossil_checkins(fossil, repo_file):
    out = fossil("timeline", "-n", "0", "-t", "ci", "-F", "%H", "-R", repo_file).stdout
    return {line.strip() for line in out.splitlines() if len(line.strip()) == 64}


def _fossil_files(fossil, repo_file, checkin):
    out = fossil("ls", "-R", repo_file, "-r", checkin).stdout
    return sorted(line for line in out.splitlines() if line)


def _build_history(repo):
    repo.commit([Put("README.md", b"# hello\n"), Put("dir with space/é ü.toml", b"a = 1\n"),
                 Put("bin/tool", b"#!/bin/sh\necho hi\n", perm="x"),
                 Put("link", b"bin/tool", perm="l")], message="first\nwith a second line")
    repo.mkdir("empty")
    repo.tag_add("v1.0")
    for i in range(80):  # enough changes to roll the delta manifests over to a new baseline
        repo.write(f"many/{i}.txt", f"{i}\n")
    repo.delete("many/3.txt")
    repo.branch_new("feature")
    repo.write("feature.md", b"feature work\n", branch="feature")
    repo.commit([Put("README.md", b"# hello again\n"), Delete("many/4.txt")])
    repo.merge("feature", message="merge feature")


def test_fossil_reconstructs_our_artifacts_and_sees_same_files_and_history(repo, fossil,
                                                                            tmp_path):
    _build_history(repo)
    out = tmp_path / "artifacts"
    repo.export_artifacts(str(out))
    repo_file = tmp_path / "r.fossil"
    fossil("reconstruct", repo_file, out)
    integrity = fossil("test-integrity", "--parse", "-R", repo_file).stdout
    assert " 0 errors" in integrity
    ours = {c.id for c in repo.log()} | {c.id for c in repo.log(at="feature")}
    assert _fossil_checkins(fossil, repo_file) == ours
    for ref in ("trunk", "feature", "v1.0"):
        cid = repo.resolve(ref)
        # Fossil sees the marker that keeps an empty folder as a file.
        assert _fossil_files(fossil, repo_file, cid) == sorted(repo._files(cid))
    tip = repo.resolve()
    for path, (aid, _perm) in repo.files(tip).items():
        art = fossil("artifact", aid, "-R", repo_file).stdout.encode()
        assert art == repo.read(path)
    branches = fossil("branch", "list", "-R", repo_file).stdout.split()
    assert {"trunk", "feature"} <= set(branches)
    assert "v1.0" in fossil("tag", "list", "-R", repo_file).stdout.split()
    exec_line = fossil("ls", "-v", "-R", repo_file, "-r", tip).stdout
    assert "bin/tool" in exec_line


def test_we_import_a_real_fossil_repository_with_branches(repo, fossil, tmp_path):
    repo_file = tmp_path / "src.fossil"
    work = tmp_path / "work"
    work.mkdir()
    fossil("init", repo_file)
    fossil("open", repo_file, "--workdir", work, cwd=tmp_path)
    (work / "a.txt").write_text("alpha\n")
    (work / "sub").mkdir()
    (work / "sub" / "b c.md").write_text("# b\n")
    fossil("add", ".", cwd=work)
    fossil("commit", "--no-warnings", "-m", "first", cwd=work)
    (work / "a.txt").write_text("alpha 2\n")
    fossil("commit", "--no-warnings", "-m", "second", "--branch", "side", cwd=work)
    fossil("update", "trunk", cwd=work)
    (work / "sub" / "b c.md").write_text("# b on trunk\n")
    fossil("commit", "--no-warnings", "-m", "third", cwd=work)
    fossil("tag", "add", "rel", "trunk", cwd=work)
    fossil("close", cwd=work)
    dec = tmp_path / "dec"
    dec.mkdir()
    fossil("deconstruct", "-R", repo_file, dec)
    new = repo.import_artifacts(str(dec))
    assert new > 0
    theirs = _fossil_checkins(fossil, repo_file)
    ours = {c.id for c in repo.log(at="trunk")} | {c.id for c in repo.log(at="side")}
    assert theirs <= ours
    for cid in theirs:
        assert sorted(repo.files(cid)) == _fossil_files(fossil, repo_file, cid)
    assert repo.read("a.txt", at="side") == b"alpha 2\n"
    assert repo.read("sub/b c.md", at="trunk") == b"# b on trunk\n"
    assert repo.resolve("rel") == repo.resolve("trunk")
    assert repo.log(at="trunk", limit=1)[0].comment == "third"
    assert repo.verify().ok


def test_import_rejects_a_file_whose_content_does_not_match_its_name(repo, tmp_path):
    import herofossil

    bad = tmp_path / "bad" / "ab"
    bad.mkdir(parents=True)
    (bad / ("c" * 62)).write_bytes(b"not matching")
    repo.write("a.txt", b"a")
    tip = repo.resolve()
    with pytest.raises(herofossil.IntegrityError):
        repo.import_artifacts(str(tmp_path / "bad"))
    assert repo.resolve() == tip and repo.verify().ok


def test_export_then_import_into_a_fresh_store_is_the_same_repository(repo, tmp_path):
    import herofossil

    _build_history(repo)
    out = tmp_path / "arts"
    n = repo.export_artifacts(str(out))
    other = herofossil.open(tmp_path / "copy", create=True)
    assert other.import_artifacts(str(out)) == n  # a new store has no check-in of its own
    assert other.import_artifacts(str(out)) == 0  # importing again adds nothing
    for ref in ("trunk", "feature", "v1.0"):
        assert other.files(ref) == repo.files(ref)
    assert {c.id for c in other.log(at="feature")} >= {c.id for c in repo.log(at="feature")}
    assert other.verify().ok
    other.close()
