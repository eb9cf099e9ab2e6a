"""The WebDAV server's HTTP layer attacked over real sockets: stalling clients, huge
PROPFINDs, malformed framing and auth, Range, DNS rebinding, password guessing.

Servers are real ``herofossil serve`` processes on loopback: anonymous, or with a
read-write user (alice) and a read-only user (bob) saved through the real CLI with
the password on stdin. After each attack the store is as it must be and verifies.
"""

from __future__ import annotations

import base64
import http.client
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from webdav_child import Client, ServeProcess  # tests/webdav_child.py

import herofossil
from herofossil.store.changes import Put
from herofossil.store.users import UserDB, hash_password

CLI = [sys.executable, "-m", "herofossil"]
A_TXT = b"0123456789"


def raw(client: Client, data: bytes, *, shut: bool = True, timeout: float = 30,
        method: str = "GET") -> tuple[int, dict, bytes]:
    """Send ``data`` as it is on a fresh connection (then half-close when ``shut``); the
    answer parsed."""
    with socket.create_connection((client.host, client.port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def state(store: str) -> tuple:
    """What a refused attack must leave as it was: the check-ins and the tip's files."""
    with herofossil.open(store) as repo:
        return tuple(c.id for c in repo.log()), repo.files()


def verify(store: str) -> None:
    """``herofossil -R STORE verify`` passes (the server still has the store open)."""
    proc = subprocess.run([*CLI, "-R", store, "verify"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process ``pid`` in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def add_users(store: str, specs: list[str], passwords: list[str]) -> subprocess.CompletedProcess:
    """``serve --add-user SPEC ...`` with the passwords piped on stdin, one a line."""
    args = [a for spec in specs for a in ("--add-user", spec)]
    return subprocess.run([*CLI, "-R", store, "serve", *args], input="".join(
        p + "\n" for p in passwords), capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        repo.commit([Put("a.txt", A_TXT), Put("d/b.txt", b"b")], message="seed")
    return path


@pytest.fixture
def anon(store):
    with ServeProcess(store) as srv:
        yield Client(srv.url)


@pytest.fixture
def server_with_users(store):
    """A server with alice (rw, password alice-pw) and bob (ro, bob-pw), saved by the CLI."""
    proc = add_users(store, ["alice", "bob:ro"], ["alice-pw", "bob-pw"])
    assert proc.returncode == 0, proc.stderr
    with ServeProcess(store) as srv:
        yield srv


def stderr_of(srv: ServeProcess) -> str:
    srv._err.seek(0)
    return srv._err.read().decode("utf-8", "replace")


# ---- no single client stalls it


class Attackers:
    """Connections that hold on: idle, trickling a head a byte a second, or never
    finishing a body; all closed by ``close``."""

    def __init__(self, client: Client):
        self.addr = (client.host, client.port)
        self.socks: list[socket.socket] = []
        self.trickling: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(self.addr, timeout=30)
        self.socks.append(sock)
        return sock

    def idle(self, n: int) -> None:
        for _ in range(n):
            self._open()

    def slowloris(self, n: int) -> None:
        head = b"GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200
        for _ in range(n):
            self.trickling.append((self._open(), head))

    def stalled_bodies(self, n: int, length: int, sent: int = 10) -> None:
        for i in range(n):
            sock = self._open()
            sock.sendall(b"PUT /stalled%d.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: %d\r\n\r\n" % (i, length) + b"x" * sent)

    def non_readers(self, n: int, path: str) -> None:
        """Ask for ``path`` (larger than the socket buffers) and never read the answer:
        the worker sending it blocks until its write times out."""
        for _ in range(n):
            sock = self._open()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())

    def start(self) -> Attackers:
        self._thread.start()
        return self

    def _trickle(self) -> None:
        pos = 0
        while not self._stop.wait(1.0) and pos < 200:
            for sock, head in self.trickling:
                try:
                    sock.send(head[pos:pos + 1])
                except OSError:
                    pass
            pos += 1

    def closed_by_server(self) -> int:
        """How many trickling connections the server has closed."""
        n = 0
        for sock, _ in self.trickling:
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    n += 1
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                n += 1
        return n

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in self.socks:
            sock.close()


@pytest.mark.slow
def test_clients_that_never_read_their_answers_leave_other_addresses_answered(tmp_path):
    store = str(tmp_path / "store")
    with herofossil.open(store, create=True) as repo:
        repo.commit([Put("a.txt", A_TXT), Put("big.bin", bytes(range(256)) * (96 << 12))],
                    message="seed")  # 24 MiB: far more than a socket's buffers
    with ServeProcess(store) as srv:
        attackers = Attackers(Client(srv.url))
        try:
            attackers.non_readers(50, "/big.bin")  # all from 127.0.0.1: its lane fills
            time.sleep(1.5)
            other = Client(srv.url, source="127.0.0.2")
            for i in range(3):
                status, took = other.timed("GET", "/a.txt")
                assert status == 200 and took < 1.0, (status, took)
                status, took = other.timed("PUT", f"/legit{i}.txt", b"legit")
                assert status == 201 and took < 1.0, (status, took)
        finally:
            attackers.close()
        with herofossil.open(store) as repo:
            assert {f"legit{i}.txt" for i in range(3)} <= set(repo.files())
    verify(store)


@pytest.mark.slow
def test_idle_slowloris_and_stalled_body_connections_leave_get_and_put_answered(anon, store):
    before = state(store)
    attackers = Attackers(anon)
    try:
        attackers.idle(50)
        attackers.slowloris(50)
        attackers.stalled_bodies(50, 1000)  # small bodies: gathered, never a worker
        attackers.stalled_bodies(50, 10 << 20, sent=4096)  # streamed: at most 24 workers
        attackers.start()
        time.sleep(1.5)
        for i in range(3):
            status, took = anon.timed("GET", "/a.txt")
            assert status == 200 and took < 1.0, (status, took)
            status, took = anon.timed("PUT", f"/legit{i}.txt", b"legit")
            assert status == 201 and took < 1.0, (status, took)
            status, took = anon.timed("PROPFIND", "/", None, {"Depth": "1"})
            assert status == 207 and took < 1.0, (status, took)
        # a head not finished within the server's timeout (10 s) is closed
        deadline = time.monotonic() + 20
        while attackers.closed_by_server() < 50 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert attackers.closed_by_server() == 50
    finally:
        attackers.close()
    after = state(store)
    assert set(after[1]) - set(before[1]) == {f"legit{i}.txt" for i in range(3)}
    assert len(after[0]) == len(before[0]) + 3
    verify(store)


def test_a_lock_whose_body_arrives_slowly_holds_nothing_puts_wait_on(anon, store):
    body = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">'
            b"<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
            b"</D:lockinfo>")
    socks = []
    try:
        for length in (len(body), 200_000):  # gathered with its head, or streamed
            sock = socket.create_connection((anon.host, anon.port), timeout=30)
            socks.append(sock)
            sock.sendall(b"LOCK /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nTimeout: Second-60\r\n"
                         b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % length
                         + body[:20])
        time.sleep(1.0)
        for i in range(3):
            status, took = anon.timed("PUT", f"/during-lock{i}.txt", b"x")
            assert status == 201 and took < 1.0, (status, took)
            status, took = anon.timed("PUT", "/a.txt", b"changed %d" % i)
            assert status == 204 and took < 1.0, (status, took)
    finally:
        for sock in socks:
            sock.close()
    verify(store)


def test_permission_is_checked_before_any_body_is_read(server_with_users, store):
    before = state(store)
    bob = Client(server_with_users.url, "bob", "bob-pw")
    nobody = Client(server_with_users.url)
    cases = [
        (bob, "PUT /big.bin", 403),
        (bob, "LOCK /a.txt", 403),
        (bob, "PROPPATCH /a.txt", 403),
        (nobody, "PUT /big.bin", 401),
        (nobody, "LOCK /a.txt", 401),
    ]
    for client, line, want in cases:
        head = f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {100 << 20}\r\n"
        if client.auth:
            head += f"Authorization: {client.auth}\r\n"
        t0 = time.monotonic()
        # no body is sent: the answer comes from the head alone, and the connection closes
        status, headers, _ = raw(client, head.encode() + b"\r\n", shut=False)
        assert status == want, (line, status)
        assert headers.get("connection") == "close"
        assert time.monotonic() - t0 < 5
    assert state(store) == before
    verify(store)


# ---- PROPFIND depth


def test_propfind_depth_infinity_is_refused_with_finite_depth_error(anon, store):
    for path in ("/", "/.history/", "/.branches/", "/d/"):
        for headers in ({"Depth": "infinity"}, {"Depth": "Infinity"}, {}):
            status, hdrs, body = anon.call("PROPFIND", path, None, headers)
            assert status == 403, (path, headers, status)
            assert b"propfind-finite-depth" in body and b'xmlns:D="DAV:"' in body
            assert hdrs["content-type"].startswith("application/xml")
    assert anon.call("PROPFIND", "/", None, {"Depth": "1"})[0] == 207
    assert anon.call("PROPFIND", "/.history/", None, {"Depth": "1"})[0] == 207


@pytest.mark.slow
def test_200_concurrent_propfinds_leave_gets_answered_and_memory_bounded(store):
    with herofossil.open(store) as repo:
        repo.commit([Put(f"f{i:04d}.txt", b"%d" % i) for i in range(1000)], message="many")
        for n in range(20):
            repo.write("a.txt", b"v%d" % n)
    with ServeProcess(store) as srv:
        dav = Client(srv.url)
        assert dav.call("PROPFIND", "/", None, {"Depth": "1"})[0] == 207
        rss0, _ = rss_kib(srv.proc.pid)
        gets: list[float] = []
        paths = ["/", "/.history/", "/.branches/", "/.branches/trunk/"]

        def one(i: int) -> int:
            # each waits its turn behind the others: bounded by the queue, not by a clock
            return dav.call("PROPFIND", paths[i % len(paths)], None, {"Depth": "1"},
                            timeout=900)[0]

        with ThreadPoolExecutor(200) as pool:
            t0 = time.monotonic()
            futures = [pool.submit(one, i) for i in range(200)]
            time.sleep(0.5)
            while not all(f.done() for f in futures):
                status, took = dav.timed("GET", "/a.txt")
                assert status == 200
                gets.append(took)
            statuses = [f.result() for f in futures]
            batch = time.monotonic() - t0
        rss1, hwm = rss_kib(srv.proc.pid)
    assert statuses == [207] * 200
    # A GET queued behind the listings would wait most of the batch (0.3 s a listing here,
    # 30-70 s for the batch by the machine); answered beside them, it waits a fraction.
    assert len(gets) >= 3 and max(gets) < batch / 4, (batch, gets)
    # 200 listings of 1,000 entries are ~150 MiB of XML; at most THREADS are built at once
    assert hwm - rss0 < 150 * 1024, (rss0, rss1, hwm)


# ---- clear errors instead of 500


def test_malformed_authorization_headers_get_401(server_with_users, store):
    alice = Client(server_with_users.url, "alice", "alice-pw")
    b64 = base64.b64encode
    headers = [
        "Basic", "Basic ", "Basic !!!!", "Basic " + b64(b"no-colon").decode(),
        "Basic " + b64(b"\xff\xfe:pw").decode(), "Basic " + b64(b":pw").decode(),
        "Basic " + b64(b"alice:alice-pw").decode()[:-2], "Bearer abc", "Digest x=y",
        "basic", "Basic " + "A" * 10000, "Basic " + b64(b"al\x01ice:pw").decode(),
    ]
    for value in headers:
        status, hdrs, _ = alice.call("GET", "/a.txt", None, {"Authorization": value})
        assert status == 401, (value[:40], status)
        assert hdrs["www-authenticate"].startswith("Basic ")
    assert alice.call("GET", "/a.txt")[0] == 200


FRAMING = [
    ("negative length", b"Content-Length: -5\r\n", b"hello"),
    ("two lengths", b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    ("same length twice", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
    ("underscore", b"Content-Length: 0_5\r\n", b"hello"),
    ("plus sign", b"Content-Length: +5\r\n", b"hello"),
    ("not a number", b"Content-Length: five\r\n", b"hello"),
    ("length and chunked", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
     b"5\r\nhello\r\n0\r\n\r\n"),
    ("negative chunk", b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("0x chunk", b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("junk chunk", b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk too long", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello, world\r\n0\r\n\r\n"),
    ("truncated chunked", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n5\r\nwor"),
    ("no last chunk", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n"),
    ("truncated length", b"Content-Length: 100\r\n", b"hello"),
    ("truncated big length", b"Content-Length: 200000\r\n", b"hello" * 1000),
]


@pytest.mark.parametrize("what,headers,body", FRAMING, ids=[f[0] for f in FRAMING])
def test_bad_framing_gets_400_and_stores_nothing(anon, store, what, headers, body):
    before = state(store)
    for path in (b"/new.txt", b"/a.txt", b"/.branches/trunk/new.txt"):
        request = b"PUT " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"
        status, _, answer = raw(anon, request + body)
        assert status == 400, (what, path, status, answer[:200])
    assert state(store) == before
    assert anon.call("GET", "/new.txt")[0] == 404
    assert anon.call("GET", "/a.txt")[2] == A_TXT
    verify(store)


def test_range_unsatisfiable_is_416_and_a_backwards_range_is_ignored(anon):
    cases = [
        ("bytes=2-4", 206, A_TXT[2:5]),
        ("bytes=-3", 206, A_TXT[-3:]),
        ("bytes=100-200", 416, None),
        ("bytes=10-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=5-2", 200, A_TXT),
        ("bytes=5-2,7-8", 200, A_TXT),
        ("bytes=x-3", 200, A_TXT),
        ("lines=1-2", 200, A_TXT),
        ("bytes=", 200, A_TXT),
        ("bytes=\u00b2-3", 200, A_TXT),  # a digit to str.isdigit, not to HTTP
    ]
    for value, want, body in cases:
        status, _, data = anon.call("GET", "/a.txt", None, {"Range": value})
        assert status == want, (value, status)
        if body is not None:
            assert data == body, value


# ---- exposure


def test_anonymous_server_refuses_a_foreign_host_header(anon, store):
    port = anon.port
    for host, want in [(f"evil.example:{port}", 421), (f"127.0.0.1.nip.io:{port}", 421),
                       (f"LOCALHOST.:{port}", 421), (f"127.0.0.1:{port}", 200),
                       (f"localhost:{port}", 200), (f"[::1]:{port}", 200),
                       (f"LocalHost:{port}", 200)]:
        status, _, body = raw(anon, f"GET /a.txt HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status == want, (host, status)
        assert (body == A_TXT) == (want == 200)
    before = state(store)
    status, _, _ = raw(anon, f"PUT /a.txt HTTP/1.1\r\nHost: evil.example:{port}\r\n"
                       f"Content-Length: 3\r\n\r\nbad".encode())
    assert status == 421
    assert state(store) == before
    verify(store)


def test_host_is_not_checked_when_users_log_in(server_with_users):
    alice = Client(server_with_users.url, "alice", "alice-pw")
    port = alice.port
    head = f"GET /a.txt HTTP/1.1\r\nHost: files.example:{port}\r\nAuthorization: {alice.auth}\r\n"
    assert raw(alice, head.encode() + b"\r\n")[0] == 200


# ---- auth


def _seconds(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def test_every_failed_login_costs_one_scrypt():
    users = UserDB()
    users.add("alice", "right")
    users.add("carol", "right")
    scrypt = min(_seconds(hash_password, "x") for _ in range(3))
    assert users.verify("alice", "right")  # alice has logged in: her HMAC is cached
    cached = min(_seconds(users.verify, "alice", "right") for _ in range(3))
    seen = min(_seconds(users.verify, "alice", "wrong") for _ in range(3))
    unseen = min(_seconds(users.verify, "carol", "wrong") for _ in range(3))
    unknown = min(_seconds(users.verify, "mallory", "wrong") for _ in range(3))
    assert not users.verify("alice", "wrong") and not users.verify("mallory", "right")
    for took in (seen, unseen, unknown):
        assert took > 0.5 * scrypt, (took, scrypt)
    assert cached < 0.2 * scrypt, (cached, scrypt)
    assert users.verify("alice", "right") and users.verify("carol", "right")


def test_failed_logins_are_logged_and_an_address_backs_off(server_with_users):
    url = server_with_users.url
    for _ in range(5):
        assert Client(url, "mallory", "guess").call("GET", "/")[0] == 401
    status, headers, _ = Client(url, "alice", "alice-pw").call("GET", "/a.txt")
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60
    assert Client(url, "alice", "wrong").call("GET", "/")[0] == 429
    # another address is not held back
    assert Client(url, "alice", "alice-pw", source="127.0.0.2").call("GET", "/a.txt")[0] == 200
    lines = [line for line in stderr_of(server_with_users).splitlines() if "failed login" in line]
    assert len(lines) == 5
    assert all("127.0.0.1" in line and "'mallory'" in line and line[:4].isdigit()
               for line in lines)


def test_add_user_takes_the_password_from_stdin(store):
    proc = add_users(store, ["dora", "erin:ro"], ["dora pw", "erin-pw"])
    assert proc.returncode == 0, proc.stderr
    assert "dora: saved (rw)" in proc.stdout and "erin: saved (ro)" in proc.stdout
    assert "warning" not in proc.stderr
    with herofossil.open(store) as repo:
        stored = dict(repo.plumbing.meta_items("webdav-users"))
    assert b"dora pw" not in stored["dora"] and b"scrypt$" in stored["dora"]
    short = add_users(store, ["fred"], [])
    assert short.returncode == 2 and "no password on stdin" in short.stderr
    old = add_users(store, ["gina:pw:ro"], [])
    assert old.returncode == 0 and "ps" in old.stderr and "--add-user NAME" in old.stderr
    help_text = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "--add-user NAME[:ro|rw]" in help_text and "ps" in help_text
    with ServeProcess(store, "--user", "hank:hank-pw") as srv:
        assert Client(srv.url, "dora", "dora pw").call("PUT", "/by-dora.txt", b"d")[0] == 201
        assert Client(srv.url, "erin", "erin-pw").call("PUT", "/by-erin.txt", b"e")[0] == 403
        assert Client(srv.url, "gina", "pw").call("GET", "/a.txt")[0] == 200
        assert Client(srv.url, "hank", "hank-pw").call("GET", "/a.txt")[0] == 200
        assert "visible" in stderr_of(srv) or "ps" in stderr_of(srv)
    with herofossil.open(store) as repo:
        assert repo.read("by-dora.txt") == b"d" and repo.log(limit=1)[0].user == "dora"
    verify(store)


def test_read_only_server_refuses_writes_before_the_body(store):
    before = state(store)
    with ServeProcess(store, "--readonly") as srv:
        dav = Client(srv.url)
        for method in ("PUT", "DELETE", "MKCOL", "PROPPATCH", "LOCK", "MOVE", "COPY"):
            status, _, body = dav.call(method, "/a.txt", b"x",
                                       {"Destination": dav_url(srv, "/b.txt")})
            assert status == 403 and b"read-only" in body, (method, status)
        assert dav.call("GET", "/a.txt")[2] == A_TXT
    assert state(store) == before
    verify(store)


def dav_url(srv: ServeProcess, path: str) -> str:
    return srv.url.rstrip("/") + path
