"""What a new user meets in the first minutes (issue 13): each defect, pinned by a test."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata
import urllib.request

import pytest

import herofossil
from herofossil import delta
from herofossil.cli import main
from herofossil.delta import policy
from herofossil.store.paths import MAX_PATH

sys.path.insert(0, os.path.dirname(__file__))
from test_gitimport_helpers import GitRepo  # noqa: E402

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def hf(capsysbinary):
    """Run the command line in-process; returns (exit code, stdout bytes, stderr text)."""

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    return run


def _one_line_error(code: int, err: str, want: int) -> None:
    assert code == want, err
    assert err.startswith("herofossil: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def _history(path, default="main") -> GitRepo:
    """A Git history with two branches, a merge and a tag; HEAD is ``default``."""
    g = GitRepo(path)
    g.git("branch", "-m", default)
    g.write("a.txt", "one\n")
    g.commit("first")
    g.git("checkout", "-q", "-b", "feature")
    g.write("f.txt", "feature\n")
    g.commit("on feature")
    g.git("checkout", "-q", default)
    g.write("a.txt", "two\n")
    g.commit("second")
    g.git("tag", "v1")
    g.git("checkout", "-q", "-b", "side")
    g.write("s.txt", "side\n")
    g.commit("on side")
    g.git("checkout", "-q", default)
    return g


# ---- 1. a fresh store does not fork on its first import
@needs_git
def test_import_git_into_a_new_store_leaves_only_the_source_leaves(tmp_path, hf):
    g = _history(tmp_path / "src")
    store = tmp_path / "new.store"
    assert hf("-R", store, "import", "git", g.path)[0] == 0
    code, out, _ = hf("-R", store, "branch")
    assert code == 0
    lines = out.decode().splitlines()
    assert len(lines) == 3 and "leaves" not in out.decode(), lines
    with herofossil.open(store) as repo:
        for branch in ("trunk", "feature", "side"):
            assert len(repo.leaves(branch)) == 1, branch
        assert repo.leaves("trunk") == [repo.resolve("trunk")]
        assert len(repo.log()) == int(g.git("rev-list", "--count", "main"))


@needs_git
def test_import_git_into_an_initialised_store_leaves_only_the_source_leaves(tmp_path, hf):
    g = _history(tmp_path / "src")
    store = tmp_path / "s"
    assert hf("-R", store, "init")[0] == 0
    assert hf("-R", store, "import", "git", g.path)[0] == 0
    with herofossil.open(store) as repo:
        assert len(repo.leaves("trunk")) == 1
        root = repo.log()[-1]
        assert root.parents == [] and root.comment == "first"


def test_init_then_import_artifacts_leaves_only_the_source_leaves(tmp_path, hf):
    with herofossil.open(tmp_path / "src", create=True) as src:
        src.write("a.txt", b"1")
        src.branch_new("feature")
        src.write("f.txt", b"f", branch="feature")
        src.write("a.txt", b"2")
        src.export_artifacts(str(tmp_path / "arts"))
        want = {b: src.leaves(b) for b in ("trunk", "feature")}
    assert hf("-R", tmp_path / "copy", "init")[0] == 0
    assert hf("-R", tmp_path / "copy", "import", "artifacts", tmp_path / "arts")[0] == 0
    with herofossil.open(tmp_path / "copy") as copy:
        assert {b: copy.leaves(b) for b in ("trunk", "feature")} == want
        assert copy.verify().ok


def test_a_new_store_reads_as_empty_and_its_first_write_starts_from_fossils_empty_checkin(
        tmp_path):
    with herofossil.open(tmp_path / "s", create=True) as repo:
        assert repo.ls() == [] and repo.files() == {} and repo.log() == []
        with pytest.raises(herofossil.NotFoundError):
            repo.read("a.txt")
        repo.write("a.txt", b"hello")
        log = repo.log()
        assert [c.comment for c in log] == ["put a.txt", "initial empty check-in"]
        assert log[-1].parents == [] and repo.leaves() == [log[0].id]


# ---- 2. Git's names after a Git import
@needs_git
def test_git_default_branch_name_resolves_to_trunk_and_branch_shows_it(tmp_path, hf):
    g = _history(tmp_path / "src")
    store = tmp_path / "s"
    assert hf("-R", store, "import", "git", g.path)[0] == 0
    code, out, err = hf("-R", store, "cat", "a.txt", "--at", "main")
    assert (code, out) == (0, b"two\n"), err
    assert hf("-R", store, "cat", "f.txt", "--at", "feature")[1] == b"feature\n"
    assert hf("-R", store, "cat", "a.txt", "--at", "v1")[1] == b"two\n"
    branches = hf("-R", store, "branch")[1].decode()
    assert re.search(r"^\* trunk \(git: main\) +[0-9a-f]{12}$", branches, re.M), branches
    code, _, err = hf("-R", store, "put", "new.txt", os.devnull, "--branch", "main")
    assert code == 0, err
    with herofossil.open(store) as repo:
        assert "main" not in repo.branches() and "new.txt" in repo.files("trunk")
        assert repo.resolve("main") == repo.resolve("trunk")
        assert repo.resolve("main@2100-01-01") == repo.resolve("trunk")
        assert repo.branch_aliases() == {"main": "trunk"}


# ---- 3. every import creates a missing store
def test_import_artifacts_creates_a_missing_store(tmp_path, hf):
    with herofossil.open(tmp_path / "src", create=True) as src:
        src.write("a.txt", b"1")
        src.export_artifacts(str(tmp_path / "arts"))
        tip = src.resolve()
    code, _, err = hf("-R", tmp_path / "missing", "import", "artifacts", tmp_path / "arts")
    assert code == 0, err
    with herofossil.open(tmp_path / "missing") as repo:
        assert repo.resolve() == tip and repo.read("a.txt") == b"1"


# ---- 4. a kept-empty folder is a folder everywhere
def test_commit_dir_after_a_kept_empty_folder_gains_a_file(tmp_path, hf):
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "top.txt").write_bytes(b"top")
    store = tmp_path / "s"
    assert hf("-R", store, "init")[0] == 0
    assert hf("-R", store, "commit", tree, "-m", "empty d")[0] == 0
    (tree / "d" / "f.txt").write_bytes(b"now d holds a file")
    code, _, err = hf("-R", store, "commit", tree, "-m", "d gains a file")
    assert code == 0, err
    with herofossil.open(store) as repo:
        assert repo.read("d/f.txt") == b"now d holds a file"
        (tree / "d" / "f.txt").unlink()
        repo.commit_dir(str(tree))
        assert [e.path for e in repo.ls()] == ["d", "top.txt"] and repo.ls("d") == []
        shutil.rmtree(tree / "d")
        repo.commit_dir(str(tree))
        assert [e.path for e in repo.ls()] == ["top.txt"]


def test_folder_markers_never_reach_callers(repo):
    repo.write("x.txt", b"x")
    before = repo.resolve()
    repo.mkdir("d")
    repo.write("d/inside.txt", b"i")
    repo.mkdir("e")
    assert sorted(repo.files()) == ["d/inside.txt", "x.txt"]
    assert sorted(repo.files(before)) == ["x.txt"]
    assert [(c.path, c.status) for c in repo.diff(before, None)] == [("d/inside.txt", "A")]
    assert [e.path for e in repo.walk()] == ["d/inside.txt", "x.txt"]
    assert [(e.path, e.is_dir) for e in repo.ls()] == [("d", True), ("e", True),
                                                         ("x.txt", False)]
    assert repo.changed_paths("tip") == []  # e's marker is no file of the check-in


def test_a_merge_and_a_checkout_carry_a_kept_empty_folder(repo, tmp_path):
    repo.write("x.txt", b"x")
    repo.branch_new("feature")
    repo.mkdir("kept", branch="feature")
    repo.write("y.txt", b"y")  # trunk moves on: a real merge
    repo.merge("feature")
    assert [(e.path, e.is_dir) for e in repo.ls()] == [("kept", True), ("x.txt", False),
                                                         ("y.txt", False)]
    assert repo.checkout(None, str(tmp_path / "out")) == 2
    assert (tmp_path / "out" / "kept").is_dir() and not os.listdir(tmp_path / "out" / "kept")


# ---- 5. bad input is a typed error, never a traceback
def test_paths_over_the_limit_are_refused_with_a_typed_error(repo, hf, store_path):
    longest = "d/" + "p" * (MAX_PATH - 2)
    repo.write(longest, b"fits")
    assert repo.read(longest) == b"fits" and repo.read(longest, at="tip") == b"fits"
    for too_long in ("q" * 505, "d/" + "p" * (MAX_PATH - 1), "x" * 4097):
        with pytest.raises(herofossil.InvalidPathError, match=f"longer than {MAX_PATH}"):
            repo.write(too_long, b"x")
        with pytest.raises(herofossil.InvalidPathError, match=f"longer than {MAX_PATH}"):
            repo.read(too_long)
    repo.close()
    _one_line_error(*hf("-R", store_path, "put", "q" * 505, os.devnull)[::2], 9)
    _one_line_error(*hf("-R", store_path, "cat", "q" * 600)[::2], 9)


def test_branch_names_over_the_limit_are_refused(repo):
    repo.write("a", b"a")
    with pytest.raises(herofossil.UsageError, match="longer than"):
        repo.write("a", b"b", branch="b" * 200)


@needs_git
def test_import_git_refuses_a_path_over_the_limit_with_a_typed_error(tmp_path):
    from herofossil.gitimport import UnstorablePathError, import_git

    g = GitRepo(tmp_path / "src")
    g.write("d" * 200 + "/" + "f" * 250, "deep\n")
    g.commit("a long path")
    with herofossil.open(tmp_path / "s", create=True) as repo:
        with pytest.raises(UnstorablePathError, match=f"longer than {MAX_PATH}"):
            import_git(repo, g.path)


def test_webdav_refuses_a_path_over_the_limit(tmp_path):
    store = str(tmp_path / "s")
    herofossil.open(store, create=True).close()
    proc = subprocess.Popen([sys.executable, "-m", "herofossil", "-R", store, "serve",
                             "--webdav-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("webdav: "):
                url = line.split()[1].rstrip("/")
                break
        assert url, "the server printed no URL"
        for name in ("q" * 505, ".DS_Store/" + "q" * 505, "n" * 500 + "/.DS_Store"):
            req = urllib.request.Request(f"{url}/{name}", data=b"x", method="PUT")
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(req, timeout=60)
            assert exc.value.code in (400, 403, 409), (name, exc.value.code)
        req = urllib.request.Request(f"{url}/ok.txt", data=b"x", method="PUT")
        assert urllib.request.urlopen(req, timeout=60).status == 201
    finally:
        proc.terminate()
        proc.wait(30)
    with herofossil.open(store) as repo:
        assert sorted(repo.files()) == ["ok.txt"]


def test_a_non_utf8_file_name_is_refused_naming_it(tmp_path, store_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "good.txt").write_bytes(b"good")
    bad = os.path.join(os.fsencode(tree), b"caf\xe9.txt")
    with open(bad, "wb") as f:
        f.write(b"latin-1 name")
    herofossil.open(store_path, create=True).close()
    base = [sys.executable, "-m", "herofossil", "-R", os.fsencode(store_path)]
    for args in ([b"commit", os.fsencode(tree)], [b"put", b"caf\xe9.txt", os.fsencode(bad)]):
        proc = subprocess.run(base + args, capture_output=True)
        err = proc.stderr.decode()
        _one_line_error(proc.returncode, err, 9)
        assert "caf\\xe9.txt" in err and "UTF-8" in err, err
    with herofossil.open(store_path) as repo:
        assert repo.files() == {}
        for call in (lambda: repo.write("caf\udce9.txt", b"x"),
                     lambda: repo.read("caf\udce9.txt")):
            with pytest.raises(herofossil.InvalidPathError, match="UTF-8"):
                call()


@pytest.mark.parametrize("when", ["2026-13-45", "2026-02-30", "2026-01-01 25:00",
                                  "trunk@2026-00-10"])
def test_an_impossible_date_is_a_usage_error(repo, hf, store_path, when):
    repo.write("a.txt", b"a")
    repo.close()
    code, _, err = hf("-R", store_path, "cat", "a.txt", "--at", when)
    _one_line_error(code, err, 2)
    assert "YYYY-MM-DD" in err, err


# ---- 6. names that differ only by Unicode normalisation
def test_a_name_equal_to_another_after_nfc_is_refused_naming_both(repo):
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfc != nfd
    repo.write(nfc, b"composed")
    with pytest.raises(herofossil.ConflictError) as exc:
        repo.write(nfd, b"decomposed")
    assert repr(nfc) in str(exc.value) and repr(nfd) in str(exc.value)
    repo.write(unicodedata.normalize("NFC", "dïr/a.txt"), b"in a folder")
    with pytest.raises(herofossil.ConflictError):
        repo.write(unicodedata.normalize("NFD", "dïr/b.txt"), b"a second folder")
    repo.write("plain.txt", b"p")
    with pytest.raises(herofossil.ConflictError):
        repo.rename("plain.txt", nfd)
    with pytest.raises(herofossil.ConflictError):
        repo.mkdir(unicodedata.normalize("NFD", "dïr"))
    repo.write(nfc, b"composed again")  # the same name is no conflict
    assert sorted(repo.files()) == sorted([nfc, unicodedata.normalize("NFC", "dïr/a.txt"),
                                           "plain.txt"])


@needs_git
def test_git_import_keeps_both_normalisations_losslessly(tmp_path):
    from herofossil.gitimport import export_git, import_git

    g = GitRepo(tmp_path / "src")
    g.write(unicodedata.normalize("NFC", "café"), "nfc\n")
    g.write(unicodedata.normalize("NFD", "café"), "nfd\n")
    g.commit("both forms")
    with herofossil.open(tmp_path / "s", create=True) as repo:
        import_git(repo, g.path)
        assert len(repo.files()) == 2
        export_git(repo, str(tmp_path / "out.git"))
    out = subprocess.run(["git", "-C", str(tmp_path / "out.git"), "for-each-ref",
                          "--format=%(refname) %(objectname)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == g.refs()


# ---- 7. rewriting a large file costs about what writing it whole does
def _edited(data: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(20):
        at = rnd.randrange(len(out) - 64)
        out[at:at + 16] = rnd.randbytes(16)
    return bytes(out)


def test_rewriting_an_unrelated_large_file_does_not_run_the_delta_encoder(repo):
    rnd = random.Random(7)
    size = 8 << 20
    repo.write("big.bin", rnd.randbytes(size))
    before = dict(policy.COUNTERS)
    repo.write("big.bin", rnd.randbytes(size))
    assert policy.COUNTERS["created_bytes"] - before["created_bytes"] < size  # manifests only
    assert policy.COUNTERS["skipped_dissimilar"] == before["skipped_dissimilar"] + 1
    assert repo.verify().ok


def test_rewriting_a_similar_large_file_still_stores_a_delta(repo):
    rnd = random.Random(8)
    first = rnd.randbytes(8 << 20)
    second = _edited(first, 9)
    repo.write("big.bin", first)
    old_id = repo.stat("big.bin").id
    before = dict(policy.COUNTERS)
    repo.write("big.bin", second)
    assert policy.COUNTERS["created_bytes"] - before["created_bytes"] >= len(first)
    assert policy.COUNTERS["abandoned"] == before["abandoned"]
    with repo._read() as txn:
        stored = txn.get(bytes.fromhex(old_id), db=repo._db["blob"])
    assert len(stored) < 64 << 10  # the old version is a small delta on the new one
    assert repo.read("big.bin", at=repo.log()[1].id) == first


def test_the_bounded_encoder_gives_up_on_unrelated_data_and_matches_fossil_otherwise():
    if "cython" not in delta.IMPLEMENTATIONS:
        pytest.skip("the compiled kernel is not built")
    rnd = random.Random(3)
    a, b = rnd.randbytes(1 << 20), rnd.randbytes(1 << 20)
    assert delta.create(a, b, 10_000) is None
    similar = _edited(a, 4)
    assert delta.create(a, similar, policy.budget(len(similar))) == delta.create(a, similar)
    assert policy.similar(a, similar) and not policy.similar(a, b)
