"""Keeping a store in sync with a peer continuously (``herofossil serve --follow PEER``).

After each sync the follower waits for whichever comes first: the peer's
long poll (``GET /events``) answering that the peer changed, or this
store's own data file changing (a local write). Then it syncs again, so a
write on either side shows on the other within about a second, with no
request sent while nothing changes. A peer that goes away is retried with a
growing delay (up to ``MAX_BACKOFF`` seconds).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from herofossil.errors import HeroFossilError
from herofossil.sync import client
from herofossil.sync.backend import SyncBackend
from herofossil.sync.server import changed, data_mark

log = logging.getLogger("herofossil.sync")
MAX_BACKOFF = 5.0
POLL_WAIT = 25  # seconds the peer holds a long poll open


async def follow(repo, url: str, stop: asyncio.Event | None = None, on_sync=None) -> None:
    """Sync ``repo`` with ``url`` now and whenever either side changes, until ``stop``."""
    stop = stop or asyncio.Event()
    endpoint, auth = client._endpoint(url)
    events = endpoint.removesuffix("/sync") + "/events"
    backoff = 0.2
    backend = SyncBackend(repo)
    timeout = aiohttp.ClientTimeout(total=POLL_WAIT + 10)
    async with aiohttp.ClientSession(timeout=timeout, headers=auth) as session:
        while not stop.is_set():
            try:
                mark = data_mark(repo)  # a local write during the sync wakes the next wait
                report = await asyncio.to_thread(client.sync, repo, url)
                if on_sync is not None:
                    on_sync(report)
                backoff = 0.2
                # How far the sync got in the peer's numbering: a change after it wakes us.
                seen = backend.peer_state(client._peer_key(url)).get("after", 0)
                await _first_change(repo, session, events, seen, stop, mark)
            except (TimeoutError, HeroFossilError, aiohttp.ClientError) as exc:
                log.warning("following %s: %s; retrying in %.1f s", client.redact(url), exc,
                            backoff)
                await _sleep(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)


async def _their_last(session, events: str, after: int | None, wait: float) -> int:
    params = {"after": str(after if after is not None else -1), "wait": str(wait)}
    async with session.get(events, params=params) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                              message="the peer refused the event stream")
        return (await resp.json())["last"]


async def _first_change(repo, session, events: str, seen: int, stop: asyncio.Event,
                        mark) -> None:
    """Return when the peer reports a change after ``seen``, this store changes after
    ``mark``, or stop."""
    remote = asyncio.ensure_future(_their_last(session, events, seen, POLL_WAIT))
    local = asyncio.ensure_future(changed(repo, None, mark))
    stopped = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait({remote, local, stopped},
                                       return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if remote in done:
        remote.result()  # a failed poll raises here: the caller backs off


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
