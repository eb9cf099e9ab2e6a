"""The WebDAV server's own I/O shortcuts: buffered reads answered from the buffer, a small
answer's head and body in one send, no resource lookup for requests that need none.

Each is checked against what it replaces: the reader against cheroot's pure-Python
reader on the same bytes over real sockets, the writer and the lookups on a real server
on loopback (or the real WSGI application) serving a real store.
"""

from __future__ import annotations

import _pyio
import http.client
import io
import random
import socket
import sys
import threading

import pytest
from cheroot import makefile

import herofossil
from herofossil.webdav import server as dav_server
from herofossil.webdav.fs import RepoFS


class _PlainReader(makefile.StreamReader):
    """cheroot's reader over the same deadline-aware socket, without the fast paths."""

    def __init__(self, sock, mode="rb", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
        _pyio.BufferedReader.__init__(self, dav_server._SocketIO(sock, mode), bufsize)
        self.bytes_read = 0


def _replay(reader_cls, data: bytes, calls: list, bufsize: int):
    """What ``calls`` (('line', size) or ('read', size)) return from a reader of
    ``reader_cls`` over a socket that holds ``data`` (sent whole first: where bytes are
    still arriving, cheroot's own ``readline(size)`` may return more than ``size``, as
    many as the arrivals make it)."""
    a, b = socket.socketpair()
    try:
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
        reader = reader_cls(a, "rb", bufsize)
        out = [reader.readline(size) if kind == "line" else reader.read(size)
               for kind, size in calls]
        return out, reader.bytes_read
    finally:
        a.close()
        b.close()


def test_reader_fast_paths_return_what_cheroots_reader_returns_on_the_same_bytes():
    rnd = random.Random(20261202)
    for _ in range(150):
        lines = [bytes(rnd.choice(b"abc:\r ") for _ in range(rnd.randrange(0, 90))) + b"\n"
                 for _ in range(rnd.randrange(1, 12))]
        data = b"".join(lines) + bytes(rnd.randrange(256) for _ in range(rnd.randrange(600)))
        calls = [("line", rnd.choice([-1, None, 1, 5, 40, 65536])) if rnd.random() < 0.6
                 else ("read", rnd.choice([0, 1, 7, 100, 700])) for _ in range(20)]
        bufsize = rnd.choice([16, 64, 8192])  # lines across the buffer's end, and inside
        fast = _replay(dav_server._Reader, data, calls, bufsize)
        plain = _replay(_PlainReader, data, calls, bufsize)
        assert fast == plain, (data, calls, bufsize)


@pytest.fixture
def served(tmp_path):
    """A real server on loopback over a store with a small and a large file."""
    repo = herofossil.open(str(tmp_path / "store"), create=True)
    repo.write("d/small.txt", b"s" * 512)
    repo.write("d/large.bin", random.Random(1).randbytes(300_000))
    srv = dav_server.make_server(dav_server.make_app(repo), port=0, threads=8)
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    try:
        yield srv.bind_addr[:2]
    finally:
        srv.stop()
        thread.join(10)
        repo.close()


def _sends(monkeypatch) -> list[bytes]:
    """Every buffer the server's socket writers send, in order."""
    sent: list[bytes] = []
    plain = makefile.BufferedWriter._flush_unlocked

    def counting(self):
        if isinstance(self, dav_server._Writer) and self._write_buf:
            sent.append(bytes(self._write_buf))
        return plain(self)

    monkeypatch.setattr(makefile.BufferedWriter, "_flush_unlocked", counting)
    return sent


def _exchange(addr, requests: list[bytes]) -> list[tuple]:
    """Send ``requests`` on one keep-alive connection, reading each answer whole."""
    out = []
    with socket.create_connection(addr, timeout=30) as sock:
        for req in requests:
            sock.sendall(req)
            resp = http.client.HTTPResponse(sock, method=req.split(b" ", 1)[0].decode())
            resp.begin()
            out.append((resp.status, resp.getheader("Content-Length"), resp.read()))
            resp.close()  # the socket stays open: HTTPResponse only drops its file
    return out


def _get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def test_a_small_answer_goes_out_in_one_send_head_and_body(served, monkeypatch):
    sent = _sends(monkeypatch)
    (status, length, body), = _exchange(served, [_get("/d/small.txt")])
    assert (status, length, body) == (200, "512", b"s" * 512)
    assert len(sent) == 1
    assert sent[0].startswith(b"HTTP/1.1 200 ") and sent[0].endswith(b"\r\n\r\n" + b"s" * 512)


def test_held_heads_never_leak_into_the_next_answer_of_a_connection(served, monkeypatch):
    sent = _sends(monkeypatch)
    answers = _exchange(served, [_get("/d/small.txt", "HEAD"), _get("/d/missing.txt"),
                                 _get("/d/large.bin"), _get("/d/small.txt")])
    assert [a[0] for a in answers] == [200, 404, 200, 200]
    assert answers[0][2] == b"" and answers[0][1] == "512"  # a HEAD: its head alone
    assert len(answers[2][2]) == 300_000
    assert answers[3][2] == b"s" * 512
    heads = [s for s in sent if s.startswith(b"HTTP/1.1 ")]
    assert len(heads) == 4  # each answer's head begins a send of its own
    assert sum(s.count(b"HTTP/1.1 ") for s in sent) == 4
    assert b"".join(sent).count(b"s" * 512) == 1


def _environ(method: str, path: str, body: bytes = b"") -> dict:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8023",
            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8023",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def test_requests_look_their_resource_up_once_and_a_fast_put_not_at_all(tmp_path, monkeypatch):
    repo = herofossil.open(str(tmp_path / "store"), create=True)
    repo.write("d/a.txt", b"one")
    app = dav_server.make_app(repo)
    app.listening_on("127.0.0.1", 8023)
    looked_up: list[str] = []
    plain = RepoFS.resource

    def counting(self, url, environ):
        looked_up.append(url)
        return plain(self, url, environ)

    monkeypatch.setattr(RepoFS, "resource", counting)

    def call(method, path, body=b""):
        looked_up.clear()
        answer = []
        out = b"".join(app(_environ(method, path, body), lambda s, h, e=None: answer.append(s)))
        return answer[0][:3], out, list(looked_up)

    assert call("PUT", "/d/a.txt", b"two") == ("204", b"", [])
    assert call("GET", "/d/a.txt") == ("200", b"two", ["/d/a.txt"])
    assert call("HEAD", "/d/a.txt")[::2] == ("200", ["/d/a.txt"])
    status, page, _ = call("GET", "/d/")
    assert status == "200" and b"a.txt" in page  # the folder's page, as before
    assert call("GET", "/d/missing.txt")[::2] == ("404", ["/d/missing.txt"])
    repo.close()


class _Stream:
    """A socket to ``http.client.HTTPResponse`` whose file is one shared reader, which an
    answer read to its end does not close."""

    def __init__(self, rfile):
        self.rfile = rfile

    def makefile(self, mode):
        return self

    def __getattr__(self, name):
        return getattr(self.rfile, name)

    def close(self) -> None:
        pass


def test_pipelined_requests_in_one_packet_get_their_answers_in_order(served):
    with socket.create_connection(served, timeout=30) as sock:
        sock.sendall(_get("/d/small.txt") + _get("/d/missing.txt") + _get("/d/small.txt", "HEAD")
                     + _get("/d/large.bin"))
        stream = _Stream(sock.makefile("rb"))  # one reader for all answers: none lost
        answers = []
        for method in ("GET", "GET", "HEAD", "GET"):
            resp = http.client.HTTPResponse(stream, method=method)
            resp.begin()
            answers.append((resp.status, resp.read()))
    assert [a[0] for a in answers] == [200, 404, 200, 200]
    assert answers[0][1] == b"s" * 512 and answers[2][1] == b""
    assert answers[3][1] == random.Random(1).randbytes(300_000)
