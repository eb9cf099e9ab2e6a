"""Rebuild: the artifacts are the repository, everything else is derived from them.

``rebuild`` throws the local state away and derives it again from the
``blob`` table alone, as ``fossil rebuild`` does; ``verify`` (module ``verify``)
compares a store's local state with such a rebuild made elsewhere.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

from herofossil import delta
from herofossil.errors import DeltaError, HeroFossilError, IntegrityError
from herofossil.store import blobs as blobfmt
from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader
from herofossil.store.checkins import DEFAULT_BRANCH, INDEXED, MANIFESTS, CheckinIndex
from herofossil.store.crosslink import crosslink, set_tips
from herofossil.store.lmdbenv import ALL_TABLES, LOCAL_TABLES

Progress = Callable[[str, int, int | None], None]
ContentHook = Callable[[bytes, bytes | None, Exception | None], None]


def _quiet(label: str, done: int, total: int | None) -> None:
    return None


class _ContentCache(BlobReader):
    """A BlobReader that remembers recent whole contents (delta bases repeat)."""

    def __init__(self, txn, db, size: int = 256):
        super().__init__(txn, db)
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = size

    def content(self, aid: bytes) -> bytes:
        data = self._cache.get(aid)
        if data is not None:
            return data
        stored = self.txn.get(aid, db=self.db)
        base = blobfmt.delta_base(stored) if stored else None
        if base is not None and base in self._cache:
            data = delta.apply(self._cache[base], blobfmt.delta_payload(stored, aid))
        else:
            data = super().content(aid)
        self._cache[aid] = data
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return data


def rebuild_txn(txn, db, progress: Progress = _quiet, *, indexed: set[str] | None = None,
                tips: dict[str, bytes] | None = None,
                on_content: ContentHook | None = None) -> dict:
    """Regenerate every local table from the ``blob`` table, inside one write transaction.

    ``indexed``: the branches whose tip gets a tree index (default: those that
    have one now, and the default branch). ``tips``: the check-in each branch's
    tip is to name, where it is one of that branch (default: every branch's
    newest leaf); a branch it leaves out gets no tip. ``on_content(id, bytes,
    error)`` is called for each artifact as it is read (bytes None when
    ``error``): verify re-hashes there, so that every artifact is reconstructed
    once.
    """
    if indexed is None:
        indexed = {k.decode() for k, v in txn.cursor(db=db["tip"]) if v[32:] == INDEXED}
        indexed.add(DEFAULT_BRANCH)
    for name in LOCAL_TABLES:
        txn.drop(db[name], delete=False)
    aw = ArtifactWriter(txn, db)
    total = txn.stat(db["blob"])["entries"]
    manifests: dict[bytes, mf.Manifest] = {}
    controls: list[tuple[str, bytes, mf.ControlArtifact]] = []
    base_of: dict[bytes, bytes] = {}
    whole: list[bytes] = []
    seq = 0
    for aid, stored in txn.cursor(db=db["blob"]):
        seq += 1
        txn.put(seq.to_bytes(8, "big"), aid, db=db["seq"])
        base = blobfmt.delta_base(stored)
        if base is None:
            whole.append(aid)
        else:
            base_of[aid] = base
    txn.put(b"next_seq", (seq + 1).to_bytes(8, "big"), db=db["info"])
    _rebuild_chains(txn, db, base_of, set(whole))
    reader = _ContentCache(txn, db["blob"])
    for n, (aid, data, error) in enumerate(_contents(txn, db["blob"], whole, base_of), 1):
        if on_content is not None:
            on_content(aid, data, error)
        try:
            art = None if data is None else mf.parse_artifact(data)
        except HeroFossilError:
            art = None
        if isinstance(art, mf.Manifest):
            manifests[aid] = art
        elif isinstance(art, mf.ControlArtifact):
            controls.append((art.date, aid, art))
        if n % 256 == 0:
            progress("rebuild: read artifacts", n, total)
    parsed: dict = dict(manifests)
    ordered = list(manifests)
    for _date, aid, ctl in sorted(controls, key=lambda c: c[:2]):
        parsed[aid] = ctl
        ordered.append(aid)
    linked = crosslink(txn, db, ordered, aw=aw, reader=reader, parsed=parsed,
                       update_tips=False, progress=progress)
    branches = sorted(
        {k.partition(b"\0")[0].decode() for k in txn.cursor(db=db["leaf"]).iternext(values=False)}
    )
    set_tips(txn, db, aw, reader, branches, indexed=indexed, tips=tips)
    return {"artifacts": seq, "checkins": len(linked.checkins), "branches": len(branches)}


def _contents(txn, blob_db, whole: list[bytes], base_of: dict[bytes, bytes]):
    """(id, bytes, None) of every artifact, or (id, None, error) for one that cannot be
    reconstructed; each delta is applied once, on its base's bytes (chains are walked
    from their whole root), instead of once per artifact that a chain passes through."""
    dependents: dict[bytes, list[bytes]] = {}
    for aid, base in base_of.items():
        dependents.setdefault(base, []).append(aid)
    reached: set[bytes] = set()
    for root in whole:
        try:
            data = blobfmt.decode_whole(txn.get(root, db=blob_db), root)
        except HeroFossilError as exc:
            yield root, None, exc
            continue
        yield root, data, None
        stack = [(aid, data) for aid in dependents.get(root, ())]
        while stack:
            aid, base_data = stack.pop()
            reached.add(aid)
            try:
                data = delta.apply(base_data, blobfmt.delta_payload(txn.get(aid, db=blob_db),
                                                                    aid))
            except DeltaError as exc:
                yield aid, None, IntegrityError(f"artifact {aid.hex()} is damaged: {exc}")
                continue
            except HeroFossilError as exc:
                yield aid, None, exc
                continue
            yield aid, data, None
            stack.extend((child, data) for child in dependents.get(aid, ()))
    if len(reached) < len(base_of):  # deltas on a missing or damaged base, or in a loop
        reader = BlobReader(txn, blob_db)
        for aid in base_of:
            if aid not in reached:
                try:
                    yield aid, reader.content(aid), None
                except HeroFossilError as exc:
                    yield aid, None, exc


def _rebuild_chains(txn, db, base_of: dict[bytes, bytes], whole: set[bytes]) -> None:
    """Recompute the longest delta chain ending on each whole artifact, and dependents counts."""
    chain: dict[bytes, int] = {}
    deps: dict[bytes, int] = {}
    for aid, base in base_of.items():
        deps[base] = deps.get(base, 0) + 1
        hops, cur = 0, aid
        while cur in base_of and hops <= blobfmt.MAX_CHAIN * 4:
            cur = base_of[cur]
            hops += 1
        if cur in whole:
            chain[cur] = max(chain.get(cur, 0), hops)
    for root, hops in chain.items():
        txn.put(root, min(hops, 0xFFFF).to_bytes(2, "little"), db=db["chain"])
    for base, n in deps.items():
        txn.put(base, n.to_bytes(4, "little"), db=db["deps"])


def rebuild(env, progress: Progress = _quiet) -> dict:
    """Regenerate all local state of the store at ``env`` in one durable transaction."""
    MANIFESTS.clear()
    return env.write(lambda txn: rebuild_txn(txn, env.db, progress))


def table_sizes(env) -> dict[str, dict[str, int]]:
    """Entries and bytes of pages of every table, of LMDB's list of tables (``(catalog)``),
    of the rest of the data file (``(free)``: LMDB's free list and meta pages, most of
    which ``compact`` gives back)."""
    out: dict[str, dict[str, int]] = {}
    used = 0
    with env.read() as txn:
        main = env.env.stat()
        psize = main["psize"]
        for name in ALL_TABLES:
            st = txn.stat(env.db[name])
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            used += pages
            out[name] = {"entries": st["entries"], "bytes": pages * psize}
        catalog = main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
        used += catalog
        out["(catalog)"] = {"entries": main["entries"], "bytes": catalog * psize}
    total = os.path.getsize(os.path.join(env.path, "data.mdb")) // psize
    out["(free)"] = {"entries": 0, "bytes": max(total - used, 0) * psize}
    return out


def stats(env) -> dict:
    """Counts and sizes: artifacts, check-ins, stored vs raw bytes, disk use."""
    db = env.db
    out = {}
    with env.read() as txn:
        stored = raw = whole = deltas = 0
        for aid, value in txn.cursor(db=db["blob"]):
            stored += len(value)
            if blobfmt.is_whole(value):
                whole += 1
                raw += blobfmt.stored_size(value) or 0
            else:
                deltas += 1
                raw += BlobReader(txn, db["blob"]).size(aid)
        ci = CheckinIndex(txn, db)
        out.update(
            artifacts=whole + deltas,
            whole=whole,
            deltas=deltas,
            raw_bytes=raw,
            stored_bytes=stored,
            checkins=ci.count(),
            branches=len(ci.branches()),
            tags=len(ci.tags()),
            phantoms=txn.stat(db["phantom"])["entries"],
        )
    out["disk_bytes"] = env.disk_size()
    out["map_bytes"] = env.env.info()["map_size"]
    return out
