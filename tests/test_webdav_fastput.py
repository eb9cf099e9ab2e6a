"""The common PUT, answered without wsgidav's generic handler: same answers, same locks."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from test_webdav import Client, log
from webdav_child import ServeProcess  # tests/webdav_child.py

import herofossil
from herofossil.webdav.fastput import LockGate

LOCK_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">'
    b"<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
    b"<D:owner>tester</D:owner></D:lockinfo>"
)


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        repo.mkdir("d")
    return path


@pytest.fixture
def dav(store):
    with ServeProcess(store) as srv:
        yield Client(srv.url)


def _lock(dav, path, depth="infinity") -> str:
    headers = {"Depth": depth, "Timeout": "Second-600"}
    status, headers, _ = dav.call("LOCK", path, LOCK_BODY, headers)
    assert status == 200
    return re.search(r"<([^>]+)>", headers["lock-token"]).group(1)


def test_put_creates_with_201_and_overwrites_with_204_one_checkin_each(dav, store):
    before = len(log(store))
    status, headers, _ = dav.call("PUT", "/d/a.txt", b"one")
    assert status == 201
    assert headers["etag"] == f'"{hashlib.sha3_256(b"one").hexdigest()}"'
    assert "date" in headers
    status, headers, _ = dav.call("PUT", "/d/a.txt", b"two")
    assert status == 204
    assert headers["etag"] == f'"{hashlib.sha3_256(b"two").hexdigest()}"'
    assert [c.comment for c in log(store, 2)] == ["WebDAV PUT /d/a.txt"] * 2
    assert len(log(store)) == before + 2
    assert dav.call("GET", "/d/a.txt")[2] == b"two"


def test_put_into_a_locked_folder_without_its_token_gets_423_and_writes_nothing(dav, store):
    token = _lock(dav, "/d/")
    before = len(log(store))
    assert dav.call("PUT", "/d/new.txt", b"x")[0] == 423
    assert dav.call("PUT", "/free.txt", b"elsewhere")[0] == 201  # other paths stay writable
    assert len(log(store)) == before + 1
    status, _, _ = dav.call("PUT", "/d/new.txt", b"x", {"If": f"(<{token}>)"})
    assert status == 201


def test_put_over_a_locked_file_without_its_token_gets_423_and_keeps_it(dav, store):
    assert dav.call("PUT", "/d/kept.txt", b"original")[0] == 201
    token = _lock(dav, "/d/kept.txt", depth="0")
    assert dav.call("PUT", "/d/kept.txt", b"overwritten")[0] == 423
    assert dav.call("GET", "/d/kept.txt")[2] == b"original"
    assert dav.call("PUT", "/d/kept.txt", b"mine", {"If": f"(<{token}>)"})[0] == 204
    assert dav.call("UNLOCK", "/d/kept.txt", None, {"Lock-Token": f"<{token}>"})[0] == 204
    assert dav.call("PUT", "/d/kept.txt", b"after unlock")[0] == 204


def test_put_into_a_missing_folder_or_onto_a_folder_is_refused_and_writes_nothing(dav, store):
    before = len(log(store))
    assert dav.call("PUT", "/missing/a.txt", b"x")[0] == 409
    assert dav.call("PUT", "/d", b"x")[0] == 405
    assert dav.call("PUT", "/d/", b"x")[0] in (405, 409)
    assert len(log(store)) == before


def test_a_body_shorter_than_its_length_gets_400_and_writes_nothing(dav, store):
    before = len(log(store))
    with socket.create_connection((dav.host, dav.port), timeout=30) as sock:
        sock.sendall(b"PUT /d/short.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Connection: close\r\n\r\n" + b"only ten b")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == b"400"
    assert len(log(store)) == before
    assert dav.call("GET", "/d/short.txt")[0] == 404


def test_a_conditional_put_takes_the_generic_path_and_keeps_its_412(dav, store):
    assert dav.call("PUT", "/d/c.txt", b"v1")[0] == 201
    stale = f'"{hashlib.sha3_256(b"v0").hexdigest()}"'
    assert dav.call("PUT", "/d/c.txt", b"v2", {"If-Match": stale})[0] == 412
    assert dav.call("GET", "/d/c.txt")[2] == b"v1"


def test_lock_gate_makes_a_lock_wait_for_puts_in_flight_and_later_puts_wait_for_it():
    gate, order = LockGate(), []
    with gate.put():
        locker = threading.Thread(target=_hold, args=(gate.lock(), order, "lock", 0.05))
        locker.start()
        time.sleep(0.05)  # the LOCK now waits for this PUT
        putter = threading.Thread(target=_hold, args=(gate.put(), order, "later put"))
        putter.start()
        time.sleep(0.05)  # and the later PUT waits for the LOCK
        order.append("put done")
    locker.join(5)
    putter.join(5)
    assert order == ["put done", "lock", "later put"]


def _hold(ctx, order, name, seconds=0.0):
    with ctx:
        order.append(name)
        time.sleep(seconds)


def test_sigkill_during_a_stream_of_puts_keeps_every_acknowledged_one(store):
    srv = ServeProcess(store).start()
    acked: dict[str, bytes] = {}
    sent: dict[str, bytes] = {}

    def client(k: int) -> None:
        parts = urlsplit(srv.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            for i in range(100_000):
                path, body = f"/d/t{k}-{i}.txt", b"client %d put %d\n" % (k, i) * 20
                sent[path] = body
                conn.request("PUT", path, body=body)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 201:
                    acked[path] = body
        except (OSError, http.client.HTTPException):
            return  # the server is gone

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        srv.proc.kill()
        srv.proc.wait(10)
        for t in threads:
            t.join(30)
    finally:
        srv.stop()
    assert len(acked) > 20, len(acked)
    with herofossil.open(store) as repo:
        assert repo.verify().ok
        for path, body in sent.items():  # acknowledged: there; the others: whole or absent
            if path in acked or repo.exists(path[1:]):
                assert repo.read(path[1:]) == body
