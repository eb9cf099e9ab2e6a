"""Local state about check-ins: records, children, leaves, branch tips, sym-tags, path log.

All of it is derived from manifests and control artifacts; ``index_checkin``
and ``index_control`` are the one place that derives it, used by the write
path, by ``rebuild``, by artifact import and by sync.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from herofossil.errors import IntegrityError, NotFoundError
from herofossil.store import blobs
from herofossil.store import manifest as mf
from herofossil.store.blobs import BlobReader
from herofossil.store.keys import id_key, id_name, join_key, pack_u64, unpack_u64
from herofossil.store.lru import LRU
from herofossil.store.sequences import Numbered

DEFAULT_BRANCH = "trunk"
# The branch of a check-in whose primary parent has not arrived (a sync can bring a
# check-in ahead of its parent): it inherits its parent's, unknown until then, so it is no
# branch's leaf (it was trunk's, and a write to trunk built on it). ``crosslink`` derives
# it again when the parent comes.
UNKNOWN_BRANCH = ""
INDEXED = b"I"


@dataclass(slots=True, frozen=True)
class Checkin:
    """One check-in as the log shows it (shared between readers: never changed).
    ``branch`` is ``""`` while its parent has not arrived (see ``UNKNOWN_BRANCH``)."""

    id: str
    parents: list[str]
    date: str
    time: float
    user: str
    comment: str
    branch: str
    seq: int
    tags: list[str] = field(default_factory=list)
    nfiles: int = 0
    baseline: str | None = None


@dataclass(slots=True, frozen=True, eq=False)
class Written(Checkin):
    """The check-in of one ``Repo.write``, with ``file_id``: the artifact id of the bytes
    written (their ETag: no need to hash them again). Equal to the same ``Checkin``."""

    file_id: str | None = None

    def __eq__(self, other) -> bool:
        if not isinstance(other, Checkin):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in Checkin.__dataclass_fields__)


_HEAD = struct.Struct("<BQdIBB")  # format, seq, time, nfiles, parents, has baseline
_LEN = struct.Struct("<I")
_FORMAT = 1
# A record ``compact`` packed: the same, its texts one zstd frame with the store's
# dictionary (``packing``; on the real history 211 -> 162 KB of records).
_PACKED = 2


def _encode_record(seq: int, time: float, nfiles: int, parents: list[str],
                   baseline: str | None, texts: tuple[str, ...]) -> bytes:
    """A check-in record: fixed header, binary ids, then length-prefixed UTF-8 texts."""
    out = [_HEAD.pack(_FORMAT, seq, time, nfiles, len(parents), baseline is not None)]
    for h in [*parents, *([baseline] if baseline else [])]:
        raw = bytes.fromhex(h)  # 32 bytes, or 20 for a SHA1 name: the name, not its key
        out.append(bytes([len(raw)]) + raw)
    for text in texts:
        raw = text.encode("utf-8", "surrogateescape")
        out.append(_LEN.pack(len(raw)) + raw)
    return b"".join(out)


def _texts_at(raw: bytes) -> int:
    """Where the texts of a record start (after its header and ids)."""
    pos = _HEAD.size
    for _ in range(raw[_HEAD.size - 2] + raw[_HEAD.size - 1]):
        pos += 1 + raw[pos]
    return pos


def pack_record(raw: bytes, compressor) -> bytes:
    """Record ``raw`` with its texts compressed by ``compressor`` (a dictionary's), when
    that is smaller."""
    if raw[:1] != bytes([_FORMAT]):
        return raw
    at = _texts_at(raw)
    packed = bytes([_PACKED]) + raw[1:at] + compressor.compress(raw[at:])
    return packed if len(packed) < len(raw) else raw


def plain_record(cid: bytes, raw: bytes) -> bytes:
    """Record ``raw`` as ``index_checkin`` writes it (a packed one unpacked)."""
    if raw[:1] != bytes([_PACKED]):
        return raw
    at = _texts_at(raw)
    return bytes([_FORMAT]) + raw[1:at] + blobs.decompress(raw[at:], cid)


# ---- path-log runs: packed history's form of the path log (made by ``compact``)
# An entry of ``pathlog`` is keyed PATH NUL SEQUENCE (8 bytes). Its value is empty for one
# check-in; a run, which ``compact`` makes of the entries of one path, names more check-ins:
# the differences from each sequence number to the next, as varints (config-L: 7,098
# entries of 46 bytes in 324 KB of pages).
RUN_BYTES = 1024  # a run's value stays well inside a leaf page


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def run_seqs(key: bytes, value: bytes) -> list[int]:
    """The check-in sequence numbers a path-log entry names, ascending (``ValueError`` for
    a value that is not a run)."""
    n = unpack_u64(key[-8:])
    out = [n]
    shift = step = 0
    for i, byte in enumerate(value):
        step |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 56:
                raise ValueError(f"a varint too long at byte {i}")
            continue
        if not step:
            raise ValueError(f"a step of 0 at byte {i}")
        n += step
        out.append(n)
        shift = step = 0
    if shift:
        raise ValueError("a truncated varint at the end")
    return out


def pathlog_runs(items: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
    """``items`` of the ``pathlog`` table (key order), the entries of each path folded
    into runs of at most ``RUN_BYTES`` (an entry that is a run already is unfolded first)."""
    path, seqs = None, []
    for key, value in items:
        key = bytes(key)
        if key[:-8] != path:
            yield from _runs(path, seqs)
            path, seqs = key[:-8], []
        seqs += run_seqs(key, bytes(value))
    yield from _runs(path, seqs)


def _runs(prefix: bytes | None, seqs: list[int]) -> Iterable[tuple[bytes, bytes]]:
    seqs = sorted(set(seqs))
    first = 0
    while first < len(seqs):
        steps, n = bytearray(), first + 1
        while n < len(seqs) and len(steps) < RUN_BYTES:
            steps += _varint(seqs[n] - seqs[n - 1])
            n += 1
        yield prefix + pack_u64(seqs[first]), bytes(steps)
        first = n


def _decode_record(cid: bytes, raw: bytes) -> Checkin:
    raw = plain_record(cid, raw)
    _fmt, seq, time, nfiles, nparents, has_base = _HEAD.unpack_from(raw)
    pos = _HEAD.size
    ids = []
    for _ in range(nparents + has_base):
        n = raw[pos]
        ids.append(raw[pos + 1:pos + 1 + n].hex())
        pos += 1 + n
    texts = []
    for _ in range(5):
        (n,) = _LEN.unpack_from(raw, pos)
        texts.append(raw[pos + 4:pos + 4 + n].decode("utf-8", "surrogateescape"))
        pos += 4 + n
    date, user, branch, comment, tags = texts
    return Checkin(
        id=id_name(cid),
        parents=ids[:nparents],
        date=date,
        time=time,
        user=user,
        comment=comment,
        branch=branch,
        seq=seq,
        tags=tags.split("\n") if tags else [],
        nfiles=nfiles,
        baseline=ids[nparents] if has_base else None,
    )


class RecordCache:
    """Decoded check-in records by id, checked against the stored bytes on each use."""

    def __init__(self, size: int = 256):
        self._items = LRU(max_items=size)  # id -> (stored record, its decoded form)

    def decode(self, cid: bytes, raw: bytes) -> Checkin:
        """The check-in that record ``raw`` of ``cid`` holds."""
        hit = self._items.get(cid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        rec = _decode_record(cid, raw)
        self.remember(cid, raw, rec)
        return rec

    def remember(self, cid: bytes, raw: bytes, rec: Checkin) -> None:
        """Keep ``rec``, the decoded form of record ``raw``."""
        self._items.put(cid, (raw, rec))


RECORDS = RecordCache()


class ManifestCache:
    """Parsed manifests and resolved file lists by check-in id (both immutable)."""

    def __init__(self, size: int = 64, baselines: int = 2):
        self._manifests = LRU(max_items=size)
        # Full manifests that delta-manifests name in their B card, kept apart so
        # that a run of small check-ins does not evict the one they all build on.
        self._baselines = LRU(max_items=baselines)
        self._files = LRU(max_items=8)

    def remember(self, cid: bytes, m: mf.Manifest) -> None:
        """Cache a manifest just written or parsed (content-addressed, so always valid)."""
        self._manifests.put(cid, m)
        if m.baseline is None:  # the baseline of the delta-manifests that follow it
            self._baselines.put(cid, m)

    def clear(self) -> None:
        """Forget everything (after rebuild or import)."""
        self._manifests.clear()
        self._baselines.clear()
        self._files.clear()

    def manifest(self, blobs: BlobReader, cid: bytes) -> mf.Manifest:
        """The parsed manifest of check-in ``cid``."""
        m = self._manifests.get(cid) or self._baselines.get(cid)
        if m is None:
            m = mf.parse_manifest(blobs.content(cid))
            self._manifests.put(cid, m)
        return m

    def baseline(self, blobs: BlobReader, cid: bytes) -> mf.Manifest:
        """``manifest`` for the baseline of a delta-manifest (kept in its own cache)."""
        m = self._baselines.get(cid)
        if m is None:
            m = self.manifest(blobs, cid)
            self._baselines.put(cid, m)
        return m

    def files(self, blobs: BlobReader, cid: bytes) -> dict[str, mf.FileCard]:
        """Every file card of check-in ``cid`` (its baseline's and its own), by name."""
        files = self._files.get(cid)
        if files is None:
            m = self.manifest(blobs, cid)
            base = self.baseline(blobs, id_key(m.baseline)) if m.baseline else None
            files = mf.resolve_files(m, base)
            self._files.put(cid, files)
        return files


MANIFESTS = ManifestCache()


def checkin_summary(m: mf.Manifest, parent: mf.Manifest | None, parent_id: str | None,
                    files_of) -> tuple[int, list[str]]:
    """(file count of ``m``, paths it changed relative to its first parent), sorted.

    ``files_of(id)`` resolves a check-in's full file list; it is called only
    when the cards cannot answer: two delta-manifests on one baseline (the
    common case) cost O(cards), not O(files).
    """
    if m.baseline is not None:
        base = files_of(m.baseline)
        nfiles = len(base)
        for c in m.files:
            nfiles += (c.uuid is not None) - (c.name in base)
    else:
        nfiles = len(m.files)
    if parent is None:
        return nfiles, sorted(files_of_manifest(m, files_of))
    if m.baseline is not None and m.baseline == (parent.baseline or parent_id):
        mine = {c.name: (c.uuid, c.perm) for c in m.files}
        theirs = {} if parent.baseline is None else {c.name: (c.uuid, c.perm)
                                                     for c in parent.files}
        return nfiles, sorted(p for p in mine.keys() | theirs.keys()
                              if mine.get(p) != theirs.get(p))
    a, b = files_of(parent_id), files_of_manifest(m, files_of)
    return nfiles, sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def files_of_manifest(m: mf.Manifest, files_of) -> dict[str, mf.FileCard]:
    """The full file list of ``m`` (through its baseline's, from ``files_of``)."""
    if m.baseline is None:
        return {c.name: c for c in m.files}
    return mf.overlay_cards(dict(files_of(m.baseline)), m.files)


class CheckinIndex:
    """Reads and writes the check-in tables inside one transaction."""

    def __init__(self, txn, dbs):
        self.txn = txn
        self.dbs = dbs

    # ---- reads
    def get(self, cid: bytes) -> Checkin | None:
        raw = self.txn.get(cid, db=self.dbs["checkin"])
        return None if raw is None else RECORDS.decode(cid, raw)

    def require(self, cid: bytes) -> Checkin:
        ci = self.get(cid)
        if ci is None:
            raise NotFoundError(f"no check-in {id_name(cid)}")
        return ci

    def tip(self, branch: str) -> bytes | None:
        """The check-in reads of ``branch`` use (its newest leaf)."""
        raw = self.txn.get(branch.encode(), db=self.dbs["tip"])
        return raw[:32] if raw else None

    def indexed(self, branch: str) -> bool:
        """True when the ``tree`` table holds ``branch``'s tip (see ``set_tip``)."""
        raw = self.txn.get(branch.encode(), db=self.dbs["tip"])
        return raw is not None and raw[32:] == INDEXED

    def branches(self) -> list[str]:
        return [k.decode() for k, _ in self.txn.cursor(db=self.dbs["tip"])]

    def _suffixes(self, table: str, prefix: bytes) -> list[bytes]:
        """The rest of every key of ``table`` that starts with ``prefix``."""
        out = []
        cur = self.txn.cursor(db=self.dbs[table])
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                out.append(key[len(prefix):])
        return out

    def leaves(self, branch: str) -> list[bytes]:
        return self._suffixes("leaf", join_key(branch, b""))

    def children(self, cid: bytes) -> list[bytes]:
        return self._suffixes("child", cid)

    def tagged(self, name: str) -> list[bytes]:
        return self._suffixes("tag", join_key(name, b""))

    def tags(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for key, _ in self.txn.cursor(db=self.dbs["tag"]):
            name, _, cid = key.partition(b"\0")
            out.setdefault(name.decode(), []).append(cid)
        return out

    def count(self) -> int:
        return self.txn.stat(self.dbs["checkin"])["entries"]

    def empty(self) -> bool:
        """No check-in at all (``count`` costs a table stat: 3% of a one-file write)."""
        return not self.txn.cursor(db=self.dbs["checkin"]).first()

    def by_prefix(self, prefix: str) -> list[bytes]:
        """Check-in ids whose hex starts with ``prefix`` (at most 2 returned)."""
        even = prefix if len(prefix) % 2 == 0 else prefix + "0"
        start = bytes.fromhex(even)
        out = []
        cur = self.txn.cursor(db=self.dbs["checkin"])
        if cur.set_range(start):
            for key in cur.iternext(keys=True, values=False):
                if not key.hex().startswith(prefix):
                    break
                out.append(key)
                if len(out) > 1:
                    break
        return out

    def newest(self) -> bytes | None:
        last = Numbered(self.txn, self.dbs["cseq"]).last()
        return last[1] if last else None

    def after_seq(self, seq: int):
        """(seq, check-in id) of every check-in indexed after sequence ``seq``."""
        return Numbered(self.txn, self.dbs["cseq"]).after(seq)

    def last_seq(self) -> int:
        last = Numbered(self.txn, self.dbs["cseq"]).last()
        return last[0] if last else 0

    def path_history(self, path: str) -> list[tuple[int, bytes]]:
        """(seq, check-in) of every check-in that changed ``path``, oldest first."""
        return self.path_prefix_history(join_key(path, b""))

    def path_prefix_history(self, prefix: bytes) -> list[tuple[int, bytes]]:
        """(seq, check-in) of every path-log entry whose key starts with ``prefix``."""
        seqs = []
        cur = self.txn.cursor(db=self.dbs["pathlog"])
        if cur.set_range(prefix):
            for key, value in cur:
                if not key.startswith(prefix):
                    break
                if not value:
                    seqs.append(unpack_u64(key[-8:]))
                    continue
                try:
                    seqs += run_seqs(key, value)
                except ValueError as exc:
                    raise IntegrityError(f"the path log of {key[:-9]!r} is damaged ({exc}): "
                                         "run 'herofossil rebuild'") from exc
        seqs.sort()  # one path's entries are in order; a folder's paths are not
        numbered = Numbered(self.txn, self.dbs["cseq"])
        return [(n, numbered.get(n)) for n in seqs]

    # ---- writes
    def _next_cseq(self) -> int:
        raw = self.txn.get(b"next_cseq", db=self.dbs["info"])
        n = unpack_u64(raw) if raw else 1
        self.txn.put(b"next_cseq", pack_u64(n + 1), db=self.dbs["info"])
        return n

    def index_checkin(
        self, cid: bytes, m: mf.Manifest, nfiles: int, changed: list[str] | None,
        when: float | None = None,
    ) -> Checkin:
        """Record check-in ``cid`` (manifest ``m``) in every local table but the tree.

        ``changed`` are the paths that differ from the primary parent (for the
        path log); None skips the path log. ``when``: ``m.date`` as a timestamp,
        if the caller has it.
        """
        existing = self.get(cid)
        if existing is not None:
            return existing
        branch = None
        for t in m.tags:
            if t.name == "branch" and t.kind == "*" and t.target == "*":
                branch = t.value
        if branch is None:
            parent = self.get(id_key(m.parents[0])) if m.parents else None
            if parent is not None:
                branch = parent.branch
            else:
                branch = UNKNOWN_BRANCH if m.parents else DEFAULT_BRANCH
        seq = self._next_cseq()
        symtags = sorted(
            t.name[4:]
            for t in m.tags
            if t.name.startswith("sym-") and t.kind in "*+" and t.target == "*"
        )
        if when is None:
            when = mf.date_to_datetime(m.date).timestamp()
        record = _encode_record(seq, when, nfiles, m.parents, m.baseline,
                                (m.date, m.user, branch, m.comment, "\n".join(symtags)))
        self.txn.put(cid, record, db=self.dbs["checkin"])
        self.txn.put(pack_u64(seq), cid, db=self.dbs["cseq"])
        bkey = join_key(branch, b"")
        for p in m.parents:
            pid = id_key(p)
            self.txn.put(pid + cid, b"", db=self.dbs["child"])
            parent = self.get(pid)
            if parent is not None and parent.branch == branch:
                self.txn.delete(bkey + pid, db=self.dbs["leaf"])
        if branch != UNKNOWN_BRANCH and not any(
                (c_rec := self.get(c)) and c_rec.branch == branch for c in self.children(cid)):
            self.txn.put(bkey + cid, b"", db=self.dbs["leaf"])
        for name in symtags:
            self.txn.put(join_key(name, cid), b"", db=self.dbs["tag"])
        if changed:
            sk = pack_u64(seq)
            for path in changed:
                self.txn.put(join_key(path, sk), b"", db=self.dbs["pathlog"])
        result = Checkin(id=id_name(cid), parents=list(m.parents), date=m.date, time=when,
                         user=m.user, comment=m.comment, branch=branch, seq=seq, tags=symtags,
                         nfiles=nfiles, baseline=m.baseline)
        if all(h == h.lower() for h in (*m.parents, m.baseline or "")):  # as decoding gives
            RECORDS.remember(cid, record, result)
        return result

    def rebranch(self, cid: bytes, rec: Checkin, branch: str) -> Checkin:
        """``rec`` (of ``cid``) on ``branch``, the one it inherits, now known; the rest of
        what ``index_checkin`` derived stays (its sequence, path log and links). Its
        parents' leaves are the caller's to settle."""
        record = _encode_record(rec.seq, rec.time, rec.nfiles, rec.parents, rec.baseline,
                                (rec.date, rec.user, branch, rec.comment, "\n".join(rec.tags)))
        self.txn.put(cid, record, db=self.dbs["checkin"])
        self.txn.delete(join_key(rec.branch, b"") + cid, db=self.dbs["leaf"])
        moved = Checkin(id=rec.id, parents=rec.parents, date=rec.date, time=rec.time,
                        user=rec.user, comment=rec.comment, branch=branch, seq=rec.seq,
                        tags=rec.tags, nfiles=rec.nfiles, baseline=rec.baseline)
        self.settle_leaf(moved)
        return moved

    def unindex(self, cid: bytes, rec: Checkin, paths: Iterable[str]) -> None:
        """Remove what ``index_checkin`` recorded of ``cid`` (its links to its parents
        stay), so that it can be indexed again; ``paths``: its files (the path log)."""
        self.txn.delete(cid, db=self.dbs["checkin"])
        Numbered(self.txn, self.dbs["cseq"]).delete(rec.seq)
        self.txn.delete(join_key(rec.branch, b"") + cid, db=self.dbs["leaf"])
        for name in rec.tags:
            self.txn.delete(join_key(name, cid), db=self.dbs["tag"])
        for path in paths:
            self._unlog(join_key(path, b""), rec.seq)

    def _unlog(self, prefix: bytes, seq: int) -> None:
        """Take check-in ``seq`` out of the path log of the path ``prefix`` names: its own
        entry, or the run that holds it (rewritten without it)."""
        db = self.dbs["pathlog"]
        key = prefix + pack_u64(seq)
        if self.txn.get(key, db=db) == b"":  # its own entry, not a run: most of them
            self.txn.delete(key, db=db)
            return
        cur = self.txn.cursor(db=db)
        if cur.set_range(key):
            if cur.key() != key and not cur.prev():  # else: a run before it may hold it
                return
        elif not cur.last():
            return
        key, value = bytes(cur.key()), bytes(cur.value())
        if not key.startswith(prefix) or len(key) != len(prefix) + 8:
            return
        try:
            seqs = run_seqs(key, value)
        except ValueError:
            return  # damaged: verify names it, rebuild remakes it
        if seq not in seqs:
            return
        cur.delete()
        seqs.remove(seq)
        for key, value in _runs(prefix, seqs):  # the run without it, keyed by its first
            self.txn.put(key, value, db=db)

    def settle_leaf(self, rec: Checkin) -> None:
        """Make ``rec`` a leaf of its branch exactly when no child of it is on that branch."""
        cid = id_key(rec.id)
        key = join_key(rec.branch, b"") + cid
        if rec.branch == UNKNOWN_BRANCH:
            return
        if any((c := self.get(x)) is not None and c.branch == rec.branch
               for x in self.children(cid)):
            self.txn.delete(key, db=self.dbs["leaf"])
        else:
            self.txn.put(key, b"", db=self.dbs["leaf"])

    def index_control(self, ctl: mf.ControlArtifact) -> None:
        """Apply the sym-tag changes of a control artifact."""
        for t in ctl.tags:
            if not t.name.startswith("sym-") or t.target == "*":
                continue
            tag_key = join_key(t.name[4:], id_key(t.target))
            if t.kind in "*+":
                self.txn.put(tag_key, b"", db=self.dbs["tag"])
            else:
                self.txn.delete(tag_key, db=self.dbs["tag"])

    def set_tip(self, branch: str, cid: bytes, indexed: bool) -> None:
        """Point ``branch`` at ``cid``; ``indexed`` says the caller keeps its tree index.

        Only branches that are written here (and the default branch) have a
        tree index; the tips of others (imported, synced) are read from their
        manifests until their first write, which builds the index.
        """
        self.txn.put(branch.encode(), cid + (INDEXED if indexed else b""), db=self.dbs["tip"])

    def newest_leaf(self, branch: str, leaves: list[bytes] | None = None) -> bytes:
        """The leaf reads use: the newest by date; an initial empty check-in only as last
        resort. ``leaves``: the branch's leaves, if the caller has them."""
        leaves = self.leaves(branch) if leaves is None else leaves
        if not leaves:
            raise IntegrityError(f"branch {branch!r} has no leaf: run 'herofossil rebuild'")

        def rank(cid: bytes):
            rec = self.require(cid)
            return (bool(rec.parents or rec.nfiles), rec.time, rec.seq)

        return max(leaves, key=rank)
