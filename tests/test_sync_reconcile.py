"""Set reconciliation over artifact ids, where sync watermarks cannot be trusted: real
servers on loopback (real processes; hostile ones in-process over real HTTP), real stores."""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import threading
import urllib.request

import pytest
from aiohttp import web

import herofossil
from herofossil import Put
from herofossil.errors import SyncError
from herofossil.sync import backend, client, wire
from herofossil.sync.wire import Reconcile


def _ids(repo) -> set[bytes]:
    with repo._env.read() as txn:
        return set(txn.cursor(db=repo._env.db["blob"]).iternext(values=False))


def _common_history(repo, commits=100, files=25, seed=1):
    """About ``commits * files`` artifacts of a kilobyte or so each."""
    rnd = random.Random(seed)
    for c in range(commits):
        repo.commit([Put(f"d{c}/{i}.txt", rnd.randbytes(400).hex().encode())
                     for i in range(files)], message=f"common {c}")


def _side(repo, branch, n=3):
    repo.branch_new(branch)
    for i in range(n):
        repo.write(f"{branch}/{i}.txt", f"{branch} {i}\n".encode() * 30, branch=branch)


def _port(url: str) -> str:
    return url.rstrip("/").rpartition(":")[2]


def _bound(n: int) -> int:
    return math.ceil(math.log(n, 16)) + 2


def test_a_rebuilt_server_sends_and_takes_only_the_differences(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin)
    origin.close()
    srv = serve(tmp_path / "origin")
    copy, _ = client.clone(srv.url, tmp_path / "copy")
    port = _port(srv.url)
    srv.stop()
    with herofossil.open(tmp_path / "origin") as origin:
        _side(origin, "on-origin")
        origin.rebuild()  # a new epoch: the copy's pull watermark means nothing now
        theirs, size = _ids(origin), origin.stats()["stored_bytes"]
    _side(copy, "on-copy")
    mine = _ids(copy)
    srv = serve(tmp_path / "origin", "--port", port)  # the same URL: the same peer state
    report = client.sync(copy, srv.url)
    assert report.reconciled
    assert report.artifacts_received == len(theirs - mine)
    assert report.artifacts_sent == len(mine - theirs)
    assert report.round_trips <= _bound(len(theirs))
    assert report.bytes_received < 0.02 * size and report.bytes_sent < 0.02 * size
    srv.stop()
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _ids(origin) == _ids(copy) == theirs | mine
        assert origin.verify().ok
    srv = serve(tmp_path / "origin", "--port", port)
    again = client.sync(copy, srv.url)  # the watermarks are set: one round trip again
    assert again.round_trips == 1 and not again.reconciled
    assert again.artifacts_sent == again.artifacts_received == 0
    copy.write("after.txt", b"after\n")
    once = client.sync(copy, srv.url)
    assert once.round_trips == 1 and once.artifacts_sent == 2 and once.artifacts_received == 0
    assert copy.verify().ok
    copy.close()


def test_a_rebuilt_client_pushes_only_what_the_server_lacks(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin, commits=60)
    origin.close()
    srv = serve(tmp_path / "origin")
    copy, _ = client.clone(srv.url, tmp_path / "copy")
    _side(copy, "on-copy", n=4)
    copy.rebuild()  # its push watermark is of the old numbering
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        theirs = _ids(origin)
        size = origin.stats()["stored_bytes"]
    mine = _ids(copy)
    report = client.sync(copy, srv.url)
    assert report.reconciled and report.round_trips <= _bound(len(mine))
    assert report.artifacts_sent == len(mine - theirs) and report.artifacts_received == 0
    assert report.bytes_sent < 0.02 * size
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _ids(origin) == mine
    again = client.sync(copy, srv.url)
    assert again.round_trips == 1 and again.artifacts_sent == 0
    copy.close()


@pytest.mark.parametrize("rebuilt", ["server", "client"])
def test_stores_that_agree_settle_in_one_round_trip_under_a_kilobyte(tmp_path, serve,
                                                                    rebuilt):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin, commits=80)
    origin.close()
    srv = serve(tmp_path / "origin")
    copy, _ = client.clone(srv.url, tmp_path / "copy")
    if rebuilt == "server":
        port = _port(srv.url)
        srv.stop()
        with herofossil.open(tmp_path / "origin") as origin:
            origin.rebuild()
        srv = serve(tmp_path / "origin", "--port", port)
    else:  # a store that cloned, then was rebuilt
        copy.rebuild()
    report = client.sync(copy, srv.url)
    assert report.reconciled
    assert report.round_trips == 1
    assert report.artifacts_sent == report.artifacts_received == 0
    assert report.bytes_sent + report.bytes_received < 1000
    again = client.sync(copy, srv.url)
    assert again.round_trips == 1 and not again.reconciled
    copy.close()


def test_first_contact_of_two_stores_with_history_moves_only_the_difference(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin, commits=40)
    origin.close()
    srv = serve(tmp_path / "origin")
    a, _ = client.clone(srv.url, tmp_path / "a")
    b, _ = client.clone(srv.url, tmp_path / "b")
    _side(a, "on-a")
    _side(b, "on-b")
    a.close()
    srv_a = serve(tmp_path / "a")
    with herofossil.open(tmp_path / "a", readonly=True) as peer:
        theirs = _ids(peer)
    mine = _ids(b)
    report = client.sync(b, srv_a.url)  # b has never spoken to a
    assert report.reconciled
    assert report.artifacts_received == len(theirs - mine)
    assert report.artifacts_sent == len(mine - theirs)
    assert report.bytes_received + report.bytes_sent < 60_000
    assert _ids(b) == theirs | mine
    b.close()


def test_a_restored_server_is_reconciled_and_gets_back_what_it_lost(tmp_path, serve):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin, commits=40)
    origin.close()
    srv = serve(tmp_path / "origin")
    port = _port(srv.url)
    copy, _ = client.clone(srv.url, tmp_path / "copy")
    srv.stop()
    shutil.copytree(tmp_path / "origin", tmp_path / "backup")
    with herofossil.open(tmp_path / "origin") as origin:
        _side(origin, "lost", n=3)  # after the backup
    srv = serve(tmp_path / "origin", "--port", port)
    client.sync(copy, srv.url)
    srv.stop()
    shutil.rmtree(tmp_path / "origin")
    shutil.copytree(tmp_path / "backup", tmp_path / "origin")  # the same epoch, fewer artifacts
    with herofossil.open(tmp_path / "origin") as origin:
        _side(origin, "after-restore", n=5)  # numbers the copy saw, on other artifacts
        restored = _ids(origin)
    srv = serve(tmp_path / "origin", "--port", port)
    mine = _ids(copy)
    report = client.sync(copy, srv.url)
    assert report.reconciled
    assert report.artifacts_received == len(restored - mine)
    assert report.artifacts_sent == len(mine - restored)  # what the restore lost comes back
    srv.stop()
    with herofossil.open(tmp_path / "origin", readonly=True) as origin:
        assert _ids(origin) == _ids(copy) == restored | mine
        assert "lost/0.txt" in origin.files(at="lost")
    copy.close()


# ---- hostile servers: in-process, over real HTTP on loopback
class Hostile:
    """An aiohttp server whose answer to each decoded request is ``respond(msg)``."""

    def __init__(self, respond):
        self.requests = 0
        ready = threading.Event()

        async def handle(request):
            self.requests += 1
            msg = wire.decode(await request.read())
            return web.Response(body=wire.encode(respond(msg)),
                                content_type=wire.CONTENT_TYPE)

        async def main():
            app = web.Application(client_max_size=wire.MAX_MESSAGE)
            app.router.add_post("/sync", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self.loop, self.stopped = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await self.stopped.wait()
            await runner.cleanup()

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(10)


@pytest.fixture
def hostile():
    started = []

    def start(respond):
        h = Hostile(respond)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def _header():
    return {"epoch": "e" * 16, "base": [10**6, "ab"], "store": "s" * 32, "project": None}


def _splits_forever(msg):
    """Every range differs, and the peer holds a million ids in each: after the first
    split, it answers one sub-range of a range this store lacks (valid, and endless)."""
    fps = msg.reconcile.fingerprints
    if [p for p, _, _ in fps] == [""]:
        return _splits_wide(msg)
    empty = [p for p, count, _ in fps if count == 0]
    rc = Reconcile(fingerprints=[(empty[0] + "0", 10**6, os.urandom(16))])
    return wire.Message(_header(), [], rc)


def _splits_wide(msg):
    """Every range differs in all 16 sub-ranges (until there are too many to answer)."""
    asked = msg.reconcile.fingerprints[:backend.MAX_RANGES // 16 + 1]
    rc = Reconcile(fingerprints=[(p + f"{i:x}", 10**6, os.urandom(16))
                                 for p, _, _ in asked for i in range(16)])
    return wire.Message(_header(), [], rc)


def _huge_list(msg):
    return wire.Message(_header(), [], Reconcile(
        idlists=[("", sorted(os.urandom(32) for _ in range(backend.WHOLE_LIST + 1)))]))


def _lists_but_never_sends(msg):
    return wire.Message(_header(), [], Reconcile(
        idlists=[("", sorted(os.urandom(32) for _ in range(10)))]))


def _answers_unasked(msg):
    return wire.Message(_header(), [], Reconcile(fingerprints=[("7f", 3, os.urandom(16))]))


@pytest.mark.parametrize("behaviour,why", [
    (_splits_forever, "did not settle"),
    (_splits_wide, "ranges at once"),
    (_huge_list, "listed 4097 ids"),
    (_lists_but_never_sends, "does not send"),
    (_answers_unasked, "not asked"),
])
def test_a_lying_peer_in_a_reconciliation_is_bounded(tmp_path, hostile, behaviour, why):
    repo = herofossil.open(tmp_path / "mine", create=True)
    repo.write("a.txt", b"two artifacts: a file and its check-in\n")
    before = _ids(repo)
    srv = hostile(behaviour)
    with pytest.raises(SyncError, match=why):
        client.sync(repo, srv.url)  # first contact: a reconciliation
    assert srv.requests <= backend.MAX_RECONCILE_ROUNDS + 1
    assert _ids(repo) == before
    repo.close()


# ---- hostile clients: hand-made messages to a real server
def _post(url, body: bytes):
    req = urllib.request.Request(url.rstrip("/") + "/sync", data=body, method="POST",
                                 headers={"Content-Type": wire.CONTENT_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _raw(header: dict, section: bytes) -> bytes:
    import json

    head = json.dumps(dict(header, rc=len(section))).encode()
    return wire.MAGIC + bytes([wire.VERSION]) + len(head).to_bytes(4, "big") + head + section


@pytest.mark.parametrize("case", ["overlapping ranges", "ids outside their range",
                                  "too deep a range", "cut-off section", "too many ranges",
                                  "unknown item", "no section"])
def test_a_hostile_reconcile_request_is_refused_and_the_server_keeps_serving(
        tmp_path, serve, case):
    origin = herofossil.open(tmp_path / "origin", create=True)
    _common_history(origin, commits=5, files=5)
    origin.close()
    srv = serve(tmp_path / "origin")
    fp = (0, bytes(16))
    if case == "overlapping ranges":
        body = wire.encode(wire.Message({"recon": 1, "pull": {}}, reconcile=Reconcile(
            fingerprints=[("a", *fp), ("ab", *fp)])))
    elif case == "ids outside their range":
        body = wire.encode(wire.Message({"recon": 1, "pull": {}}, reconcile=Reconcile(
            idlists=[("a", [b"\xb0" * 32])])))
    elif case == "too deep a range":
        body = _raw({"recon": 1, "pull": {}}, bytes([wire.FINGERPRINT, 65]) + bytes(33 + 4 + 16))
    elif case == "cut-off section":
        body = _raw({"recon": 1, "pull": {}}, bytes([wire.IDS, 2, 0xab]) + (1000).to_bytes(4, "big")
                    + bytes(64))
    elif case == "too many ranges":
        body = wire.encode(wire.Message({"recon": 1, "pull": {}}, reconcile=Reconcile(
            fingerprints=[(f"{i:05x}", *fp) for i in range(backend.MAX_RANGES + 1)])))
    elif case == "unknown item":
        body = _raw({"recon": 1, "pull": {}}, bytes([9]) + bytes(8))
    else:
        body = wire.encode(wire.Message({"recon": 1, "pull": {}}))
    status, data = _post(srv.url, body)
    assert status == 400, data
    assert wire.decode(data).header["error"]
    repo, report = client.clone(srv.url, tmp_path / "copy")
    assert report.artifacts_received == repo.stats()["artifacts"] > 0
    repo.close()
