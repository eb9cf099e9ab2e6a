"""Git import and export: lossless round trip, Fossil validity, incremental, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import herofossil
from herofossil import HeroFossilError
from herofossil.gitimport import (
    GitObjectError,
    NotAGitRepositoryError,
    ShallowRepositoryError,
    UnstorablePathError,
    export_git,
    git_map,
    import_git,
)
from herofossil.gitimport.metadata import VERSION, GitIndex
from herofossil.store import blobs

sys.path.insert(0, os.path.dirname(__file__))
from test_gitimport_helpers import GitRepo, build_rich, mktree  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _refs(path) -> str:
    return subprocess.run(["git", "-C", str(path), "for-each-ref",
                           "--format=%(refname) %(objectname)"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich(tmp_path_factory.mktemp("git") / "src")


@pytest.fixture(scope="module")
def imported(rich, tmp_path_factory):
    repo = herofossil.open(tmp_path_factory.mktemp("store") / "s", create=True)
    result = import_git(repo, rich.path)
    yield repo, result
    repo.close()


def test_round_trip_identical_ids(imported, rich, tmp_path):
    repo, result = imported
    assert result.commits == int(rich.git("rev-list", "--all", "--count"))
    export_git(repo, str(tmp_path / "out.git"))
    assert _refs(tmp_path / "out.git") == rich.refs()

    def fsck(path):
        out = subprocess.run(["git", "-C", str(path), "fsck", "--no-dangling"],
                             capture_output=True, text=True)
        return sorted(out.stderr.splitlines()), out.stdout

    assert fsck(tmp_path / "out.git") == fsck(rich.path)  # only the crafted odd modes


def test_store_content_and_branches(imported, rich):
    repo, _ = imported
    assert repo.verify().ok
    assert {"trunk", "feature", "o3", "crafted"} <= set(repo.branches())
    files = repo.files("trunk")
    assert files["run.sh"][1] == "" and files["link"][1] == "l"
    assert repo.read("link", at="trunk") == b"a.txt"
    assert repo.read("dir with space/ünïcode.txt") == b"unicode\n"
    assert "o1.txt/inside" in files and "o1.txt" not in files
    assert "vendor/sub" not in files
    assert repo.files("feature")["run.sh"][1] == "x"
    assert {"light", "v1.0", "v1.0-outer"} <= set(repo.tags())
    latin = [c for c in repo.log() if c.comment.startswith("caf")]
    assert latin and latin[0].comment == "café crème"


def test_fossil_accepts_artifacts(imported, tmp_path):
    if shutil.which("fossil") is None:
        pytest.skip("needs fossil")
    repo, _ = imported
    repo.export_artifacts(str(tmp_path / "arts"))
    fos = str(tmp_path / "r.fossil")
    subprocess.run(["fossil", "reconstruct", fos, str(tmp_path / "arts")], check=True,
                   capture_output=True)
    out = subprocess.run(["fossil", "test-integrity", "--parse", "-R", fos],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    tags = subprocess.run(["fossil", "tag", "list", "-R", fos], capture_output=True,
                          text=True).stdout.split()
    assert "v1.0" in tags and "light" in tags


def test_map_and_rebuild(imported, rich):
    repo, _ = imported
    head = rich.git("rev-parse", "master")
    pairs = git_map(repo, "trunk")
    assert pairs[0] == (head, repo.resolve("trunk"))
    assert git_map(repo, head) == [(head, repo.resolve("trunk"))]
    repo.rebuild()
    GitIndex(repo).sync()  # out of step after rebuild: re-derived from artifacts
    assert git_map(repo, head) == [(head, repo.resolve("trunk"))]
    assert GitIndex(repo).refs().keys() >= {"refs/heads/master", "refs/tags/v1.0"}


def test_the_git_map_lists_every_commit_without_an_index_of_git_ids(imported, rich):
    repo, _ = imported
    index = GitIndex(repo)
    index.sync()
    assert list(repo.plumbing.meta_items("git", "k/")) == []
    shas = rich.git("rev-list", "master").split()
    pairs = git_map(repo, "trunk")
    assert [sha for sha, _ in pairs] == shas
    assert all(index.checkin_of(sha) == cid for sha, cid in pairs)


def test_a_checkin_whose_message_and_path_mimic_the_git_commit_card_has_no_git_id(tmp_path):
    repo = herofossil.open(tmp_path / "s", create=True)
    fake = "T +git-commit * " + "ab" * 32
    ci = repo.write(fake + ".txt", b"x\n", message="line\n" + fake + "\nmore")
    manifest = repo.artifact(ci.id)
    assert manifest.count(b"\\nT\\s+git-commit\\s*\\s") == 1  # the comment's, escaped
    assert manifest.count(b" T\\s+git-commit\\s*\\s") == 1  # the F card's path
    assert GitIndex(repo).sha_of(ci.id) is None
    repo.close()


def test_an_index_of_the_previous_version_is_derived_again_without_git_ids(rich, tmp_path):
    repo = herofossil.open(tmp_path / "s", create=True)
    import_git(repo, rich.path)
    index = GitIndex(repo)
    head = rich.git("rev-parse", "master")
    cid = index.checkin_of(head)
    mark = json.loads(index.get("mark"))
    del mark["version"]  # as the previous release wrote it, with its k/CID entries
    repo.plumbing.meta_update("git", [("mark", json.dumps(mark).encode()),
                                      ("k/" + cid, bytes.fromhex(head))])
    refs = index.refs()
    GitIndex(repo).sync()
    assert list(repo.plumbing.meta_items("git", "k/")) == []
    assert json.loads(index.get("mark"))["version"] == VERSION
    assert index.checkin_of(head) == cid and index.sha_of(cid) == head
    assert index.refs() == refs
    repo.close()


def test_new_checkins_export_on_top(rich, tmp_path):
    repo = herofossil.open(tmp_path / "s", create=True)
    import_git(repo, rich.path)
    ci = repo.write("added.txt", b"made in the store\n", message="store commit")
    export_git(repo, str(tmp_path / "out.git"))
    out = GitRepo.__new__(GitRepo)
    out.path = str(tmp_path / "out.git")
    log = out.git("log", "--format=%H %s", "-2", "master").splitlines()
    assert log[0].endswith("store commit") and log[1].split()[0] == rich.git("rev-parse",
                                                                             "master")
    assert out.git("show", "master:added.txt") == "made in the store"
    assert GitIndex(repo).sha_of(ci.id) is None
    others = {r for r in _refs(tmp_path / "out.git").splitlines() if "master" not in r}
    assert others == {r for r in rich.refs().splitlines() if "master" not in r}


def test_incremental(tmp_path):
    g = GitRepo(tmp_path / "src")
    for i in range(5):
        g.write(f"f{i}", f"{i}\n")
        g.commit(f"c{i}")
    repo = herofossil.open(tmp_path / "s", create=True)
    assert import_git(repo, g.path).commits == 5
    g.git("checkout", "-q", "-b", "topic", "HEAD~2")
    g.write("t", "topic\n")
    g.commit("on topic")
    g.git("checkout", "-q", "master")
    g.write("f0", "changed\n")
    g.commit("c5")
    g.git("tag", "-a", "-m", "t", "rel")
    res = import_git(repo, g.path, incremental=True)
    assert res.commits == 2 and res.skipped == 0
    assert import_git(repo, g.path, incremental=True).commits == 0
    export_git(repo, str(tmp_path / "out.git"))
    assert _refs(tmp_path / "out.git") == g.refs()
    assert repo.verify().ok


def test_interrupted_import_resumes(tmp_path):
    g = GitRepo(tmp_path / "src")
    for i in range(30):
        g.write(f"d/f{i % 7}", f"{i}\n" * 40)
        g.commit(f"c{i}")
    repo = herofossil.open(tmp_path / "s", create=True)

    def boom(n, sha):
        if n == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_git(repo, g.path, on_commit=boom)
    assert repo.verify().ok
    res = import_git(repo, g.path, incremental=True)
    assert res.commits == 13
    export_git(repo, str(tmp_path / "out.git"))
    assert _refs(tmp_path / "out.git") == g.refs()


def test_killed_import_resumes(tmp_path):
    g = GitRepo(tmp_path / "src")
    for i in range(40):
        g.write(f"f{i % 5}", f"{i}\n")
        g.commit(f"c{i}")
    store = tmp_path / "s"
    herofossil.open(store, create=True).close()
    code = ("import os, sys, herofossil\n"
            "from herofossil.gitimport import importer, import_git\n"
            "importer.FLUSH_EVERY = 10\n"
            "def hook(n, sha):\n"
            "    if n == 25: os._exit(9)\n"
            f"import_git(herofossil.open({str(store)!r}), {g.path!r}, on_commit=hook)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    repo = herofossil.open(store)
    assert repo.verify().ok
    res = import_git(repo, g.path, incremental=True)
    assert res.commits == 20
    export_git(repo, str(tmp_path / "out.git"))
    assert _refs(tmp_path / "out.git") == g.refs()


def test_not_a_repository(tmp_path):
    repo = herofossil.open(tmp_path / "s", create=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepositoryError, match="not a Git repository"):
        import_git(repo, str(tmp_path / "plain"))
    with pytest.raises(NotAGitRepositoryError):
        import_git(repo, str(tmp_path / "missing"))
    assert repo.verify().ok


def test_shallow_clone(tmp_path):
    g = GitRepo(tmp_path / "src")
    for i in range(3):
        g.write("f", f"{i}\n")
        g.commit(f"c{i}")
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{g.path}",
                    str(tmp_path / "shallow")], check=True, capture_output=True)
    repo = herofossil.open(tmp_path / "s", create=True)
    with pytest.raises(ShallowRepositoryError, match="shallow"):
        import_git(repo, str(tmp_path / "shallow"))
    assert repo.verify().ok


def test_corrupt_object(tmp_path):
    g = GitRepo(tmp_path / "src")
    g.write("f", "one\n")
    g.commit("c0")
    g.write("f", "two\n")
    g.commit("c1")
    blob = g.git("rev-parse", "HEAD:f")
    obj = os.path.join(g.path, ".git", "objects", blob[:2], blob[2:])
    os.chmod(obj, 0o644)
    with open(obj, "wb") as f:
        f.write(b"garbage, not zlib")
    repo = herofossil.open(tmp_path / "s", create=True)
    with pytest.raises(HeroFossilError) as info:
        import_git(repo, g.path)
    assert isinstance(info.value, GitObjectError | herofossil.gitimport.GitError)
    assert blob in str(info.value) or g.git("rev-parse", "HEAD") in str(info.value)
    assert repo.verify().ok


def test_unstorable_path(tmp_path):
    g = GitRepo(tmp_path / "src")
    g.write("ok", "x\n")
    g.commit("c0")
    blob = g.hash_object("blob", b"x\n")
    tree = g.hash_object("tree", mktree([(b"100644", b".herofossil-dir", blob)]))
    c = g.hash_object("commit", f"tree {tree}\nauthor A <a@b> 1 +0000\n"
                      "committer A <a@b> 1 +0000\n\nbad\n".encode())
    g.git("update-ref", "refs/heads/bad", c)
    repo = herofossil.open(tmp_path / "s", create=True)
    with pytest.raises(UnstorablePathError, match=c):
        import_git(repo, g.path)
    assert repo.verify().ok


def test_cli_import_export_map(rich, tmp_path):
    from herofossil.cli import main

    store = str(tmp_path / "s")
    assert main(["-R", store, "init"]) == 0
    assert main(["-R", store, "import", "git", rich.path]) == 0
    assert main(["-R", store, "import", "git", rich.path, "--incremental"]) == 0
    assert main(["-R", store, "export", "git", str(tmp_path / "o.git")]) == 0
    assert _refs(tmp_path / "o.git") == rich.refs()
    assert main(["-R", store, "git", "map", "trunk"]) == 0
    assert main(["-R", store, "import", "git", str(tmp_path)]) == NotAGitRepositoryError.exit_code


def test_missing_git_command_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "herofossil", "-R", str(tmp_path / "store"), "import", "git",
         str(src)], env={"PATH": str(tmp_path), "HOME": str(tmp_path)}, capture_output=True)
    assert proc.returncode != 0
    assert b"git command is not installed" in proc.stderr and b"Traceback" not in proc.stderr


def test_a_merged_branchs_last_version_of_a_file_is_stored_as_a_delta(tmp_path):
    # The merged side's version of spec.md has no successor on its own branch: the
    # merge (which resolved it differently) is its successor.
    g = GitRepo(tmp_path / "src")
    text = "".join(f"line {i}: the specification says something long enough\n"
                   for i in range(200))
    g.write("spec.md", text)
    g.commit("spec")
    g.git("checkout", "-q", "-b", "side")
    g.write("spec.md", text.replace("line 10:", "line ten:"))
    g.commit("side edit")
    g.write("spec.md", text.replace("line 10:", "line ten:").replace("line 90:", "line 90 (s):"))
    g.commit("second side edit")
    g.git("checkout", "-q", "master")
    g.write("spec.md", text.replace("line 150:", "line 150 (m):"))
    g.commit("main edit")
    g.git("merge", "-q", "--no-commit", "side")
    g.write("spec.md", text.replace("line 10:", "line TEN:").replace("line 150:", "line 150 (m):"))
    g.commit("merge with a resolution of its own")
    side_version = blobs.artifact_id(g.git("show", "side:spec.md", text=False))
    with herofossil.open(tmp_path / "s", create=True) as repo:
        import_git(repo, g.path)
        with repo._env.read() as txn:
            stored = txn.get(side_version, db=repo._env.db["blob"])
        assert blobs.delta_base(stored) is not None, "kept whole"
        export_git(repo, str(tmp_path / "out.git"))
        assert repo.verify().ok
    assert _refs(tmp_path / "out.git") == g.refs()



def test_a_renamed_or_copied_file_is_stored_as_a_delta_on_its_source(tmp_path):
    """A path new in a commit gets a base among the paths the commit removed (a rename
    with an edit) or changed (a release copying the spec beside a README edit): both were
    whole, as the newest versions of new paths. The same rule holds for an import of the
    artifacts (Fossil's layout), which derives them through crosslink."""
    g = GitRepo(tmp_path / "src")
    spec = "".join(f"rule {i}: keys are bare or quoted, values have a type\n"
                   for i in range(300))
    g.write("docs/spec.md", spec)
    g.write("README.md", "# project\n" + spec)
    g.commit("spec")
    os.remove(os.path.join(g.path, "docs", "spec.md"))
    g.write("docs/specification.md", spec.replace("rule 7:", "rule seven:"))
    g.commit("rename with an edit")
    g.write("README.md", "# project v1\n" + spec)
    g.write("versions/v1.md", "# v1\n" + spec)
    g.commit("release: the README changes, the spec is copied")
    renamed_from = blobs.artifact_id(spec.encode())
    copied = blobs.artifact_id(("# v1\n" + spec).encode())
    with herofossil.open(tmp_path / "s", create=True) as repo:
        import_git(repo, g.path)
        with repo._env.read() as txn:
            kinds = {aid: txn.get(aid, db=repo._env.db["blob"]) for aid in (renamed_from, copied)}
        assert all(blobs.delta_base(s) is not None for s in kinds.values()), "kept whole"
        assert all(len(s) < 400 for s in kinds.values())
        assert repo.read("versions/v1.md") == ("# v1\n" + spec).encode()
        assert repo.verify().ok
        export_git(repo, str(tmp_path / "out.git"))
        repo.export_artifacts(str(tmp_path / "artifacts"))
    assert _refs(tmp_path / "out.git") == g.refs()
    with herofossil.open(tmp_path / "again", create=True) as again:
        again.import_artifacts(str(tmp_path / "artifacts"))
        with again._env.read() as txn:
            stored = [txn.get(aid, db=again._env.db["blob"]) for aid in (renamed_from, copied)]
        assert all(blobs.delta_base(s) is not None for s in stored), "kept whole"
        assert again.verify().ok
