"""Writing artifacts inside a write transaction: insert, reverse-deltify, verify."""

from __future__ import annotations

from herofossil.delta import policy as delta_policy
from herofossil.errors import IntegrityError, StoreError
from herofossil.store import blobs, chunks, lmdbenv
from herofossil.store.blobs import BlobReader, artifact_id
from herofossil.store.keys import CHAIN, DEPS, id_name, pack_u64, unpack_u64
from herofossil.store.lru import LRU


class KnownContents:
    """Bytes whose artifact id this process computed from them, most recent first.

    Content addressing makes an entry true forever, in any store. Re-verifying a
    stored form against known bytes (equal bytes, equal hash) skips re-hashing,
    and a reverse delta on a known artifact skips reading it back. The write
    path keeps its manifests here: the tip's is turned into a delta by the next
    check-in, and the baseline's when the next full manifest is written.
    """

    def __init__(self, max_bytes: int = 16 << 20):
        self.max_bytes = max_bytes
        self._items = LRU(max_bytes=max_bytes)

    def get(self, aid: bytes) -> bytes | None:
        """The bytes of ``aid`` if they are known."""
        return self._items.get(aid)

    def add(self, aid: bytes, data: bytes) -> None:
        """Remember ``data``, whose artifact id is ``aid`` (the caller hashed it)."""
        if len(data) <= self.max_bytes // 4:  # a few large ones would push out all small ones
            self._items.put(aid, data)

    def clear(self) -> None:
        """Forget every entry (to measure reads that decode)."""
        self._items.clear()


KNOWN = KnownContents()
HASHED_LIMIT = 16 << 20  # bytes of one transaction's hashed artifacts kept for verification
VERIFY_MEMO_BYTES = 64 << 20  # bytes of read-back contents kept while verifying a commit


class ArtifactWriter(BlobReader):
    """Adds artifacts in one write transaction and re-verifies them before commit.

    New stored forms wait in ``pending`` until ``verify_touched`` writes them,
    so a value is never overwritten in the transaction that wrote it: LMDB
    leaks the overflow pages of a large value replaced in the same transaction
    (measured: put 1,000 x 10 KB then overwrite with 100 B in one transaction
    leaves 3,000 overflow pages in use).
    """

    def __init__(self, txn, dbs):
        super().__init__(txn, dbs)
        self.dbs = dbs
        self.touched: set[bytes] = set()
        self.pending: dict[bytes, bytes] = {}
        # Artifacts added whole in this transaction wait uncompressed (as b"R" forms),
        # with the zstd level to use: most old versions become deltas before commit,
        # so compressing them first is waste.
        self.uncompressed: dict[bytes, int] = {}
        # Bytes hashed in this transaction, by id: re-verification compares against them.
        self.hashed: dict[bytes, bytes] = {}
        self._hashed_room = HASHED_LIMIT
        # Inside a store write, what this writer stored is re-verified before the commit.
        lmdbenv.before_commit(self.verify_touched)

    def known(self, aid: bytes) -> bytes | None:
        """The bytes of ``aid`` if they were hashed in this transaction or are in ``KNOWN``."""
        data = self.hashed.get(aid)
        return data if data is not None else KNOWN.get(aid)

    def stored(self, aid: bytes) -> bytes | None:
        value = self.pending.get(aid)
        return value if value is not None else BlobReader.stored(self, aid)

    def _put(self, aid: bytes, stored: bytes) -> None:
        self.uncompressed.pop(aid, None)
        if aid in self.pending or self.txn.get(aid, db=self.db) is None:
            self.pending[aid] = stored
        else:
            self.txn.put(aid, stored, db=self.db)

    def _next_seq(self) -> int:
        raw = self.txn.get(b"next_seq", db=self.dbs["info"])
        n = unpack_u64(raw) if raw else 1
        self.txn.put(b"next_seq", pack_u64(n + 1), db=self.dbs["info"])
        return n

    def put_stored(self, aid: bytes, stored: bytes, *, verified: bool = False) -> bool:
        """Insert an artifact by its stored form; False when it was already present.
        ``verified``: its bytes were rebuilt from this very form and hashed in this
        transaction (``exchange.receive``): the check before commit would only repeat it
        (a clone of the real history rebuilt every artifact twice)."""
        if self.stored(aid) is not None:
            return False
        self.pending[aid] = stored
        base = blobs.delta_base(stored)
        if base is not None:
            self._bump_deps(base, 1)
        self.txn.put(pack_u64(self._next_seq()), aid, db=self.dbs["seq"])
        self.txn.delete(aid, db=self.dbs["phantom"])
        if not verified:
            self.touched.add(aid)
        return True

    def note_hashed(self, aid: bytes, data: bytes) -> None:
        """``data`` was hashed to ``aid`` in this transaction: the check before commit
        compares with it instead of hashing again (bounded: a big import keeps no copy)."""
        if len(data) <= self._hashed_room:
            self.hashed[aid] = data
            self._hashed_room -= len(data)

    def note_chain(self, aid: bytes) -> None:
        """Record the delta chain a stored delta ``aid`` (received as it is) ends on."""
        if blobs.delta_base(self.stored(aid)) is None:
            return
        hops, root, _ = self._depth(aid)
        if hops > self.chain_len(root):
            self._set_chain(root, hops)

    def add(self, data: bytes, aid: bytes | None = None, *, cards: bool = False
            ) -> tuple[bytes, bool]:
        """Store ``data`` whole; returns (id, newly added). ``aid``: its id, if known;
        ``cards``: ``data`` is a manifest or control artifact (compressed at the level
        that suits card text)."""
        if aid is None:
            aid = artifact_id(data)
            self.note_hashed(aid, data)
        if self.stored(aid) is not None:
            return aid, False
        if len(data) >= blobs.LARGE and not cards:  # cards stay whole: deltas need them so
            chunk_db = self.dbs["chunk"]
            parts = [chunks.put_part(self.txn, chunk_db, p) for p in chunks.split(data)]
            self.put_stored(aid, blobs.encode_chunked(len(data), parts))
            return aid, True
        self.put_stored(aid, blobs.RAW + data)
        self.uncompressed[aid] = blobs.ZSTD_LEVEL_CARDS if cards else blobs.ZSTD_LEVEL
        return aid, True

    def add_staged(self, staged: chunks.Staged) -> tuple[bytes, bool]:
        """Store an artifact whose parts ``chunks.stage`` stored; returns (id, newly
        added). Raises ``StoreError`` when a part is gone (nothing is written then)."""
        if self.stored(staged.aid) is not None:
            return staged.aid, False
        cur = self.txn.cursor(db=self.dbs["chunk"])
        if not all(cur.set_key(cid) for cid in set(staged.parts)):
            raise StoreError("a part of this upload is no longer in the store (compacted "
                             "meanwhile): send it again; nothing was written")
        self.put_stored(staged.aid, staged.stored)
        return staged.aid, True

    def keep_uncompressed(self, aid: bytes) -> None:
        """Store ``aid``, added whole in this transaction, without compressing it: for an
        artifact the next write turns into a delta (a delta-manifest at the tip)."""
        self.uncompressed.pop(aid, None)

    def compress(self, aid: bytes, *, cards: bool = False) -> None:
        """Compress ``aid`` if it is stored whole and uncompressed (and zstd helps)."""
        stored = self.stored(aid)
        if stored is not None and stored[:1] == blobs.RAW:
            level = blobs.ZSTD_LEVEL_CARDS if cards else blobs.ZSTD_LEVEL
            packed = blobs.encode_whole(stored[1:], level)
            if packed != stored:
                self._put(aid, packed)
                self.touched.add(aid)

    def add_phantom(self, aid: bytes) -> None:
        """Record that ``aid`` is referenced but not present (yet)."""
        if self.stored(aid) is None:
            self.txn.put(aid, b"", db=self.dbs["phantom"])

    def chain_len(self, aid: bytes) -> int:
        raw = self.txn.get(aid, db=self.dbs["chain"])
        return CHAIN.unpack(raw)[0] if raw else 0

    def _set_chain(self, aid: bytes, n: int) -> None:
        if n:
            self.txn.put(aid, CHAIN.pack(n), db=self.dbs["chain"])
        else:
            self.txn.delete(aid, db=self.dbs["chain"])

    def _deps(self, aid: bytes) -> int:
        raw = self.txn.get(aid, db=self.dbs["deps"])
        return DEPS.unpack(raw)[0] if raw else 0

    def _bump_deps(self, aid: bytes, by: int) -> None:
        n = self._deps(aid) + by
        if n > 0:
            self.txn.put(aid, DEPS.pack(n), db=self.dbs["deps"])
        else:
            self.txn.delete(aid, db=self.dbs["deps"])

    def _restore(self, aid: bytes, stored: bytes) -> None:
        """Replace the stored form of ``aid``, keeping the dependents counts right."""
        previous = blobs.delta_base(self.stored(aid))
        if previous is not None:
            self._bump_deps(previous, -1)
        base = blobs.delta_base(stored)
        if base is not None:
            self._bump_deps(base, 1)
        self._put(aid, stored)
        self.touched.add(aid)

    def _depth(self, aid: bytes) -> tuple[int, bytes, set[bytes]]:
        """(hops to a whole artifact, that artifact, every id on the way)."""
        hops, cur, seen = 0, aid, {aid}
        while (base := blobs.delta_base(self.stored(cur))) is not None:
            hops, cur = hops + 1, base
            seen.add(cur)
        return hops, cur, seen

    def _worth_it(self, d: bytes, data: bytes, stored: bytes, current: bytes) -> bool:
        return (len(data) >= blobs.MIN_DELTA_SIZE and len(d) <= len(data) * blobs.DELTA_GAIN
                and len(stored) <= len(current) * blobs.DELTA_GAIN)

    def deltify(
        self, old: bytes, new: bytes, old_data: bytes | None = None, new_data: bytes | None = None
    ) -> bool:
        """Store ``old`` and ``new`` (a newer version of it) as compactly as the policy allows.

        Reverse deltas are the rule: ``new`` stays whole and ``old`` becomes a
        delta on it. ``old`` may already be a delta on a sibling version (a
        newer version of it on another branch): with nothing depending on it,
        ``old`` moves onto ``new`` and the sibling, whole until now, becomes a
        delta on ``new`` too; with dependents, ``new`` is stored as a delta on
        ``old`` instead, until a newer version of it re-roots it. Every chain
        stays within ``MAX_CHAIN``. Returns True when something changed.
        """
        if old == new:
            return False
        old_stored, new_stored = self.stored(old), self.stored(new)
        if not old_stored or not new_stored or not blobs.is_whole(new_stored) or \
                blobs.is_chunked(old_stored):
            return False
        if blobs.is_whole(old_stored):
            return self._reverse(old, new, old_stored, old_data, new_data)
        if self._deps(old) == 0:
            sibling = blobs.delta_base(old_stored)
            if not self._reverse(old, new, old_stored, old_data, new_data):
                return False
            sibling_stored = self.stored(sibling)
            if sibling != new and sibling_stored and blobs.is_whole(sibling_stored):
                self._reverse(sibling, new, sibling_stored, None, new_data)
            return True
        return self._forward(old, new, new_stored, new_data)

    def deltify_onto(self, old: bytes, new: bytes) -> bool:
        """Make ``old``, stored whole, a delta on ``new`` even when ``new`` is itself a
        delta (the chain through it stays within ``MAX_CHAIN``): for a version whose
        successor an import already turned into a delta on a later one. Returns True
        when ``old`` changed."""
        old_stored, new_stored = self.stored(old), self.stored(new)
        if old == new or not old_stored or not new_stored or not blobs.is_whole(old_stored):
            return False
        if blobs.is_whole(new_stored):
            return self.deltify(old, new)
        if blobs.is_chunked(new_stored):
            return False
        return self._onto_chain(old, new, old_stored, self.known(old))

    def _onto_chain(self, target: bytes, base: bytes, target_stored: bytes,
                    target_data: bytes | None) -> bool:
        """Store whole ``target`` as a delta on ``base``, whole or a delta itself; the
        chains that ended on ``target`` then end where ``base``'s does."""
        hops, root, on_chain = self._depth(base)
        depth = self.chain_len(target) + 1 + hops
        if target in on_chain or depth > blobs.MAX_CHAIN:
            return False
        if target_data is None:
            target_data = blobs.decode_whole(target_stored, target)
        if len(target_data) < blobs.MIN_DELTA_SIZE:
            return False
        d = delta_policy.create(self.known(base) or self.content(base), target_data)
        if d is None:
            return False
        stored = blobs.encode_delta(base, d)
        if not self._worth_it(d, target_data, stored, target_stored):
            return False
        self._restore(target, stored)
        self._set_chain(target, 0)
        self._set_chain(root, max(self.chain_len(root), depth))
        return True

    def _reverse(self, old, new, old_stored, old_data, new_data) -> bool:
        depth = self.chain_len(old) + 1 if blobs.is_whole(old_stored) else 1
        if depth > blobs.MAX_CHAIN:
            return False
        if old_data is None:
            old_data = self.known(old) or self.content(old)
        if len(old_data) < blobs.MIN_DELTA_SIZE:  # never worth it (see _worth_it)
            return False
        if new_data is None:
            new_data = blobs.decode_whole(self.stored(new), new)
        d = delta_policy.create(new_data, old_data)
        if d is None:
            return False
        stored = blobs.encode_delta(new, d)
        # A delta being re-rooted is judged against its whole size: the gain is the sibling's.
        current = old_stored if blobs.is_whole(old_stored) else blobs.RAW + old_data
        if not self._worth_it(d, old_data, stored, current):
            return False
        self._restore(old, stored)
        self._set_chain(old, 0)
        self._set_chain(new, max(self.chain_len(new), depth))
        return True

    def _forward(self, old, new, new_stored, new_data) -> bool:
        if self._deps(new) or self.chain_len(new):
            return False
        return self._onto_chain(new, old, new_stored, new_data)

    def write_pending(self) -> None:
        """Write the stored forms that wait in ``pending`` (once, in key order)."""
        for aid in sorted(self.pending):
            stored = self.pending[aid]
            level = self.uncompressed.get(aid)
            if level is not None:
                stored = blobs.encode_whole(stored[1:], level)
            self.txn.put(aid, stored, db=self.db)
        self.pending.clear()
        self.uncompressed.clear()

    def verify_touched(self) -> None:
        """Write what is pending, then re-read every artifact of this transaction and
        check its hash (by comparing with bytes already hashed when there are some)."""
        self.write_pending()
        # An import's batch makes long chains of deltas on one another: each artifact read
        # alone took 0.25 s of a 1.1 s import of a real history (7.6 deltas applied per
        # artifact); read through a memo, each delta is applied once.
        memo: dict[bytes, bytes] = {}
        held = 0
        for aid in self.touched:
            if blobs.is_chunked(self.stored(aid)):
                # Its parts were hashed as they were stored (``add_staged`` made sure they
                # still are); reading them back would map the whole file into this process.
                continue
            if held > VERIFY_MEMO_BYTES:
                memo.clear()
                held = 0
            known = len(memo)
            data = self.content(aid, memo)
            if len(memo) != known:
                held += len(data) * (len(memo) - known)  # versions of one chain: alike in size
            if data != self.known(aid) and not blobs.hashes_to(aid, data):
                raise IntegrityError(
                    f"artifact {id_name(aid)} did not verify before commit; nothing was written"
                )
        self.touched.clear()
