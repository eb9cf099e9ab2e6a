"""Small generic helpers over a ``Repo`` for adapters: batched metadata, artifact scans."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from herofossil.store.blobs import BlobReader


def _key(namespace: str, key: str) -> bytes:
    return namespace.encode() + b"\0" + key.encode()


def meta_update(repo, namespace: str, puts: Iterable[tuple[str, bytes]] = (),
                deletes: Iterable[str] = ()) -> None:
    """Put and delete many unversioned values of ``namespace`` in one durable transaction."""
    puts, deletes = list(puts), list(deletes)
    if not puts and not deletes:
        return
    db = repo._env.db["meta"]

    def txn_fn(txn):
        for k in deletes:
            txn.delete(_key(namespace, k), db=db)
        for k, v in puts:
            txn.put(_key(namespace, k), v, db=db)

    repo._env.write(txn_fn)


def meta_get_many(repo, namespace: str, keys: Iterable[str]) -> dict[str, bytes]:
    """The values of ``keys`` that exist, read in one transaction."""
    db = repo._env.db["meta"]
    out = {}
    with repo._env.read() as txn:
        for k in keys:
            v = txn.get(_key(namespace, k), db=db)
            if v is not None:
                out[k] = v
    return out


def iter_artifacts(repo, batch: int = 512) -> Iterator[tuple[str, bytes]]:
    """(hex id, bytes) of every artifact, in short read transactions."""
    db = repo._env.db["blob"]
    last = b""
    while True:
        ids = []
        with repo._env.read() as txn:
            cur = txn.cursor(db=db)
            if not cur.set_range(last):
                return
            for aid in cur.iternext(values=False):
                if aid == last:
                    continue
                ids.append(aid)
                if len(ids) >= batch:
                    break
            reader = BlobReader(txn, db)
            items = [(aid.hex(), reader.content(aid)) for aid in ids]
        if not items:
            return
        yield from items
        last = ids[-1]
