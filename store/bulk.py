"""Bulk writes for importers and sync: many artifacts and check-ins, few transactions.

Operations are queued in memory and applied in one durable, retryable
transaction per ``flush`` (the batch is bounded, so memory stays bounded).
Branch tips and their tree indexes are brought up to date on ``close`` (or
``flush(update_tips=True)``); until then readers keep seeing the previous,
consistent tips.
"""

from __future__ import annotations

from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader, artifact_id
from herofossil.store.crosslink import crosslink, deltify_added, leaf_branches
from herofossil.store.keys import id_key, id_name


class BulkWriter:
    """Queue artifacts, reverse-delta hints and check-ins; apply them in batches."""

    def __init__(self, repo, *, batch_bytes: int = 64 << 20, batch_items: int = 20000):
        self.repo = repo
        self._env = repo._env
        self._db = repo._env.db
        self.batch_bytes = batch_bytes
        self.batch_items = batch_items
        self._ops: list[tuple] = []
        self._bytes = 0
        self._branches: set[str] = set()
        self.checkins_added = 0

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def _queue(self, op: tuple, size: int) -> None:
        self._ops.append(op)
        self._bytes += size
        if self._bytes >= self.batch_bytes or len(self._ops) >= self.batch_items:
            self.flush()

    def add_blob(self, data: bytes) -> str:
        """Queue a file artifact; returns its id (hex)."""
        aid = artifact_id(data)
        self._queue(("blob", aid, data), len(data))
        return id_name(aid)

    def deltify(self, old: str, new: str) -> None:
        """Queue a hint: store ``old`` as a delta on ``new`` (a newer version of it)."""
        self._queue(("deltify", id_key(old), id_key(new)), 0)

    def deltify_added(self, removed: list[tuple[str, str]], modified: list[tuple[str, str]],
                      added: list[tuple[str, str]]) -> None:
        """Queue a hint: the paths one check-in added may be deltas on what it removed or
        changed ((path, artifact id) each; see ``crosslink.deltify_added``)."""
        self._queue(("deltify_added", removed, modified, added), 0)

    def add_checkin(self, manifest: mf.Manifest, *, nfiles: int,
                    changed: list[str] | None = None) -> str:
        """Queue a check-in; ``nfiles`` is its full file count, ``changed`` its changed paths."""
        data = manifest.to_bytes()
        cid = artifact_id(data)
        self._queue(("checkin", cid, data, manifest, nfiles, changed), len(data))
        return id_name(cid)

    def add_control(self, ctl: mf.ControlArtifact) -> str:
        """Queue a control artifact (tags); returns its id."""
        data = ctl.to_bytes()
        aid = artifact_id(data)
        self._queue(("control", aid, data, ctl), len(data))
        return id_name(aid)

    def touch(self, branches) -> None:
        """Update these branches' tips on ``close`` even without new check-ins on them.

        An earlier, interrupted import may have left them stale.
        """
        self._branches.update(branches)

    def has(self, aid: str) -> bool:
        """True when artifact ``aid`` is stored (queued ones are not counted)."""
        with self._env.read() as txn:
            return BlobReader(txn, self._db).has(id_key(aid))

    def flush(self, *, update_tips: bool = False) -> None:
        """Apply the queue in one durable transaction."""
        ops = self._ops
        if not ops and not update_tips:
            return

        def txn_fn(txn):
            aw = ArtifactWriter(txn, self._db)
            batch_data: dict[bytes, bytes] = {}  # contents this batch holds anyway
            new: list[bytes] = []
            parsed: dict = {}
            summaries: dict = {}
            for op in ops:
                kind = op[0]
                if kind == "blob":
                    aw.add(op[2], op[1])
                    aw.note_hashed(op[1], op[2])  # hashed by add_blob: no second SHA3
                    batch_data[op[1]] = op[2]
                elif kind == "deltify":
                    aw.deltify(op[1], op[2], old_data=batch_data.get(op[1]),
                               new_data=batch_data.get(op[2]))
                elif kind == "deltify_added":
                    deltify_added(aw, op[1], op[2], op[3])
                elif kind == "checkin":
                    _, cid, data, m, nfiles, changed = op
                    aw.add(data, cid, cards=True)
                    aw.note_hashed(cid, data)
                    new.append(cid)
                    parsed[cid], summaries[cid] = m, (nfiles, changed, None)
                elif kind == "control":
                    aw.add(op[2], op[1], cards=True)
                    aw.note_hashed(op[1], op[2])
                    new.append(op[1])
                    parsed[op[1]] = op[3]
            touch = set(self._branches)
            if update_tips:  # and every branch an interrupted run may have left stale
                touch |= leaf_branches(txn, self._db)
            linked = crosslink(txn, self._db, new, aw=aw, parsed=parsed, summaries=summaries,
                               deltify_merges=True,
                               update_tips=update_tips, touch=touch)
            return linked.branches, len(linked.checkins)

        branches, added = self._env.write(txn_fn)
        self.checkins_added += added
        self._branches |= branches
        if update_tips:
            self._branches.clear()
        self._ops = []
        self._bytes = 0

    def close(self) -> None:
        """Flush what is queued and bring every touched branch tip up to date."""
        self.flush(update_tips=True)

