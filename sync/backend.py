"""The transport-free sync backend: what to send a peer, what to accept from it.

Both sides of an exchange use it, whatever carries the bytes (our protocol
over aiohttp here; Fossil's xfer protocol goes on the same backend). It
works in watermarks: a peer's insert sequence numbers, valid for that
peer's epoch (a rebuild renumbers a store and renews its epoch).

One round trip does a whole sync. The client sends what it has seen of the
server (its pull watermark) and the artifacts the server has not yet
acknowledged (its push watermark); the server stores those, and answers
with what is new since the pull watermark and how far it now has the
client. A no-op, a one-sided and a two-sided change are each one round
trip. A clone (or a pull far behind) comes in chunks of ``CHUNK`` bytes,
each committed as it arrives, so an interrupted clone resumes (the client
names the chunk size it wants, up to the server's).

Peer state (per peer URL without credentials, in the store's ``meta`` table,
never synced): ``{"epoch", "after"}`` pulled from the peer, ``{"acked_epoch",
"acked"}`` pushed to it; a watermark of another epoch counts as zero.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from herofossil.errors import HeroFossilError, SyncError
from herofossil.store import exchange
from herofossil.sync.wire import Message

CHUNK = 16 << 20
log = logging.getLogger("herofossil.sync")
PEER_NS = "sync-peer"
PROJECT_NS = "sync"


@dataclass
class Report:
    """What one sync did, on the client side."""

    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    artifacts_sent: int = 0
    artifacts_received: int = 0
    checkins_new: int = 0
    merges: int = 0  # forks joined by a merge every peer writes the same
    forked: tuple[str, ...] = ()  # branches left with several leaves (a conflict)

    def summary(self) -> str:
        text = (f"{self.round_trips} round trip(s), {self.bytes_sent} bytes sent, "
                f"{self.bytes_received} received, {self.artifacts_sent} artifacts sent, "
                f"{self.artifacts_received} received, {self.checkins_new} new check-in(s)")
        if self.merges:
            text += f", {self.merges} fork(s) merged"
        if self.forked:
            text += f"; conflicting leaves left on {', '.join(self.forked)}: 'herofossil merge'"
        return text


class SyncBackend:
    """Sync over one store (a ``Repo``)."""

    def __init__(self, repo, *, readonly: bool = False):
        self.repo = repo
        self.env = repo._env
        self.readonly = readonly

    # ---- identity
    def identity(self) -> dict:
        """This store's id, epoch, project (None until it has one) and last sequence."""
        store, epoch = exchange.identity(self.env)
        project = self.repo.plumbing.meta_get(PROJECT_NS, "project")
        return {"store": store, "epoch": epoch,
                "project": project.decode() if project else None,
                "last": exchange.last_seq(self.env)}

    def _check_project(self, theirs: str | None) -> None:
        mine = self.repo.plumbing.meta_get(PROJECT_NS, "project")
        if theirs is None or mine is None:
            if theirs is not None and not self.readonly and not self.env.readonly:
                self.repo.plumbing.meta_put(PROJECT_NS, "project", theirs.encode())
            return
        if mine.decode() != theirs:
            raise SyncError(f"the peer holds another project ({theirs}; this store is "
                            f"{mine.decode()}): nothing was exchanged")

    def ensure_project(self) -> str:
        """This store's project code, made now if it has none (a store that others clone)."""
        mine = self.repo.plumbing.meta_get(PROJECT_NS, "project")
        if mine is None:
            import os

            mine = os.urandom(16).hex().encode()
            self.repo.plumbing.meta_put(PROJECT_NS, "project", mine)
        return mine.decode()

    # ---- peer state
    def join_forks(self, report: Report | None = None) -> None:
        """Merge the forks that a received change made, where the sides do not conflict."""
        if self.readonly or self.env.readonly:
            return
        try:
            made, forked = self.repo.merge_forks()
        except HeroFossilError as exc:  # what was received is kept; the next exchange retries
            log.warning("joining forks failed: %s", exc)
            return
        if report is not None:
            report.merges += len(made)
            report.forked = tuple(forked)

    def peer_state(self, peer: str) -> dict:
        raw = self.repo.plumbing.meta_get(PEER_NS, peer)
        return json.loads(raw) if raw else {}

    def save_peer_state(self, peer: str, state: dict) -> None:
        raw = json.dumps(state, sort_keys=True).encode()
        if self.repo.plumbing.meta_get(PEER_NS, peer) != raw:  # a no-op sync writes nothing
            self.repo.plumbing.meta_put(PEER_NS, peer, raw)

    # ---- client side
    def request(self, state: dict, *, pull: bool, push: bool) -> Message:
        """The request of one round trip, from the state kept of the server."""
        me = self.identity()
        header = {"store": me["store"], "epoch": me["epoch"], "project": me["project"],
                  "last": me["last"]}
        if pull:
            header["pull"] = {"epoch": state.get("epoch"), "after": state.get("after", 0),
                              "max": CHUNK}
        artifacts: list = []
        if push:
            after = state.get("acked", 0) if state.get("acked_epoch") == me["epoch"] else 0
            artifacts, reached = exchange.artifacts_after(self.env, after, max_bytes=CHUNK)
            header["push"] = {"after": after, "reached": reached}
        return Message(header, artifacts)

    def absorb(self, state: dict, response: Message, report: Report) -> bool:
        """Store what the server answered and update ``state``; True when it has more."""
        h = response.header
        if h.get("error"):
            raise SyncError(f"the peer refused the exchange: {h['error']}")
        for key in ("store", "epoch"):
            if not isinstance(h.get(key), str):
                raise SyncError(f"the peer's answer lacks its {key}")
        self._check_project(h.get("project"))
        acked = h.get("acked")
        if isinstance(acked, dict) and isinstance(acked.get("after"), int):
            state["acked_epoch"], state["acked"] = acked.get("epoch"), acked["after"]
        if response.artifacts:
            mine = exchange.identity(self.env)[1]
            got = exchange.receive(self.env, response.artifacts)
            report.artifacts_received += got.artifacts
            report.checkins_new += len(got.checkins)
            known = state.get("acked_epoch") == mine or (
                got.before == 0 and "acked_epoch" not in state)  # an empty store: a clone
            if known and state.get("acked", 0) == got.before:
                # The server had all of this store, and what was just numbered is its own.
                state["acked_epoch"], state["acked"] = mine, got.last
        pulled = h.get("pulled")
        if isinstance(pulled, int):
            state["epoch"], state["after"] = h["epoch"], pulled
        return bool(h.get("more"))

    # ---- server side
    def answer(self, request: Message) -> Message:
        """The server's answer to one request (errors in the peer's data raise SyncError
        or IntegrityError; nothing of a refused request is stored)."""
        h = request.header
        me = self.identity()
        out = {"store": me["store"], "epoch": me["epoch"], "project": me["project"]}
        theirs = h.get("project")
        if theirs is not None and me["project"] is not None and theirs != me["project"]:
            raise SyncError(f"the peer holds another project ({theirs}; this store is "
                            f"{me['project']}): nothing was exchanged")
        push = h.get("push")
        if push is not None:
            if self.readonly or self.env.readonly:
                raise PermissionError("this store is a read-only replica: it takes no push")
            if not isinstance(push, dict) or not isinstance(push.get("reached"), int):
                raise SyncError("a push without the sequence number it reached")
            if request.artifacts:
                if exchange.receive(self.env, request.artifacts).checkins:
                    self.join_forks()  # before the pull below: the client gets the merge
            if me["project"] is None and theirs is not None:
                self.repo.plumbing.meta_put(PROJECT_NS, "project", theirs.encode())
                out["project"] = theirs
            out["acked"] = {"epoch": h.get("epoch"), "after": push["reached"]}
        elif request.artifacts:
            raise SyncError("artifacts sent without a push")
        pull = h.get("pull")
        artifacts: list = []
        if pull is not None:
            if not isinstance(pull, dict):
                raise SyncError("a malformed pull")
            after = pull.get("after", 0) if pull.get("epoch") == me["epoch"] else 0
            if not isinstance(after, int) or after < 0:
                raise SyncError("a malformed pull watermark")
            last = exchange.last_seq(self.env)  # with what this request pushed
            reached = after
            if after < last:
                # What this request pushed need not come back.
                skip = {aid for aid, _ in request.artifacts}
                limit = pull.get("max", CHUNK)
                limit = min(limit, CHUNK) if isinstance(limit, int) and limit > 0 else CHUNK
                artifacts, reached = exchange.artifacts_after(self.env, after, max_bytes=limit,
                                                              skip=skip)
            out["pulled"] = reached
            out["more"] = reached < last
        return Message(out, artifacts)
