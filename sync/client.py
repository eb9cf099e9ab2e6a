"""The sync client: pull, push and sync with a peer over our protocol (aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import netrc
import os
from urllib.parse import unquote, urlsplit

import aiohttp

from herofossil.errors import SyncError
from herofossil.sync import wire
from herofossil.sync.backend import Report, SyncBackend

# A sync that needs more round trips than this is refused rather than looping forever.
MAX_ROUNDS = 10_000
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)


PASSWORD_ENV = "HEROFOSSIL_SYNC_PASSWORD"


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


async def _exchange(session: aiohttp.ClientSession, url: str, msg: wire.Message,
                    report: Report) -> wire.Message:
    body = wire.encode(msg)
    endpoint, auth = _endpoint(url)
    shown = redact(url)
    try:
        async with session.post(endpoint, data=body,
                                headers={"Content-Type": wire.CONTENT_TYPE, **auth}) as resp:
            data = await resp.read()
    except aiohttp.ClientError as exc:
        raise SyncError(f"cannot reach {shown}: {exc}", peer=shown) from exc
    report.round_trips += 1
    report.bytes_sent += len(body)
    report.bytes_received += len(data)
    report.artifacts_sent += len(msg.artifacts)
    try:
        answer = wire.decode(data)
    except SyncError as exc:
        raise SyncError(f"{shown} answered HTTP {resp.status} with no sync message ({exc})",
                        peer=shown) from exc
    if resp.status != 200:
        why = answer.header.get("error") or f"HTTP {resp.status}"
        raise SyncError(f"{shown} refused the sync (HTTP {resp.status}): {why}", peer=shown)
    return answer


def sync(repo, url: str, *, pull: bool = True, push: bool = True, progress=None) -> Report:
    """Exchange with the server at ``url``: what it has that this store lacks (``pull``)
    and the other way (``push``), in as few round trips as the difference allows."""
    return asyncio.run(_sync(repo, url, pull, push, progress))


async def _sync(repo, url, pull, push, progress) -> Report:
    backend = SyncBackend(repo)
    report = Report()
    peer = _peer_key(url)
    state = backend.peer_state(peer)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for _ in range(MAX_ROUNDS):
            msg = await asyncio.to_thread(backend.request, state, pull=pull, push=push)
            answer = await _exchange(session, url, msg, report)
            more = await asyncio.to_thread(backend.absorb, state, answer, report)
            # Saved after every round: an interrupted clone or pull resumes from here.
            await asyncio.to_thread(backend.save_peer_state, peer, state)
            if progress is not None:
                progress("sync", report.artifacts_received + report.artifacts_sent, None)
            pushed_all = not push or state.get("acked", 0) >= msg.header["push"]["reached"]
            if not more and (pushed_all and not _more_to_push(backend, state, push)):
                if report.checkins_new:
                    # The server joined what it could already; a merge made here is the
                    # same artifact, so the next sync's push costs nothing new there.
                    await asyncio.to_thread(backend.join_forks, report)
                return report
    raise SyncError(f"sync with {redact(url)} did not settle in {MAX_ROUNDS} round trips",
                    peer=redact(url))


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
    interruption: it resumes). Returns (the ``Repo``, the ``Report``)."""
    from herofossil.store.repo import Repo

    repo = Repo.open(os.fspath(path), create=True)
    try:
        report = sync(repo, url, pull=True, push=False, progress=progress)
    except BaseException:
        repo.close()
        raise
    return repo, report
