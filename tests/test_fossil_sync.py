"""The real ``fossil`` client against herofossil's sync server (Fossil's xfer protocol)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

import herofossil
from herofossil.errors import IntegrityError, SyncError
from herofossil.store import blobs
from herofossil.store.changes import Put
from herofossil.store.keys import id_key, id_name, is_sha1_key
from herofossil.sync import client, fossilusers, xfer, xferclient, xferserver
from herofossil.sync.backend import SyncBackend

FOSSIL = shutil.which("fossil")
pytestmark = pytest.mark.skipif(FOSSIL is None, reason="fossil is not installed")
BINARY = bytes(range(256)) * 12 + b"\0\xff" * 300


@pytest.fixture
def fsl(tmp_path):
    """Run fossil with a home of its own, no terminal, and a time limit."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), USER="tester", FOSSIL_HOME=str(home))

    def run(*args, cwd=None, check=True):
        proc = subprocess.run([FOSSIL, *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"fossil {' '.join(map(str, args))} failed:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def _history(repo):
    """Branches, tags, a merge, a rename, a binary and an executable file, 100+ artifacts."""
    repo.commit([Put("README.md", b"# hello\n"), Put("bin/tool", b"#!/bin/sh\necho hi\n",
                                                     perm="x"),
                 Put("data/blob.bin", BINARY)], message="first")
    repo.tag_add("v1.0")
    for i in range(40):
        repo.write(f"many/{i % 7}.txt", b"line %d\n" % i * 60, message=f"edit {i}")
    repo.branch_new("feature")
    repo.write("feature.md", b"feature work\n", branch="feature")
    repo.write("data/blob.bin", BINARY[::-1], branch="feature")
    repo.rename("README.md", "docs/README.md", message="move the readme")
    repo.merge("feature", message="merge feature")
    repo.tag_add("v2.0")


def _fossil_checkins(fsl, repo_file) -> set[str]:
    out = fsl("timeline", "-n", "0", "-t", "ci", "-F", "%H", "-R", repo_file).stdout
    return {line.strip() for line in out.splitlines() if len(line.strip()) == 64}


def _wire_bytes(output: str) -> int:
    m = re.search(r"wire bytes sent: (\d+)\s+received: (\d+)", output)
    assert m, output
    return int(m.group(1)) + int(m.group(2))


def _checkout(fsl, repo_file, work):
    work.mkdir()
    fsl("settings", "autosync", "off", "-R", repo_file)
    fsl("open", repo_file, "--nosync", "--workdir", work, cwd=work.parent)


@pytest.fixture
def history(store_path):
    repo = herofossil.open(store_path, create=True)
    _history(repo)
    yield repo
    repo.close()


def test_fossil_clones_our_store_with_same_history_files_branches_and_tags(
        history, store_path, serve, fsl, tmp_path):
    server = serve(store_path)
    clone = tmp_path / "x.fossil"
    fsl("clone", server.url, clone)
    # --parse: every artifact, our clusters too, must be one fossil accepts.
    assert " 0 errors" in fsl("test-integrity", "--parse", "-R", clone).stdout
    ours = {c.id for c in history.log()} | {c.id for c in history.log(at="feature")}
    assert _fossil_checkins(fsl, clone) == ours
    for ref in ("trunk", "feature", "v1.0", "v2.0"):
        cid = history.resolve(ref)
        listed = fsl("ls", "-R", clone, "-r", cid).stdout.split("\n")
        assert sorted(p for p in listed if p) == sorted(history.files(cid))
    for path in history.files():
        got = subprocess.run([FOSSIL, "cat", path, "-R", clone, "-r", "trunk"],
                             capture_output=True, check=True).stdout
        assert got == history.read(path)
    assert set(fsl("branch", "list", "-R", clone).stdout.split()) == {"trunk", "feature"}
    assert {"v1.0", "v2.0"} <= set(fsl("tag", "list", "-R", clone).stdout.split())
    code, _ = SyncBackend(history).fossil_codes()
    assert fsl("info", "-R", clone).stdout.split("project-code:")[1].split()[0] == code


def test_fossil_push_reaches_our_tip_and_our_writes_reach_fossil_pull(
        history, store_path, serve, fsl, tmp_path):
    server = serve(store_path)
    clone, work = tmp_path / "x.fossil", tmp_path / "work"
    fsl("clone", server.url, clone)
    _checkout(fsl, clone, work)
    (work / "from-fossil.txt").write_text("made by fossil\n")
    (work / "many" / "1.txt").write_text("changed by fossil\n")
    fsl("add", "from-fossil.txt", cwd=work)
    out = fsl("commit", "-m", "a fossil check-in", "--no-warnings", cwd=work).stdout
    fossil_ci = re.search(r"New_Version: ([0-9a-f]{64})", out).group(1)
    fsl("push", server.url, cwd=work)
    assert history.resolve() == fossil_ci
    assert history.log(limit=1)[0].comment == "a fossil check-in"
    assert history.read("from-fossil.txt") == b"made by fossil\n"
    assert history.read("many/1.txt") == b"changed by fossil\n"
    assert history.verify().problems == []

    ours = history.write("from-herofossil.txt", b"made by herofossil\n").id
    out = fsl("pull", server.url, cwd=work).stdout
    assert ours in _fossil_checkins(fsl, clone)
    # Our cookie told the server what the client had: what is new came unasked, at once.
    assert re.findall(r"Round-trips: (\d+)", out)[-1] == "1"
    fsl("update", "trunk", cwd=work)
    assert (work / "from-herofossil.txt").read_text() == "made by herofossil\n"
    assert " 0 errors" in fsl("test-integrity", "-R", clone).stdout


def test_fossil_sync_both_ways_in_one_run(history, store_path, serve, fsl, tmp_path):
    server = serve(store_path)
    clone, work = tmp_path / "x.fossil", tmp_path / "work"
    fsl("clone", server.url, clone)
    _checkout(fsl, clone, work)
    (work / "side.txt").write_text("fossil side\n")
    fsl("add", "side.txt", cwd=work)
    fsl("commit", "-m", "fossil side", "--no-warnings", "--allow-fork", cwd=work)
    history.write("other.txt", b"herofossil side\n")
    fsl("sync", server.url, cwd=work)
    # Two leaves of trunk met on the server; their sides do not conflict: one merge.
    tip = history.checkin()
    assert history.read("side.txt") == b"fossil side\n"
    assert history.read("other.txt") == b"herofossil side\n"
    assert len(tip.parents) == 2
    fsl("sync", server.url, cwd=work)
    assert tip.id in _fossil_checkins(fsl, clone)


def test_noop_fossil_sync_is_small_once_the_server_made_clusters(
        history, store_path, serve, fsl, tmp_path):
    for i in range(120):
        history.write(f"more/{i}.txt", b"file %d\n" % i)
    server = serve(store_path)
    clone, work = tmp_path / "x.fossil", tmp_path / "work"
    fsl("clone", server.url, clone)
    _checkout(fsl, clone, work)
    integrity = fsl("test-integrity", "--parse", "-R", clone).stdout  # clusters parse
    assert " 0 errors" in integrity
    assert int(integrity.split(" non-phantom")[0].split()[-1]) > 300
    assert len(xferserver.unclustered(SyncBackend(history))) < 100
    history.write("more/new.txt", b"one more\n")
    fsl("sync", server.url, cwd=work)
    out = fsl("sync", server.url, cwd=work).stdout
    assert "Round-trips: 1 " in out
    noop = _wire_bytes(out)
    # HTTP headers both ways and a few cards; without clusters the client would announce
    # each of its artifacts (70 bytes of igot card apiece).
    assert noop < 1500, noop


def test_anonymous_clone_is_refused_when_the_server_has_users(
        history, store_path, serve, fsl, tmp_path):
    server = serve(store_path, "--user", "carol:pw")
    proc = fsl("clone", server.url, tmp_path / "x.fossil", check=False)
    assert proc.returncode != 0
    assert "not authorized to clone" in proc.stdout + proc.stderr


def test_fossil_login_read_write_read_only_and_wrong_password(
        history, store_path, serve, fsl, tmp_path):
    fossilusers.grant(history, "alice", "alice-pw")
    fossilusers.grant(history, "bob", "bob-pw", can_write=False)
    server = serve(store_path, "--user", "alice:alice-pw", "--user", "bob:bob-pw:ro")
    clone, work = tmp_path / "x.fossil", tmp_path / "work"
    fsl("clone", server.with_user("alice", "alice-pw"), clone)
    assert _fossil_checkins(fsl, clone) >= {history.resolve()}
    _checkout(fsl, clone, work)
    # Bob may only read: with nothing to send, his sync is told "pull only" and pulls.
    history.write("for-bob.txt", b"bob pulls this\n")
    out = fsl("sync", server.with_user("bob", "bob-pw"), cwd=work).stdout
    assert "Error" not in out
    assert history.resolve() in _fossil_checkins(fsl, clone)
    fsl("user", "default", "alice", "-R", clone)
    fsl("update", "trunk", cwd=work)
    (work / "by-alice.txt").write_text("alice\n")
    fsl("add", "by-alice.txt", cwd=work)
    fsl("commit", "-m", "alice", "--no-warnings", cwd=work)
    before = history.resolve()
    # What he sends is refused, as fossil's own server refuses it.
    out = fsl("sync", server.with_user("bob", "bob-pw"), cwd=work).stdout
    assert "not authorized to write" in out
    assert history.resolve() == before
    assert not history.exists("by-alice.txt")

    wrong = fsl("push", server.with_user("alice", "not-her-pw"), cwd=work, check=False)
    assert "login failed" in wrong.stdout + wrong.stderr
    assert history.resolve() == before

    fsl("push", server.with_user("alice", "alice-pw"), cwd=work)
    assert history.read("by-alice.txt") == b"alice\n"


def test_wrong_project_code_is_refused(history, store_path, serve, fsl, tmp_path):
    other = tmp_path / "other-store"
    repo = herofossil.open(other, create=True)
    repo.write("x.txt", b"another project\n")
    repo.close()
    server = serve(store_path)
    clone = tmp_path / "x.fossil"
    fsl("clone", serve(other).url, clone)
    proc = fsl("sync", server.url, "-R", clone, check=False)
    assert "wrong project" in proc.stdout + proc.stderr
    assert not history.exists("x.txt")


# ---- bad input, posted as fossil would
def _post(url: str, payload: bytes) -> list[xfer.Card]:
    req = urllib.request.Request(url, data=xfer.compress(payload),
                                 headers={"Content-Type": xfer.COMPRESSED})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
        kind = resp.headers["Content-Type"]
    return xfer.parse(xfer.decode_body(body, kind))


def _errors(cards) -> list[str]:
    return [c.args[0] for c in cards if c.name == "error"]


@pytest.fixture
def pushing(history, store_path, serve):
    """(server, the push/pull cards of this store, the store's last sequence number)."""
    project, _ = SyncBackend(history).fossil_codes()
    server = serve(store_path)
    head = f"pull {'0' * 40} {project}\npush {'0' * 40} {project}\n".encode()
    return server, head


def _file(data: bytes, name: str | None = None, src: str | None = None) -> bytes:
    name = name or hashlib.sha3_256(data).hexdigest()
    head = f"file {name} {src} {len(data)}\n" if src else f"file {name} {len(data)}\n"
    return head.encode() + data


def _last(history) -> int:
    return SyncBackend(history).identity()["last"]


def test_bad_input_gets_an_error_card_and_stores_nothing(history, pushing):
    server, head = pushing
    before = _last(history)
    good = _file(b"a good artifact that must not be kept either\n")
    cases = {
        "bad command": head + b"frobnicate now\n",
        "malformed file line": head + b"file nothex 12\nhello world!",
        "announces": head + b"file " + b"a" * 64 + b" 999\nshort",
        "do not hash": head + good + _file(b"these bytes", "b" * 64),
        "neither sent nor is stored": head + good + _file(b"\x01\x02", src="c" * 64),
        "whose bytes do not hash": head + _file(b"x", "d" * 40),  # SHA1: checked with SHA1
        "wrong project": f"push {'0' * 40} {'e' * 40}\n".encode() + good,
        "login failed": b"login alice " + b"0" * 40 + b" " + b"1" * 40 + b"\n" + head + good,
    }
    for why, payload in cases.items():
        errors = _errors(_post(server.url, payload))
        assert errors and why in errors[0], (why, errors)
    assert _last(history) == before
    assert history.verify().problems == []


def test_a_read_only_replica_answers_pull_only(store_path, history, serve, fsl, tmp_path):
    project, _ = SyncBackend(history).fossil_codes()
    history.close()
    server = serve(store_path, "--readonly")
    cards = _post(server.url, f"pull {'0' * 40} {project}\npush {'0' * 40} {project}\n"
                  .encode() + _file(b"kept? no\n"))
    assert _errors(cards) == ["not authorized to write"]
    cards = _post(server.url, f"pull {'0' * 40} {project}\npush {'0' * 40} {project}\n"
                  .encode())
    assert [c.args[0] for c in cards if c.name == "message"] == [
        "pull only - not authorized to push"]


def test_reqconfig_answers_project_name_and_hash_policy(history, pushing):
    server, head = pushing
    cards = _post(server.url, head + b"reqconfig /all\nreqconfig /shun\n")
    configs = [c.payload.decode() for c in cards if c.name == "config"]
    assert any("'project-name' value" in c for c in configs)
    assert any("'hash-policy' value '2'" in c for c in configs)
    assert not _errors(cards)


def test_card_codec_round_trips_escapes_and_payloads():
    w = xfer.Writer()
    w.message("two words\nand a \\ backslash")
    w.file("a" * 64, b"x\ny")
    w.cfile("b" * 64, 5, xfer.compress(b"hello"), "c" * 64)
    w.config("/config", b"1 'k' value 'v'")
    cards = xfer.parse(w.getvalue())
    assert [c.name for c in cards] == ["message", "file", "cfile", "config"]
    assert cards[0].args == ["two words\nand a \\ backslash"]
    assert cards[1].payload == b"x\ny"
    assert xfer.uncompress(cards[2].payload) == b"hello" and cards[2].args[1] == "c" * 64
    assert cards[3].payload == b"1 'k' value 'v'"
    with pytest.raises(xfer.XferError):
        xfer.uncompress(b"\0\0\0\x09" + b"not zlib")


# ---- herofossil as a Fossil client, against a real ``fossil server``
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fossil_server(fsl):
    """``fossil server`` of a repository file on a free loopback port (always stopped)."""
    import socket
    import time

    started = []

    def start(repo_file) -> str:
        port = _free_port()
        proc = subprocess.Popen([FOSSIL, "server", "--port", str(port), "--localhost",
                                 str(repo_file)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        started.append(proc)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("fossil server did not start")

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _git_history(root):
    """A Git history with a branch, a merge, a rename, a tag and a binary file."""
    env = dict(os.environ, GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.com",
               GIT_AUTHOR_DATE="2024-01-01T00:00:00", GIT_COMMITTER_DATE="2024-01-01T00:00:00")

    def git(*args):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)

    root.mkdir()
    git("init", "-q", "-b", "master")
    (root / "a.txt").write_text("alpha\n" * 30)
    (root / "blob.bin").write_bytes(BINARY)
    git("add", ".")
    git("commit", "-qm", "one")
    git("checkout", "-qb", "side")
    (root / "side.txt").write_text("side\n")
    git("add", "side.txt")
    git("commit", "-qm", "side work")
    git("checkout", "-q", "master")
    git("mv", "a.txt", "b.txt")
    git("commit", "-qm", "rename a to b")
    git("merge", "-q", "--no-edit", "side")
    git("tag", "-a", "v1", "-m", "release 1")


@pytest.fixture
def fossil_repo(fsl, tmp_path):
    """A Fossil repository made by ``fossil import --git``, with a user alice (clone,
    read, check-in)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _git_history(tmp_path / "git")
    export = subprocess.run(["git", "fast-export", "--all"], cwd=tmp_path / "git",
                            capture_output=True, check=True).stdout
    repo_file = tmp_path / "imported.fossil"
    subprocess.run([FOSSIL, "import", "--git", str(repo_file)], input=export, check=True,
                   capture_output=True, env=dict(os.environ, USER="tester"))
    fsl("user", "new", "alice", "alice@example.com", "alice-pw", "-R", repo_file)
    fsl("user", "capabilities", "alice", "gio", "-R", repo_file)
    return repo_file


def test_we_clone_pull_and_push_with_a_real_fossil_server(fossil_repo, fossil_server, fsl,
                                                          tmp_path):
    from herofossil.sync import xferclient

    host = fossil_server(fossil_repo)
    url = f"fossil+http://alice:alice-pw@{host}/"
    repo, report = xferclient.clone(url, tmp_path / "ours")
    try:
        assert {c.id for b in repo.branches() for c in repo.log(at=b)} == \
            _fossil_checkins(fsl, fossil_repo)
        shown = fsl("info", "v1", "-R", fossil_repo).stdout.split("hash:")[1].split()[0]
        merge = repo.resolve("v1")
        assert merge.startswith(shown) and len(repo.checkin(merge).parents) == 2
        listed = fsl("ls", "-R", fossil_repo, "-r", merge).stdout.split()
        assert sorted(repo.files(merge)) == sorted(listed) == ["b.txt", "blob.bin",
                                                               "side.txt"]
        assert repo.read("blob.bin", at=merge) == BINARY
        assert repo.verify().problems == []
        code = fsl("info", "-R", fossil_repo).stdout.split("project-code:")[1].split()[0]
        assert SyncBackend(repo).fossil_codes()[0] == code

        # A check-in made with fossil reaches us by pull.
        work = tmp_path / "work"
        _checkout(fsl, fossil_repo, work)
        fsl("update", merge, cwd=work)
        (work / "by-fossil.txt").write_text("fossil wrote this\n")
        fsl("add", "by-fossil.txt", cwd=work)
        out = fsl("commit", "-m", "by fossil", "--no-warnings", "--allow-fork", cwd=work)
        made = re.search(r"New_Version: ([0-9a-f]{64})", out.stdout).group(1)
        pulled = xferclient.sync(repo, url, push=False)
        assert pulled.checkins_new == 1
        assert repo.read("by-fossil.txt", at=made) == b"fossil wrote this\n"

        # A check-in made here reaches fossil by push, and fossil finds it sound.
        ours = repo.write("by-herofossil.txt", b"herofossil wrote this\n", branch="side").id
        pushed = xferclient.sync(repo, url, pull=False)
        assert pushed.artifacts_sent >= 2
        assert ours in _fossil_checkins(fsl, fossil_repo)
        assert " 0 errors" in fsl("test-integrity", "-R", fossil_repo).stdout
        assert xferclient.sync(repo, url).artifacts_sent == 0  # nothing new: nothing sent
    finally:
        repo.close()


def test_fossil_server_refusals_are_sync_errors_and_store_nothing(fossil_repo, fossil_server,
                                                                 fsl, tmp_path):
    from herofossil.errors import SyncError
    from herofossil.sync import xferclient

    host = fossil_server(fossil_repo)
    with pytest.raises(SyncError, match="login failed"):
        xferclient.clone(f"fossil+http://alice:wrong@{host}/", tmp_path / "a")
    repo, _ = xferclient.clone(f"fossil+http://{host}/", tmp_path / "b")  # nobody may clone
    try:
        before = SyncBackend(repo).identity()["last"]
        repo.write("x.txt", b"anonymous may not push this\n")
        with pytest.raises(SyncError, match="not authorized to write"):
            xferclient.sync(repo, f"fossil+http://{host}/", pull=False)
        assert SyncBackend(repo).identity()["last"] == before + 2  # the write, nothing more
    finally:
        repo.close()
    # Once nobody may clone, a clone logs in after the first round told the project code.
    fsl("user", "capabilities", "nobody", "", "-R", fossil_repo)
    with pytest.raises(SyncError, match="not authorized to clone"):
        xferclient.clone(f"fossil+http://{host}/", tmp_path / "c")
    repo, _ = xferclient.clone(f"fossil+http://alice:alice-pw@{host}/", tmp_path / "d")
    try:
        assert repo.verify().problems == [] and repo.log()
    finally:
        repo.close()


def test_fossil_clone_from_us_costs_about_the_bytes_of_fossil_server(
        history, store_path, serve, fossil_server, fsl, tmp_path):
    server = serve(store_path)
    ours = fsl("clone", server.url, tmp_path / "ours.fossil").stdout
    host = fossil_server(tmp_path / "ours.fossil")
    theirs = fsl("clone", f"http://{host}/", tmp_path / "theirs.fossil").stdout
    assert _wire_bytes(ours) <= 1.1 * _wire_bytes(theirs), (ours, theirs)
    noop_ours = _wire_bytes(fsl("sync", server.url, "-R", tmp_path / "ours.fossil").stdout)
    noop_theirs = _wire_bytes(fsl("sync", f"http://{host}/", "-R",
                                  tmp_path / "theirs.fossil").stdout)
    assert noop_ours <= noop_theirs, (noop_ours, noop_theirs)


def test_the_command_line_clones_and_pulls_a_fossil_plus_http_url(fossil_repo, fossil_server,
                                                                  fsl, tmp_path):
    host = fossil_server(fossil_repo)
    url = f"fossil+http://alice:alice-pw@{host}/"
    store = tmp_path / "cli"
    cli = [sys.executable, "-m", "herofossil"]
    done = subprocess.run([*cli, "clone", url, str(store)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "alice-pw" not in done.stdout + done.stderr  # the password is never shown
    with herofossil.open(store) as repo:
        assert {c.id for b in repo.branches() for c in repo.log(at=b)} == \
            _fossil_checkins(fsl, fossil_repo)
    pulled = subprocess.run([*cli, "-R", str(store), "pull", url], capture_output=True,
                            text=True)
    assert pulled.returncode == 0, pulled.stderr
    wrong = subprocess.run([*cli, "-R", str(store), "pull", url.replace("alice-pw", "nope")],
                           capture_output=True, text=True)
    assert wrong.returncode == SyncError.exit_code and "Traceback" not in wrong.stderr


def test_a_user_saved_with_fossil_login_clones_with_fossil_and_is_revoked_with_the_user(
        history, store_path, serve, fsl, tmp_path):
    history.close()
    cli = [sys.executable, "-m", "herofossil", "-R", str(store_path), "serve"]
    saved = subprocess.run([*cli, "--add-user", "carol", "--fossil"], input="carol-pw\n",
                           capture_output=True, text=True)
    assert saved.returncode == 0, saved.stderr
    assert "carol-pw" not in saved.stdout + saved.stderr
    server = serve(store_path)
    fsl("clone", server.with_user("carol", "carol-pw"), tmp_path / "c.fossil")
    wrong = fsl("clone", server.with_user("carol", "nope"), tmp_path / "w.fossil", check=False)
    assert wrong.returncode != 0 and not (tmp_path / "w.fossil").exists()
    server.stop()
    gone = subprocess.run([*cli, "--remove-user", "carol"], capture_output=True, text=True)
    assert gone.returncode == 0, gone.stderr
    with herofossil.open(store_path, readonly=True) as repo:
        assert fossilusers.granted(repo) == []


def test_stats_shows_each_stores_own_fossil_codes_once_it_has_them(tmp_path, serve):
    cli = [sys.executable, "-m", "herofossil", "-R"]

    def codes(store):
        out = subprocess.run([*cli, str(store), "stats", "--json"], capture_output=True,
                             text=True, check=True).stdout
        got = json.loads(out)
        return got["fossil_project"], got["fossil_server"]

    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        herofossil.open(store, create=True).close()
        assert codes(store)[0].startswith("none yet")  # no ids made by a read-only command
        serve(store).stop()  # serving makes the store's ids
    (pa, sa), (pb, sb) = codes(stores[0]), codes(stores[1])
    assert all(re.fullmatch(r"[0-9a-f]{40}", c) for c in (pa, sa, pb, sb))
    assert pa != pb and sa != sb and codes(stores[0]) == (pa, sa)  # distinct, stable


# ---- SHA1-named artifacts of older Fossil repositories: kept under their names,
# verified with SHA1, and served back



def test_a_sha1_name_keys_32_bytes_and_comes_back_and_hashes_with_sha1():
    data = b"an artifact of an older repository\n"
    sha1 = hashlib.sha1(data).hexdigest()
    sha3 = hashlib.sha3_256(data).hexdigest()
    assert len(id_key(sha1)) == len(id_key(sha3)) == 32
    assert id_name(id_key(sha1)) == sha1 and id_name(id_key(sha3)) == sha3
    assert is_sha1_key(id_key(sha1)) and not is_sha1_key(id_key(sha3))
    assert blobs.hashes_to(id_key(sha1), data) and blobs.hashes_to(id_key(sha3), data)
    assert not blobs.hashes_to(id_key(sha1), data + b"x")
    assert not blobs.hashes_to(id_key(sha1[:-1] + "0" if sha1[-1] != "0" else sha1[:-1] + "1"),
                               data)
    for bad in ("", "abc", sha1 + "00", sha3[:-2]):
        with pytest.raises(ValueError):
            id_key(bad)


def _timeline(fsl, repo_file) -> set[str]:
    out = fsl("timeline", "-n", "0", "-t", "ci", "-F", "%H", "-R", repo_file).stdout
    return {line.strip() for line in out.splitlines() if len(line.strip()) in (40, 64)}


@pytest.fixture
def old_repo(fsl, tmp_path):
    """A Fossil repository begun under the sha1 hash policy (check-ins with a branch, a
    tag, a binary file and many versions of one file), then moved to sha3 as Fossil
    does for an old repository: later check-ins name the unchanged SHA1 files."""
    repo_file = tmp_path / "old.fossil"
    fsl("init", "--sha1", repo_file)
    fsl("user", "new", "alice", "alice@example.com", "alice-pw", "-R", repo_file)
    fsl("user", "capabilities", "alice", "gio", "-R", repo_file)
    work = tmp_path / "work"
    work.mkdir()
    fsl("settings", "autosync", "off", "-R", repo_file)
    fsl("open", repo_file, "--workdir", work, cwd=tmp_path)
    (work / "notes.txt").write_text("".join(f"line {i}\n" for i in range(200)))
    (work / "blob.bin").write_bytes(BINARY)
    (work / "keep.md").write_text("never changes\n")
    fsl("add", "notes.txt", "blob.bin", "keep.md", cwd=work)
    fsl("commit", "-m", "first, under sha1", "--no-warnings", cwd=work)
    for i in range(6):
        text = (work / "notes.txt").read_text().replace(f"line {i * 7}\n", f"edited {i}\n")
        (work / "notes.txt").write_text(text)
        fsl("commit", "-m", f"sha1 edit {i}", "--no-warnings", cwd=work)
    fsl("tag", "add", "old-release", "trunk", cwd=work)
    fsl("branch", "new", "side", "trunk", cwd=work)
    fsl("update", "side", cwd=work)
    (work / "side.txt").write_text("on the side\n")
    fsl("add", "side.txt", cwd=work)
    fsl("commit", "-m", "side, under sha1", "--no-warnings", cwd=work)
    fsl("update", "trunk", cwd=work)
    fsl("hash-policy", "sha3", cwd=work)
    (work / "notes.txt").write_text((work / "notes.txt").read_text() + "after the move\n")
    fsl("commit", "-m", "under sha3 now", "--no-warnings", cwd=work)
    fsl("close", cwd=work)
    return repo_file


def test_a_clone_of_an_old_fossil_repository_keeps_its_sha1_artifacts_and_verifies(
        old_repo, fossil_server, fsl, tmp_path):
    repo_file = old_repo
    host = fossil_server(repo_file)
    url = f"fossil+http://alice:alice-pw@{host}/"
    repo, report = xferclient.clone(url, tmp_path / "ours")
    try:
        theirs = _timeline(fsl, repo_file)
        assert {len(c) for c in theirs} == {40, 64}  # the fixture made both kinds
        ours = {c.id for b in repo.branches() for c in repo.log(at=b)}
        assert ours == theirs
        for ref in ("trunk", "side", "old-release"):
            cid = repo.resolve(ref)
            listed = fsl("ls", "-R", repo_file, "-r", cid).stdout.split()
            assert sorted(repo.files(cid)) == sorted(listed)
            for path, (aid, _perm) in repo.files(cid).items():
                got = subprocess.run([FOSSIL, "cat", path, "-R", str(repo_file), "-r", cid],
                                     capture_output=True, check=True).stdout
                assert repo.read(path, at=cid) == got
                assert repo.artifact(aid) == got
        keep = repo.stat("keep.md").id
        assert len(keep) == 40 and hashlib.sha1(repo.read("keep.md")).hexdigest() == keep
        assert repo.read("blob.bin") == BINARY
        assert repo.verify().problems == []
        assert repo.rebuild() and repo.verify().problems == []

        # A check-in made here on top names the unchanged SHA1 files by their names,
        # and Fossil takes it.
        mine = repo.write("notes.txt", repo.read("notes.txt") + b"by herofossil\n").id
        assert repo.files(mine)["keep.md"][0] == keep
        pushed = xferclient.sync(repo, url, pull=False)
        assert pushed.artifacts_sent >= 2
        assert mine in _timeline(fsl, repo_file)
        assert " 0 errors" in fsl("test-integrity", "-R", repo_file).stdout
        got = subprocess.run([FOSSIL, "cat", "keep.md", "-R", str(repo_file), "-r", mine],
                             capture_output=True, check=True).stdout
        assert got == b"never changes\n"
    finally:
        repo.close()


def test_a_store_with_sha1_artifacts_serves_fossil_and_our_peers_alike(
        old_repo, fossil_server, fsl, serve, tmp_path):
    repo_file = old_repo
    host = fossil_server(repo_file)
    source, _ = xferclient.clone(f"fossil+http://alice:alice-pw@{host}/", tmp_path / "ours")
    want = {c.id for b in source.branches() for c in source.log(at=b)}
    source.close()
    server = serve(tmp_path / "ours")

    # fossil clones it back: every artifact sound, the same check-ins, SHA1 names kept.
    back = tmp_path / "back.fossil"
    fsl("clone", server.url, back)
    assert " 0 errors" in fsl("test-integrity", "--parse", "-R", back).stdout
    assert _timeline(fsl, back) == want

    # A herofossil peer clones it over our protocol and verifies every SHA1 artifact.
    peer, _ = client.clone(server.url, tmp_path / "peer")
    try:
        assert {c.id for b in peer.branches() for c in peer.log(at=b)} == want
        assert len(peer.stat("keep.md").id) == 40
        assert peer.verify().problems == []
        # First contact under another name of the server: a reconciliation over every id,
        # the SHA1 ones among them, that finds nothing to send either way.
        other = server.url.replace("127.0.0.1", "localhost")
        report = client.sync(peer, other)
        assert report.reconciled
        assert report.artifacts_sent == report.artifacts_received == 0
        # And a change on our peer's side travels back over it.
        mine = peer.write("keep.md", b"changed on a herofossil peer\n").id
        assert client.sync(peer, other).artifacts_sent >= 2
    finally:
        peer.close()
    with herofossil.open(tmp_path / "ours", readonly=True) as repo:
        assert repo.read("keep.md") == b"changed on a herofossil peer\n"
        assert repo.checkin("trunk").id == mine and repo.verify().problems == []


def test_a_sha1_artifact_whose_bytes_do_not_match_is_refused_and_nothing_stored(
        old_repo, fossil_server, serve, tmp_path):
    repo_file = old_repo
    host = fossil_server(repo_file)
    repo, _ = xferclient.clone(f"fossil+http://alice:alice-pw@{host}/", tmp_path / "ours")
    project, _ = SyncBackend(repo).fossil_codes()
    before = repo.stats()["artifacts"]
    repo.close()
    server = serve(tmp_path / "ours")
    head = f"pull {'0' * 40} {project}\npush {'0' * 40} {project}\n".encode()
    good = b"a sound new artifact\n"
    liar = b"these bytes are not what the name says\n"
    wrong = hashlib.sha1(b"something else\n").hexdigest()
    cards = _post(server.url, head + _file(good, hashlib.sha1(good).hexdigest())
                  + _file(liar, wrong))
    assert _errors(cards), cards
    with herofossil.open(tmp_path / "ours", readonly=True) as repo:
        assert repo.stats()["artifacts"] == before
        assert repo.verify().problems == []
    # The sound one alone is taken, under its SHA1 name.
    cards = _post(server.url, head + _file(good, hashlib.sha1(good).hexdigest()))
    assert not _errors(cards), cards
    with herofossil.open(tmp_path / "ours", readonly=True) as repo:
        assert repo.artifact(hashlib.sha1(good).hexdigest()) == good
        assert repo.verify().problems == []


def test_verify_finds_a_damaged_sha1_artifact(old_repo, fossil_server, tmp_path):
    repo_file = old_repo
    host = fossil_server(repo_file)
    repo, _ = xferclient.clone(f"fossil+http://alice:alice-pw@{host}/", tmp_path / "ours")
    try:
        keep = repo.stat("keep.md").id
        repo._env.write(lambda txn: txn.put(id_key(keep), blobs.encode_whole(b"tampered\n"),
                                            db=repo._env.db["blob"]))
        problems = repo.verify().problems
        assert any(keep in p and "hash" in p for p in problems), problems
    finally:
        repo.close()


def test_a_deconstructed_old_repository_imports_with_its_sha1_names(old_repo, fsl, tmp_path):
    repo_file = old_repo
    art = tmp_path / "art"
    art.mkdir()
    fsl("deconstruct", "-R", repo_file, art)
    names = {p.parent.name + p.name for p in art.rglob("*") if p.is_file()}
    assert {len(n) for n in names} == {40, 64}
    with herofossil.open(tmp_path / "imported", create=True) as repo:
        assert repo.import_artifacts(str(art)) == len(names)
        assert {c.id for b in repo.branches() for c in repo.log(at=b)} == \
            _timeline(fsl, repo_file)
        assert len(repo.stat("keep.md").id) == 40 and repo.read("blob.bin") == BINARY
        assert repo.verify().problems == []
    # A file whose bytes changed on disk is refused by its SHA1 name, nothing kept.
    sha1_file = next(p for p in art.rglob("*") if len(p.parent.name + p.name) == 40)
    sha1_file.write_bytes(sha1_file.read_bytes() + b"tampered")
    with herofossil.open(tmp_path / "again", create=True) as repo:
        with pytest.raises(IntegrityError, match="does not hash to its name"):
            repo.import_artifacts(str(art))
        assert repo.stats()["artifacts"] == 0
