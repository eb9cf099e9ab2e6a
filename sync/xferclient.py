"""The client side of Fossil's xfer protocol: clone, pull, push and sync with a real
``fossil server`` (or anything that speaks its protocol).

URLs name the protocol: ``fossil+http://[USER[:PASSWORD]@]HOST[:PORT][/PATH]``
(or ``fossil+https://``) is the Fossil server at ``http://HOST:PORT/PATH``; a
user logs in with Fossil's scheme (the password from the URL, else
``$HEROFOSSIL_SYNC_PASSWORD``). Artifacts arrive as Fossil sends them (whole
or as deltas, possibly before their bases) and are stored through the
backend's ``receive`` (verified, crosslinked, all of a round or nothing) once
their bytes can be rebuilt. SHA1-named artifacts of older repositories keep
their names and are verified with SHA1 (``keys.id_key``).

Peer state (``SyncBackend.peer_state``, keyed by the URL without
credentials): ``{"epoch", "pushed"}``, the insert sequence number up to
which the server has every artifact of this store.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
from urllib.parse import unquote, urlsplit

from herofossil.errors import HeroFossilError, IntegrityError, SyncError
from herofossil.store import blobs
from herofossil.store.keys import id_key, id_name
from herofossil.sync import xfer
from herofossil.sync.backend import Report, SyncBackend

SCHEME_PREFIX = "fossil+"
PASSWORD_ENV = "HEROFOSSIL_SYNC_PASSWORD"
MAX_ROUNDS = 10_000
# Fossil's client asks for at most this many artifacts a round.
MAX_GIMME = 200
# Fossil's delta chains can be thousands deep; this store bounds them (blobs.MAX_CHAIN).
CHAIN_LIMIT = blobs.MAX_CHAIN // 2
TIMEOUT = 300
CLIENT_VERSION = b"pragma client-version 22100 20230226 192424\n"
_CLUSTER_LINE = re.compile(rb"M ([0-9a-f]{40}|[0-9a-f]{64})\n")


def is_fossil_url(url: str) -> bool:
    """True for a URL this module serves (``fossil+http://`` or ``fossil+https://``)."""
    return url.startswith(SCHEME_PREFIX + "http://") or url.startswith(
        SCHEME_PREFIX + "https://")


class Peer:
    """A Fossil server: where to post, who logs in, what it said its codes are."""

    def __init__(self, url: str):
        if not is_fossil_url(url):
            raise SyncError(f"{url!r} is not a fossil+http:// or fossil+https:// URL")
        parts = urlsplit(url[len(SCHEME_PREFIX):])
        if not parts.hostname:
            raise SyncError(f"{url!r} names no host")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = parts.path or "/"
        self.user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        self.password = password if password is not None else os.environ.get(PASSWORD_ENV)
        port = f":{parts.port}" if parts.port else ""
        self.key = f"{SCHEME_PREFIX}{parts.scheme}://{parts.hostname}{port}{self.path}"
        self.project: str | None = None
        self.server: str | None = None

    def login_card(self, rest: bytes) -> bytes:
        """The login card for a message whose remainder is ``rest`` (b"" without a user,
        or before the project code is known)."""
        if not self.user or self.project is None:
            return b""
        secret = _secret(self.project, self.user, self.password or "")
        nonce = hashlib.sha1(rest).hexdigest()
        sig = hashlib.sha1((nonce + secret).encode()).hexdigest()
        return f"login {xfer.fossilize(self.user)} {nonce} {sig}\n".encode()

    def exchange(self, body: bytes, report: Report) -> list[xfer.Card]:
        """Post one message (its cards, without login) and parse the reply."""
        # Fossil's server refuses a client that does not say it is 2.0 or later; the
        # closing random comment makes every nonce unique.
        rest = (CLIENT_VERSION + body + b"# " + os.urandom(20).hex().encode() + b"\n")
        payload = self.login_card(rest) + rest
        data = xfer.compress(payload)
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", self.path, body=data,
                         headers={"Content-Type": xfer.COMPRESSED, "Connection": "close"})
            resp = conn.getresponse()
            reply = resp.read()
            kind = resp.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as exc:
            raise SyncError(f"the Fossil server {self.key} is unreachable: {exc}",
                            peer=self.key) from exc
        finally:
            conn.close()
        report.round_trips += 1
        report.bytes_sent += len(data)
        report.bytes_received += len(reply)
        if resp.status != 200:
            raise SyncError(f"the Fossil server {self.key} answered HTTP {resp.status}",
                            peer=self.key)
        if not kind.startswith(xfer.COMPRESSED):
            raise SyncError(f"{self.key} does not speak Fossil's sync protocol (it answered "
                            f"{kind or 'no content type'})", peer=self.key)
        try:
            return xfer.parse(xfer.decode_body(reply, kind))
        except xfer.XferError as exc:
            raise SyncError(f"the Fossil server {self.key} sent a malformed reply: {exc}",
                            peer=self.key) from exc


def _secret(project: str, user: str, password: str) -> str:
    from herofossil.sync.fossilusers import secret

    return secret(project, user, password)


class _Incoming:
    """Artifacts received but not yet stored: deltas wait for their bases."""

    def __init__(self, backend: SyncBackend, peer: Peer):
        self.backend = backend
        self.peer = peer
        self.pending: dict[str, tuple[str | None, bytes]] = {}
        self.depth: dict[str, int] = {}  # delta hops to a whole form, of what was stored

    def add(self, card: xfer.Card) -> None:
        name = card.args[0]
        if not xfer.is_hash(name):
            raise SyncError(f"{self.peer.key} sent a file card for {name[:80]!r}, which is "
                            "not an artifact name", peer=self.peer.key)
        src = card.args[1] if len(card.args) == (3 if card.name == "file" else 4) else None
        data = card.payload if card.name == "file" else xfer.uncompress(card.payload)
        self.pending[name] = (src, data)

    def store(self, report: Report) -> list[bytes]:
        """Store what can be rebuilt now (one transaction); returns the ids stored.

        A delta is kept as it came while its chain stays short (``CHAIN_LIMIT`` hops to
        a whole artifact); past that, and on a base stored before this session, whole.
        """
        from herofossil import delta

        whole: dict[str, bytes] = {}
        bases = {s for s, _ in self.pending.values() if s and s not in self.pending}
        if bases:
            have = self.backend.contents([id_key(s) for s in bases if xfer.is_hash(s)])
            whole.update((id_name(aid), data) for aid, data in have.items())

        def resolve(name: str) -> bool:
            chain, cur = [], name
            while cur not in whole:
                item = self.pending.get(cur)
                if item is None or len(chain) > len(self.pending):
                    return False  # its base has not come (yet), or the chain loops
                chain.append(cur)
                if item[0] is None:
                    break
                cur = item[0]
            for link in reversed(chain):
                src, data = self.pending[link]
                if src is not None:
                    try:
                        data = delta.apply(whole[src], data)
                    except HeroFossilError as exc:
                        raise SyncError(f"{self.peer.key} sent a damaged delta for {link}: "
                                        f"{exc}", peer=self.peer.key) from exc
                whole[link] = data
                order.append(link)
            return True

        order: list[str] = []  # bases before the deltas on them
        for name in list(self.pending):
            resolve(name)
        batch = []
        for name in order:
            src, data = self.pending.pop(name)
            hops = self.depth.get(src, CHAIN_LIMIT) + 1 if src is not None else 0
            if 0 < hops <= CHAIN_LIMIT:
                batch.append((id_key(name), blobs.encode_delta(id_key(src), data)))
            else:
                hops = 0
                batch.append((id_key(name), blobs.encode_whole(whole[name])))
            self.depth[name] = hops
        if not batch:
            return []
        try:
            got = self.backend.receive(batch)
        except IntegrityError as exc:
            raise SyncError(f"{self.peer.key} sent bad data: {exc}", peer=self.peer.key) from exc
        report.artifacts_received += got.artifacts
        report.checkins_new += len(got.checkins)
        return [aid for aid, _ in batch]


def _error(peer: Peer, cards: list[xfer.Card]) -> str | None:
    for card in cards:
        if card.name == "error":
            return card.args[0] if card.args else "error"
    return None


def _codes(peer: Peer, cards: list[xfer.Card]) -> None:
    for card in cards:
        if card.name == "push" and len(card.args) == 2:
            peer.server, peer.project = card.args


def clone(url: str, path: str | os.PathLike, *, progress=None):
    """Copy the Fossil repository at ``url`` into a new store at ``path``; returns (the
    ``Repo``, the ``Report``)."""
    from herofossil.store.repo import Repo

    peer = Peer(url)  # a URL that names no server creates no store
    repo = Repo.open(os.fspath(path), create=True)
    try:
        report = _clone(repo, peer, progress)
    except BaseException:
        repo.close()
        raise
    return repo, report


def _clone(repo, peer: Peer, progress) -> Report:
    backend = SyncBackend(repo)
    report = Report()
    incoming = _Incoming(backend, peer)
    seq, retried = 1, False
    for _ in range(MAX_ROUNDS):
        cards = peer.exchange(f"clone 3 {seq}\n".encode(), report)
        _codes(peer, cards)
        err = _error(peer, cards)
        if err is not None:
            # The first round goes without login (the project code is not known yet).
            if not retried and peer.user and peer.project and "not authorized" in err:
                retried = True
                continue
            raise SyncError(f"the Fossil server {peer.key} refused the clone: {err}",
                            peer=peer.key)
        nxt = None
        for card in cards:
            if card.name in ("file", "cfile"):
                incoming.add(card)
            elif card.name == "clone_seqno" and card.args and card.args[0].isdigit():
                nxt = int(card.args[0])
        if peer.project is None or nxt is None:
            raise SyncError(f"{peer.key} answered a clone without its project code or "
                            "clone sequence number", peer=peer.key)
        backend._check_project(peer.project)  # a new store takes the repository's
        incoming.store(report)
        if progress is not None:
            progress("clone", report.artifacts_received, None)
        if nxt == 0:
            break
        seq = nxt
    if incoming.pending:
        missing = sorted({s for s, _ in incoming.pending.values() if s})[:3]
        raise SyncError(f"{peer.key} sent {len(incoming.pending)} deltas whose bases never "
                        f"came (e.g. on {', '.join(missing)})", peer=peer.key)
    _rounds(backend, peer, report, pull=True, push=False)
    backend.save_peer_state(peer.key, {"epoch": backend.identity()["epoch"],
                                       "pushed": backend.identity()["last"]})
    return report


def sync(repo, url: str, *, pull: bool = True, push: bool = True, progress=None) -> Report:
    """Pull and/or push with the Fossil server at ``url`` (the store must share its
    project: a clone of it, or a store it was pushed from)."""
    backend = SyncBackend(repo)
    peer = Peer(url)
    report = Report()
    peer.project, _ = backend.fossil_codes()
    _rounds(backend, peer, report, pull=pull, push=push, progress=progress)
    return report


def _rounds(backend: SyncBackend, peer: Peer, report: Report, *, pull: bool, push: bool,
            progress=None) -> None:
    """Fossil's sync loop: gimme what the server announced, send what it asked for."""
    incoming = _Incoming(backend, peer)
    _, mine = backend.fossil_codes()
    project = peer.project or backend.fossil_codes()[0]
    state = backend.peer_state(peer.key)
    me = backend.identity()
    pushed = state.get("pushed", 0) if state.get("epoch") == me["epoch"] else 0
    start_last = me["last"]
    wanted: list[str] = []
    to_send: list[str] = []
    announce = push
    for _ in range(MAX_ROUNDS):
        w = xfer.Writer()
        if pull:
            w.card("pull", mine, project)
        if push:
            w.card("push", mine, project)
        for name in wanted[:MAX_GIMME]:
            w.card("gimme", name)
        wanted = wanted[MAX_GIMME:]
        sent = _send(backend, to_send, w)
        report.artifacts_sent += sent
        to_send = []
        if announce:
            for _seq, aid in backend.ids_after(pushed):
                w.card("igot", id_name(aid))
            announce = False
        cards = peer.exchange(w.getvalue(), report)
        err = _error(peer, cards)
        if err is not None:
            raise SyncError(f"the Fossil server {peer.key} refused the exchange: {err}",
                            peer=peer.key)
        announced = []
        for card in cards:
            if card.name in ("file", "cfile"):
                incoming.add(card)
            elif card.name == "igot" and card.args and xfer.is_hash(card.args[0]):
                if card.args[1:2] != ["1"]:
                    announced.append(card.args[0])
            elif card.name == "gimme" and card.args and push:
                to_send.append(card.args[0])
            elif card.name == "message" and card.args and card.args[0].startswith("pull only"):
                push = False
                to_send = []
        stored = incoming.store(report)
        if pull:
            wanted += _missing(backend, announced + _cluster_members(backend, stored))
            wanted = list(dict.fromkeys(n for n in wanted if n not in incoming.pending))
        if progress is not None:
            progress("sync", report.artifacts_received + report.artifacts_sent, None)
        if not wanted and not to_send:
            break
    else:
        raise SyncError(f"sync with {peer.key} did not settle in {MAX_ROUNDS} round trips",
                        peer=peer.key)
    if report.checkins_new:
        backend.join_forks(report)
    if push or pushed == 0:
        backend.save_peer_state(peer.key, {"epoch": me["epoch"], "pushed": start_last})


def _missing(backend: SyncBackend, names: list[str]) -> list[str]:
    ids = {id_key(n): n for n in names if xfer.is_hash(n)}
    return [ids[aid] for aid in backend.missing(list(ids))]


def _cluster_members(backend: SyncBackend, stored: list[bytes]) -> list[str]:
    """The artifacts the clusters among ``stored`` list."""
    out: list[str] = []
    for data in backend.contents(stored).values():
        if data.startswith(b"M ") and data.rstrip().splitlines()[-1].startswith(b"Z "):
            out += [m.decode() for m in _CLUSTER_LINE.findall(data)]
    return out


def _send(backend: SyncBackend, names: list[str], w: xfer.Writer) -> int:
    """File cards (whole artifacts: the message is compressed) for what the server asked."""
    ids = [id_key(n) for n in names if xfer.is_hash(n)]
    found = backend.contents(ids)
    for aid, data in found.items():
        w.file(id_name(aid), data)
    return len(found)
