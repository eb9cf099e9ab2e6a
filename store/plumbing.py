"""``repo.plumbing``: what adapters (WebDAV, sync, import) need beyond ``Repo``'s own surface.

Local, unversioned metadata (WebDAV properties and locks, peers, users), batched
writes, several stats from one snapshot, artifact streams and the check-in feed.
An agent reading and writing files needs none of it; it is kept off ``Repo`` so
that ``Repo``'s methods are the API.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from herofossil.errors import InvalidPathError
from herofossil.store import refs
from herofossil.store.checkins import Checkin, CheckinIndex
from herofossil.store.keys import id_key, join_key
from herofossil.store.paths import normalize
from herofossil.store.tree import Entry

if TYPE_CHECKING:
    from herofossil.store.repo import Repo


class Plumbing:
    """The adapter-facing operations of one ``Repo`` (``repo.plumbing``)."""

    def __init__(self, repo: Repo):
        self._repo = repo

    def stat_each(self, paths: Iterable[str], at: str | None = None) -> list[Entry | None]:
        """``stat`` of each path from one snapshot, None where nothing is."""
        paths = [normalize(p, allow_root=True) for p in paths]
        with self._repo._read() as txn:
            view = self._repo._view(txn, at)
            return [view.get(p) for p in paths]

    def open_artifact(self, aid: str):
        """A binary stream of artifact ``aid``, decompressed as it is read (close it)."""
        from herofossil.store.streams import ArtifactStream

        return io.BufferedReader(ArtifactStream(self._repo._env, id_key(aid)), 1 << 20)

    def last_seq(self) -> int:
        """The sequence number of the newest check-in (a cursor for ``checkins_after``)."""
        with self._repo._read() as txn:
            return CheckinIndex(txn, self._repo._db).last_seq()

    def checkins_after(self, seq: int) -> list[tuple[int, Checkin]]:
        """(seq, check-in) of every check-in added after ``seq``, in order, from any process."""
        with self._repo._read() as txn:
            ci = CheckinIndex(txn, self._repo._db)
            return [(s, ci.require(cid)) for s, cid in ci.after_seq(seq)]

    def bulk(self, **kw):
        """A ``BulkWriter``: many artifacts and check-ins in few transactions (imports, sync)."""
        from herofossil.store.bulk import BulkWriter

        return BulkWriter(self._repo, **kw)

    # ---- local, unversioned metadata (WebDAV properties and locks, peers, users)
    def meta_get(self, namespace: str, key: str) -> bytes | None:
        """A value kept outside the versioned tree (not synced, kept by rebuild)."""
        try:
            mkey = meta_key(namespace, key)
        except InvalidPathError:
            return None  # too long to have been stored
        with self._repo._read() as txn:
            return txn.get(mkey, db=self._repo._db["meta"])

    def meta_put(self, namespace: str, key: str, value: bytes) -> None:
        """Durably store an unversioned value."""
        mkey, db = meta_key(namespace, key), self._repo._db["meta"]
        self._repo._env.write(lambda txn: txn.put(mkey, value, db=db))

    def meta_delete(self, namespace: str, key: str) -> bool:
        """Remove an unversioned value; True when there was one (no error when absent)."""
        try:
            mkey = meta_key(namespace, key)
        except InvalidPathError:
            return False  # too long to have been stored
        return self._repo._env.write(lambda txn: txn.delete(mkey, db=self._repo._db["meta"]))

    def meta_update(self, namespace: str, puts: Iterable[tuple[str, bytes]] = (),
                    deletes: Iterable[str] = ()) -> None:
        """Put and delete many unversioned values of ``namespace`` in one durable
        transaction."""
        puts = [(meta_key(namespace, k), v) for k, v in puts]
        deletes = [meta_key(namespace, k) for k in deletes]
        if not puts and not deletes:
            return
        db = self._repo._db["meta"]

        def txn_fn(txn):
            for k in deletes:
                txn.delete(k, db=db)
            for k, v in puts:
                txn.put(k, v, db=db)

        self._repo._env.write(txn_fn)

    def meta_change(self, namespace: str, key: str,
                    change: Callable[[bytes | None], bytes | None]) -> bytes | None:
        """Replace a value by ``change(current)`` (None: delete it) inside one write
        transaction, so that a precondition ``change`` checks (raising to refuse) holds
        against every other writer, in any process. Returns what ``change`` returned."""
        mkey, db = meta_key(namespace, key), self._repo._db["meta"]

        def txn_fn(txn):
            new = change(txn.get(mkey, db=db))
            if new is None:
                txn.delete(mkey, db=db)
            else:
                txn.put(mkey, new, db=db)
            return new

        return self._repo._env.write(txn_fn)

    def meta_get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of ``keys`` that exist, read from one snapshot."""
        db = self._repo._db["meta"]
        out = {}
        with self._repo._read() as txn:
            for k in keys:
                v = txn.get(meta_key(namespace, k), db=db)
                if v is not None:
                    out[k] = v
        return out

    def meta_any(self, namespace: str) -> bool:
        """True when ``namespace`` holds at least one unversioned value."""
        start = meta_key(namespace, "")
        with self._repo._read() as txn:
            cur = txn.cursor(db=self._repo._db["meta"])
            return cur.set_range(start) and cur.key().startswith(start)

    def meta_items(self, namespace: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(key, value) of the unversioned values of ``namespace`` whose key starts with prefix."""
        try:
            start = meta_key(namespace, prefix)
        except InvalidPathError:
            return iter(())  # no stored key is that long
        ns = namespace.encode() + b"\0"
        with self._repo._read() as txn:
            cur = txn.cursor(db=self._repo._db["meta"])
            items = []
            if cur.set_range(start):
                for k, v in cur:
                    if not k.startswith(start):
                        break
                    items.append((k[len(ns) :].decode(), v))
        return iter(items)


def meta_key(namespace: str, key: str) -> bytes:
    raw = join_key(namespace, key)
    if len(raw) > refs.MAX_KEY:
        raise InvalidPathError(f"metadata key {key[:40]!r}... is longer than the "
                               f"{refs.MAX_KEY} bytes the store can key")
    return raw
