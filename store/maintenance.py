"""Verify and rebuild: the artifacts are the repository, everything else is derived.

``verify`` re-hashes every artifact and checks the local state against it;
``rebuild`` throws the local state away and derives it again from the
``blob`` table alone, as ``fossil rebuild`` does.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from herofossil.errors import HeroFossilError, IntegrityError
from herofossil.store import blobs as blobfmt
from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader, artifact_id
from herofossil.store.checkins import (
    DEFAULT_BRANCH,
    INDEXED,
    MANIFESTS,
    CheckinIndex,
    checkin_summary,
)
from herofossil.store.lmdbenv import ALL_TABLES, LOCAL_TABLES
from herofossil.store.tree import Tree
from herofossil.store.wal import CHECKPOINT_FILE, WAL_FILE
from herofossil.store.writer import fill_tree

Progress = Callable[[str, int, int | None], None]


def _quiet(label: str, done: int, total: int | None) -> None:
    return None


@dataclass
class VerifyReport:
    """What ``verify`` checked and what it found wrong."""

    artifacts: int = 0
    checkins: int = 0
    phantoms: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


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
            from herofossil import delta

            data = delta.apply(self._cache[base], blobfmt.delta_payload(stored, aid))
        else:
            data = super().content(aid)
        self._cache[aid] = data
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return data


def verify(env, progress: Progress = _quiet) -> VerifyReport:
    """Re-hash every artifact and check every index against the artifacts."""
    report = VerifyReport()
    db = env.db
    with env.read() as txn:
        total = txn.stat(db["blob"])["entries"]
        reader = _ContentCache(txn, db["blob"])
        for n, aid in enumerate(txn.cursor(db=db["blob"]).iternext(values=False), 1):
            report.artifacts += 1
            try:
                if artifact_id(reader.content(aid)) != aid:
                    report.problems.append(f"artifact {aid.hex()}: content does not match its hash")
            except HeroFossilError as exc:
                report.problems.append(f"artifact {aid.hex()}: {exc}")
            if n % 256 == 0:
                progress("verify artifacts", n, total)
        progress("verify artifacts", report.artifacts, total)
        report.phantoms = txn.stat(db["phantom"])["entries"]
        ci = CheckinIndex(txn, db)
        report.checkins = ci.count()
        plain = BlobReader(txn, db["blob"])
        for cid in txn.cursor(db=db["checkin"]).iternext(values=False):
            if not plain.has(cid):
                report.problems.append(f"check-in {cid.hex()}: indexed but its manifest is missing")
        for branch in ci.branches():
            tip = ci.tip(branch)
            if not ci.indexed(branch):
                continue
            try:
                want = {
                    n: (c.uuid, c.perm if c.perm in ("x", "l") else "")
                    for n, c in MANIFESTS.files(plain, tip).items()
                }
            except HeroFossilError as exc:
                report.problems.append(f"branch {branch}: tip {tip.hex()} unreadable: {exc}")
                continue
            have = {e.path: (e.id, e.perm) for e in Tree(txn, db["tree"], branch).walk()}
            if want != have:
                bad = sorted(set(want.items()) ^ set(have.items()))[:3]
                report.problems.append(
                    f"branch {branch}: tip index differs from check-in {tip.hex()[:12]} "
                    f"(e.g. {', '.join(p for p, _ in bad)}): run 'herofossil rebuild'"
                )
    return report


def _topological(manifests: dict[bytes, mf.Manifest]) -> list[bytes]:
    """Check-ins ordered parents first, ties by date."""
    import heapq

    pending = {}
    children: dict[bytes, list[bytes]] = {}
    for cid, m in manifests.items():
        ps = [bytes.fromhex(p) for p in m.parents if bytes.fromhex(p) in manifests]
        pending[cid] = len(ps)
        for p in ps:
            children.setdefault(p, []).append(cid)
    ready = [(manifests[c].date, c) for c, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, cid = heapq.heappop(ready)
        order.append(cid)
        for ch in children.get(cid, []):
            pending[ch] -= 1
            if pending[ch] == 0:
                heapq.heappush(ready, (manifests[ch].date, ch))
    if len(order) != len(manifests):
        raise IntegrityError("check-ins form a cycle; the store is damaged")
    return order


def rebuild_txn(txn, db, progress: Progress = _quiet) -> dict:
    """Regenerate every local table from the ``blob`` table, inside one write transaction."""
    indexed = {k.decode() for k, v in txn.cursor(db=db["tip"]) if v[32:] == INDEXED}
    for name in LOCAL_TABLES:
        txn.drop(db[name], delete=False)
    aw = ArtifactWriter(txn, db)
    total = txn.stat(db["blob"])["entries"]
    manifests: dict[bytes, mf.Manifest] = {}
    controls: list[mf.ControlArtifact] = []
    depth: dict[bytes, int] = {}
    seq = 0
    reader = _ContentCache(txn, db["blob"])
    for n, (aid, stored) in enumerate(txn.cursor(db=db["blob"]), 1):
        seq += 1
        txn.put(seq.to_bytes(8, "big"), aid, db=db["seq"])
        if stored[:1] in blobfmt.DELTAS:
            depth[aid] = -1
        try:
            art = mf.parse_artifact(reader.content(aid))
        except HeroFossilError:
            art = None
        if isinstance(art, mf.Manifest):
            manifests[aid] = art
        elif isinstance(art, mf.ControlArtifact):
            controls.append(art)
        if n % 256 == 0:
            progress("rebuild: read artifacts", n, total)
    txn.put(b"next_seq", (seq + 1).to_bytes(8, "big"), db=db["info"])
    _rebuild_chains(txn, db, depth)
    ci = CheckinIndex(txn, db)
    order = _topological(manifests)

    def files_of(h: str) -> dict:
        return MANIFESTS.files(reader, bytes.fromhex(h))

    seen: set[str] = set()
    for n, cid in enumerate(order, 1):
        m = manifests[cid]
        MANIFESTS.remember(cid, m)
        pid = m.parents[0] if m.parents else None
        parent = manifests.get(bytes.fromhex(pid)) if pid else None
        try:
            nfiles, changed = checkin_summary(m, parent, pid if parent else None, files_of)
        except HeroFossilError:  # a baseline or parent manifest is missing: index it anyway
            nfiles, changed = len(m.files), None
        # Every file a check-in references is a card of it or of its baseline, which is a
        # check-in too: looking at each manifest's own cards covers all references once.
        for ref in [*m.parents, *(c.uuid for c in m.files if c.uuid)]:
            if len(ref) == 64 and ref not in seen:
                seen.add(ref)
                aw.add_phantom(bytes.fromhex(ref))
        ci.index_checkin(cid, m, nfiles, changed)
        if n % 64 == 0:
            progress("rebuild: index check-ins", n, len(order))
    for ctl in sorted(controls, key=lambda c: c.date):
        ci.index_control(ctl)
    branches = sorted(
        {k.partition(b"\0")[0].decode() for k in txn.cursor(db=db["leaf"]).iternext(values=False)}
    )
    for branch in branches:
        tip = ci.newest_leaf(branch)
        ci.set_tip(branch, tip, indexed=branch in indexed or branch == DEFAULT_BRANCH)
        if ci.indexed(branch):
            fill_tree(Tree(txn, db["tree"], branch), aw, MANIFESTS.files(reader, tip),
                      ci.require(tip).time)
    progress("rebuild: index check-ins", len(order), len(order))
    return {"artifacts": seq, "checkins": len(order), "branches": len(branches)}


def _rebuild_chains(txn, db, depth: dict[bytes, int]) -> None:
    """Recompute the longest delta chain ending on each whole artifact, and dependents counts."""
    chain: dict[bytes, int] = {}
    deps: dict[bytes, int] = {}
    for aid in depth:
        hops, cur = 0, aid
        while True:
            stored = txn.get(cur, db=db["blob"])
            base = blobfmt.delta_base(stored) if stored else None
            if base is None:
                break
            if cur == aid:
                deps[base] = deps.get(base, 0) + 1
            hops += 1
            cur = base
            if hops > blobfmt.MAX_CHAIN * 4:
                break
        if hops and stored:
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
    which ``compact`` gives back) and of the write-ahead log's files (``(log)``)."""
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
    out["(log)"] = {"entries": 0, "bytes": sum(
        os.path.getsize(os.path.join(env.path, name)) for name in (WAL_FILE, CHECKPOINT_FILE)
        if os.path.exists(os.path.join(env.path, name)))}
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
