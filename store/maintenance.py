"""Rebuild: the artifacts are the repository, everything else is derived from them.

``rebuild`` throws the local state away and derives it again from the
``blob`` table alone, as ``fossil rebuild`` does; ``verify`` (module ``verify``)
compares a store's local state with such a rebuild made elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from herofossil import delta
from herofossil.errors import DeltaError, HeroFossilError, IntegrityError
from herofossil.store import blobs as blobfmt
from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader
from herofossil.store.checkins import DEFAULT_BRANCH, INDEXED, MANIFESTS
from herofossil.store.crosslink import crosslink, set_tips, topological
from herofossil.store.keys import CHAIN, DEPS, id_name, pack_u64
from herofossil.store.lru import LRU
from herofossil.store.reports import Report, quiet
from herofossil.store.schema import LOCAL_TABLES

ContentHook = Callable[[bytes, bytes | None, Exception | None], None]


class _ContentCache(BlobReader):
    """A BlobReader that remembers recent whole contents (delta bases repeat)."""

    def __init__(self, txn, dbs, size: int = 256):
        super().__init__(txn, dbs)
        self._cache = LRU(max_items=size)

    def content(self, aid: bytes) -> bytes:
        data = self._cache.get(aid)
        if data is not None:
            return data
        stored = self.stored(aid)
        base = blobfmt.delta_base(stored) if stored else None
        base_data = self._cache.get(base) if base is not None else None
        if base_data is not None:
            data = delta.apply(base_data, blobfmt.delta_payload(stored, aid))
        else:
            data = super().content(aid)
        self._cache.put(aid, data)
        return data


def rebuild_txn(txn, db, progress: Report = quiet, *, indexed: set[str] | None = None,
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
    aids: list[bytes] = []
    forms = BlobReader(txn, db)
    for aid, stored in txn.cursor(db=db["blob"]):
        aids.append(aid)
        base = blobfmt.delta_base(forms.form(aid, stored))
        if base is None:
            whole.append(aid)
        else:
            base_of[aid] = base
    _rebuild_chains(txn, db, base_of, set(whole))
    reader = _ContentCache(txn, db)
    for n, (aid, data, error) in enumerate(_contents(forms, whole, base_of), 1):
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
    ordered = topological(manifests)
    for _date, aid, ctl in sorted(controls, key=lambda c: c[:2]):
        parsed[aid] = ctl
        ordered.append(aid)
    # The insert sequence is what a peer's watermark streams in: files first, then
    # check-ins parents first, then control artifacts, as they would have arrived. (In
    # id order a check-in could reach a peer before its parent.)
    later = set(ordered)
    for seq, aid in enumerate([*(a for a in aids if a not in later), *ordered], 1):
        txn.put(pack_u64(seq), aid, db=db["seq"])
    txn.put(b"next_seq", pack_u64(len(aids) + 1), db=db["info"])
    linked = crosslink(txn, db, ordered, aw=aw, reader=reader, parsed=parsed,
                       update_tips=False, progress=progress)
    branches = sorted(
        {k.partition(b"\0")[0].decode() for k in txn.cursor(db=db["leaf"]).iternext(values=False)}
    )
    set_tips(txn, db, aw, reader, branches, indexed=indexed, tips=tips)
    return {"artifacts": len(aids), "checkins": len(linked.checkins), "branches": len(branches)}


def _contents(forms: BlobReader, whole: list[bytes], base_of: dict[bytes, bytes]):
    """(id, bytes, None) of every artifact, or (id, None, error) for one that cannot be
    reconstructed; each delta is applied once, on its base's bytes (chains are walked
    from their whole root), instead of once per artifact that a chain passes through."""
    dependents: dict[bytes, list[bytes]] = {}
    for aid, base in base_of.items():
        dependents.setdefault(base, []).append(aid)
    reached: set[bytes] = set()
    for root in whole:
        try:
            stored = forms.stored(root)
        except HeroFossilError as exc:
            yield root, None, exc
            continue
        if blobfmt.is_chunked(stored):
            continue  # file content in parts: no card to read, hashed by verify part by part
        try:
            data = blobfmt.decode_whole(stored, root)
        except HeroFossilError as exc:
            yield root, None, exc
            continue
        yield root, data, None
        stack = [(aid, data) for aid in dependents.get(root, ())]
        while stack:
            aid, base_data = stack.pop()
            reached.add(aid)
            try:
                data = delta.apply(base_data, blobfmt.delta_payload(forms.stored(aid), aid))
            except DeltaError as exc:
                yield aid, None, IntegrityError(f"artifact {id_name(aid)} is damaged: {exc}")
                continue
            except HeroFossilError as exc:
                yield aid, None, exc
                continue
            yield aid, data, None
            stack.extend((child, data) for child in dependents.get(aid, ()))
    if len(reached) < len(base_of):  # deltas on a missing or damaged base, or in a loop
        for aid in base_of:
            if aid not in reached:
                try:
                    yield aid, forms.content(aid), None
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
        txn.put(root, CHAIN.pack(min(hops, 0xFFFF)), db=db["chain"])
    for base, n in deps.items():
        txn.put(base, DEPS.pack(n), db=db["deps"])


def rebuild(env, progress: Report = quiet) -> dict:
    """Regenerate all local state of the store at ``env`` in one durable transaction."""
    MANIFESTS.clear()
    return env.write(lambda txn: rebuild_txn(txn, env.db, progress))


def iter_artifacts(repo, batch: int = 512) -> Iterator[tuple[str, bytes]]:
    """(hex id, bytes) of every artifact, in short read transactions: what an adapter's own
    rebuild of its local state reads (e.g. the Git import's commit map)."""
    dbs = repo._env.db
    db = dbs["blob"]
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
            reader = BlobReader(txn, dbs)
            items = [(id_name(aid), reader.content(aid)) for aid in ids]
        if not items:
            return
        yield from items
        last = ids[-1]
