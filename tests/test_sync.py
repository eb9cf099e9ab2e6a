"""Peer sync over our protocol: real server processes on loopback, real stores on disk."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

import herofossil
from herofossil.errors import SyncError
from herofossil.store import blobs
from herofossil.sync import client, wire


def _history(repo, prefix="f", n=20):
    for i in range(n):
        repo.write(f"{prefix}/{i % 5}.txt", b"line %d of version %d\n" % (i, i) * 40,
                   message=f"{prefix} {i}")


def _same(a, b):
    with a._env.read() as ta, b._env.read() as tb:
        ids_a = set(ta.cursor(db=a._env.db["blob"]).iternext(values=False))
        ids_b = set(tb.cursor(db=b._env.db["blob"]).iternext(values=False))
    return ids_a == ids_b and a.branches() == b.branches() and a.files() == b.files()


@pytest.mark.parametrize("url", ["some/store", "ftp://host/x", "http://", "fossil+http://"])
def test_a_clone_from_a_url_that_names_no_server_creates_no_store(tmp_path, url):
    with pytest.raises(SyncError, match="URL|names no host"):
        client.clone(url, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_clone_copies_every_artifact_and_the_history(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin)
    origin.branch_new("feature")
    origin.write("feat.md", b"# feature\n", branch="feature")
    origin.tag_add("v1")
    origin.close()
    srv = serve(tmp_path / "origin")
    repo, report = client.clone(srv.url, tmp_path / "copy")
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _same(origin, repo)
        assert [c.id for c in repo.log()] == [c.id for c in origin.log()]
        assert repo.tags() == origin.tags()
        assert repo.read("feat.md", at="feature") == b"# feature\n"
        size = origin.stats()["stored_bytes"]
    assert report.round_trips == 1 and report.checkins_new == repo.stats()["checkins"]
    assert repo.stats()["stored_bytes"] <= 1.1 * size  # deltas travel and stay deltas
    assert report.bytes_received <= 1.2 * size + 2000
    assert repo.verify().ok
    repo.close()


def test_a_no_op_sync_is_one_small_round_trip(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=5)
    origin.close()
    srv = serve(tmp_path / "origin")
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    report = client.sync(repo, srv.url)
    assert report.round_trips == 1
    assert report.artifacts_sent == report.artifacts_received == 0
    assert report.bytes_sent + report.bytes_received < 600  # without HTTP headers
    repo.close()


class Relay:
    """A loopback TCP relay in front of ``port`` that counts the bytes each way (what goes
    over the socket: HTTP headers included)."""

    def __init__(self, port: int):
        self.target, self.up, self.down = port, 0, 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                near, _ = self._listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [near, far]
            threading.Thread(target=self._pump, args=(near, far, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(far, near, "down"), daemon=True).start()

    def _pump(self, src, dst, way):
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    setattr(self, way, getattr(self, way) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._listener.close()
        with self._lock:
            for s in self._socks:
                s.close()


@pytest.fixture
def relay():
    made = []

    def start(url):
        r = Relay(int(url.rstrip("/").rpartition(":")[2]))
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


class OneAnswerRelay(Relay):
    """A relay that serves one request per connection and then closes it, unannounced,
    as soon as the client sends another on it (a server or proxy that dropped an idle
    kept-alive connection just as the client reused it)."""

    def __init__(self, port: int):
        self.connections = self.dropped = 0
        self._answered: set[int] = set()
        super().__init__(port)

    def _pump(self, src, dst, way):
        if way == "down":
            with self._lock:
                self.connections += 1
            try:
                while data := src.recv(1 << 16):
                    with self._lock:
                        self._answered.add(dst.fileno())
                    dst.sendall(data)
            except OSError:
                pass
            return
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    reused = src.fileno() in self._answered
                if reused:
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_kept_alive_connection_the_peer_dropped_is_replaced_and_the_sync_completes(
        tmp_path, serve, monkeypatch):
    from herofossil.sync import backend

    origin = herofossil.open(tmp_path / "origin", create=True)
    for i in range(12):
        origin.write(f"big/{i}.bin", os.urandom(20_000), message=f"big {i}")
    origin.close()
    monkeypatch.setattr(backend, "FIRST_CHUNK", 32 << 10)
    monkeypatch.setattr(backend, "MIN_CHUNK", 16 << 10)
    srv = serve(tmp_path / "origin")
    dropping = OneAnswerRelay(int(srv.url.rstrip("/").rpartition(":")[2]))
    try:
        repo, report = client.clone(dropping.url, tmp_path / "copy")
        # Each reuse was dropped, and each answer came on a connection of its own.
        assert report.round_trips >= 4
        assert dropping.dropped == report.round_trips - 1
        assert dropping.connections == report.round_trips
        with herofossil.open(tmp_path / "origin", readonly=True) as origin:
            assert _same(origin, repo)
        mine = repo.write("local.txt", b"pushed over dropped connections")
        pushed = client.sync(repo, dropping.url)
        assert pushed.artifacts_sent >= 2
        with herofossil.open(tmp_path / "origin", readonly=True) as origin:
            assert origin.read("local.txt") == b"pushed over dropped connections"
            assert origin.resolve("trunk") == mine.id
        repo.close()
    finally:
        dropping.close()


def test_a_no_op_sync_is_under_600_bytes_on_the_wire_with_http(tmp_path, serve, relay):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=5)
    origin.close()
    srv = serve(tmp_path / "origin")
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    counted = relay(srv.url)
    first = client.sync(repo, counted.url)  # another URL: first contact, a reconciliation
    assert first.reconciled and first.round_trips == 1
    counted.up = counted.down = 0
    report = client.sync(repo, counted.url)
    assert report.round_trips == 1 and not report.reconciled
    assert report.artifacts_sent == report.artifacts_received == 0
    assert counted.up > report.bytes_sent and counted.down > report.bytes_received
    assert counted.up + counted.down < 600
    repo.close()


def test_a_no_op_sync_still_refuses_a_server_of_another_project(tmp_path, serve):
    with herofossil.open(tmp_path / "origin", create=True) as origin:
        _history(origin, n=3)
    srv = serve(tmp_path / "origin")
    port = srv.url.rstrip("/").rpartition(":")[2]
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    srv.stop()
    with herofossil.open(tmp_path / "other", create=True) as other:  # same URL, other store
        _history(other, n=3)
    srv = serve(tmp_path / "other", "--port", port)
    with pytest.raises(SyncError, match="another project"):
        client.sync(repo, srv.url)
    repo.close()


def test_changes_on_both_sides_cross_in_one_round_trip(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=5)
    origin.close()
    srv = serve(tmp_path / "origin")
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    repo.write("mine/a.txt", b"written on the clone\n")
    # The server's store gets a write from another process while it serves.
    subprocess.run([sys.executable, "-m", "herofossil", "-R", str(tmp_path / "origin"), "put",
                    "theirs/b.txt"], input=b"written on the origin\n", check=True)
    report = client.sync(repo, srv.url)
    assert report.round_trips == 1
    assert report.artifacts_sent >= 2 and report.artifacts_received >= 2
    assert report.checkins_new == 2  # the origin's write, and its merge of the fork
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _same_artifacts(origin, repo)
        assert origin.leaves("trunk") == repo.leaves("trunk")
        assert len(origin.leaves("trunk")) == 1  # disjoint sides: joined, nothing lost
        assert {"mine/a.txt", "theirs/b.txt"} <= set(origin.files())
        merge = origin.checkin()
        assert len(merge.parents) == 2 and merge.user == "herofossil"
    again = client.sync(repo, srv.url)
    assert again.round_trips == 1 and again.artifacts_sent == again.artifacts_received == 0
    repo.close()


def _same_artifacts(a, b):
    with a._env.read() as ta, b._env.read() as tb:
        return (set(ta.cursor(db=a._env.db["blob"]).iternext(values=False))
                == set(tb.cursor(db=b._env.db["blob"]).iternext(values=False)))


def test_a_read_only_replica_refuses_a_push_and_stores_nothing(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=3)
    origin.close()
    srv = serve(tmp_path / "origin", "--readonly")
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    repo.write("new.txt", b"new\n")
    with pytest.raises(SyncError, match="read-only replica"):
        client.sync(repo, srv.url, pull=False)
    srv.stop()
    with herofossil.open(tmp_path / "origin") as origin:
        assert "new.txt" not in origin.files()
    repo.close()


def _post(url, body: bytes, content_type=wire.CONTENT_TYPE):
    req = urllib.request.Request(url.rstrip("/") + "/sync", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _push(artifacts, project=None):
    header = {"store": "x" * 32, "epoch": "e", "project": project, "last": 1,
              "push": {"after": 0, "reached": 1}}
    return wire.encode(wire.Message(header, artifacts))


@pytest.mark.parametrize("case", ["bad hash", "missing base", "delta cycle", "garbage",
                                  "truncated", "other version", "other project", "no push"])
def test_a_lying_or_broken_peer_gets_an_error_and_nothing_is_stored(tmp_path, serve, case):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=3)
    before = origin.stats()["artifacts"]
    origin.close()
    srv = serve(tmp_path / "origin")
    good = b"an honest artifact\n"
    aid = blobs.artifact_id(good)
    other = blobs.artifact_id(b"something else")
    if case == "bad hash":
        body = _push([(other, blobs.RAW + good)])
    elif case == "missing base":
        body = _push([(aid, blobs.encode_delta(other, b"xyz"))])
    elif case == "delta cycle":
        body = _push([(aid, blobs.encode_delta(other, b"1")),
                      (other, blobs.encode_delta(aid, b"2"))])
    elif case == "garbage":
        body = os.urandom(300)
    elif case == "truncated":
        body = _push([(aid, blobs.RAW + good)])[:-5]
    elif case == "other version":
        body = wire.MAGIC + bytes([wire.VERSION + 1]) + _push([])[4:]
    elif case == "other project":
        body = _push([(aid, blobs.RAW + good)], project="f" * 32)
    else:
        header = {"store": "x" * 32, "epoch": "e", "last": 1}
        body = wire.encode(wire.Message(header, [(aid, blobs.RAW + good)]))
    status, data = _post(srv.url, body)
    assert status == 400, data
    assert wire.decode(data).header["error"]
    # The server keeps serving others.
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    assert repo.stats()["artifacts"] == before
    repo.close()
    srv.stop()
    with herofossil.open(tmp_path / "origin") as origin:
        assert origin.stats()["artifacts"] == before
        assert origin.verify().ok


def test_a_lie_in_one_chunk_of_a_clone_cuts_the_chunk_asked_for_meanwhile(tmp_path, serve,
                                                                          monkeypatch):
    """A clone asks for its next chunk while it stores this one. When this one is a lie
    (an artifact that does not hash to its id), the clone stops with the error at once:
    it does not wait for the answer under way, which this peer never sends."""
    import http.server
    import time

    from herofossil.errors import IntegrityError
    from herofossil.sync import backend

    origin = herofossil.open(tmp_path / "origin", create=True)
    for i in range(12):
        origin.write(f"big/{i}.bin", os.urandom(20_000), message=f"big {i}")
    origin.close()
    srv = serve(tmp_path / "origin")
    monkeypatch.setattr(backend, "FIRST_CHUNK", 32 << 10)
    monkeypatch.setattr(backend, "MIN_CHUNK", 16 << 10)
    monkeypatch.setattr(client, "TIMEOUT", 120)
    cut = threading.Event()
    asked = []

    class Liar(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            asked.append(body)
            if len(asked) > 1:  # the chunk asked for ahead: no answer, ever
                self.connection.settimeout(150)
                try:
                    while self.connection.recv(1 << 16):
                        pass
                except OSError:
                    pass
                cut.set()  # the clone cut it
                self.close_connection = True
                return
            status, data = _post(srv.url, body)
            answer = wire.decode(data)
            assert answer.header.get("more") and len(answer.artifacts) > 1
            aid, _ = answer.artifacts[-1]
            answer.artifacts[-1] = (aid, blobs.RAW + b"not what it names\n")
            data = wire.encode(answer)
            self.send_response(status)
            self.send_header("Content-Type", wire.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    liar = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises((IntegrityError, SyncError), match="hash"):
            client.clone(f"http://127.0.0.1:{liar.server_port}/", tmp_path / "copy")
        # Not after the client's timeout: the request under way was cut, not waited for.
        assert time.monotonic() - started < 60 and len(asked) == 2
        assert cut.wait(30)
    finally:
        liar.shutdown()
        liar.server_close()
    with herofossil.open(tmp_path / "copy") as copy:
        assert copy.stats()["artifacts"] == 0 and copy.verify().ok  # nothing of the lie


def test_a_clone_killed_midway_resumes_and_fetches_only_what_is_missing(tmp_path, serve,
                                                                        monkeypatch):
    origin = herofossil.open(tmp_path / "origin", create=True)
    for i in range(40):  # incompressible: the chunks are large
        origin.write(f"big/{i}.bin", os.urandom(200_000), message=f"big {i}")
    origin.close()
    srv = serve(tmp_path / "origin")
    script = (
        "import sys\n"
        "from herofossil.sync import backend, client\n"
        "backend.CHUNK = 1 << 20\n"
        "def progress(label, done, total):\n"
        "    if done >= 10: print('cut', flush=True); sys.stdin.read()\n"
        "client.clone(sys.argv[1], sys.argv[2], progress=progress)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, srv.url, str(tmp_path / "copy")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "cut\n"
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with herofossil.open(tmp_path / "copy") as partial:
        have = partial.stats()["artifacts"]
        had_bytes = partial.stats()["stored_bytes"]
        assert partial.verify().ok
    assert 10 <= have < 80
    monkeypatch.setattr("herofossil.sync.backend.CHUNK", 1 << 20)
    repo, report = client.clone(srv.url, tmp_path / "copy")
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _same(origin, repo)
        total = origin.stats()["stored_bytes"]
    assert report.artifacts_received == repo.stats()["artifacts"] - have
    # What was missing, plus framing and at most a chunk's worth sent again.
    assert report.bytes_received < (total - had_bytes) + (1 << 20) + 10_000
    assert repo.verify().ok
    repo.close()


def test_a_clone_killed_after_half_its_chunks_resends_about_half_on_resume(tmp_path, serve):
    from herofossil.sync import backend

    origin = herofossil.open(tmp_path / "origin", create=True)
    for i in range(80):  # about 8 MB, incompressible: four chunks
        origin.write(f"big/{i}.bin", os.urandom(100_000), message=f"big {i}")
    origin.close()
    srv = serve(tmp_path / "origin")
    full_repo, full = client.clone(srv.url, tmp_path / "full")
    full_repo.close()
    assert full.round_trips >= 4 and backend.CHUNK <= 4 << 20
    half = full.round_trips // 2
    script = (
        "import sys\n"
        "from herofossil.sync import client\n"
        "rounds = 0\n"
        "def progress(label, done, total):\n"
        "    global rounds\n"
        "    rounds += 1\n"
        f"    if rounds == {half}: print('cut', flush=True); sys.stdin.read()\n"
        "client.clone(sys.argv[1], sys.argv[2], progress=progress)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, srv.url, str(tmp_path / "copy")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "cut\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    repo, resumed = client.clone(srv.url, tmp_path / "copy")
    assert resumed.bytes_received <= 0.6 * full.bytes_received
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _same(origin, repo)
    assert repo.verify().ok
    repo.close()


def test_a_clone_in_many_chunks_sends_each_delta_base_once(tmp_path, serve, monkeypatch):
    from herofossil.sync import backend

    origin = herofossil.open(tmp_path / "origin", create=True)
    rnd = __import__("random").Random(5)
    for i in range(200):  # versions of a few files: older ones are deltas on newer ones
        origin.write(f"f/{i % 7}.txt", rnd.randbytes(3000).hex().encode() * 2,
                     message=f"v{i}")
    stored = origin.stats()["stored_bytes"]
    origin.close()
    monkeypatch.setattr(backend, "FIRST_CHUNK", 32 << 10)
    monkeypatch.setattr(backend, "MIN_CHUNK", 16 << 10)
    srv = serve(tmp_path / "origin")
    repo, report = client.clone(srv.url, tmp_path / "copy")
    assert report.round_trips >= 8
    assert report.bytes_received + report.bytes_sent <= 1.1 * stored + 200 * report.round_trips
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _same(origin, repo)
    assert repo.stats()["stored_bytes"] <= 1.1 * stored
    repo.close()


def test_users_rights_and_credentials_from_url_netrc_or_environment(tmp_path, serve,
                                                                    monkeypatch):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _history(origin, n=3)
    origin.close()
    srv = serve(tmp_path / "origin", "--user", "alice:s3cret", "--user", "bob:pw:ro")
    host = srv.url.removeprefix("http://")
    with pytest.raises(SyncError, match="HTTP 401.*needs a user name"):
        client.clone(srv.url, tmp_path / "anon")
    with pytest.raises(SyncError, match="HTTP 401.*wrong user name or password"):
        client.clone(f"http://alice:wrong@{host}", tmp_path / "wrong")
    repo, _ = client.clone(f"http://bob:pw@{host}", tmp_path / "bob")  # read-only may pull
    repo.write("from-bob.txt", b"bob\n")
    with pytest.raises(SyncError, match="HTTP 403.*may only read"):
        client.sync(repo, f"http://bob:pw@{host}")
    repo.close()
    repo, _ = client.clone(f"http://alice:s3cret@{host}", tmp_path / "alice")
    repo.write("from-alice.txt", b"alice\n")
    assert client.sync(repo, f"http://alice:s3cret@{host}").artifacts_sent >= 2
    with repo._env.read() as txn:  # what the store keeps of the peer: never the password
        kept = b"".join(k + v for k, v in txn.cursor(db=repo._env.db["meta"]))
    assert b"s3cret" not in kept and b"alice" not in kept
    repo.write("more.txt", b"more\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login alice password s3cret\n")
    (home / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    assert client.sync(repo, srv.url).artifacts_sent >= 2  # from ~/.netrc
    (home / ".netrc").unlink()
    repo.write("env.txt", b"env\n")
    monkeypatch.setenv(client.PASSWORD_ENV, "s3cret")
    assert client.sync(repo, f"http://alice@{host}").artifacts_sent >= 2  # from the env
    repo.close()
    srv.stop()
    with herofossil.open(tmp_path / "origin") as origin:
        files = origin.files()
    assert {"from-alice.txt", "more.txt", "env.txt"} <= set(files)
    assert "from-bob.txt" not in files


def test_saved_peers_sync_one_after_the_other_and_a_failing_one_does_not_stop_the_rest(
        tmp_path, serve):
    from herofossil.sync import peers

    with herofossil.open(tmp_path / "a", create=True) as origin:
        origin.write("a.txt", b"a")
    srv_a = serve(tmp_path / "a")
    b, _ = client.clone(srv_a.url, tmp_path / "b")  # one project, two servers
    b.write("b.txt", b"b")
    b.close()
    srv_b = serve(tmp_path / "b")
    repo = herofossil.open(tmp_path / "mine", create=True)
    host_a = srv_a.url.removeprefix("http://")
    saved = peers.add(repo, "a", f"http://user:secret@{host_a}")
    assert saved.url == f"http://user@{host_a}"  # the password is not kept
    peers.add(repo, "b", srv_b.url)
    peers.add(repo, "gone", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(herofossil.UsageError):
        peers.add(repo, "bad name", srv_a.url)
    results = dict(peers.sync_each(repo, None, pull=True, push=True))
    assert isinstance(results["gone"], SyncError)
    assert results["a"].artifacts_received >= 2 and results["b"].artifacts_received >= 2
    assert {"a.txt", "b.txt"} <= set(repo.files())
    listed = {p.name: p for p in peers.list_peers(repo)}
    assert listed["a"].last_sync and listed["gone"].last_error and not listed["gone"].last_sync
    peers.remove(repo, "gone")
    assert [p.name for p in peers.list_peers(repo)] == ["a", "b"]
    repo.close()


@pytest.mark.slow
def test_a_server_killed_during_pushes_and_pulls_loses_nothing_and_the_next_sync_completes(
        tmp_path, serve, monkeypatch):
    import random
    import threading


    monkeypatch.setattr("herofossil.sync.backend.CHUNK", 1 << 20)  # many round trips

    origin = herofossil.open(tmp_path / "origin", create=True)
    origin.write("seed.txt", b"seed\n")
    origin.close()
    srv = serve(tmp_path / "origin")
    repo, _ = client.clone(srv.url, tmp_path / "copy")
    rnd = random.Random(7)
    kills = 0
    for round_ in range(6):
        for i in range(40):
            repo.write(f"r{round_}/{i}.bin", rnd.randbytes(150_000))
        timer = threading.Timer(rnd.uniform(0.005, 0.1), srv.proc.kill)
        timer.start()
        try:
            client.sync(repo, srv.url)
        except SyncError:
            kills += 1
        timer.cancel()
        srv.proc.wait(timeout=30) if srv.proc.poll() is not None else None
        srv.stop()
        with herofossil.open(tmp_path / "origin") as origin:  # opens, and nothing half-done
            assert origin.verify().ok
        srv = serve(tmp_path / "origin")
        client.sync(repo, srv.url)
        with herofossil.open(tmp_path / "origin", readonly=True) as origin:
            assert _same_artifacts(origin, repo)
    assert kills >= 1


def _wait_for(predicate, seconds=30.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    return None


def _has(store, path):
    try:
        with herofossil.open(store, readonly=True) as repo:
            return path in repo.files()
    except herofossil.HeroFossilError:
        return False


@pytest.mark.slow
def test_a_follower_shows_writes_of_either_side_within_seconds_and_survives_a_restart(
        tmp_path, serve):
    import time

    with herofossil.open(tmp_path / "a", create=True) as origin:
        origin.write("first.txt", b"1\n")
    srv_a = serve(tmp_path / "a")
    client.clone(srv_a.url, tmp_path / "b")[0].close()
    serve(tmp_path / "b", "--follow", srv_a.url)

    def put(store, path):
        subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), "put", path],
                       input=b"x\n", check=True)
        return time.monotonic()

    put(tmp_path / "a", "on-a.txt")  # liveness only: how fast is the benchmark's figure
    assert _wait_for(lambda: _has(tmp_path / "b", "on-a.txt")) is not None
    put(tmp_path / "b", "on-b.txt")
    assert _wait_for(lambda: _has(tmp_path / "a", "on-b.txt")) is not None
    port = srv_a.url.rstrip("/").rpartition(":")[2]
    srv_a.stop()  # the peer goes away, and comes back on the same port
    put(tmp_path / "b", "while-a-was-down.txt")
    time.sleep(0.5)
    serve(tmp_path / "a", "--port", port)
    assert _wait_for(lambda: _has(tmp_path / "a", "while-a-was-down.txt")) is not None
    put(tmp_path / "a", "after-restart.txt")
    assert _wait_for(lambda: _has(tmp_path / "b", "after-restart.txt")) is not None


def test_the_command_line_serves_clones_pulls_pushes_and_keeps_peers(tmp_path):
    def hf(*args, store=None, check=True, input=None):
        cmd = [sys.executable, "-m", "herofossil"] + (["-R", str(store)] if store else [])
        proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                              input=input)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    origin = tmp_path / "origin"
    hf("init", store=origin)
    hf("put", "a.txt", store=origin, input="a\n")
    proc = subprocess.Popen([sys.executable, "-m", "herofossil", "-R", str(origin), "serve",
                             "--no-webdav", "--sync-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("sync: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1]
        out = hf("clone", url, tmp_path / "copy").stdout
        assert "cloned" in out and "round trip" in out
        copy = tmp_path / "copy"
        assert hf("cat", "a.txt", store=copy).stdout == "a\n"
        hf("peer", "add", "origin", url, store=copy)
        assert "origin" in hf("peer", "ls", store=copy).stdout
        hf("put", "b.txt", store=copy, input="b\n")
        assert "1 new" not in hf("push", store=copy).stdout
        assert hf("cat", "b.txt", store=origin).stdout == "b\n"
        hf("put", "c.txt", store=origin, input="c\n")
        assert "1 new check-in" in hf("pull", "origin", store=copy).stdout
        assert hf("cat", "c.txt", store=copy).stdout == "c\n"
        bad = hf("pull", "http://127.0.0.1:9/", store=copy, check=False)
        assert bad.returncode == SyncError.exit_code and "Traceback" not in bad.stderr
        assert hf("verify", store=copy).returncode == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def _fork(repo, left: dict, right: dict):
    """Two check-ins on trunk's tip, one with ``left``'s files, one with ``right``'s."""
    from herofossil import Put

    base = repo.checkin().id
    repo.commit([Put(p, d) for p, d in left.items()], message="left")
    repo.commit([Put(p, d) for p, d in right.items()], message="right", parent=base)
    assert len(repo.leaves("trunk")) == 2


def test_every_peer_joins_a_disjoint_fork_with_the_same_merge_artifact(tmp_path, serve):
    with herofossil.open(tmp_path / "a", create=True) as a:
        a.write("base.txt", b"base\n")
        _fork(a, {"left.txt": b"l\n"}, {"right.txt": b"r\n"})
    srv = serve(tmp_path / "a", "--readonly")  # a replica merges nothing itself
    b, report = client.clone(srv.url, tmp_path / "b")
    assert report.merges == 1 and len(b.leaves("trunk")) == 1
    srv.stop()
    with herofossil.open(tmp_path / "a") as a:
        made, forked = a.merge_forks()
        assert forked == [] and [c.id for c in made] == [b.checkin().id]  # byte-identical
        assert a.files() == b.files()
    b.close()


def test_a_fork_that_changed_one_path_on_both_sides_is_left_and_reported(tmp_path, serve):
    with herofossil.open(tmp_path / "a", create=True) as a:
        a.write("same.txt", b"base\n")
        _fork(a, {"same.txt": b"left\n"}, {"same.txt": b"right\n"})
    srv = serve(tmp_path / "a", "--readonly")
    b, report = client.clone(srv.url, tmp_path / "b")
    assert report.merges == 0 and report.forked == ("trunk",)
    assert "conflicting leaves left on trunk" in report.summary()
    assert len(b.leaves("trunk")) == 2
    assert b.read("same.txt") in (b"left\n", b"right\n")  # reads use the newest leaf
    b.close()


def test_the_tips_uncompressed_manifest_travels_compressed_and_arrives_whole(tmp_path):
    from herofossil.store import exchange

    with herofossil.open(tmp_path / "a", create=True) as repo:
        repo.commit([herofossil.Put(f"d/{i}.txt", b"%d" % i) for i in range(60)])
        repo.write("d/0.txt", b"changed")  # the tip: a delta-manifest kept uncompressed
        tip = bytes.fromhex(repo.checkin().id)
        with repo._env.read() as txn:
            kept = txn.get(tip, db=repo._env.db["blob"])
        assert kept[:1] == blobs.RAW
        sent = dict(exchange.artifacts_after(repo._env, 0)[0])
        assert sent[tip][:1] == blobs.WHOLE and len(sent[tip]) < len(kept)
        assert blobs.decode_whole(sent[tip], tip) == kept[1:]


def test_a_check_in_that_arrives_before_its_parent_makes_no_merge(tmp_path):
    """Chunks send a delta's base ahead of the stream: an old manifest stored as a delta on
    a newer one brings that newer check-in before its parent. The gap is no fork."""
    import random

    from herofossil.store import exchange
    from herofossil.sync.backend import SyncBackend

    origin = herofossil.open(tmp_path / "origin", create=True)
    rnd = random.Random(3)
    for i in range(120):
        origin.write(f"r/{i}.bin", rnd.randbytes(20_000), message=f"put {i}")
    copy = herofossil.open(tmp_path / "copy", create=True)
    backend = SyncBackend(copy)
    seq, ahead, gaps = 0, [], 0
    while True:
        chunk, seq, sent = exchange.stream_after(origin._env, seq, max_bytes=80_000,
                                                 ahead=[aid for aid, _ in ahead])
        if not chunk:
            break
        ahead = [(aid, s) for aid, s in ahead if s > seq] + sent
        exchange.receive(copy._env, chunk)
        gaps += backend.history_gap()
        backend.join_forks()
    assert gaps  # the stream did bring check-ins before their parents
    assert not backend.history_gap()
    assert _same_artifacts(origin, copy)
    assert copy.leaves("trunk") == origin.leaves("trunk")
    assert all(c.user != "herofossil" for c in copy.log())
    copy.close()
    origin.close()


def test_a_write_to_a_branch_lands_on_it_while_a_check_in_of_another_waits_for_its_parent(
        tmp_path):
    """A feature check-in that arrives ahead of its parent cannot know its branch yet: it
    must be no branch's tip meanwhile (it was trunk's, and a write to trunk built on it,
    so that write ended up on feature once the parent came)."""
    from herofossil.store import exchange

    origin = herofossil.open(tmp_path / "origin", create=True)
    origin.write("a.txt", b"trunk 1\n")
    copy = herofossil.open(tmp_path / "copy", create=True)
    exchange.receive(copy._env, exchange.artifacts_after(origin._env, 0)[0])
    before = {aid for aid, _ in exchange.artifacts_after(origin._env, 0)[0]}
    origin.branch_new("feature")
    origin.write("f.txt", b"feature 1\n", branch="feature")
    ahead = origin.write("f.txt", b"feature 2\n", branch="feature")
    later = [(aid, s) for aid, s in exchange.artifacts_after(origin._env, 0)[0]
             if aid not in before]
    with origin._env.read() as txn:
        whole = {aid: blobs.encode_whole(blobs.BlobReader(txn, origin._env.db).content(aid))
                 for aid, _ in later}
    tip = bytes.fromhex(ahead.id)
    exchange.receive(copy._env, [(tip, whole[tip])])  # the newest, without its parent
    assert copy.checkin("trunk").branch == "trunk"
    assert copy.leaves("trunk") == [origin.checkin("trunk").id]
    assert copy.checkin(ahead.id).branch == ""  # unknown until its parent comes
    shown = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(tmp_path / "copy"),
                            "log", "--oneline", "--at", ahead.id, "-n", "1"],
                           capture_output=True, text=True)
    assert "[? (its parent has not arrived)]" in shown.stdout, shown
    written = copy.write("b.txt", b"on trunk\n")
    assert written.branch == "trunk" and written.parents == [origin.checkin("trunk").id]
    exchange.receive(copy._env, [(a, whole[a]) for a, _ in later if a != tip])
    assert copy.checkin("trunk").id == written.id
    assert copy.checkin("feature").id == ahead.id
    assert {c.id: c.branch for c in copy.log(limit=10)}[written.id] == "trunk"
    assert copy.read("b.txt", at="trunk") == b"on trunk\n"
    assert copy.verify().ok
    copy.close()
    origin.close()


def _raw_post(url: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
    """A POST with exactly these headers (urllib would fix Host up)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", "/sync", skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_an_anonymous_server_refuses_a_host_that_names_another_site(tmp_path, serve):
    herofossil.open(tmp_path / "s", create=True).close()
    srv = serve(tmp_path / "s")
    port = srv.url.rstrip("/").rpartition(":")[2]
    msg = wire.encode(wire.Message({"pull": True}, []))
    status, body = _raw_post(srv.url, {"Host": f"evil.example:{port}",
                                       "Content-Type": wire.CONTENT_TYPE}, msg)
    assert status == 421 and b"evil.example" in body
    fossil = _raw_post(srv.url, {"Host": f"rebound.example:{port}",
                                 "Content-Type": "application/x-fossil"}, b"")
    assert fossil[0] == 421  # Fossil's protocol on the same port too
    status, _ = _raw_post(srv.url, {"Host": f"localhost:{port}",
                                    "Content-Type": wire.CONTENT_TYPE}, msg)
    assert status != 421


def test_failed_logins_are_logged_and_an_address_that_keeps_failing_waits(tmp_path, serve):
    herofossil.open(tmp_path / "s", create=True).close()
    srv = serve(tmp_path / "s", "--user", "alice:s3cret")
    host = srv.url.removeprefix("http://")
    for _ in range(5):
        with pytest.raises(SyncError, match="HTTP 401"):
            client.clone(f"http://alice:wrong@{host}", tmp_path / "wrong")
    with pytest.raises(SyncError, match="HTTP 429"):  # even with the right password now
        client.clone(f"http://alice:s3cret@{host}", tmp_path / "right")
    srv.stop()
    log = srv.proc.stderr.read()
    assert log.count("failed login from 127.0.0.1 as 'alice'") == 5


def test_a_clone_in_many_chunks_derives_what_the_source_has(tmp_path, serve):
    # Reverse deltas make a check-in's manifest the base of its parent's: a chunked
    # clone brings some check-ins before their parents. What was derived without the
    # parent (branch, path log, leaves) must be derived again when it comes.
    import random

    from herofossil import Put

    rnd = random.Random(7)
    origin = herofossil.open(tmp_path / "origin", create=True)
    # Enough files that check-ins are delta-manifests on a baseline, which becomes a
    # reverse delta on a later baseline: a base far ahead of its check-in's parent.
    origin.commit([Put(f"d/{n}.txt", b"file %d\n" % n) for n in range(300)])
    origin.branch_new("side")
    for i in range(160):  # incompressible versions: ~2.5 MB, several clone chunks
        origin.write(f"f{i % 7}.bin", rnd.randbytes(16 << 10),
                     branch="side" if i % 4 == 0 else None, message=f"v{i}")
        if i % 9 == 0:
            origin.commit([Put(f"d/{n}.txt", b"v%d %d\n" % (i, n)) for n in range(i, 300, 3)],
                          branch="side" if i % 2 else None)
    want = (origin.branches(), {b: sorted(origin.leaves(b)) for b in origin.branches()},
            {c.id: (c.branch, c.parents) for c in origin.log(limit=1000)})
    origin.close()
    srv = serve(tmp_path / "origin")
    copy, report = client.clone(srv.url, tmp_path / "copy")
    assert report.round_trips >= 3
    got = (copy.branches(), {b: sorted(copy.leaves(b)) for b in copy.branches()},
           {c.id: (c.branch, c.parents) for c in copy.log(limit=1000)})
    assert got == want
    assert copy.log("f3.bin", at="side", limit=1000) != []
    assert copy.verify().ok
    copy.close()


def test_repo_pull_push_and_sync_take_a_url_or_a_saved_peer_and_return_the_report(
        tmp_path, serve):
    from herofossil.errors import NotFoundError

    with herofossil.open(tmp_path / "a", create=True) as a:
        a.write("a.txt", b"from a\n")
    srv = serve(tmp_path / "a")
    b = herofossil.clone(srv.url, tmp_path / "b")
    try:
        assert b.read("a.txt") == b"from a\n"
        b.write("b.txt", b"from b\n")
        pushed = b.push(srv.url)
        assert pushed.artifacts_sent >= 2 and pushed.artifacts_received == 0
        assert pushed.round_trips >= 1 and pushed.bytes_sent > 0
        with herofossil.open(tmp_path / "a") as a:
            assert a.read("b.txt") == b"from b\n"
            a.write("a.txt", b"a again\n")
        pulled = b.pull(srv.url)
        assert pulled.artifacts_sent == 0 and pulled.checkins_new == 1
        assert b.read("a.txt") == b"a again\n"
        from herofossil.sync import peers  # the saved-peer form: a name, not the URL

        peers.add(b, "origin", srv.url)
        quiet = b.sync("origin")
        assert quiet.round_trips == 1 and quiet.artifacts_sent == quiet.artifacts_received == 0
        assert peers.list_peers(b)[0].last_sync is not None
        with pytest.raises(NotFoundError, match="no peer named"):
            b.pull("nowhere")
        srv.stop()
        with pytest.raises(SyncError, match="cannot reach"):
            b.sync("origin")
        assert "cannot reach" in peers.list_peers(b)[0].last_error
    finally:
        b.close()
