"""The WebDAV drive attacked over real HTTP: what is writable, lock keys, lost updates,
XML and property limits, names; after each attack the store is as it must be and verifies.

Servers are real ``herofossil serve`` processes on loopback: one anonymous (loopback
only), one with a read-write user (alice) and a read-only user (bob).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from webdav_child import Client, ServeProcess  # tests/webdav_child.py

import herofossil
from herofossil import errors
from herofossil.store.changes import Put
from herofossil.store.users import store_user

PROPPATCH = """<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">
  <D:set><D:prop><Z:{name}>{value}</Z:{name}></D:prop></D:set>
</D:propertyupdate>"""

LOCK = b"""<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype><D:owner>attacker</D:owner></D:lockinfo>"""


def proppatch(name="color", value="blue") -> bytes:
    return PROPPATCH.format(name=name, value=value).encode()


def state(store: str) -> dict:
    """What a refused attack must leave as it was: branches, tags, and every tip's files."""
    with herofossil.open(store) as repo:
        branches = repo.branches()
        return {
            "branches": branches,
            "tags": repo.tags(),
            "files": {b: repo.files(at=b) for b in branches},
            "v1": repo.files(at="v1"),
        }


def verify(store: str) -> None:
    """``herofossil -R STORE verify`` passes (the server still has the store open)."""
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", store, "verify"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def listing_is_xml(dav: Client, path: str = "/") -> list[str]:
    """PROPFIND Depth 1 of ``path`` answers 207 with well-formed XML; its hrefs."""
    status, _, body = dav.call("PROPFIND", path, None, {"Depth": "1"})
    assert status == 207, body[:300]
    root = ET.fromstring(body)
    return [h.text for h in root.iter("{DAV:}href")]


@pytest.fixture
def store(tmp_path):
    """A store with files, a folder, branch dev and tag v1."""
    path = str(tmp_path / "store")
    with herofossil.open(path, create=True) as repo:
        repo.commit([Put("a.txt", b"a"), Put("d/b.txt", b"b")], message="seed")
        repo.tag_add("v1")
        repo.branch_new("dev")
        repo.write("dev.txt", b"on dev", branch="dev")
    return path


@pytest.fixture
def anon(store):
    with ServeProcess(store) as srv:
        yield Client(srv.url)


@pytest.fixture
def users(store):
    """(alice: read-write, bob: read-only, nobody: no credentials) on one server."""
    with herofossil.open(store) as repo:
        store_user(repo, "alice", "alice-pw", True)
        store_user(repo, "bob", "bob-pw", False)
    with ServeProcess(store) as srv:
        yield Client(srv.url, "alice", "alice-pw"), Client(srv.url, "bob", "bob-pw"), \
            Client(srv.url)


# ---- what is writable

VERSION_NAMES = ("v1", "2099-01-01", "trunk@2099-01-01", "2026-01-01T00:00")


@pytest.mark.parametrize("name", VERSION_NAMES)
def test_version_names_under_branches_are_read_only_and_create_no_branch(anon, store, name):
    before = state(store)
    dest = {"Destination": anon.url(f"/.branches/{name}/c.txt")}
    if name != "2026-01-01T00:00":  # before the store's first check-in: no such version
        assert anon.call("GET", f"/.branches/{name}/a.txt")[0] == 200
    attacks = [
        ("PUT", f"/.branches/{name}/x.txt", b"x", {}),
        ("PUT", f"/.branches/{name}/a.txt", b"x", {}),
        ("PUT", f"/.branches/{name}/a.txt", b"x", {"If-Match": "*"}),
        ("MKCOL", f"/.branches/{name}/newdir", None, {}),
        ("DELETE", f"/.branches/{name}/a.txt", None, {}),
        ("DELETE", f"/.branches/{name}/d", None, {}),
        ("PROPPATCH", f"/.branches/{name}/a.txt", proppatch(), {}),
        ("LOCK", f"/.branches/{name}/a.txt", LOCK, {}),
        ("COPY", "/a.txt", None, dest),
        ("MOVE", "/a.txt", None, dest),
    ]
    for method, path, body, headers in attacks:
        status = anon.call(method, path, body, headers)[0]
        allowed = (403, 404, 409) if name == "2026-01-01T00:00" else (403,)
        assert status in allowed, (method, path, status)
    assert state(store) == before
    verify(store)


def test_a_name_that_is_no_version_is_not_a_branch_to_write(anon, store):
    before = state(store)
    for method, path, body in (("PUT", "/.branches/nosuch/x.txt", b"x"),
                               ("MKCOL", "/.branches/nosuch/d", None),
                               ("PUT", "/.branches/x.txt", b"x")):
        assert anon.call(method, path, body)[0] in (403, 409), (method, path)
    assert state(store) == before


def test_mkcol_under_branches_starts_a_branch_at_the_default_tip(anon, store):
    with herofossil.open(store) as repo:
        trunk_tip = repo.branches()["trunk"]
    assert anon.call("MKCOL", "/.branches/feature/")[0] == 201
    with herofossil.open(store) as repo:
        assert repo.checkin("feature").parents == [trunk_tip]
        assert repo.files(at="feature") == repo.files(at="trunk")
    assert anon.call("PUT", "/.branches/feature/f.txt", b"f")[0] == 201
    assert anon.call("MKCOL", "/.branches/feature/")[0] == 405
    assert anon.call("MKCOL", "/.branches/v1/")[0] == 405  # a tag is there
    assert anon.call("MKCOL", "/.history/other/")[0] == 403
    for bad in ("a%01b", "a%20b", "abcdef", "-x", "n" * 101, "2001-01-01", "2001-02-30",
                "trunk@2001-01-01", "dev@x"):
        assert anon.call("MKCOL", f"/.branches/{bad}/")[0] == 403, bad
    with herofossil.open(store) as repo:
        assert repo.read("f.txt", at="feature") == b"f"
        assert not repo.exists("f.txt")
        assert "other" not in repo.branches()
    assert "/.branches/feature/" in listing_is_xml(anon, "/.branches/")
    verify(store)


UNDELETABLE = ("/.branches", "/.branches/", "/.history", "/.history/", "/.branches/trunk/",
               "/.branches/dev/", "/", "/.history/trunk/", "/.history/v1/")


@pytest.mark.parametrize("url", UNDELETABLE)
def test_listings_and_tree_roots_cannot_be_deleted_or_moved(anon, store, url):
    before = state(store)
    assert anon.call("DELETE", url)[0] == 403
    assert anon.call("MOVE", url, None, {"Destination": anon.url("/moved/")})[0] == 403
    assert state(store) == before
    verify(store)


def test_root_cannot_be_copied_or_moved_and_nothing_onto_it(anon, store):
    before = state(store)
    cases = [
        ("COPY", "/", "/copy/"),
        ("COPY", "/.branches/trunk/", "/copy/"),
        ("COPY", "/.branches/dev/", "/copy/"),
        ("COPY", "/a.txt", "/"),
        ("MOVE", "/a.txt", "/"),
        ("COPY", "/d/", "/.branches/dev/"),
        ("COPY", "/.branches/trunk/d/", "/d/sub/"),  # into itself, through the other URL
    ]
    for method, src, dst in cases:
        headers = {"Destination": anon.url(dst), "Overwrite": "T"}
        assert anon.call(method, src, None, headers)[0] == 403, (method, src, dst)
    assert state(store) == before
    verify(store)


def test_a_past_version_root_copies_into_a_folder(anon, store):
    dest = {"Destination": anon.url("/restored/")}
    assert anon.call("COPY", "/.history/v1/", None, dest)[0] == 201
    with herofossil.open(store) as repo:
        assert repo.read("restored/d/b.txt") == b"b" and repo.read("restored/a.txt") == b"a"
    verify(store)


@pytest.mark.parametrize("ref", ["2026-13-45", "trunk@2026-02-30", "0000-00-00",
                                 "2026-01-01 99:99"])
def test_bad_date_in_history_is_404(anon, ref):
    assert anon.call("GET", f"/.history/{quote(ref)}/")[0] == 404
    assert anon.call("PROPFIND", f"/.history/{quote(ref)}/", None, {"Depth": "0"})[0] == 404


# ---- one tree, one key

def test_a_lock_through_one_url_binds_the_other(anon, store):
    before = state(store)
    for locked, other in (("/a.txt", "/.branches/trunk/a.txt"),
                          ("/.branches/trunk/d/b.txt", "/d/b.txt")):
        status, headers, _ = anon.call("LOCK", locked, LOCK, {"Timeout": "Second-600"})
        assert status == 200
        token = headers["lock-token"]
        elsewhere = "/.branches/trunk/c.txt" if other.startswith("/.b") else "/c.txt"
        attacks = [
            ("PUT", other, b"fast path", {}),
            ("PUT", other, b"generic path", {"If-None-Match": "W/\"x\""}),
            ("DELETE", other, None, {}),
            ("MOVE", other, None, {"Destination": anon.url(elsewhere)}),
            ("COPY", "/.history/v1/a.txt", None,
             {"Destination": anon.url(other), "Overwrite": "T"}),
            ("PROPPATCH", other, proppatch(), {}),
        ]
        for method, path, body, hdrs in attacks:
            status, _, data = anon.call(method, path, body, hdrs)
            assert status == 423 or (status == 207 and b"423" in data), (method, path, status)
        assert state(store) == before
        assert anon.call("PUT", other, b"with token", {"If": f"({token})"})[0] == 204
        assert anon.call("UNLOCK", other, None, {"Lock-Token": token})[0] == 204
        assert anon.call("PUT", locked, b"free")[0] == 204
        before = state(store)
    # a folder locked through one URL: a new file in it through the other
    status, headers, _ = anon.call("LOCK", "/.branches/trunk/d/", LOCK, {"Depth": "infinity"})
    assert status == 200
    assert anon.call("PUT", "/d/new.txt", b"n")[0] == 423
    assert anon.call("MKCOL", "/d/sub")[0] == 423
    assert anon.call("UNLOCK", "/d/", None, {"Lock-Token": headers["lock-token"]})[0] == 204
    verify(store)


def test_an_alias_of_a_branch_writes_that_branch_and_shares_its_keys(anon, store):
    with herofossil.open(store) as repo:
        repo.set_branch_alias("main", "trunk")
        before = set(repo.branches())
    assert anon.call("PUT", "/.branches/main/via-alias.txt", b"x")[0] == 201
    status, headers, _ = anon.call("LOCK", "/.branches/main/a.txt", LOCK)
    assert status == 200
    assert anon.call("PUT", "/a.txt", b"bypass?")[0] == 423
    assert anon.call("UNLOCK", "/a.txt", None, {"Lock-Token": headers["lock-token"]})[0] == 204
    with herofossil.open(store) as repo:
        assert repo.read("via-alias.txt") == b"x" and set(repo.branches()) == before
        assert repo.read("a.txt") == b"a"


def test_dead_properties_are_one_per_tree_and_path(anon):
    assert anon.call("PROPPATCH", "/a.txt", proppatch("hue", "teal"))[0] == 207
    body = anon.call("PROPFIND", "/.branches/trunk/a.txt", None, {"Depth": "0"})[2]
    assert b"teal" in body
    body = anon.call("PROPFIND", "/.branches/dev/a.txt", None, {"Depth": "0"})[2]
    assert b"teal" not in body  # another branch is another tree


# ---- no lost updates: 8 clients race, exactly one wins, every round

ROUNDS = 3
CLIENTS = 8


def race(dav: Client, requests) -> list[int]:
    """Send ``requests`` (one per client) at once; their statuses."""
    barrier = threading.Barrier(len(requests))
    out = [0] * len(requests)

    def run(i, method, path, body, headers):
        barrier.wait()
        out[i] = dav.call(method, path, body, headers)[0]

    threads = [threading.Thread(target=run, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def _setup_race(dav: Client, kind: str, r: int) -> list:
    if kind == "if-match-list":
        etag = dav.call("PUT", f"/im{r}.txt", b"v0")[1]["etag"]
        tags = f'"{"0" * 64}", {etag}'
        return [("PUT", f"/im{r}.txt", b"client %d" % i, {"If-Match": tags})
                for i in range(CLIENTS)]
    if kind == "if-none-match":
        return [("PUT", f"/inm{r}.txt", b"client %d" % i, {"If-None-Match": "*"})
                for i in range(CLIENTS)]
    if kind == "noise":
        return [("PUT", f"/._noise{r}", b"client %d" % i, {"If-None-Match": "*"})
                for i in range(CLIENTS)]
    if kind == "noise-if-match":
        etag = dav.call("PUT", f"/._nim{r}", b"v0")[1].get("etag")
        if etag is None:
            etag = dav.call("HEAD", f"/._nim{r}")[1]["etag"]
        return [("PUT", f"/._nim{r}", b"client %d" % i, {"If-Match": etag})
                for i in range(CLIENTS)]
    if kind == "copy-no-overwrite":
        return [("COPY", "/a.txt", None, {"Destination": dav.url(f"/cp{r}.txt"),
                                          "Overwrite": "F"}) for _ in range(CLIENTS)]
    if kind == "move-no-overwrite":
        for i in range(CLIENTS):
            dav.call("PUT", f"/src{r}-{i}.txt", b"source %d" % i)
        return [("MOVE", f"/src{r}-{i}.txt", None, {"Destination": dav.url(f"/mv{r}.txt"),
                                                    "Overwrite": "F"}) for i in range(CLIENTS)]
    if kind == "copy-folder-no-overwrite":
        return [("COPY", "/d/", None, {"Destination": dav.url(f"/cpd{r}/"), "Overwrite": "F"})
                for _ in range(CLIENTS)]
    if kind == "mkcol":
        return [("MKCOL", f"/new{r}", None, {}) for _ in range(CLIENTS)]
    if kind == "mkcol-branch":
        return [("MKCOL", f"/.branches/race{r}/", None, {}) for _ in range(CLIENTS)]
    raise AssertionError(kind)


RACES = ("if-match-list", "if-none-match", "noise", "noise-if-match", "copy-no-overwrite",
         "move-no-overwrite", "copy-folder-no-overwrite", "mkcol", "mkcol-branch")


@pytest.mark.slow
@pytest.mark.parametrize("kind", RACES)
def test_racing_conditional_writes_exactly_one_wins(anon, store, kind):
    for r in range(ROUNDS):
        statuses = race(anon, _setup_race(anon, kind, r))
        wins = [s for s in statuses if 200 <= s < 300]
        assert len(wins) == 1, (kind, r, statuses)
        assert all(s in (201, 204, 405, 412, 404) for s in statuses), (kind, r, statuses)
    with herofossil.open(store) as repo:
        if kind == "if-match-list":
            assert repo.read("im0.txt").startswith(b"client ")
        if kind == "move-no-overwrite":
            moved = repo.read("mv0.txt")
            left = [i for i in range(CLIENTS) if repo.exists(f"src0-{i}.txt")]
            assert len(left) == CLIENTS - 1 and moved == b"source %d" % (
                set(range(CLIENTS)) - set(left)).pop()
        if kind == "mkcol-branch":
            assert {f"race{r}" for r in range(ROUNDS)} <= set(repo.branches())
            assert all(len(repo.leaves(f"race{r}")) == 1 for r in range(ROUNDS))
    verify(store)


def test_weak_and_unmatched_entity_tags_never_match_a_write(anon, store):
    etag = anon.call("PUT", "/w.txt", b"v0")[1]["etag"]
    before = state(store)
    for tags in (f"W/{etag}", f'"{"1" * 64}", W/{etag}', '"nope"'):
        assert anon.call("PUT", "/w.txt", b"lost", {"If-Match": tags})[0] == 412, tags
        assert anon.call("DELETE", "/w.txt", None, {"If-Match": tags})[0] == 412, tags
    assert anon.call("PUT", "/w.txt", b"v1", {"If-Match": f'"x", {etag}'})[0] == 204
    assert state(store)["files"]["dev"] == before["files"]["dev"]
    with herofossil.open(store) as repo:
        assert repo.read("w.txt") == b"v1"


# ---- XML bodies and dead properties

def _raw_request(client: Client, head: bytes) -> bytes:
    """Send only the head of a request; what the server answers before any body."""
    with socket.create_connection((client.host, client.port), timeout=30) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_a_huge_xml_body_is_refused_before_it_is_read(anon, store):
    head = (b"PROPPATCH /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (64 << 20))
    answer = _raw_request(anon, head)
    assert re.match(rb"HTTP/1\.1 413 ", answer), answer[:200]
    listing_is_xml(anon)
    verify(store)


def test_deep_or_large_properties_are_refused_and_folders_stay_listable(anon, store):
    deep = "<Z:n>" * 1000 + "x" + "</Z:n>" * 1000
    assert anon.call("PROPPATCH", "/d/b.txt", proppatch("deep", deep))[0] == 400
    lock_deep = LOCK.replace(b"attacker", b"<D:x>" * 1000 + b"</D:x>" * 1000)
    assert anon.call("LOCK", "/d/b.txt", lock_deep)[0] == 400
    lock_big = LOCK.replace(b"attacker", b"o" * (20 << 10))
    assert anon.call("LOCK", "/d/b.txt", lock_big)[0] == 413
    assert anon.call("PUT", "/d/b.txt", b"still unlocked")[0] == 204
    status, _, body = anon.call("PROPPATCH", "/d/b.txt", proppatch("big", "x" * (100 << 10)))
    assert status == 413 or (status == 207 and b"413" in body), status
    # many properties within each limit, past the limit for one resource
    for i in range(20):
        anon.call("PROPPATCH", "/d/b.txt", proppatch(f"p{i}", "y" * (60 << 10)))
    with herofossil.open(store) as repo:
        stored = dict(repo.plumbing.meta_items("webdav-props"))
    assert sum(len(v) for v in stored.values()) < 2 << 20
    assert b"deep" not in b"".join(stored.values())
    hrefs = listing_is_xml(anon, "/d/")
    assert "/d/b.txt" in hrefs
    verify(store)


# ---- names

CONTROL = ("a%01b.txt", "tab%09.txt", "del%7F.txt", "line%0Abreak.txt", "esc%1B.txt")


@pytest.mark.parametrize("name", CONTROL)
def test_names_with_control_characters_are_refused_on_every_path(anon, store, name):
    before = state(store)
    attacks = [
        ("PUT", f"/{name}", b"fast", {}),
        ("PUT", f"/d/{name}", b"generic", {"If-None-Match": "*"}),
        ("PUT", f"/._{name}", b"noise", {}),
        ("PUT", f"/.branches/dev/{name}", b"branch", {}),
        ("MKCOL", f"/{name}", None, {}),
        ("COPY", "/a.txt", None, {"Destination": anon.url(f"/{name}")}),
        ("COPY", "/a.txt", None, {"Destination": anon.url(f"/._{name}")}),
        ("MOVE", "/a.txt", None, {"Destination": anon.url(f"/{name}")}),
        ("LOCK", f"/{name}", LOCK, {}),
    ]
    for method, path, body, headers in attacks:
        status = anon.call(method, path, body, headers)[0]
        assert 400 <= status < 500, (method, path, status)
    assert state(store) == before
    for path in ("/", "/d/", "/.branches/dev/"):
        listing_is_xml(anon, path)
    verify(store)


def test_the_store_refuses_control_characters_for_every_writer(store):
    with herofossil.open(store) as repo:
        for bad in ("a\x01b", "d/x\ty", "z\x7f", "n\nl"):
            with pytest.raises(errors.InvalidPathError, match="control character"):
                repo.write(bad, b"x")
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", store, "put", "a\x02b"],
                          input=b"x", capture_output=True, timeout=60)
    assert proc.returncode == errors.InvalidPathError.exit_code
    assert proc.stderr.count(b"\n") == 1 and b"control character" in proc.stderr


def test_names_longer_than_the_store_keys_get_4xx(anon, store):
    before = state(store)
    long = "n" * 450
    for method, path, body in (("PUT", f"/{long}", b"x"), ("PUT", f"/._{long}", b"x"),
                               ("MKCOL", f"/{long}", None), ("LOCK", f"/{long}", LOCK),
                               ("PUT", f"/.branches/dev/{'é' * 240}", b"x")):
        status = anon.call(method, quote(path), body)[0]
        assert 400 <= status < 500, (method, path[:20], status)
    assert state(store) == before
    # the longest name the store holds still takes properties and locks (hashed keys)
    name = "é" * 195  # 390 bytes, 1,170 once quoted: longer than LMDB keys
    assert anon.call("PUT", quote(f"/{name}"), b"long")[0] == 201
    assert anon.call("PROPPATCH", quote(f"/{name}"), proppatch("k", "long-ok"))[0] == 207
    assert b"long-ok" in anon.call("PROPFIND", quote(f"/{name}"), None, {"Depth": "0"})[2]
    status, headers, _ = anon.call("LOCK", quote(f"/{name}"), LOCK)
    assert status == 200
    assert anon.call("PUT", quote(f"/{name}"), b"no token")[0] == 423
    assert anon.call("UNLOCK", quote(f"/{name}"), None,
                     {"Lock-Token": headers["lock-token"]})[0] == 204
    verify(store)


# ---- LOCK bodies


def _open_request(client: Client, head: bytes) -> socket.socket:
    sock = socket.create_connection((client.host, client.port), timeout=30)
    sock.sendall(head)
    return sock


def _answer(sock: socket.socket) -> bytes:
    out = b""
    while b"\r\n\r\n" not in out and (chunk := sock.recv(65536)):
        out += chunk
    return out


def test_a_slow_lock_body_holds_up_no_put(anon, store):
    head = (b"LOCK /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Timeout: Second-60\r\nContent-Length: %d\r\n\r\n" % len(LOCK))
    sock = _open_request(anon, head + LOCK[:20])
    try:
        t0 = time.monotonic()
        assert anon.call("PUT", "/other.txt", b"not waiting")[0] == 201
        assert anon.call("PUT", "/a.txt", b"not locked yet")[0] == 204
        assert time.monotonic() - t0 < 5
        sock.sendall(LOCK[20:])
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()
    assert anon.call("PUT", "/a.txt", b"now locked")[0] == 423
    verify(store)


def test_a_read_only_lock_is_refused_before_its_body_is_read(users):
    _, bob, _ = users
    head = (b"LOCK /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n"
            b"Content-Length: 100000\r\n\r\n" % bob.auth.encode())
    sock = _open_request(bob, head)  # the body never comes
    try:
        assert _answer(sock).startswith(b"HTTP/1.1 403 ")
    finally:
        sock.close()


# ---- users

def test_read_only_and_anonymous_users_change_nothing(users, store):
    alice, bob, nobody = users
    before = state(store)
    dest = {"Destination": alice.url("/moved.txt")}
    attacks = [
        ("PUT", "/a.txt", b"x", {}), ("PUT", "/new.txt", b"x", {}),
        ("PUT", "/a.txt", b"x", {"If-Match": "*"}), ("DELETE", "/a.txt", None, {}),
        ("MKCOL", "/dir", None, {}), ("MKCOL", "/.branches/bobs/", None, {}),
        ("COPY", "/a.txt", None, dest), ("MOVE", "/a.txt", None, dest),
        ("PROPPATCH", "/a.txt", proppatch(), {}), ("LOCK", "/a.txt", LOCK, {}),
        ("PUT", "/._noise", b"x", {}), ("DELETE", "/.branches", None, {}),
    ]
    for method, path, body, headers in attacks:
        assert bob.call(method, path, body, headers)[0] == 403, (method, path)
        assert nobody.call(method, path, body, headers)[0] == 401, (method, path)
    assert state(store) == before
    assert alice.call("PUT", "/.branches/dev/by-alice.txt", b"x")[0] == 201
    assert alice.call("MKCOL", "/.branches/alices/")[0] == 201
    verify(store)


def test_directory_browser_tells_a_read_only_user(users):
    alice, bob, _ = users
    status, _, page = bob.call("GET", "/")
    assert status == 200 and b"read-only" in page and b"read-write" not in page
    page = alice.call("GET", "/")[2]
    assert b"read-write" in page
    page = alice.call("GET", "/.history/trunk/")[2]
    assert b"read-only" in page
