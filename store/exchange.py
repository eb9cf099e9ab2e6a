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

import hashlib
import os
from dataclasses import dataclass, field

from herofossil import delta
from herofossil.errors import DeltaError, HeroFossilError, IntegrityError
from herofossil.store import blobs
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader
from herofossil.store.crosslink import arrived, crosslink
from herofossil.store.keys import id_name, join_key
from herofossil.store.sequences import Numbered

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


STAND_IN = "read-only"  # the store id of a store opened read-only before it had one


def identity(env) -> tuple[str, str]:
    """(store id, epoch): the id is made once per store; the epoch names the insert
    numbering, which a rebuild renews (it is local state)."""
    with env.read() as txn:
        sid = txn.get(STORE_ID_KEY, db=env.db["meta"])
        epoch = txn.get(EPOCH_KEY, db=env.db["info"])
    if sid is not None and epoch is not None:
        return sid.decode(), epoch.decode()
    if env.readonly:  # a replica opened read-only: what it has, or a stable stand-in
        return (sid or STAND_IN.encode()).decode(), (epoch or b"0").decode()

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
        last = Numbered(txn, env.db["seq"]).last()
        return last[0] if last else 0


# Above this many artifacts after a watermark, ``artifacts_after`` sends delta bases without
# asking whether the receiver has them (the set of newer ids would cost more memory).
NEWER_MAX = 200_000


def artifacts_after(env, seq: int, *, max_bytes: int = 8 << 20,
                    skip: set[bytes] | None = None) -> tuple[list[tuple[bytes, bytes]], int]:
    """Stored forms of the artifacts inserted after ``seq``, about ``max_bytes`` of them,
    with the bases their deltas need put before them: those not in ``skip`` (what the
    receiver is known to have, or was sent already) and inserted after ``seq`` (the
    receiver has everything up to ``seq``). Returns (artifacts, the sequence number
    reached): call again from there for more."""
    out, reached, _ = stream_after(env, seq, max_bytes=max_bytes, skip=skip)
    return out, reached


def stream_after(env, seq: int, *, max_bytes: int = 8 << 20, skip: set[bytes] | None = None,
                 ahead=(), until: int | None = None
                 ) -> tuple[list[tuple[bytes, bytes]], int, list[tuple[bytes, int]]]:
    """``artifacts_after`` for a stream in chunks: ``ahead`` names what earlier chunks sent
    before the stream reached it (a base numbered later than its delta, as reverse deltas
    are), which is not sent again; the chunk ends at sequence number ``until`` at the
    latest. Returns (artifacts, the sequence number reached, what this chunk sent ahead
    of it, each with its sequence number)."""
    skip = set(skip) if skip is not None else set()
    out: list[tuple[bytes, bytes]] = []
    size = 0
    reached = seq
    with env.read() as txn:
        numbered = Numbered(txn, env.db["seq"])
        newer: dict[bytes, int] | None = {}
        for n, aid in numbered.after(seq):
            newer[aid] = n
            if len(newer) > NEWER_MAX:
                newer = None
                break
        if not newer and newer is not None:
            return out, reached, []
        known = None
        if newer is not None:
            skip.update(aid for aid in ahead if aid in newer)
            if seq > 0:
                def known(aid: bytes, newer=newer) -> bool:
                    return aid not in newer
        for n, aid in numbered.after(seq):
            mark = len(out)
            added = _with_bases(txn, env.db, aid, skip, out, known)
            if mark and size + added > max_bytes:
                # It goes first in the next chunk: a chunk stays near its size, so that
                # an interrupted stream keeps what came before a large artifact.
                skip.difference_update(a for a, _ in out[mark:])
                del out[mark:]
                break
            size += added
            reached = n
            if size >= max_bytes or (until is not None and reached >= until):
                break
    if newer is None:
        return out, reached, []
    return out, reached, [(aid, newer[aid]) for aid, _ in out if newer.get(aid, 0) > reached]


def artifacts_of(env, ids, *, max_bytes: int = 8 << 20, skip: set[bytes] | None = None,
                 known=None) -> tuple[list[tuple[bytes, bytes]], int]:
    """Stored forms of the artifacts ``ids`` (those this store holds), about ``max_bytes``
    of them, each after the bases of its delta chain that are neither in ``skip`` nor
    ``known(id)`` to the receiver. Returns (artifacts, how many of ``ids`` were done)."""
    skip = skip if skip is not None else set()
    out: list[tuple[bytes, bytes]] = []
    size = 0
    with env.read() as txn:
        for done, aid in enumerate(ids, 1):
            size += _with_bases(txn, env.db, aid, skip, out, known)
            if size >= max_bytes:
                return out, done
    return out, len(ids)


def _with_bases(txn, dbs, aid: bytes, skip: set[bytes], out: list, known=None) -> int:
    """Append ``aid`` to ``out`` after the bases of its delta chain that ``skip`` lacks
    (and ``known`` does not name); returns the bytes appended."""
    chain = []
    cur = aid
    while cur not in skip and (known is None or cur == aid or not known(cur)):
        stored = blobs.resolve(txn, dbs, cur, txn.get(cur, db=dbs["blob"]))
        if stored is None:  # a phantom's reference: nothing to send
            break
        chain.append((cur, _wire_form(stored, txn, dbs, cur)))
        skip.add(cur)
        base = blobs.delta_base(stored)
        if base is None:
            break
        cur = base
    out.extend(reversed(chain))
    return sum(len(stored) + blobs.ID_LEN for _, stored in chain)


def in_insert_order(env, ids) -> list[bytes]:
    """Those of ``ids`` this store holds, in the order it inserted them: the order a
    receiver can take them in (a delta-manifest after its baseline). Reads the insert
    sequence from the newest back, until every one is found."""
    wanted = set(ids)
    found: list[bytes] = []
    if not wanted:
        return found
    with env.read() as txn:
        for _, aid in Numbered(txn, env.db["seq"]).newest_first():
            if aid in wanted:
                found.append(aid)
                wanted.discard(aid)
                if not wanted:
                    break
    found.reverse()
    return found


def in_receivable_order(env, ids) -> list[bytes]:
    """Those of ``ids`` this store holds, in an order a receiver can take them in, batch
    after batch: in insert order, but check-ins after the rest and parents first (by
    check-in sequence: a rebuild numbers artifacts in id order, not in arrival order)."""
    from herofossil.store.checkins import CheckinIndex

    ordered = in_insert_order(env, ids)
    with env.read() as txn:
        ci = CheckinIndex(txn, env.db)
        ranks = []
        for pos, aid in enumerate(ordered):
            rec = ci.get(aid)
            ranks.append((1, rec.seq) if rec is not None else (0, pos))
    return [aid for _, aid in sorted(zip(ranks, ordered, strict=True))]


def stored_average(env) -> float:
    """About how many bytes an artifact's stored form takes (from the pages of ``blob``
    and of the segments of packed history)."""
    with env.read() as txn:
        st = txn.stat(env.db["blob"])
        pages = st["leaf_pages"] + st["overflow_pages"]
        if "segment" in env.db:
            seg = txn.stat(env.db["segment"])
            pages += seg["leaf_pages"] + seg["overflow_pages"]
    return pages * st["psize"] / st["entries"] if st["entries"] else 0.0


def seq_id(env, seq: int) -> bytes | None:
    """The id of the artifact inserted as number ``seq`` (None: no such number)."""
    if seq <= 0:
        return None
    with env.read() as txn:
        return Numbered(txn, env.db["seq"]).get(seq)


# ---- id ranges (set reconciliation): the ids that start with a hex prefix, in ``blob``
def _bounds(prefix: str) -> tuple[bytes, bytes | None]:
    """The first id of ``prefix``'s range, and the first id after it (None: the end)."""
    nibbles = len(prefix)
    lo = int(prefix, 16) << (4 * (2 * blobs.ID_LEN - nibbles)) if prefix else 0
    hi = ((int(prefix, 16) + 1) << (4 * (2 * blobs.ID_LEN - nibbles))) if prefix else None
    top = 1 << (8 * blobs.ID_LEN)
    return lo.to_bytes(blobs.ID_LEN, "big"), (
        hi.to_bytes(blobs.ID_LEN, "big") if hi is not None and hi < top else None)


def _range_ids(txn, db, prefix: str):
    lo, hi = _bounds(prefix)
    cur = txn.cursor(db=db)
    if not cur.set_range(lo):
        return
    for aid in cur.iternext(values=False):
        if hi is not None and aid >= hi:
            return
        yield aid


def fingerprint(total: int, count: int) -> bytes:
    """A range's fingerprint: a hash of the sum of its ids (mod 2**256) and their count,
    so that one pass over the ids makes it."""
    return hashlib.blake2b((total % (1 << 256)).to_bytes(32, "big") + count.to_bytes(8, "big"),
                           digest_size=16).digest()


class IdRanges:
    """Reads of id ranges in one read transaction: counts, fingerprints, ids."""

    def __init__(self, env):
        self.env = env
        self._txn = env.read()
        self.txn = self._txn.__enter__()
        self.db = env.db["blob"]

    def close(self) -> None:
        self._txn.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ids(self, prefix: str) -> list[bytes]:
        """Every id of ``prefix``'s range, in order."""
        return list(_range_ids(self.txn, self.db, prefix))

    def has(self, aid: bytes) -> bool:
        return self.txn.get(aid, db=self.db) is not None

    def last(self) -> tuple[int, bytes | None]:
        """The newest insert sequence number and its artifact's id ((0, None): empty)."""
        return Numbered(self.txn, self.env.db["seq"]).last() or (0, None)

    def summary(self, prefix: str) -> tuple[int, bytes, list[tuple[int, int]]]:
        """(count, fingerprint) of ``prefix``'s range, and (count, sum) of each of its 16
        sub-ranges (none at the deepest level)."""
        depth = len(prefix)
        kids = [[0, 0] for _ in range(16)] if depth < 2 * blobs.ID_LEN else []
        count = total = 0
        byte, low = depth // 2, depth % 2
        for aid in _range_ids(self.txn, self.db, prefix):
            value = int.from_bytes(aid, "big")
            count += 1
            total += value
            if kids:
                kid = kids[aid[byte] & 15 if low else aid[byte] >> 4]
                kid[0] += 1
                kid[1] += value
        return count, fingerprint(total, count), [tuple(k) for k in kids]


def portable(txn, dbs, aid: bytes, stored: bytes, packed: bool = False) -> bytes:
    """A stored form a peer can take as it is: one kept in a segment goes as the form it
    stands for; an artifact kept in parts goes whole, compressed; one packed with a
    dictionary goes without it (``blobs.plain_form``) unless ``packed`` (``for_peer``
    decides, per peer); any other as stored, but compressed where it is kept
    uncompressed and that helps (the forms of a solid segment, compressed together there,
    go one by one: with the store's dictionary if ``packed``, as ``compact`` packs one)."""
    stored = blobs.resolve(txn, dbs, aid, stored)
    if blobs.is_chunked(stored):
        return blobs.encode_whole(BlobReader(txn, dbs).content(bytes(aid)))
    stored = bytes(stored)
    if stored[:1] in (blobs.RAW, blobs.RAW_DELTA):  # the store's dictionary looked up then only
        stored = blobs.compressed_form(stored, _dictionary_of(txn, dbs) if packed else 0)
    return stored if packed else blobs.plain_form(stored, bytes(aid))


def _dictionary_of(txn, dbs) -> int:
    """The id of the store's dictionary (``compact`` leaves one at most), or 0."""
    if "zdict" not in dbs:
        return 0
    cur = txn.cursor(db=dbs["zdict"])
    return int.from_bytes(cur.key(), "big") if cur.first() else 0


def _wire_form(stored: bytes, txn, dbs, aid: bytes) -> bytes:
    """What to send for a stored form over our protocol: ``portable``'s, packed forms
    kept (``for_peer`` unpacks them for a peer that does not take them)."""
    return portable(txn, dbs, aid, stored, packed=True)


def for_peer(artifacts: list[tuple[bytes, bytes]], takes: set[int] | None
             ) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """``artifacts`` (from ``artifacts_after`` and the like) as a peer takes them, and the
    dictionaries to send with them. ``takes``: the ids of the dictionaries the peer holds,
    None for a peer that takes no packed forms (Fossil's protocol, an older release, a
    push): each packed form then goes without its dictionary."""
    if takes is None:
        return [(aid, blobs.plain_form(stored, aid)) for aid, stored in artifacts], []
    used = {did for _, stored in artifacts if (did := blobs.stored_dictionary(stored))}
    send = []
    for did in sorted(used - takes):
        raw = blobs.dictionary_bytes(did)
        if raw is None:  # not registered: cannot happen for a form this store holds
            raise IntegrityError(f"dictionary {did} of this store's packed forms is missing")
        send.append(raw)
    return artifacts, send


def _dictionaries_of(dictionaries: list[bytes], used: set[int]) -> dict[int, bytes]:
    """The dictionaries a peer sent that the forms it sent use, checked (each a zstd
    dictionary carrying the id its bytes give); the others are left out."""
    out = {}
    for raw in dictionaries:
        try:
            did = blobs.check_dictionary(raw)
        except IntegrityError as exc:
            raise IntegrityError(f"a peer sent a bad compression dictionary ({exc}); nothing "
                                 "of the exchange was stored") from exc
        if did in used:
            out[did] = raw
    return out


def receive(env, artifacts: list[tuple[bytes, bytes]], *, deltify: bool = False,
            dictionaries: list[bytes] = ()) -> Received:
    """Verify and store ``artifacts`` (id, stored form) from a peer, then derive their
    local state; all in one durable transaction. Raises ``IntegrityError`` (nothing
    stored) for an artifact whose bytes do not hash to its id, a delta on a base that
    is neither stored nor in the batch, a damaged delta, an unknown stored form, a form
    packed with a dictionary neither stored nor among ``dictionaries`` (which the peer
    sent with them), or a bad dictionary. ``deltify``: the peer sent whole texts
    (Fossil's protocol): store older versions as reverse deltas, as an import does."""
    batch = {}
    packed: set[int] = set()
    for aid, stored in artifacts:
        if len(aid) != blobs.ID_LEN or not stored or len(stored) > MAX_ARTIFACT or \
                stored[:1] == blobs.SEGMENT:  # a reference into the peer's own segments
            raise IntegrityError(f"a peer sent a malformed artifact {id_name(aid)[:64]}")
        if did := blobs.stored_dictionary(stored):
            packed.add(did)
        batch[aid] = stored
    if packed:
        env.mark_packed()  # before any packed form is in

    sent = _dictionaries_of(list(dictionaries), packed)
    registered: list[int] = []

    def txn_fn(txn):
        for did in packed:
            key = did.to_bytes(4, "big")
            if txn.get(key, db=env.db["zdict"]) is not None:
                continue
            if did not in sent:
                raise IntegrityError(f"a peer sent artifacts compressed with dictionary {did}, "
                                     "which it did not send and this store lacks; nothing of "
                                     "the exchange was stored")
            try:
                if blobs.dictionary_bytes(did) is None:
                    registered.append(did)
                blobs.register_dictionary(sent[did])  # to check the forms that use it
            except IntegrityError as exc:
                raise IntegrityError(f"a peer sent a compression dictionary that conflicts "
                                     f"with one of this process ({exc}); nothing of the "
                                     "exchange was stored") from exc
            txn.put(key, sent[did], db=env.db["zdict"])
        last = Numbered(txn, env.db["seq"]).last()
        before = last[0] if last else 0
        aw = ArtifactWriter(txn, env.db)
        contents: dict[bytes, bytes] = {}
        new = [aid for aid in batch if not aw.has(aid)]
        for aid in new:
            aw.note_hashed(aid, _verified(aw, batch, contents, aid))
        phantoms = {aid for aid in new if txn.get(aid, db=env.db["phantom"]) is not None}
        for aid in new:  # each stored as the form ``_verified`` rebuilt and hashed
            aw.put_stored(aid, batch[aid], verified=True)
        for aid in new:  # once every base is stored
            aw.note_chain(aid)
        linked = crosslink(txn, env.db, new, aw=aw, parsed=None,
                           reader=_Reader(aw, contents), deltify=deltify)
        arrived(txn, env.db, aw, phantoms)
        return Received(artifacts=len(new), bytes=sum(len(batch[a]) for a in new),
                        checkins=[c.id for c in linked.checkins], before=before,
                        last=before + len(new))

    try:
        return env.write(txn_fn)
    except BaseException:
        # A refused exchange leaves no dictionary of its own behind in this process (a
        # peer could grow its memory so, batch after refused batch).
        blobs.forget_dictionaries(registered)
        raise


def _verified(aw: ArtifactWriter, batch: dict, contents: dict, aid: bytes) -> bytes:
    """The bytes of ``aid`` from the batch (its delta chain through the batch or the
    store), checked against its id."""
    chain = []
    cur = aid
    while cur not in contents:
        stored = batch.get(cur)
        if stored is None:
            if not aw.has(cur):
                raise IntegrityError(f"a peer sent artifact {id_name(chain[-1])} as a delta on "
                                     f"{id_name(cur)}, which it did not send and this store lacks")
            contents[cur] = aw.content(cur)
            break
        chain.append(cur)
        if len(chain) > 4 * blobs.MAX_CHAIN:
            raise IntegrityError(f"a peer sent artifact {id_name(aid)} on a delta chain that loops "
                                 "or is too long")
        base = blobs.delta_base(stored)
        if base is None:
            try:
                data = blobs.decode_whole(stored, cur)
            except HeroFossilError as exc:
                raise IntegrityError(
                    f"a peer sent a damaged artifact {id_name(cur)}: {exc}") from exc
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
            raise IntegrityError(f"a peer sent a damaged delta {id_name(child)}: {exc}") from exc
        _check(child, data)
        contents[child] = data
    return contents[aid]


def _check(aid: bytes, data: bytes) -> None:
    if not blobs.hashes_to(aid, data):
        raise IntegrityError(f"a peer sent artifact {id_name(aid)} whose bytes do not hash to it; "
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
