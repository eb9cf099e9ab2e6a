"""The sync client: pull, push and sync with a peer over our protocol.

It posts with the standard library's ``http.client`` (the next chunk of a clone from a
thread of its own, asked for while this one is stored): importing aiohttp alone took
0.3-0.4 s of a 1.3 s command-line clone of the real history here, and asyncio 21 ms of
every sync command. The server side is aiohttp."""

from __future__ import annotations

import base64
import http.client
import netrc
import os
import socket
import threading
from urllib.parse import unquote, urlsplit

from herofossil.errors import SyncError
from herofossil.sync import wire, xferclient
from herofossil.sync.backend import Report, SyncBackend, next_chunk

# A sync that needs more round trips than this is refused rather than looping forever.
MAX_ROUNDS = 10_000
TIMEOUT = 300  # seconds without a byte from the peer (connecting, or reading an answer)


PASSWORD_ENV = "HEROFOSSIL_SYNC_PASSWORD"
# How a reused connection that the peer had closed fails before its answer begins.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _endpoint(url: str) -> tuple[str, dict]:
    """The sync URL without credentials, and the credentials: from the URL, else
    ``~/.netrc``, else ``$HEROFOSSIL_SYNC_PASSWORD`` for the URL's user name."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncError(f"{redact(url)!r} is not an http:// or https:// URL of a herofossil "
                        "server", peer=redact(url))
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = parts._replace(netloc=netloc).geturl().rstrip("/") + "/sync"
    user, password = parts.username, parts.password
    if password is None:
        try:
            found = netrc.netrc().authenticators(parts.hostname)
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            found = None
        if found and (user is None or found[0] == user):
            user, password = found[0], found[2]
    if password is None and user is not None:
        password = os.environ.get(PASSWORD_ENV)
    if user is None:
        return bare, {}
    token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode()
    return bare, {"Authorization": f"Basic {token}"}


def redact(url: str) -> str:
    """``url`` without its password (what may be shown or saved)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = (parts.username or "") + "@" + parts.hostname + (
        f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class _Session:
    """POSTs to one endpoint over kept-alive HTTP/1.1 connections, one request at a time
    on each; only Host, Content-Type, Content-Length and credentials are sent (a no-op
    sync is a few hundred bytes, HTTP included)."""

    def __init__(self, endpoint: str):
        parts = urlsplit(endpoint)
        self._kind = (http.client.HTTPSConnection if parts.scheme == "https"
                      else http.client.HTTPConnection)
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path or "/"
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._aborted = False
        self._lock = threading.Lock()

    def post(self, body: bytes, headers: dict) -> tuple[int, bytes]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            answer = self._post_on(conn, body, headers, reused=True)
            if answer is not None:
                return answer
        if self._aborted:  # cut, not a stale connection: no second try
            raise ConnectionAbortedError("the sync stopped")
        return self._post_on(self._kind(self._host, self._port, timeout=TIMEOUT), body,
                             headers, reused=False)

    def _post_on(self, conn, body: bytes, headers: dict,
                 reused: bool) -> tuple[int, bytes] | None:
        """The answer on ``conn``; None when ``conn`` was kept alive and the peer (or a
        proxy) had closed it: it fails before the answer's first byte, and the request
        goes once more on a new connection (a sync request may be sent twice: what it
        stores is content-addressed)."""
        resp = None
        with self._lock:
            if self._aborted:  # cut before it began
                conn.close()
                raise ConnectionAbortedError("the sync stopped")
            self._busy.add(conn)
        try:
            conn.putrequest("POST", self._path, skip_accept_encoding=True)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException as exc:
            conn.close()
            if reused and resp is None and isinstance(exc, _STALE):
                return None
            raise
        finally:
            with self._lock:
                self._busy.discard(conn)
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return resp.status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def abort(self) -> None:
        """Cut the requests under way (their threads then fail at once)."""
        with self._lock:
            self._aborted = True
            busy = list(self._busy)
        for conn in busy:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Ahead:
    """An exchange sent from a thread of its own while the caller stores the last answer
    (``result`` waits for its answer, or raises what it raised)."""

    def __init__(self, exchange):
        self._answer = self._error = None
        self._thread = threading.Thread(target=self._run, args=(exchange,), daemon=True)
        self._thread.start()

    def _run(self, exchange) -> None:
        try:
            self._answer = exchange()
        except BaseException as exc:  # handed to the caller
            self._error = exc

    def result(self) -> wire.Message:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._answer

    def wait(self) -> None:
        """Let it end (its connection is then closed with the session's)."""
        self._thread.join()


def _exchange(session: _Session, url: str, msg: wire.Message, report: Report) -> wire.Message:
    body = wire.encode(msg)
    _, auth = _endpoint(url)
    shown = redact(url)
    try:
        status, data = session.post(body, {"Content-Type": wire.CONTENT_TYPE, **auth})
    except (OSError, http.client.HTTPException) as exc:
        raise SyncError(f"cannot reach {shown}: {exc}", peer=shown) from exc
    report.round_trips += 1
    report.bytes_sent += len(body)
    report.bytes_received += len(data)
    report.artifacts_sent += len(msg.artifacts)
    try:
        answer = wire.decode(data)
    except SyncError as exc:
        if status >= 500:
            raise SyncError(f"{shown} failed to answer (HTTP {status}): its log says why",
                            peer=shown) from exc
        raise SyncError(f"{shown} answered HTTP {status} with no sync message ({exc})",
                        peer=shown) from exc
    if status != 200:
        why = answer.header.get("error") or f"HTTP {status}"
        raise SyncError(f"{shown} refused the sync (HTTP {status}): {why}", peer=shown)
    return answer


def sync(repo, url: str, *, pull: bool = True, push: bool = True, progress=None) -> Report:
    """Exchange with the server at ``url``: what it has that this store lacks (``pull``)
    and the other way (``push``), in as few round trips as the difference allows.
    A ``fossil+http://`` (or ``fossil+https://``) URL is a Fossil server: Fossil's
    protocol is spoken (``xferclient``)."""
    if xferclient.is_fossil_url(url):
        return xferclient.sync(repo, url, pull=pull, push=push, progress=progress)
    return _sync(repo, url, pull, push, progress)


def _sync(repo, url, pull, push, progress) -> Report:
    backend = SyncBackend(repo)
    report = Report()
    peer = _peer_key(url)
    state = backend.peer_state(peer)
    rec = None
    if backend.needs_reconcile(state, pull=pull, push=push):
        rec = backend.reconciliation(state, pull=pull, push=push)
    ahead = None  # the next request, sent before this answer is stored
    # What the pull stream sent before it reached it: id -> where it reaches it.
    sent_ahead = backend.peer_ahead(peer)
    chunk = next_chunk(None)
    session = _Session(_endpoint(url)[0])
    try:
        for _ in range(MAX_ROUNDS):
            if rec is not None:
                msg = rec.request()
                answer = _exchange(session, url, msg, report)
                done = rec.absorb(answer, report)
                _progress(progress, report)
                if done:
                    rec.finish()
                    backend.save_peer_state(peer, state, {})
                    return _joined(backend, report)
                continue
            if ahead is None:
                msg = backend.request(state, pull=pull, push=push, ahead=sent_ahead,
                                      chunk=chunk)
                answer = _exchange(session, url, msg, report)
            else:
                answer, ahead = ahead.result(), None
            sent_ahead = _still_ahead(sent_ahead, answer)
            chunk = next_chunk(answer)
            if not push and answer.header.get("more") and isinstance(
                    answer.header.get("pulled"), int):
                # A clone or a pull far behind: ask for the next chunk while this one
                # is stored (the server keeps nothing between requests).
                nxt = _pulled(state, answer)
                msg = backend.request(nxt, pull=True, push=False, ahead=sent_ahead,
                                      chunk=chunk)
                ahead = _Ahead(lambda msg=msg: _exchange(session, url, msg, report))
            more = backend.absorb(state, answer, report)
            # Saved after every round: an interrupted clone or pull resumes from here.
            backend.save_peer_state(peer, state, sent_ahead)
            _progress(progress, report)
            if answer.header.get("base") is not None:  # it cannot trust the watermark
                report.reconciled = True
                if ahead is not None:  # its chunk is of a stream that ends here
                    ahead.wait()
                    ahead = None
                rec = backend.reconciliation(state, pull=pull, push=push, first=answer)
                if rec.done:
                    rec.finish()
                    backend.save_peer_state(peer, state, {})
                    return _joined(backend, report)
                continue
            pushed_all = not push or state.get("acked", 0) >= msg.header["push"]["reached"]
            if not more and (pushed_all and not _more_to_push(backend, state, push)):
                return _joined(backend, report)
    finally:
        if ahead is not None:  # only on an error: its answer is not wanted
            session.abort()
            ahead.wait()
        session.close()
    raise SyncError(f"sync with {redact(url)} did not settle in {MAX_ROUNDS} round trips",
                    peer=redact(url))


def _still_ahead(ahead: dict, answer: wire.Message) -> dict:
    """What the pull stream has sent ahead of itself, once ``answer`` is stored (the
    server does not send it again)."""
    pulled = answer.header.get("pulled")
    if not isinstance(pulled, int):
        return ahead
    out = {aid: seq for aid, seq in ahead.items() if seq > pulled}
    if answer.reconcile is not None:
        out.update((aid, seq) for aid, seq in answer.reconcile.ahead_at if seq > pulled)
    return out


def _pulled(state: dict, answer: wire.Message) -> dict:
    """``state`` as it will be once ``answer`` is stored (its pull watermark)."""
    h = answer.header
    ahead = dict(state, epoch=h["epoch"], after=h["pulled"])
    if h.get("more") and state.get("epoch") in (None, h["epoch"]):
        ahead["span"] = h["pulled"] - state.get("after", 0)
    ahead.pop("at", None)
    if isinstance(h.get("at"), str) and h["at"]:
        ahead["at"] = h["at"]
    return ahead


def _progress(progress, report: Report) -> None:
    if progress is not None:
        progress("sync", report.artifacts_received + report.artifacts_sent, None)


def _joined(backend: SyncBackend, report: Report) -> Report:
    if report.checkins_new:
        # The server joined what it could already; a merge made here is the same
        # artifact, so the next sync's push costs nothing new there.
        backend.join_forks(report)
    return report


def _more_to_push(backend: SyncBackend, state: dict, push: bool) -> bool:
    if not push:
        return False
    me = backend.identity()
    return state.get("acked_epoch") != me["epoch"] or state.get("acked", 0) < me["last"]


def _peer_key(url: str) -> str:
    parts = urlsplit(url)  # no credentials: they are never written into the store
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 80}{parts.path.rstrip('/')}"


def clone(url: str, path: str | os.PathLike, *, progress=None):
    """Copy the store served at ``url`` into a new store at ``path`` (run again after an
    interruption: it resumes). Returns (the ``Repo``, the ``Report``). A
    ``fossil+http://`` URL clones from a Fossil server."""
    from herofossil.store.repo import Repo

    if xferclient.is_fossil_url(url):
        return xferclient.clone(url, path, progress=progress)

    _endpoint(url)  # a URL that names no server creates no store
    repo = Repo.open(os.fspath(path), create=True)
    try:
        report = sync(repo, url, pull=True, push=False, progress=progress)
    except BaseException:
        repo.close()
        raise
    return repo, report
