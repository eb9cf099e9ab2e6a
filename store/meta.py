"""Batched reads and writes of the unversioned ``meta`` table, for adapters over a ``Repo``."""

from __future__ import annotations

from collections.abc import Iterable


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
