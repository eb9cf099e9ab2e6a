"""What a peer exchange needs of the store: its identity, what it inserted after a point,
and receiving artifacts from a peer that cannot be trusted.

Artifacts travel in their stored form (``blobs``): a whole zstd frame or a
Fossil delta on another artifact. Every received artifact is reconstructed
and hashed before it is stored, in the transaction that stores it; a delta
whose base is neither in the store nor in the same batch refuses the batch
(the sender must send bases first). What one ``receive`` call stores becomes
visible at once, with its local state derived by ``crosslink``, or not at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from herofossil import delta
from herofossil.errors import DeltaError, HeroFossilError, IntegrityError
from herofossil.store import blobs
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import artifact_id
from herofossil.store.crosslink import arrived, crosslink
from herofossil.store.keys import join_key, pack_u64, unpack_u64

# In ``meta`` (kept by rebuild, so peers know the store), keyed as every metadata key.
STORE_ID_KEY = join_key("sync", "store-id")
EPOCH_KEY = b"sync-epoch"  # in ``info``: local, so a rebuild (new numbering) makes a new one
# Refused above this: an artifact larger than a store write may be (LMDB's value limit).
MAX_ARTIFACT = 1 << 31


@dataclass
class Received:
    """What one ``receive`` stored."""

    artifacts: int = 0
    bytes: int = 0
    checkins: list[str] = field(default_factory=list)
    # The insert sequence numbers they were given: first - 1 .. last, all of them.
    before: int = 0
    last: int = 0


def identity(env) -> tuple[str, str]:
    """(store id, epoch): the id is made once per store; the epoch names the insert
    numbering, which a rebuild renews (it is local state)."""
    with env.read() as txn:
        sid = txn.get(STORE_ID_KEY, db=env.db["meta"])
        epoch = txn.get(EPOCH_KEY, db=env.db["info"])
    if sid is not None and epoch is not None:
        return sid.decode(), epoch.decode()
    if env.readonly:  # a replica opened read-only: what it has, or a stable stand-in
        return (sid or b"read-only").decode(), (epoch or b"0").decode()

    def make(txn):
        s = txn.get(STORE_ID_KEY, db=env.db["meta"])
        e = txn.get(EPOCH_KEY, db=env.db["info"])
        if s is None:
            s = os.urandom(16).hex().encode()
            txn.put(STORE_ID_KEY, s, db=env.db["meta"])
        if e is None:
            e = os.urandom(8).hex().encode()
            txn.put(EPOCH_KEY, e, db=env.db["info"])
        return s.decode(), e.decode()

    return env.write(make)


def last_seq(env) -> int:
    """The insert sequence number of the newest artifact (0 for an empty store)."""
    with env.read() as txn:
        cur = txn.cursor(db=env.db["seq"])
        return unpack_u64(cur.key()) if cur.last() else 0


def artifacts_after(env, seq: int, *, max_bytes: int = 8 << 20,
                    skip: set[bytes] | None = None) -> tuple[list[tuple[bytes, bytes]], int]:
    """Stored forms of the artifacts inserted after ``seq``, about ``max_bytes`` of them,
    with the bases their deltas need that are not in ``skip`` (what the receiver is
    known to have, or was sent already) put before them. Returns (artifacts, the
    sequence number reached): call again from there for more."""
    skip = skip if skip is not None else set()
    out: list[tuple[bytes, bytes]] = []
    size = 0
    reached = seq
    with env.read() as txn:
        blob = env.db["blob"]
        cur = txn.cursor(db=env.db["seq"])
        if not cur.set_range(pack_u64(seq + 1)):
            return out, reached
        for key, aid in cur:
            reached = unpack_u64(key)
            size += _with_bases(txn, blob, aid, skip, out)
            if size >= max_bytes:
                break
    return out, reached


def _with_bases(txn, blob, aid: bytes, skip: set[bytes], out: list) -> int:
    """Append ``aid`` to ``out`` after the bases of its delta chain that ``skip`` lacks;
    returns the bytes appended."""
    chain = []
    cur = aid
    while cur not in skip:
        stored = txn.get(cur, db=blob)
        if stored is None:  # a phantom's reference: nothing to send
            break
        chain.append((cur, _wire_form(stored)))
        skip.add(cur)
        base = blobs.delta_base(stored)
        if base is None:
            break
        cur = base
    out.extend(reversed(chain))
    return sum(len(stored) + blobs.ID_LEN for _, stored in chain)


def _wire_form(stored: bytes) -> bytes:
    """What to send for a stored form: as stored, but a whole artifact kept uncompressed
    (the tip's manifest waits so for its successor) goes compressed when that is smaller."""
    if stored[:1] != blobs.RAW or len(stored) < 64:
        return stored
    packed = blobs.encode_whole(stored[1:], blobs.ZSTD_LEVEL_CARDS)
    return packed if len(packed) < len(stored) else stored


def receive(env, artifacts: list[tuple[bytes, bytes]]) -> Received:
    """Verify and store ``artifacts`` (id, stored form) from a peer, then derive their
    local state; all in one durable transaction. Raises ``IntegrityError`` (nothing
    stored) for an artifact whose bytes do not hash to its id, a delta on a base that
    is neither stored nor in the batch, a damaged delta, or an unknown stored form."""
    batch = {}
    for aid, stored in artifacts:
        if len(aid) != blobs.ID_LEN or not stored or len(stored) > MAX_ARTIFACT:
            raise IntegrityError(f"a peer sent a malformed artifact {aid.hex()[:64]}")
        batch[aid] = stored

    def txn_fn(txn):
        cur = txn.cursor(db=env.db["seq"])
        before = unpack_u64(cur.key()) if cur.last() else 0
        aw = ArtifactWriter(txn, env.db)
        contents: dict[bytes, bytes] = {}
        new = [aid for aid in batch if not aw.has(aid)]
        for aid in new:
            aw.note_hashed(aid, _verified(aw, batch, contents, aid))
        phantoms = {aid for aid in new if txn.get(aid, db=env.db["phantom"]) is not None}
        for aid in new:
            aw.put_stored(aid, batch[aid])
        for aid in new:  # once every base is stored
            aw.note_chain(aid)
        linked = crosslink(txn, env.db, new, aw=aw, parsed=None,
                           reader=_Reader(aw, contents))
        arrived(txn, env.db, aw, phantoms)
        return Received(artifacts=len(new), bytes=sum(len(batch[a]) for a in new),
                        checkins=[c.id for c in linked.checkins], before=before,
                        last=before + len(new))

    return env.write(txn_fn)


def _verified(aw: ArtifactWriter, batch: dict, contents: dict, aid: bytes) -> bytes:
    """The bytes of ``aid`` from the batch (its delta chain through the batch or the
    store), checked against its id."""
    chain = []
    cur = aid
    while cur not in contents:
        stored = batch.get(cur)
        if stored is None:
            if not aw.has(cur):
                raise IntegrityError(f"a peer sent artifact {chain[-1].hex()} as a delta on "
                                     f"{cur.hex()}, which it did not send and this store lacks")
            contents[cur] = aw.content(cur)
            break
        chain.append(cur)
        if len(chain) > 4 * blobs.MAX_CHAIN:
            raise IntegrityError(f"a peer sent artifact {aid.hex()} on a delta chain that loops "
                                 "or is too long")
        base = blobs.delta_base(stored)
        if base is None:
            try:
                data = blobs.decode_whole(stored, cur)
            except HeroFossilError as exc:
                raise IntegrityError(f"a peer sent a damaged artifact {cur.hex()}: {exc}") from exc
            _check(cur, data)
            contents[cur] = data
            chain.pop()
            break
        cur = base
    for child in reversed(chain):
        stored = batch[child]
        try:
            data = delta.apply(contents[blobs.delta_base(stored)],
                               blobs.delta_payload(stored, child))
        except (DeltaError, HeroFossilError) as exc:
            raise IntegrityError(f"a peer sent a damaged delta {child.hex()}: {exc}") from exc
        _check(child, data)
        contents[child] = data
    return contents[aid]


def _check(aid: bytes, data: bytes) -> None:
    if artifact_id(data) != aid:
        raise IntegrityError(f"a peer sent artifact {aid.hex()} whose bytes do not hash to it; "
                             "nothing of the exchange was stored")


class _Reader:
    """Contents for crosslink: the verified bytes of this batch, else the store's."""

    def __init__(self, aw: ArtifactWriter, contents: dict[bytes, bytes]):
        self.aw = aw
        self.contents = contents

    def content(self, aid: bytes) -> bytes:
        data = self.contents.get(aid)
        return data if data is not None else self.aw.content(aid)

    def stored(self, aid: bytes) -> bytes | None:
        return self.aw.stored(aid)

    def has(self, aid: bytes) -> bool:
        return self.aw.has(aid)
