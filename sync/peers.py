"""Saved peers: a name for a server's URL, and when it was last synced (local state).

A URL is saved without its password: credentials come, at each sync, from
the URL given then, ``~/.netrc``, or ``$HEROFOSSIL_SYNC_PASSWORD``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from herofossil.errors import NotFoundError, SyncError, UsageError
from herofossil.sync import client

NAMESPACE = "peers"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Peer:
    """A saved peer."""

    name: str
    url: str
    last_sync: float | None = None
    last_error: str | None = None


def add(repo, name: str, url: str) -> Peer:
    """Save ``url`` as ``name`` (its password, if any, is not saved)."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"bad peer name {name!r}: letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit")
    client._endpoint(url)  # refuses what is not a server URL
    peer = Peer(name, client.redact(url))
    _save(repo, peer)
    return peer


def remove(repo, name: str) -> None:
    """Forget a saved peer."""
    if not repo.plumbing.meta_delete(NAMESPACE, name):
        raise NotFoundError(f"no peer named {name!r} (see 'herofossil peer ls')")


def list_peers(repo) -> list[Peer]:
    """Every saved peer, by name."""
    return [Peer(name=k, **json.loads(v)) for k, v in repo.plumbing.meta_items(NAMESPACE)]


def resolve(repo, peer: str) -> tuple[str, str]:
    """(name or URL, URL) of ``peer``: a saved name or a URL."""
    if "://" in peer:
        return client.redact(peer), peer
    raw = repo.plumbing.meta_get(NAMESPACE, peer)
    if raw is None:
        raise NotFoundError(f"no peer named {peer!r}: give a URL, or save one with "
                            "'herofossil peer add NAME URL'")
    return peer, json.loads(raw)["url"]


def sync_each(repo, peers: list[str] | None, *, pull: bool, push: bool, progress=None):
    """Sync with each of ``peers`` (default: every saved peer), one after the other; a
    failing peer is reported without stopping the others. Yields (peer, report or
    the SyncError)."""
    names = peers if peers else [p.name for p in list_peers(repo)]
    for peer in names:
        label, url = resolve(repo, peer)
        try:
            report = client.sync(repo, url, pull=pull, push=push, progress=progress)
        except SyncError as exc:
            _note(repo, peer, error=str(exc))
            yield label, exc
            continue
        _note(repo, peer)
        yield label, report


def _note(repo, name: str, error: str | None = None) -> None:
    raw = repo.plumbing.meta_get(NAMESPACE, name)
    if raw is None:  # a URL, not a saved peer
        return
    peer = Peer(name=name, **json.loads(raw))
    if error is None:
        peer.last_sync, peer.last_error = time.time(), None
    else:
        peer.last_error = error
    _save(repo, peer)


def _save(repo, peer: Peer) -> None:
    repo.plumbing.meta_put(NAMESPACE, peer.name, json.dumps(
        {"url": peer.url, "last_sync": peer.last_sync, "last_error": peer.last_error}).encode())
