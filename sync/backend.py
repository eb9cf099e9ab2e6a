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
each committed as it arrives, so an interrupted clone resumes and resends
at most a chunk (the client names the chunk size it wants, up to the
server's, and asks for the next chunk while it stores one). A delta's base
numbered after it (reverse deltas) goes with the delta, ahead of the
stream; the answer names such ids and the next request names them back, so
that no chunk sends them again.

Where watermarks cannot be trusted, a set reconciliation over artifact ids
finds the difference instead (as negentropy does): on first contact of a
store that holds artifacts, after this store was rebuilt (its epoch
changed), and when the server finds the pull watermark of another epoch,
above its last sequence number, or on another artifact than the client saw
there (a restore). A range is the ids with one hex prefix; its fingerprint
hashes the sum of its ids and their count. Ranges whose fingerprints differ
are split 16 ways, each side splitting once per round trip, until a range
holds at most ``IDLIST_MAX`` ids: then its ids are listed and each side
knows what the other lacks. The same messages carry the artifacts found
missing, so the difference moves in O(log16 n) round trips; two stores
that agree settle in one, in a few hundred bytes. The server keeps nothing
between requests: the client holds the reconciliation's state, and sets
both watermarks when it ends, so the next sync is again one round trip.

Peer state (per peer URL without credentials, in the store's ``meta`` table,
never synced): ``{"epoch", "after", "at"}`` pulled from the peer (``at``:
the start of the id the peer numbered ``after``), ``{"acked_epoch",
"acked"}`` pushed to it; a watermark of another epoch is not trusted.
Requests name the client's project in full on first contact and by its
first ``PF_LEN`` hex digits after, so a server of another project is
still refused, in a no-op of a few hundred bytes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from herofossil.errors import HeroFossilError, SyncError
from herofossil.store import exchange
from herofossil.sync.wire import ID_LEN, Message, Reconcile

# A pull stream (a clone, a pull far behind) comes in chunks, each committed durably, so
# that an interrupted clone resends little: the first of at most FIRST_CHUNK bytes (a
# pull of less is one round trip), the rest each about a STREAM_CHUNKS-th of what the
# server said was left, within MIN_CHUNK..CHUNK. CHUNK also bounds a push's chunk.
CHUNK = 4 << 20
FIRST_CHUNK = 1 << 20
MIN_CHUNK = 256 << 10
STREAM_CHUNKS = 10
DEFAULT_MAX = 1 << 20  # the chunk of a pull that names none (a protocol constant)
AHEAD_WINDOW = 256  # sequence numbers a chunk may cover at least, when ids are named back
log = logging.getLogger("herofossil.sync")
PEER_NS = "sync-peer"
AHEAD_NS = "sync-ahead"
PROJECT_NS = "sync"
PF_LEN = 8  # hex digits of the project named in every request after the first
AT_LEN = 8  # hex digits of the id at a pull watermark
# Reconciliation: a range where one side holds at most IDLIST_MAX ids (and the other at
# most WHOLE_LIST) is listed rather than split; so is one the other side lacks entirely,
# up to WHOLE_LIST ids.
IDLIST_MAX = 32
WHOLE_LIST = 4096
# Bounds on a reconciliation, so that a lying peer cannot make it endless: round trips
# that still split ranges (an honest one needs about log16 of the store's size), ranges
# in one message, ids named over the whole reconciliation, ids asked for in one request
# (all that are missing, up to this: the server orders what it sends among them).
MAX_RECONCILE_ROUNDS = 16
MAX_RANGES = 1 << 16
MAX_IDS = 4_000_000
MAX_PACKS = 256  # dictionary ids a request may say it holds (a compact leaves one)
WANT_BATCH = 1 << 16


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
    reconciled: bool = False  # watermarks could not be trusted: the sets were compared

    def summary(self) -> str:
        text = (f"{self.round_trips} round trip(s), {self.bytes_sent} bytes sent, "
                f"{self.bytes_received} received, {self.artifacts_sent} artifacts sent, "
                f"{self.artifacts_received} received, {self.checkins_new} new check-in(s)")
        if self.merges:
            text += f", {self.merges} fork(s) merged"
        if self.forked:
            text += f"; conflicting leaves left on {', '.join(self.forked)}: 'herofossil merge'"
        return text


def _short(aid: bytes | None, n: int = AT_LEN) -> str:
    return aid.hex()[:n] if aid else ""


def _kids(prefix: str, kids: list[tuple[int, int]]) -> list[tuple[str, int, bytes]]:
    return [(f"{prefix}{i:x}", n, exchange.fingerprint(total, n))
            for i, (n, total) in enumerate(kids)]


def _takes(h: dict) -> set[int] | None:
    """The dictionaries a request says its client holds (it takes packed forms), or None
    (it takes none: an earlier release)."""
    packs = h.get("packs")
    if packs is None:
        return None
    if not isinstance(packs, list) or len(packs) > MAX_PACKS or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in packs):
        raise SyncError(f"a malformed list of dictionaries (at most {MAX_PACKS} ids)")
    return set(packs)


def _check_prefixes(prefixes: list[str]) -> None:
    """Refuse ranges that overlap (each request costs at most one pass over the ids)."""
    if len(prefixes) > MAX_RANGES:
        raise SyncError(f"a reconcile message with {len(prefixes)} ranges "
                        f"(at most {MAX_RANGES})")
    ordered = sorted(prefixes)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.startswith(a):
            raise SyncError(f"a reconcile message with overlapping ranges {a!r} and {b!r}")


def _limit(pull: dict) -> int:
    """The chunk size a pull asks for (DEFAULT_MAX when it names none), up to CHUNK."""
    limit = pull.get("max", DEFAULT_MAX)
    return min(limit, CHUNK) if isinstance(limit, int) and limit > 0 else DEFAULT_MAX


def next_chunk(answer: Message | None) -> int:
    """The chunk size to ask for after ``answer`` (None: the first of a stream)."""
    left = answer.header.get("left") if answer is not None else None
    if not isinstance(left, int) or left <= 0:
        return min(FIRST_CHUNK, CHUNK)
    return max(MIN_CHUNK, min(CHUNK, left // STREAM_CHUNKS))


class Reconciliation:
    """The client's side of one set reconciliation: the ranges still to compare, the ids
    to ask for and to push; ``request`` makes the next message, ``absorb`` takes the
    answer (True once nothing is left), ``finish`` sets the watermarks."""

    def __init__(self, backend: SyncBackend, state: dict, *, pull: bool, push: bool,
                 first: Message | None = None):
        self.backend, self.env, self.state = backend, backend.env, state
        self.pull, self.push = pull, push
        me = backend.identity()
        self.epoch = me["epoch"]
        # What this store held when the comparison began (all of it is compared), and
        # how far the peer then holds it, as received blocks extend it.
        if push:
            self.acked = me["last"]
        elif state.get("acked_epoch") == me["epoch"]:
            self.acked = state.get("acked", 0)
        else:
            self.acked = None
        self.fps: list[str] = [] if first is not None else [""]
        self.lists: list[str] = []
        self.sent_lists: dict[str, list[bytes]] = {}
        self.asked_fp: set[str] = {""} if first is not None else set()
        self.want: dict[bytes, None] = {}
        self.asked_want = False
        self.push_q: dict[bytes, None] = {}
        self.known: set[bytes] = set()
        self.agreed: set[str] = set()
        self.peer_epoch: str | None = None
        self.pulled: tuple[int, str] | None = None
        self.range_rounds = 0
        self.ids_seen = 0
        if first is not None:
            self._take(first)

    @property
    def done(self) -> bool:
        return not self.fps and not self.lists and not (self.pull and self.want) and not (
            self.push and self.push_q)

    def _known(self, aid: bytes) -> bool:
        """True when the peer is known to hold ``aid`` (a base need not go with a delta)."""
        if aid in self.known:
            return True
        h = aid.hex()
        return any(h[:n] in self.agreed for n in {len(p) for p in self.agreed})

    def request(self) -> Message:
        """The next request."""
        if self.fps or self.lists:
            self.range_rounds += 1
            if self.range_rounds > MAX_RECONCILE_ROUNDS:
                raise SyncError(f"the peer's ranges did not settle in {MAX_RECONCILE_ROUNDS} "
                                "round trips: it sends fingerprints that never agree")
        rc = Reconcile()
        with exchange.IdRanges(self.env) as ranges:
            for p in self.fps:
                count, fp, _ = ranges.summary(p)
                rc.fingerprints.append((p, count, fp))
            self.sent_lists = {p: ranges.ids(p) for p in self.lists}
        rc.idlists = list(self.sent_lists.items())
        # Artifacts move once every range is compared, each side sending in an order the
        # other can take batch after batch (a check-in after its parent).
        transfer = not self.fps and not self.lists
        self.asked_fp, self.fps, self.lists = set(self.fps), [], []
        me = self.backend.identity()
        header = dict(self.backend._introduce(self.state, me), recon=1,
                      packs=self.backend.dictionary_ids())
        if self.pull:
            header["pull"] = {"max": CHUNK}
            if transfer:
                rc.want = list(self.want)[:WANT_BATCH]
        self.asked_want = bool(rc.want)
        artifacts: list = []
        if self.push:
            header["push"] = {}
            if self.push_q and transfer:
                ids = exchange.in_receivable_order(self.env, self.push_q)
                for aid in self.push_q.keys() - set(ids):  # not held: nothing to send
                    del self.push_q[aid]
                artifacts, done = exchange.artifacts_of(self.env, ids, max_bytes=CHUNK,
                                                        known=self._known)
                for aid in ids[:done]:
                    del self.push_q[aid]
                    self.known.add(aid)
        # A push goes without packed forms: the server's takes are not known yet.
        return Message(header, exchange.for_peer(artifacts, None)[0], rc)

    def absorb(self, answer: Message, report: Report) -> bool:
        """Store what the server answered and plan the next request; True when done."""
        self.backend._check_answer(answer.header)
        report.reconciled = True
        got = answer.header.get("got")
        if self.pulled is not None and isinstance(got, list) and len(got) == 3 \
                and got[0] == self.pulled[0] and isinstance(got[1], int):
            self.pulled = (got[1], str(got[2]))  # what this client just pushed
        if self.asked_want and not any(aid in self.want for aid, _ in answer.artifacts):
            raise SyncError("the peer listed artifacts that it does not send")
        if answer.artifacts:
            received = exchange.receive(self.env, answer.artifacts,
                                        dictionaries=answer.dictionaries)
            report.artifacts_received += received.artifacts
            report.checkins_new += len(received.checkins)
            if received.artifacts and self.acked == received.before:
                self.acked = received.last
            for aid, _ in answer.artifacts:
                self.want.pop(aid, None)
        self._take(answer)
        return self.done

    def _take(self, answer: Message) -> None:
        """Plan from the ranges, id lists and ids of an answer."""
        h = answer.header
        if self.peer_epoch is None:
            base = h.get("base")
            if not (isinstance(base, list) and len(base) == 2 and isinstance(base[0], int)):
                raise SyncError("the peer's reconcile answer lacks its base")
            self.peer_epoch, self.pulled = h["epoch"], (base[0], str(base[1]))
        elif h["epoch"] != self.peer_epoch:
            raise SyncError("the peer was rebuilt during the sync: run it again")
        rc = answer.reconcile or Reconcile()
        if len(rc.fingerprints) + len(rc.idlists) > MAX_RANGES:
            raise SyncError(f"the peer split the ids into over {MAX_RANGES} ranges at once")
        self.ids_seen += rc.id_count()
        if self.ids_seen > MAX_IDS:
            raise SyncError(f"the peer named over {MAX_IDS} ids in one reconciliation")
        with exchange.IdRanges(self.env) as ranges:
            for p, count, fp in rc.fingerprints:
                if not p or p[:-1] not in self.asked_fp:
                    raise SyncError(f"the peer answered range {p!r}, which it was not asked")
                mine, mine_fp, _ = ranges.summary(p)
                if (mine, mine_fp) == (count, fp):
                    self.agreed.add(p)
                elif count == 0:
                    if self.push:
                        self.push_q.update(dict.fromkeys(ranges.ids(p)))
                elif (mine <= IDLIST_MAX and count <= WHOLE_LIST) or len(p) == 2 * ID_LEN:
                    self.lists.append(p)
                else:
                    self.fps += [f"{p}{i:x}" for i in range(16)]
            for p, ids in rc.idlists:
                if p not in self.asked_fp:
                    raise SyncError(f"the peer listed range {p!r}, which it was not asked")
                if len(ids) > WHOLE_LIST:
                    raise SyncError(f"the peer listed {len(ids)} ids for one range "
                                    f"(at most {WHOLE_LIST})")
                theirs = set(ids)
                self.known |= theirs
                mine_ids = ranges.ids(p)
                if self.pull:
                    held = set(mine_ids)
                    self.want.update(dict.fromkeys(a for a in ids if a not in held))
                if self.push:
                    self.push_q.update(dict.fromkeys(a for a in mine_ids if a not in theirs))
            listed = {aid for ids in self.sent_lists.values() for aid in ids}
            if rc.need or rc.have:
                lengths = {len(p) for p in self.sent_lists}
                for aid in rc.need + rc.have:
                    h = aid.hex()
                    if not any(h[:n] in self.sent_lists for n in lengths):
                        raise SyncError("the peer named an id outside the ranges it was sent")
            need = set(rc.need)
            if not need <= listed:
                raise SyncError("the peer asked for artifacts this store did not list")
            self.known |= listed - need
            if self.push:
                self.push_q.update(dict.fromkeys(rc.need))
            if self.pull:
                self.want.update(dict.fromkeys(a for a in rc.have if not ranges.has(a)))
        self.sent_lists = {}
        if len(self.fps) + len(self.lists) > MAX_RANGES:
            raise SyncError(f"the peer split the ids into over {MAX_RANGES} ranges at once")

    def finish(self) -> None:
        """Set the watermarks: the next sync is again the one-round-trip exchange."""
        if self.pull and self.pulled is not None:
            self.state["epoch"] = self.peer_epoch
            self.state["after"], self.state["at"] = self.pulled
            if not self.state["at"]:
                self.state.pop("at")
        if self.acked is not None:
            self.state["acked_epoch"], self.state["acked"] = self.epoch, self.acked


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
        """This store's project code, made now if it has none (a store that others clone),
        and its store id and epoch with it (what Fossil's codes are derived from)."""
        exchange.identity(self.env)
        mine = self.repo.plumbing.meta_get(PROJECT_NS, "project")
        if mine is None:
            import os

            mine = os.urandom(16).hex().encode()
            self.repo.plumbing.meta_put(PROJECT_NS, "project", mine)
        return mine.decode()

    # ---- peer state
    def history_gap(self) -> bool:
        """True while a check-in's parent is still missing (a phantom): a chunk brought a
        check-in before its parent (a base sent ahead), and what looks like a fork is a
        gap that the next chunk fills."""
        with self.env.read() as txn:
            child = txn.cursor(db=self.env.db["child"])
            for pid in txn.cursor(db=self.env.db["phantom"]).iternext(values=False):
                if child.set_range(pid) and child.key()[:len(pid)] == pid:
                    return True
        return False

    def join_forks(self, report: Report | None = None) -> None:
        """Merge the forks that a received change made, where the sides do not conflict
        (not while the history has a gap: the exchange that fills it joins them)."""
        if self.readonly or self.env.readonly or self.history_gap():
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

    def save_peer_state(self, peer: str, state: dict, ahead: dict | None = None) -> None:
        """Save ``state`` (and ``ahead``: what the pull stream sent ahead of itself)."""
        raw = json.dumps(state, sort_keys=True).encode()
        if self.repo.plumbing.meta_get(PEER_NS, peer) != raw:  # a no-op sync writes nothing
            self.repo.plumbing.meta_put(PEER_NS, peer, raw)
        if ahead is not None:
            packed = b"".join(aid + seq.to_bytes(8, "big") for aid, seq in ahead.items())
            if self.repo.plumbing.meta_get(AHEAD_NS, peer) != (packed or None):
                if packed:
                    self.repo.plumbing.meta_put(AHEAD_NS, peer, packed)
                else:
                    self.repo.plumbing.meta_delete(AHEAD_NS, peer)

    def peer_ahead(self, peer: str) -> dict[bytes, int]:
        """What the peer's pull stream sent ahead of itself: id -> where it reaches it."""
        raw = self.repo.plumbing.meta_get(AHEAD_NS, peer) or b""
        step = ID_LEN + 8
        return {raw[i:i + ID_LEN]: int.from_bytes(raw[i + ID_LEN:i + step], "big")
                for i in range(0, len(raw) - step + 1, step)}

    # ---- client side
    def _introduce(self, state: dict, me: dict) -> dict:
        """The request's naming of this store: in full on first contact, else short."""
        if me["project"] is None:
            return {}
        if not state.get("epoch") and not state.get("acked_epoch"):
            return {"store": me["store"], "project": me["project"]}
        return {"pf": me["project"][:PF_LEN]}

    def needs_reconcile(self, state: dict, *, pull: bool, push: bool) -> bool:
        """True when this side cannot trust the watermarks kept of the peer: it holds
        artifacts and never exchanged them with it, or it was rebuilt (another epoch),
        or the peer's acknowledgement is above what it holds."""
        me = self.identity()
        if me["last"] == 0:
            return False  # an empty store: a clone is the stream from zero
        if push and (state.get("acked_epoch") != me["epoch"] or state.get("acked", 0) > me["last"]):
            return True
        return pull and not state.get("epoch")

    def reconciliation(self, state: dict, *, pull: bool, push: bool,
                       first: Message | None = None) -> Reconciliation:
        """The client's side of a set reconciliation with the peer (``first``: the
        server's answer that started it)."""
        return Reconciliation(self, state, pull=pull, push=push, first=first)

    def request(self, state: dict, *, pull: bool, push: bool, ahead: dict | None = None,
                chunk: int | None = None) -> Message:
        """The request of one round trip, from the state kept of the server (``ahead``:
        the ids the pull stream sent ahead of itself, with where it reaches them; ``chunk``:
        the pull chunk size to ask for, default ``next_chunk(None)``)."""
        me = self.identity()
        header = dict(self._introduce(state, me), packs=self.dictionary_ids())
        echo: list[bytes] = []
        if pull:
            wm = {}
            if state.get("epoch"):
                wm = {"epoch": state["epoch"], "after": state.get("after", 0)}
                if state.get("at"):
                    wm["at"] = state["at"]
            chunk = chunk or next_chunk(None)
            if chunk != DEFAULT_MAX:
                wm["max"] = chunk
            if ahead and wm:
                # The chunk ends where the ids named back end: those beyond wait.
                wm["until"] = until = wm["after"] + max(AHEAD_WINDOW, 2 * state.get("span", 0))
                echo = [aid for aid, seq in ahead.items() if seq <= until]
            header["pull"] = wm
        artifacts: list = []
        self._sent_epoch = me["epoch"]
        if push:
            after = state.get("acked", 0) if state.get("acked_epoch") == me["epoch"] else 0
            artifacts, reached = exchange.artifacts_after(self.env, after, max_bytes=CHUNK)
            artifacts = exchange.for_peer(artifacts, None)[0]  # the server's takes: unknown
            header["push"] = {"reached": reached}
        return Message(header, artifacts, Reconcile(ahead=echo) if pull and echo else None)

    def _check_answer(self, h: dict) -> None:
        if h.get("error"):
            raise SyncError(f"the peer refused the exchange: {h['error']}")
        if not isinstance(h.get("epoch"), str):
            raise SyncError("the peer's answer lacks its epoch")
        self._check_project(h.get("project"))

    def absorb(self, state: dict, response: Message, report: Report) -> bool:
        """Store what the server answered and update ``state``; True when it has more."""
        h = response.header
        self._check_answer(h)
        acked = h.get("acked")
        if isinstance(acked, int):
            state["acked_epoch"], state["acked"] = self._sent_epoch, acked
        if response.artifacts:
            mine = exchange.identity(self.env)[1]
            got = exchange.receive(self.env, response.artifacts,
                                   dictionaries=response.dictionaries)
            report.artifacts_received += got.artifacts
            report.checkins_new += len(got.checkins)
            known = state.get("acked_epoch") == mine or (
                got.before == 0 and "acked_epoch" not in state)  # an empty store: a clone
            if known and state.get("acked", 0) == got.before:
                # The server had all of this store, and what was just numbered is its own.
                state["acked_epoch"], state["acked"] = mine, got.last
        pulled = h.get("pulled")
        if isinstance(pulled, int):
            if h.get("more") and state.get("epoch") in (None, h["epoch"]):
                state["span"] = pulled - state.get("after", 0)  # how far a chunk goes
            if pulled != state.get("after") or state.get("epoch") != h["epoch"]:
                state.pop("at", None)
            state["epoch"], state["after"] = h["epoch"], pulled
            if isinstance(h.get("at"), str) and h["at"]:
                state["at"] = h["at"]
        return bool(h.get("more"))

    # ---- server side
    def _check_peer(self, h: dict, me: dict, out: dict) -> None:
        """Refuse a client of another project (named in full, or by its first digits)."""
        mine = me["project"]
        theirs, pf = h.get("project"), h.get("pf")
        if mine is not None and ((theirs is not None and theirs != mine) or (
                pf is not None and (not isinstance(pf, str) or not mine.startswith(pf)))):
            raise SyncError(f"the peer holds another project ({theirs or pf}; this store is "
                            f"{mine}): nothing was exchanged")
        if pf is None:
            out["store"], out["project"] = me["store"], mine

    def _store_push(self, request: Message, me: dict) -> exchange.Received | None:
        """Store what a request pushed (it must say it pushes); adopt its project."""
        h = request.header
        if "push" not in h:
            if request.artifacts:
                raise SyncError("artifacts sent without a push")
            return None
        if self.readonly or self.env.readonly:
            raise PermissionError("this store is a read-only replica: it takes no push")
        got = None
        if request.artifacts:
            got = exchange.receive(self.env, request.artifacts,
                                   dictionaries=request.dictionaries)
            if got.checkins:
                self.join_forks()  # before the pull below: the client gets the merge
        theirs = h.get("project")
        if me["project"] is None and isinstance(theirs, str):
            self.repo.plumbing.meta_put(PROJECT_NS, "project", theirs.encode())
        return got

    def answer(self, request: Message) -> Message:
        """The server's answer to one request (errors in the peer's data raise SyncError
        or IntegrityError; nothing of a refused request is stored). Packed forms go as
        they are, with the dictionaries the client lacks, to a client that takes them
        (its request's "packs"); to any other without their dictionary."""
        takes = _takes(request.header)
        answer = self._answer(request)
        answer.artifacts, answer.dictionaries = exchange.for_peer(answer.artifacts, takes)
        return answer

    def dictionary_ids(self) -> list[int]:
        """The ids of this store's compression dictionaries (a request's "packs")."""
        if "zdict" not in self.env.db:
            return []
        with self.env.read() as txn:
            return [int.from_bytes(k, "big") for k in
                    txn.cursor(db=self.env.db["zdict"]).iternext(values=False)]

    def _answer(self, request: Message) -> Message:
        h = request.header
        me = self.identity()
        out = {"epoch": me["epoch"]}
        self._check_peer(h, me, out)
        if h.get("recon"):
            if request.reconcile is None:
                raise SyncError("a reconcile request without its reconcile section")
            return self._answer_reconcile(request, me, out)
        push = h.get("push")
        if push is not None and (not isinstance(push, dict)
                                 or not isinstance(push.get("reached"), int)):
            raise SyncError("a push without the sequence number it reached")
        self._store_push(request, me)
        if push is not None:
            out["acked"] = push["reached"]
        pull = h.get("pull")
        artifacts: list = []
        if pull is not None:
            if not isinstance(pull, dict):
                raise SyncError("a malformed pull")
            epoch, after = pull.get("epoch"), pull.get("after", 0)
            if not isinstance(after, int) or after < 0:
                raise SyncError("a malformed pull watermark")
            last = exchange.last_seq(self.env)  # with what this request pushed
            if epoch is None:
                after = 0
            elif (epoch != me["epoch"] or after > last or (
                    after and "at" in pull and pull["at"] != _short(
                        exchange.seq_id(self.env, after)))):
                # The watermark is of another numbering: compare the sets instead.
                out["store"], out["project"] = me["store"], me["project"]
                return self._start_reconcile(out)
            reached, ahead = after, []
            if after < last:
                # What this request pushed need not come back, nor what an earlier chunk
                # sent ahead.
                skip = {aid for aid, _ in request.artifacts}
                until = pull.get("until")
                artifacts, reached, ahead = exchange.stream_after(
                    self.env, after, max_bytes=_limit(pull), skip=skip,
                    ahead=request.reconcile.ahead if request.reconcile else (),
                    until=until if isinstance(until, int) and until > after else None)
            out["pulled"] = reached
            if reached and (reached != after or "at" not in pull):
                out["at"] = _short(exchange.seq_id(self.env, reached))
            if reached < last:
                out["more"] = True
                out["left"] = int((last - reached) * exchange.stored_average(self.env))
                if ahead:
                    return Message(out, artifacts, Reconcile(ahead_at=ahead))
        return Message(out, artifacts)

    def _start_reconcile(self, out: dict) -> Message:
        """An answer that starts a reconciliation: the whole id set split 16 ways."""
        with exchange.IdRanges(self.env) as ranges:
            last, lid = ranges.last()
            out["base"] = [last, _short(lid)]
            count, _, kids = ranges.summary("")
            if count <= IDLIST_MAX:
                rc = Reconcile(idlists=[("", ranges.ids(""))])
            else:
                rc = Reconcile(fingerprints=_kids("", kids))
        return Message(out, [], rc)

    def _answer_reconcile(self, request: Message, me: dict, out: dict) -> Message:
        """One round of a reconciliation the client drives: store its artifacts, compare
        its ranges, send what it wants and what its id lists lack."""
        h, rc = request.header, request.reconcile
        _check_prefixes([p for p, _, _ in rc.fingerprints] + [p for p, _ in rc.idlists])
        pull = h.get("pull")
        if pull is not None and not isinstance(pull, dict):
            raise SyncError("a malformed pull")
        got = self._store_push(request, me)
        merged: list = []
        if got is not None and got.artifacts:
            # What this request pushed, and the merges it made here, which go back in
            # this answer: the client's pull watermark passes both.
            merged, last = exchange.artifacts_after(self.env, got.last, max_bytes=CHUNK)
            out["got"] = [got.before, last, _short(exchange.seq_id(self.env, last))]
        answer = Reconcile()
        theirs_known: set[bytes] = set()
        have: list[bytes] = []
        with exchange.IdRanges(self.env) as ranges:
            last, lid = ranges.last()
            out["base"] = [last, _short(lid)]
            for p, count, fp in rc.fingerprints:
                mine, mine_fp, kids = ranges.summary(p)
                if (mine, mine_fp) == (count, fp):
                    continue
                if (mine <= IDLIST_MAX and count <= WHOLE_LIST) or (
                        count == 0 and mine <= WHOLE_LIST) or not kids:
                    answer.idlists.append((p, ranges.ids(p)))
                else:
                    answer.fingerprints += _kids(p, kids)
            for p, ids in rc.idlists:
                theirs = set(ids)
                theirs_known |= theirs
                mine_ids = ranges.ids(p)
                held = set(mine_ids)
                answer.need += [aid for aid in ids if aid not in held]
                have += [aid for aid in mine_ids if aid not in theirs]
            wanted = [aid for aid in rc.want if ranges.has(aid)] if pull is not None else []
        artifacts: list = merged
        if wanted:
            sent, _ = exchange.artifacts_of(
                self.env, exchange.in_receivable_order(self.env, wanted),
                max_bytes=_limit(pull), skip=theirs_known | {aid for aid, _ in merged})
            artifacts = sent + merged
        answer.have = have
        if "push" not in h:
            answer.need = []
        return Message(out, artifacts, answer)

    # ---- used by the Fossil xfer protocol
    def fossil_codes(self) -> tuple[str, str]:
        """(project code, server code) as Fossil names them: 40 hex digits, stable.

        The project code is derived from this store's project (so every herofossil peer
        of one project gives a Fossil client the same one), or is the project itself
        when that already is a Fossil code (a store cloned from Fossil); the server code
        is derived from the store id.
        """
        import hashlib

        from herofossil.sync.xfer import is_hash

        me = self.identity()
        project = me["project"]
        if project is None and not (self.readonly or self.env.readonly):
            project = self.ensure_project()
        if project is None or not is_hash(project):
            seed = f"herofossil-project/{project or me['store']}"
            project = hashlib.sha1(seed.encode()).hexdigest()
        server = hashlib.sha1(f"herofossil-server/{me['store']}".encode()).hexdigest()
        return project, server

    def stored_after(self, seq: int, max_bytes: int) -> tuple[list[tuple[int, bytes, bytes]],
                                                               int]:
        """(seq, id, stored form) of the artifacts inserted after ``seq``, in insert order and
        without their delta bases (a Fossil clone takes a delta before its base), about
        ``max_bytes`` of them; and the sequence number reached."""
        from herofossil.store.sequences import Numbered

        out: list[tuple[int, bytes, bytes]] = []
        size, reached = 0, seq
        with self.env.read() as txn:
            blob = self.env.db["blob"]
            for reached, aid in Numbered(txn, self.env.db["seq"]).after(seq):  # noqa: B007
                stored = txn.get(aid, db=blob)
                if stored is None:
                    continue
                sent = exchange.portable(txn, self.env.db, aid, stored)
                out.append((reached, aid, sent))
                size += len(sent)  # what goes out: a large file's parts go whole
                if size >= max_bytes:
                    break
        return out, reached

    def ids_after(self, seq: int) -> list[tuple[int, bytes]]:
        """(seq, id) of the stored artifacts inserted after ``seq``, in insert order."""
        from herofossil.store.sequences import Numbered

        with self.env.read() as txn:
            blob = self.env.db["blob"]
            return [(n, aid) for n, aid in Numbered(txn, self.env.db["seq"]).after(seq)
                    if txn.get(aid, db=blob) is not None]

    def missing(self, aids) -> list[bytes]:
        """Those of ``aids`` this store does not hold."""
        with self.env.read() as txn:
            blob = self.env.db["blob"]
            return [aid for aid in aids if txn.get(aid, db=blob) is None]

    def stored_forms(self, aids) -> dict[bytes, bytes]:
        """The stored forms of those of ``aids`` this store holds, from one snapshot."""
        with self.env.read() as txn:
            blob = self.env.db["blob"]
            found = ((aid, txn.get(aid, db=blob)) for aid in aids)
            return {aid: exchange.portable(txn, self.env.db, aid, s)
                    for aid, s in found if s is not None}

    def contents(self, aids) -> dict[bytes, bytes]:
        """The bytes of those of ``aids`` this store holds (delta chains followed)."""
        from herofossil.store.blobs import BlobReader

        out = {}
        with self.env.read() as txn:
            reader = BlobReader(txn, self.env.db)
            for aid in aids:
                if reader.has(aid):
                    out[aid] = reader.content(aid)
        return out

    def receive(self, artifacts: list[tuple[bytes, bytes]]) -> exchange.Received:
        """Verify and store artifacts from a peer (all or nothing), then join the forks
        they made where the sides do not conflict."""
        if self.readonly or self.env.readonly:
            raise PermissionError("this store is a read-only replica: it takes no push")
        got = exchange.receive(self.env, artifacts, deltify=True)  # Fossil sends texts
        if got.checkins:
            self.join_forks()
        return got
