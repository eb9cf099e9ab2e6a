"""The server side of Fossil's xfer protocol, on the sync backend.

``answer`` takes one request body (what ``fossil clone/pull/push/sync``
posts), who may do what without logging in, and the backend; it returns the
reply body and its content type. It lists, reads and receives artifacts
through the backend (received ones go through ``exchange.receive`` and
crosslink, all of a round or nothing). Besides answering cards it makes
clusters as Fossil's server does, so that clients announce little on each
sync: cluster state (which artifacts some cluster lists) is local, in the
store's metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

from herofossil import delta
from herofossil.errors import HeroFossilError, IntegrityError, SyncError
from herofossil.store import blobs
from herofossil.store.keys import id_key, id_name
from herofossil.store.lru import LRU
from herofossil.sync import fossilusers
from herofossil.sync.xfer import (
    COMPRESSED,
    DEBUG,
    UNCOMPRESSED,
    Card,
    Writer,
    XferError,
    compress,
    decode_body,
    encode_body,
    is_hash,
    parse,
    uncompress,
)

log = logging.getLogger("herofossil.sync")
CONTENT_PREFIX = "application/x-fossil"
STATE_NS = "fossil-xfer"
# Fossil's own server sends about this much per round (its max-download setting).
ROUND_BYTES = 5_000_000
# Fossil makes a cluster once this many artifacts are unclustered, of at most
# CLUSTER_MAX M cards (the rest, when fewer than CLUSTER_MIN more, join the last one).
CLUSTER_MIN = 100
CLUSTER_MAX = 800
MAX_GIMME = 500
MAX_PARENT_DELTAS = 256
# cfile forms (zlib, as Fossil keeps them) of what clones were sent lately, by (artifact,
# delta base): the recompression from zstd is most of the server's work in a clone.
_PACKED = LRU(max_bytes=64 << 20, size_of=lambda v: len(v[1]) + 120)
# Fossil's hash-policy setting: 2 = sha3 (what a new Fossil repository says).
HASH_POLICY = "2"


@dataclass
class Rights:
    """What the requester may do."""

    read: bool = False
    write: bool = False
    user: str | None = None


@dataclass
class _Request:
    pull: bool = False
    push: bool = False
    clone: tuple[int, int] | None = None  # (protocol version, sequence number)
    files: list[Card] = field(default_factory=list)
    igot: list[str] = field(default_factory=list)
    gimme: list[str] = field(default_factory=list)
    reqconfig: list[str] = field(default_factory=list)
    since: int | None = None  # from our cookie: the client has what we had up to here


class _Refused(Exception):
    """Ends a round with an error card (after what ``before`` names)."""

    def __init__(self, text: str, before: tuple[str, ...] = ()):
        super().__init__(text)
        self.text = text
        self.before = before


def answer(backend, body: bytes, content_type: str, *, anon_read: bool = False,
           anon_write: bool = False, failed_login=None) -> tuple[bytes, str]:
    """The reply (body, content type) to one xfer request; ``anon_read``/``anon_write``:
    what a requester without a login may do (the server's rules for anonymous access);
    ``failed_login(name)`` is told of a login that failed."""
    debug = content_type.split(";")[0].strip().lower() == DEBUG
    out = Writer()
    kind = DEBUG if debug else COMPRESSED
    try:
        payload = decode_body(body, content_type)
        cards = parse(payload)
        rights = _login(backend, payload, cards, Rights(anon_read, anon_write), failed_login)
        kind = _serve(backend, cards, rights, out, debug)
    except _Refused as exc:
        out = Writer()
        project, server = backend.fossil_codes()
        if "push" in exc.before:
            out.card("push", server, project)
        out.error(exc.text)
    except XferError as exc:
        out = Writer()
        out.error(f"{exc}{': ' + exc.card if exc.card else ''}")
    except HeroFossilError as exc:  # the store failed: say so, as fossil's server would
        log.warning("a Fossil sync request failed: %s", exc)
        out = Writer()
        out.error(f"server error: {exc}")
    return encode_body(out.getvalue(), kind), kind


def _login(backend, payload: bytes, cards: list[Card], rights: Rights,
           failed_login=None) -> Rights:
    """The requester's rights, after the login card when there is one (it must be first)."""
    logins = [c for c in cards if c.name == "login"]
    if not logins:
        return rights
    card = logins[0]
    if cards[0] is not card or len(card.args) != 3 or len(logins) > 1:
        raise _Refused("login failed")
    rest = payload[payload.index(b"\n") + 1:] if b"\n" in payload else b""
    project, _ = backend.fossil_codes()
    name, nonce, sig = card.args
    can_write = fossilusers.check_login(backend.repo, project, name, nonce, sig, rest)
    if can_write is None:
        if failed_login is not None:
            failed_login(name)
        raise _Refused("login failed")
    return Rights(read=True, write=rights.write or can_write, user=name)


def _serve(backend, cards: list[Card], rights: Rights, out: Writer, debug: bool) -> str:
    project, server = backend.fossil_codes()
    writable = not (backend.readonly or backend.env.readonly)
    req = _Request()
    pull_only = False
    for card in cards:
        name, args = card.name, card.args
        if name in ("login", "pragma"):
            continue
        if name == "cookie":
            req.since = _cookie_seq(backend, args)
            continue
        if name == "private":  # private artifacts are Fossil's; this store has none
            raise _Refused("not authorized to sync private content")
        if name in ("pull", "push"):
            if len(args) != 2 or not is_hash(args[1]):
                raise XferError(f"a malformed {name} card", card=card.line.decode())
            if args[1] != project:
                raise _Refused("wrong project")
            if name == "pull":
                if not rights.read:
                    raise _Refused("not authorized to read")
                req.pull = True
            elif rights.write and writable:
                req.push = True
            elif req.pull:
                pull_only = True
            else:
                raise _Refused("not authorized to write")
        elif name == "clone":
            if not rights.read:
                raise _Refused("not authorized to clone", before=("push",))
            version = int(args[0]) if args and args[0].isdigit() else 1
            seq = int(args[1]) if len(args) > 1 and args[1].isdigit() else 1
            if version >= 2 and seq <= 0:
                raise XferError("invalid clone sequence number")
            req.clone = (version, seq)
        elif name in ("file", "cfile"):
            req.files.append(card)
        elif name == "igot":
            if not args or not is_hash(args[0]):
                raise XferError("a malformed igot card", card=card.line.decode())
            if args[1:2] != ["1"]:  # a private artifact is not asked for
                req.igot.append(args[0])
        elif name == "gimme":
            if len(args) != 1 or not is_hash(args[0]):
                raise XferError("a malformed gimme card", card=card.line.decode())
            req.gimme.append(args[0])
        elif name == "reqconfig":
            if len(args) != 1:
                raise XferError("a malformed reqconfig card", card=card.line.decode())
            req.reqconfig.append(args[0])
        elif name == "config":
            if not rights.write:  # fossil configuration push: not kept here
                raise _Refused("not authorized to write configuration")
        else:
            raise _Refused(f"bad command: {card.line.decode('utf-8', 'replace')[:80]}")
    if pull_only:
        out.message("pull only - not authorized to push")
    received: set[str] = set()
    if req.files:
        if not req.push:
            raise _Refused("not authorized to write")
        received = _receive(backend, req.files)
    if req.push:
        _ask_for(backend, req.igot, out)
    kind = DEBUG if debug else COMPRESSED
    sent: set[str] = set()
    if req.gimme and (req.pull or req.clone):
        _send_artifacts(backend, req.gimme, set(req.igot), out, sent)
    if req.clone is not None:
        version, seq = req.clone
        if version >= 2:
            if seq == 1 and writable:
                _clustered(backend)
            nxt = _send_clone(backend, seq, version, out)
            out.card("clone_seqno", nxt)
            if nxt == 0:
                out.card("cookie", _cookie(backend, backend.identity()["last"]))
            if version >= 3 and not debug:
                kind = UNCOMPRESSED
        else:
            if writable:
                _clustered(backend)
            for _, aid in backend.ids_after(0):
                out.card("igot", id_name(aid))
        out.card("push", server, project)
    elif req.pull:
        if writable:
            _clustered(backend)
        last = backend.identity()["last"]
        complete = True
        if req.since is not None and req.since < last:
            # What is new since the client's last pull goes now, unasked: one round trip.
            skip = set(req.igot) | sent | received
            new = [id_name(aid) for _, aid in backend.ids_after(req.since)]
            new = [n for n in new if n not in skip]
            _send_artifacts(backend, new, set(req.igot), out, sent)
            complete = all(n in sent for n in new)
        have = set(req.igot) | sent
        for name in unclustered(backend):
            if name not in have:
                out.card("igot", name)
        if complete:
            out.card("cookie", _cookie(backend, last))
    for name in req.reqconfig:
        _send_config(backend, name, out)
    return kind


def _artifact_id(name: str) -> bytes:
    if not is_hash(name):
        raise _Refused(f"not an artifact name: {name[:80]!r}")
    return id_key(name)


def _receive(backend, files: list[Card]) -> set[str]:
    """Store the artifacts of the round's file and cfile cards, all or none; returns
    their names."""
    items: dict[str, tuple[str | None, bytes]] = {}
    for card in files:
        name = card.args[0]
        src = card.args[1] if len(card.args) == (3 if card.name == "file" else 4) else None
        data = card.payload if card.name == "file" else uncompress(card.payload)
        _artifact_id(name)
        items[name] = (src, data)
    whole: dict[str, bytes] = {}
    wanted = {src for src, _ in items.values() if src and src not in items}
    stored = backend.contents([_artifact_id(s) for s in wanted])
    for s in wanted:
        if _artifact_id(s) in stored:
            whole[s] = stored[_artifact_id(s)]

    def resolve(name: str, depth: int = 0) -> bytes:
        got = whole.get(name)
        if got is not None:
            return got
        if name not in items:
            raise _Refused(f"a delta on {name}, which was neither sent nor is stored here: "
                           "nothing of this round was stored")
        if depth > 4 * blobs.MAX_CHAIN:
            raise _Refused("a delta chain that loops: nothing of this round was stored")
        src, data = items[name]
        if src is not None:
            try:
                data = delta.apply(resolve(src, depth + 1), data)
            except HeroFossilError as exc:
                raise _Refused(f"a damaged delta for {name}: {exc}") from exc
        whole[name] = data
        return data

    batch = [(_artifact_id(name), blobs.encode_whole(resolve(name))) for name in items]
    try:
        backend.receive(batch)
    except PermissionError as exc:
        raise _Refused(str(exc)) from exc
    except (IntegrityError, SyncError) as exc:
        raise _Refused(str(exc)) from exc
    return set(items)


def _ask_for(backend, names: list[str], out: Writer) -> None:
    """gimme cards for what the client announced and this store lacks."""
    ids = {id_key(n): n for n in names if is_hash(n)}
    for aid in backend.missing(list(ids))[:MAX_GIMME]:
        out.card("gimme", ids[aid])


def _cookie(backend, seq: int) -> str:
    return f"herofossil-{backend.identity()['epoch']}-{seq}"


def _cookie_seq(backend, args: list[str]) -> int | None:
    """The sequence number in our cookie, when it is ours and of this numbering."""
    parts = args[0].split("-") if len(args) == 1 else []
    if len(parts) != 3 or parts[0] != "herofossil" or not parts[2].isdigit():
        return None
    return int(parts[2]) if parts[1] == backend.identity()["epoch"] else None


def _send_artifacts(backend, wanted: list[str], client: set[str], out: Writer,
                    sent: set[str]) -> None:
    """Send ``wanted``: as stored when that is a delta on what the client has (``client``)
    or is sent, else as a delta on the parent's version (Fossil's pull does the same),
    else whole; past a round's size, igot cards (asked for again next round)."""
    names = [n for n in dict.fromkeys(wanted) if len(n) == 2 * blobs.ID_LEN]
    forms = backend.stored_forms([id_key(n) for n in names])
    client = client | set(names)
    parents = _parent_versions(backend, {id_name(aid) for aid in forms})
    whole = [aid for aid, stored in forms.items()
             if blobs.delta_base(stored) is None
             or id_name(blobs.delta_base(stored)) not in client | sent]
    contents = backend.contents(whole + [id_key(p) for p in set(parents.values())])
    for aid, stored in forms.items():
        name = id_name(aid)
        if out.size >= ROUND_BYTES:
            out.card("igot", name)
            continue
        if aid not in contents:  # its stored delta's base is on the client
            out.file(name, blobs.delta_payload(stored, aid), id_name(blobs.delta_base(stored)))
        else:
            data = contents[aid]
            base = parents.get(name)
            d = None
            if base is not None and id_key(base) in contents:
                d = delta.create(contents[id_key(base)], data)
            if d is not None and len(d) < len(data) - 50:
                out.file(name, d, base)
            else:
                out.file(name, data)
        sent.add(name)


def _parent_versions(backend, names: set[str]) -> dict[str, str]:
    """For the check-ins among ``names`` and the files they changed: the artifact of the
    same thing in the first parent (what a pulling client most likely holds)."""
    repo = backend.repo
    out: dict[str, str] = {}
    checkins = 0
    for name in names:
        if checkins >= MAX_PARENT_DELTAS:  # each costs two file lists: beyond, send whole
            break
        try:
            ci = repo.checkin(name)
            if not ci.parents:
                continue
            parent = ci.parents[0]
            old, new = repo.files(parent), repo.files(name)
        except HeroFossilError:  # not a check-in, or its parent is not here
            continue
        checkins += 1
        out[name] = parent
        for path, (aid, _) in new.items():
            prev = old.get(path)
            if aid in names and prev is not None and prev[0] != aid:
                out.setdefault(aid, prev[0])
    return out


def _send_clone(backend, seq: int, version: int, out: Writer) -> int:
    """One clone round from sequence number ``seq`` on; returns the next one (0: done)."""
    items, reached = backend.stored_after(seq - 1, ROUND_BYTES)
    for _, aid, stored in items:
        name = id_name(aid)
        base = blobs.delta_base(stored)
        src = id_name(base) if base is not None else None
        if version < 3:
            if base is None:
                out.file(name, blobs.decode_whole(stored, aid))
            else:
                out.file(name, blobs.delta_payload(stored, aid), src)
            continue
        packed = _PACKED.get((aid, base))
        if packed is None:
            if base is None:
                data = blobs.decode_whole(stored, aid)
                packed = (len(data), compress(data))
            else:
                payload = blobs.delta_payload(stored, aid)
                packed = (delta.output_size(payload), compress(payload))
            _PACKED.put((aid, base), packed)
        out.cfile(name, packed[0], packed[1], src)
    last = backend.identity()["last"]
    return 0 if reached >= last or not items else reached + 1


def _send_config(backend, name: str, out: Writer) -> None:
    """Answer ``reqconfig``: the project name and hash policy; what this store does not
    have is left out, which Fossil's client takes as nothing to set."""
    if name not in ("/all", "/project", "/config", "project-name", "hash-policy"):
        return
    now = int(time.time())
    values = []
    if name in ("/all", "/project", "project-name"):
        values.append(("project-name", project_name(backend)))
    if name in ("/all", "/config", "/project", "hash-policy"):
        values.append(("hash-policy", HASH_POLICY))
    for key, value in values:
        quoted = value.replace("'", "''")
        out.config("/config", f"{now} '{key}' value '{quoted}'".encode())


def project_name(backend) -> str:
    """The name a Fossil clone shows for this store: its folder's name."""
    return os.path.basename(os.path.normpath(backend.repo.path)) or "herofossil"


# ---- clusters
def _cluster_state(backend) -> dict:
    raw = backend.repo.plumbing.meta_get(STATE_NS, "clusters")
    state = json.loads(raw) if raw else {}
    if state.get("epoch") != backend.identity()["epoch"]:  # renumbered by a rebuild
        return {"through": 0, "top": []}
    return state


def _clustered(backend) -> None:
    try:
        make_clusters(backend)
    except HeroFossilError as exc:  # the exchange goes on; clusters are an optimization
        log.warning("making clusters failed: %s", exc)


def unclustered(backend) -> list[str]:
    """Names of the artifacts no cluster lists yet (the newest clusters among them)."""
    state = _cluster_state(backend)
    names = dict.fromkeys(state.get("top", []))
    names.update((id_name(aid), None) for _, aid in backend.ids_after(state.get("through", 0)))
    return list(names)


def make_clusters(backend) -> list[str]:
    """Make clusters as Fossil does once ``CLUSTER_MIN`` artifacts are unclustered: M cards
    for each, ``CLUSTER_MAX`` at most per cluster; returns the names of those made."""
    state = _cluster_state(backend)
    top = state.get("top", [])
    after = backend.ids_after(state.get("through", 0))
    names = sorted(set(top) | {id_name(aid) for _, aid in after})
    if len(names) < CLUSTER_MIN:
        return []
    groups, rest = [], names
    while len(rest) > CLUSTER_MAX + CLUSTER_MIN:
        groups.append(rest[:CLUSTER_MAX])
        rest = rest[CLUSTER_MAX:]
    groups.append(rest)
    made = []
    for group in groups:
        text = "".join(f"M {n}\n" for n in group).encode()
        text += b"Z " + hashlib.md5(text).hexdigest().encode() + b"\n"
        made.append((blobs.artifact_id(text), blobs.encode_whole(text, blobs.ZSTD_LEVEL_CARDS)))
    backend.receive(made)
    through = after[-1][0] if after else state.get("through", 0)
    new = {"epoch": backend.identity()["epoch"], "through": through,
           "top": [id_name(aid) for aid, _ in made]}
    backend.repo.plumbing.meta_put(STATE_NS, "clusters", json.dumps(new).encode())
    log.info("made %d cluster(s) of %d artifacts", len(made), len(names))
    return new["top"]


async def respond(request, backend, *, anon_read: bool, anon_write: bool,
                  failed_login=None):
    """The aiohttp response to a POST of Fossil's xfer protocol (any path)."""
    import asyncio

    from aiohttp import web

    body = await request.read()
    reply, kind = await asyncio.get_running_loop().run_in_executor(
        None, lambda: answer(backend, body, request.content_type, anon_read=anon_read,
                             anon_write=anon_write, failed_login=failed_login))
    return web.Response(body=reply, content_type=kind)
