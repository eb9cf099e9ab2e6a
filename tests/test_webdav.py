"""WebDAV drive over real HTTP: check-ins, ETags, history, noise, props, locks, auth, crashes."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from webdav_child import Client, ServeProcess  # tests/webdav_child.py

import herofossil


def propfind(client, path, depth="1", body=None):
    return client.call("PROPFIND", path, body, {"Depth": depth})


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "store")
    herofossil.open(path, create=True).close()
    return path


@pytest.fixture
def server(store):
    with ServeProcess(store) as srv:
        yield srv


@pytest.fixture
def dav(server):
    return Client(server.url)


def log(store, n=None):
    with herofossil.open(store) as repo:
        return repo.log(limit=n)


def test_put_is_one_checkin_named_after_method_and_path(dav, store):
    before = len(log(store)) or 1  # a new store's first write also makes its empty root
    status, headers, _ = dav.call("PUT", "/a.txt", b"hello")
    assert status == 201
    assert headers["etag"] == f'"{hashlib.sha3_256(b"hello").hexdigest()}"'
    entries = log(store)
    assert len(entries) == before + 1
    assert entries[0].comment == "WebDAV PUT /a.txt"
    assert entries[0].user == "anonymous"
    assert dav.call("GET", "/a.txt")[2] == b"hello"
    # identical content: no new check-in
    assert dav.call("PUT", "/a.txt", b"hello")[0] == 204
    assert len(log(store)) == before + 1


def test_if_match_with_stale_etag_gets_412_and_loses_nothing(dav, store):
    _, h1, _ = dav.call("PUT", "/doc.txt", b"v1")
    etag1 = h1["etag"]
    _, h2, _ = dav.call("PUT", "/doc.txt", b"v2", {"If-Match": etag1})
    assert dav.call("PUT", "/doc.txt", b"v3", {"If-Match": etag1})[0] == 412
    assert dav.call("GET", "/doc.txt")[2] == b"v2"
    assert dav.call("PUT", "/doc.txt", b"v3", {"If-Match": h2["etag"]})[0] == 204
    assert dav.call("PUT", "/doc.txt", b"v4", {"If-None-Match": "*"})[0] == 412
    assert dav.call("DELETE", "/doc.txt", None, {"If-Match": etag1})[0] == 412
    assert dav.call("GET", "/doc.txt")[2] == b"v3"


def test_if_match_on_missing_file_is_checked_by_the_store(dav, store):
    # wsgidav skips conditions for unmapped URLs: the store's expect= catches it.
    status = dav.call("PUT", "/new.txt", b"x", {"If-Match": '"' + "ab" * 32 + '"'})[0]
    assert status == 412
    assert dav.call("GET", "/new.txt")[0] == 404
    assert dav.call("PUT", "/new.txt", b"x", {"If-None-Match": "*"})[0] == 201


def test_history_shows_past_versions_and_refuses_writes(dav, store):
    dav.call("PUT", "/f.txt", b"old")
    old = log(store, 1)[0].id
    dav.call("PUT", "/f.txt", b"new")
    assert dav.call("GET", f"/.history/{old}/f.txt")[2] == b"old"
    assert dav.call("GET", f"/.history/{old[:10]}/f.txt")[2] == b"old"
    assert dav.call("GET", "/.history/trunk/f.txt")[2] == b"new"
    for method, body in (("PUT", b"x"), ("DELETE", None)):
        assert dav.call(method, f"/.history/{old}/f.txt", body)[0] == 403, method
    status, _, body = dav.call("PROPPATCH", f"/.history/{old}/f.txt", PROPPATCH)
    assert status == 403 or (status == 207 and b"403 Forbidden" in body)
    assert dav.call("PUT", f"/.history/{old}/other.txt", b"x")[0] == 403
    assert dav.call("MKCOL", f"/.history/{old}/d")[0] == 403
    status, _, body = propfind(dav, "/.history/")
    assert status == 207 and b"/.history/trunk/" in body
    assert old[:12].encode() in body  # the newest check-ins are listed by short id
    # COPY out of history restores the old version as one check-in
    dest = {"Destination": dav_url(dav, "/f.txt"), "Overwrite": "T"}
    assert dav.call("COPY", f"/.history/{old}/f.txt", None, dest)[0] == 204
    assert dav.call("GET", "/f.txt")[2] == b"old"
    assert log(store, 1)[0].comment == f"WebDAV COPY /.history/{old}/f.txt -> /f.txt"


def dav_url(client, path):
    return f"http://{client.host}:{client.port}{path}"


def test_branches_are_read_write(dav, store):
    with herofossil.open(store) as repo:
        repo.branch_new("dev")
    assert dav.call("PUT", "/.branches/dev/x.txt", b"on dev")[0] == 201
    with herofossil.open(store) as repo:
        assert repo.read("x.txt", at="dev") == b"on dev"
        assert not repo.exists("x.txt")
        assert repo.log(at="dev", limit=1)[0].comment == "WebDAV PUT /.branches/dev/x.txt"
    assert b"/.branches/dev/" in propfind(dav, "/.branches/")[2]


def test_folder_move_copy_delete_are_one_checkin_each(dav, store):
    dav.call("MKCOL", "/d")
    dav.call("MKCOL", "/d/sub")
    dav.call("PUT", "/d/a.txt", b"a")
    dav.call("PUT", "/d/sub/b.txt", b"b")
    n = len(log(store))
    dest = {"Destination": dav_url(dav, "/e")}
    assert dav.call("MOVE", "/d", None, dest)[0] == 201
    assert len(log(store)) == n + 1
    assert log(store, 1)[0].comment == "WebDAV MOVE /d -> /e"
    assert dav.call("GET", "/e/sub/b.txt")[2] == b"b"
    assert dav.call("COPY", "/e", None, {"Destination": dav_url(dav, "/f")})[0] == 201
    assert dav.call("GET", "/f/a.txt")[2] == b"a"
    assert dav.call("DELETE", "/e")[0] == 204
    assert len(log(store)) == n + 3
    assert dav.call("GET", "/e/a.txt")[0] == 404


def test_mkcol_empty_folder_survives_and_is_in_history(dav, store):
    assert dav.call("MKCOL", "/empty")[0] == 201
    cid = log(store, 1)[0].id
    assert log(store, 1)[0].comment == "WebDAV MKCOL /empty/"
    dav.call("PUT", "/later.txt", b"x")
    with herofossil.open(store) as repo:
        assert [e.name for e in repo.ls("")] == ["empty", "later.txt"]
        assert repo.ls("empty") == []
    assert propfind(dav, f"/.history/{cid}/empty/", "0")[0] == 207
    # deleting the last file of a folder keeps the folder (WebDAV semantics)
    dav.call("PUT", "/empty/one.txt", b"1")
    assert dav.call("DELETE", "/empty/one.txt")[0] == 204
    assert propfind(dav, "/empty/", "0")[0] == 207


def test_noise_files_are_kept_out_of_history(store):
    with ServeProcess(store, "--noise", "*.tmp") as srv:
        dav = Client(srv.url)
        dav.call("MKCOL", "/docs")
        n = len(log(store))
        for path in (
            "/.DS_Store",
            "/docs/._x",
            "/docs/Thumbs.db",
            "/docs/.x.swp",
            "/docs/~$report.docx",
            "/docs/.~lock.report.odt%23",
            "/docs/scratch.tmp",
        ):
            assert dav.call("PUT", path, b"junk " + path.encode())[0] == 201, path
        assert len(log(store)) == n
        assert dav.call("GET", "/docs/Thumbs.db")[2] == b"junk /docs/Thumbs.db"
        listing = propfind(dav, "/docs/")[2]
        assert b"/docs/Thumbs.db" in listing and b"/docs/scratch.tmp" in listing
        with herofossil.open(store) as repo:
            assert repo.ls("docs") == []
        assert dav.call("DELETE", "/docs/Thumbs.db")[0] == 204
        assert dav.call("GET", "/docs/Thumbs.db")[0] == 404
        # an editor's save-by-rename: the temp file is noise, the result is a check-in
        dav.call("PUT", "/docs/.x.swp", b"final text")
        dest = {"Destination": dav_url(dav, "/docs/x.txt")}
        assert dav.call("MOVE", "/docs/.x.swp", None, dest)[0] == 201
        assert len(log(store)) == n + 1
        assert log(store, 1)[0].comment == "WebDAV MOVE /docs/.x.swp -> /docs/x.txt"
        assert dav.call("GET", "/docs/.x.swp")[0] == 404


PROPPATCH = b"""<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/ns">
  <D:set><D:prop><Z:color>blue</Z:color></D:prop></D:set>
</D:propertyupdate>"""

LOCK = b"""<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>"""


def test_dead_properties_and_locks_survive_restart(store):
    with ServeProcess(store) as srv:
        dav = Client(srv.url)
        dav.call("PUT", "/p.txt", b"props")
        assert dav.call("PROPPATCH", "/p.txt", PROPPATCH)[0] == 207
        status, headers, _ = dav.call("LOCK", "/p.txt", LOCK, {"Timeout": "Second-3600"})
        assert status == 200
        token = headers["lock-token"]
    with herofossil.open(store) as repo:
        assert repo.read("p.txt") == b"props"  # properties are not in the tree
        assert not any(".herofossil" in e.path for e in repo.walk(""))
    with ServeProcess(store) as srv:
        dav = Client(srv.url)
        _, _, body = propfind(dav, "/p.txt", "0")
        assert b"blue" in body
        assert token.strip("<>").encode() in body
        assert dav.call("PUT", "/p.txt", b"no token")[0] == 423
        assert dav.call("PUT", "/p.txt", b"token", {"If": f"({token})"})[0] == 204
        assert dav.call("UNLOCK", "/p.txt", None, {"Lock-Token": token})[0] == 204
        assert dav.call("PUT", "/p.txt", b"free")[0] == 204


def test_users_basic_auth_read_only_and_persistent(store):
    cli = [sys.executable, "-m", "herofossil", "-R", store, "serve"]
    out = subprocess.run(
        cli + ["--add-user", "carol:s3cret:pw:ro"], capture_output=True, text=True, check=True
    ).stdout
    assert "carol" in out
    with herofossil.open(store) as repo:
        stored = dict(repo.plumbing.meta_items("webdav-users"))["carol"]
    assert b"s3cret" not in stored and b"scrypt$" in stored
    with ServeProcess(store, "--user", "alice:pa:ss", "--user", "bob:pw:ro") as srv:
        assert Client(srv.url).call("GET", "/")[0] == 401
        assert Client(srv.url, "alice", "wrong").call("GET", "/")[0] == 401
        alice = Client(srv.url, "alice", "pa:ss")
        assert alice.call("PUT", "/a.txt", b"by alice")[0] == 201
        assert log(store, 1)[0].user == "alice"
        bob = Client(srv.url, "bob", "pw")
        assert bob.call("GET", "/a.txt")[2] == b"by alice"
        assert bob.call("PUT", "/b.txt", b"x")[0] == 403
        assert bob.call("DELETE", "/a.txt")[0] == 403
        carol = Client(srv.url, "carol", "s3cret:pw")
        assert carol.call("GET", "/a.txt")[0] == 200
        assert carol.call("PUT", "/c.txt", b"x")[0] == 403


def test_refuses_anonymous_access_off_loopback(store):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "herofossil",
            "-R",
            store,
            "serve",
            "--host",
            "0.0.0.0",
            "--webdav-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "refusing anonymous access" in proc.stderr


def test_readonly_server_refuses_writes(store):
    with ServeProcess(store, "--readonly") as srv:
        dav = Client(srv.url)
        assert dav.call("PUT", "/x.txt", b"x")[0] in (403, 405)
        assert dav.call("MKCOL", "/d")[0] in (403, 405)
        assert propfind(dav, "/")[0] == 207


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_cleanly_on_signal(store, sig):
    srv = ServeProcess(store).start()
    assert Client(srv.url).call("GET", "/")[0] == 200
    assert srv.stop(sig) == 0


def test_sigkill_during_big_put_leaves_store_consistent(store):
    srv = ServeProcess(store).start()
    try:
        parts = urlsplit(srv.url)
        total = 64 << 20
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(b"PUT /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        chunk = os.urandom(1 << 20)
        for _ in range(40):
            sock.sendall(chunk)
        srv.proc.kill()
        srv.proc.wait(10)
        sock.close()
    finally:
        srv.stop()
    with herofossil.open(store) as repo:
        assert repo.verify().ok
        assert not repo.exists("big.bin")
        assert all("big.bin" not in c.comment for c in repo.log())


@pytest.mark.slow
def test_200mb_file_round_trips(dav, store, tmp_path):
    block = os.urandom(1 << 20)
    size = 200 << 20
    digest = hashlib.sha3_256()
    conn = http.client.HTTPConnection(dav.host, dav.port, timeout=600)
    conn.putrequest("PUT", "/big.bin")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for i in range(200):
        piece = block[i:] + block[:i]
        digest.update(piece)
        conn.send(piece)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201
    assert resp.getheader("ETag") == f'"{digest.hexdigest()}"'
    conn.request("GET", "/big.bin")
    resp = conn.getresponse()
    got, n = hashlib.sha3_256(), 0
    while chunk := resp.read(1 << 20):
        got.update(chunk)
        n += len(chunk)
    conn.close()
    assert n == size and got.hexdigest() == digest.hexdigest()


def test_propfind_lists_root_with_history_folders(dav):
    dav.call("PUT", "/r.txt", b"r")
    status, _, body = propfind(dav, "/")
    assert status == 207
    hrefs = set(re.findall(rb"<(?:\w+:)?href>([^<]*)</", body))
    assert {b"/", b"/r.txt", b"/.history/", b"/.branches/"} <= hrefs


def test_server_start_is_fast(store):
    t0 = time.monotonic()
    with ServeProcess(store) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
    assert time.monotonic() - t0 < 20
