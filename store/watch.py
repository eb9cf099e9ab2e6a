"""Being told when paths change: new check-ins from any process, filtered by prefix.

A watcher polls the store's check-in sequence (one cheap read transaction per
poll, ``interval`` apart) and reads only the changed-path lists of new
check-ins: unchanged data is never re-read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from herofossil.store.checkins import Checkin
from herofossil.store.paths import is_under, normalize


@dataclass(slots=True)
class ChangeEvent:
    """A check-in that changed ``paths`` (those under the watched prefix)."""

    checkin: Checkin
    paths: list[str]


class Watcher:
    """Reports each new check-in touching ``prefix``, including other processes' writes."""

    def __init__(self, repo, prefix: str = "", *, interval: float = 0.2,
                 branch: str | None = None, since: int | None = None):
        self.repo = repo
        self.prefix = normalize(prefix, allow_root=True)
        self.interval = interval
        self.branch = branch or repo.default_branch
        self.cursor = repo.plumbing.last_seq() if since is None else since

    def poll(self) -> list[ChangeEvent]:
        """The events since the last poll (never blocks)."""
        events = []
        for seq, ci in self.repo.plumbing.checkins_after(self.cursor):
            self.cursor = seq
            if ci.branch != self.branch:
                continue
            paths = [p for p in self.repo.changed_paths(ci.id) if is_under(p, self.prefix)]
            if paths:
                events.append(ChangeEvent(ci, paths))
        return events

    def wait(self, timeout: float | None = None) -> list[ChangeEvent]:
        """Block until at least one event arrives (or ``timeout`` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            events = self.poll()
            if events:
                return events
            if deadline is not None and time.monotonic() >= deadline:
                return []
            time.sleep(self.interval)

    def __iter__(self) -> Iterator[ChangeEvent]:
        while True:
            yield from self.wait()
