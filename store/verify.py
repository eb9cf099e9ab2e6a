"""verify: every artifact re-hashed, every local table compared with a rebuild of it.

The check runs in a child process (``python -m herofossil.store.verify``): a
damaged LMDB file can make liblmdb crash (SIGSEGV, SIGBUS, an assertion's
abort), which no Python ``except`` catches. The child streams JSON lines
(what it is doing, progress, problems, counts) on stdout; the parent turns a
child killed by a signal, or ending without finishing, into a problem line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import lmdb

from herofossil.errors import HeroFossilError, IntegrityError, StoreError
from herofossil.store import blobs as blobfmt
from herofossil.store.blobs import BlobReader, artifact_id, hashes_to, pack_u64, unpack_u64
from herofossil.store.checkins import (
    INDEXED,
    _decode_record,
    _encode_record,
    plain_record,
    run_seqs,
)
from herofossil.store.keys import id_name
from herofossil.store.lmdbenv import is_store
from herofossil.store.reports import Report, quiet
from herofossil.store.schema import ALL_TABLES, LOCAL_TABLES, lmdb_open
from herofossil.store.sequences import Numbered, entry_ids
from herofossil.store.tree import PERM_NAMES
from herofossil.store.tree import decode as tree_entry

LINES_PER_TABLE = 5
REBUILD = "run 'herofossil rebuild'"
RESTORE = "restore the store from a backup or a peer"
INFO_KEYS = (b"next_seq", b"next_cseq")
EPOCH_KEY = b"sync-epoch"  # store/exchange.py: local state that a rebuild drops and renews
# What liblmdb dies of on a damaged file (a bad pointer, a page past the file, an assertion).
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}
_RECORD_SEQ = struct.Struct("<Q")  # a check-in record's sequence, after its format byte


@dataclass
class VerifyReport:
    """What ``verify`` checked and what it found wrong."""

    artifacts: int = 0
    checkins: int = 0
    phantoms: int = 0
    loose_parts: int = 0  # parts of large artifacts that no artifact names (compact drops them)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---- the parent: run the checker, never crash with it
def verify(store, progress: Report = quiet) -> VerifyReport:
    """Check the store at ``store`` (a path, or an open store environment) in a child
    process; every damage, a crash of the checker included, is a problem line.

    The child opens the store read-only, as any reader does (a store that does
    not open is damage), reads every table with LMDB (every key and value,
    checked against LMDB's entry counts and key order, each decoded with its
    table's codec), copies the ``blob`` table into a scratch LMDB environment
    in a temporary directory outside the store, runs ``rebuild_txn`` there
    (re-hashing every artifact as it is reconstructed) and compares each local
    table of the store with the rebuilt one, key by key.

    Compared exactly (the same keys, the same values): ``phantom``, ``deps``,
    ``child``, ``leaf``, ``tag``; ``checkin`` records in every field but their
    sequence number; ``tree`` entries of the branches the store indexes, in
    every field but their mtime (the time of the check-in that last wrote the
    entry, where rebuild uses the tip's).

    Compared by invariant (the values depend on insert order or history):
    ``seq`` maps distinct numbers to exactly the stored artifacts; ``cseq``
    maps distinct numbers to exactly the check-ins, and each check-in's record
    carries the number that names it; ``pathlog`` holds exactly the (path,
    check-in) pairs the rebuild derives, each side's numbers read through its
    own ``cseq``, and more only where the check-in's manifest has a card for
    the path (the write path logs a path a check-in names but leaves as it
    was, e.g. a file overwritten with the same bytes; rebuild does not);
    ``chain`` is an upper bound (the write path does not lower it when a
    chain is re-rooted): at least the longest chain ending on each
    whole artifact, on whole artifacts only, at most ``MAX_CHAIN``; ``info``
    holds only its two counters, each above every number its table uses.
    ``meta`` (not derived) is only read.

    Not derivable, so taken from the store's ``tip`` by the rebuild: which
    branches have a tree index (the writers' choice), and which check-in each
    tip names (an interrupted bulk import leaves tips behind their newest leaf
    until the next import; see ``bulk``). ``tip`` must name a check-in of its
    branch, and a branch with a tree index must have a tip.
    """
    path = os.path.abspath(os.fspath(getattr(store, "path", store)))
    if not is_store(path):
        raise StoreError(f"no herofossil store at {path}: create one with 'herofossil init'")
    report = VerifyReport()
    doing = "starting the checker"
    finished = False
    try:
        scratch = tempfile.mkdtemp(prefix="herofossil-verify-")
    except OSError as exc:
        raise StoreError(f"verify needs a scratch directory ({tempfile.gettempdir()}): "
                         f"{exc.strerror}; point TMPDIR at one it may write") from exc
    try:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                # -P: the caller's working directory is not searched for modules.
                [sys.executable, "-P", "-m", "herofossil.store.verify", path, scratch],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            try:
                for line in proc.stdout:
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if "doing" in msg:
                        doing = msg["doing"]
                    elif "progress" in msg:
                        progress(*msg["progress"])
                    elif "problem" in msg:
                        report.problems.append(msg["problem"])
                    elif "counts" in msg:
                        for name, value in msg["counts"].items():
                            setattr(report, name, value)
                    elif "done" in msg:
                        finished = True
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code in _CRASHES:
            report.problems.append(f"the data file is damaged: {doing} killed the checker "
                                   f"with {name}; {RESTORE}")
        else:
            report.problems.append(f"the checker was stopped by {name} while {doing}: the "
                                   "store was not fully checked; run verify again")
    elif code != 0 or not finished:
        last = f": {tail[-1]}" if tail else ""
        report.problems.append(f"the checker stopped (exit {code}) while {doing}{last}; "
                               f"the store may be damaged: {RESTORE}")
    return report


# ---- the child: what is read, how it decodes, what it must equal
class _Bad(ValueError):
    """An entry that does not decode with its table's codec."""


class _ScratchError(Exception):
    """The scratch environment (not the store) failed, e.g. its disk is full."""


def _id(raw: bytes, what: str = "id") -> bytes:
    if len(raw) != 32:
        raise _Bad(f"{what} is {len(raw)} bytes, not 32")
    return raw


def _empty(value: bytes) -> None:
    if value:
        raise _Bad(f"value is {len(value)} bytes where none belong")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"{what} is not UTF-8") from exc


def _u64(raw: bytes, what: str = "sequence") -> int:
    if len(raw) != 8:
        raise _Bad(f"{what} is {len(raw)} bytes, not 8")
    return unpack_u64(raw)


def _count(value: bytes, size: int) -> int:
    if len(value) != size:
        raise _Bad(f"value is {len(value)} bytes, not {size}")
    n = int.from_bytes(value, "little")
    if n == 0:
        raise _Bad("a count of 0 is never stored")
    return n


def _named(key: bytes, what: str) -> tuple[str, bytes]:
    """Split ``name NUL id`` keys (leaf, tag)."""
    if len(key) < 34 or key[-33] != 0:
        raise _Bad("key is not NAME NUL ID")
    return _text(key[:-33], what), key[-32:]


def _tree_key(key: bytes) -> tuple[str, str]:
    parts = key.split(b"\0")
    if len(parts) != 3 or not parts[2]:
        raise _Bad("key is not BRANCH NUL DIR NUL NAME")
    branch, head, tail = (_text(p, "path") for p in parts)
    return branch, f"{head}/{tail}" if head else tail


def _decode(table: str, key: bytes, value: bytes):
    """The comparable form of one entry of ``table``; raises ``_Bad``."""
    if table == "seq" or table == "cseq":
        _u64(key)
        try:
            return entry_ids(key, value)  # a run (compact) holds consecutive numbers
        except ValueError as exc:
            raise _Bad(str(exc)) from exc
    if table in ("phantom", "chain", "deps", "checkin"):
        _id(key, "key")
    if table == "phantom":
        return _empty(value)
    if table == "chain":
        return _count(value, 2)
    if table == "deps":
        return _count(value, 4)
    if table == "checkin":
        try:
            value = plain_record(key, value)  # a packed one: its texts decompressed
            rec = _decode_record(key, value)
            again = _encode_record(rec.seq, rec.time, rec.nfiles, rec.parents, rec.baseline,
                                   (rec.date, rec.user, rec.branch, rec.comment,
                                    "\n".join(rec.tags)))
        except (struct.error, ValueError, IndexError, TypeError, OverflowError,
                IntegrityError) as exc:
            raise _Bad(f"record does not decode: {exc}") from exc
        if value[:1] != b"\x01" or again != value:
            raise _Bad("record does not decode to itself (unknown format or trailing bytes)")
        return rec
    if table == "child":
        if len(key) != 64:
            raise _Bad(f"key is {len(key)} bytes, not 64")
        return _empty(value)
    if table == "leaf" or table == "tag":
        _named(key, "branch" if table == "leaf" else "tag name")
        return _empty(value)
    if table == "tip":
        _text(key, "branch")
        if len(value) not in (32, 33) or value[32:] not in (b"", INDEXED):
            raise _Bad("value is not a check-in id with an optional index flag")
        return value
    if table == "tree":
        path = _tree_key(key)[1]
        if (value[:1], len(value)) not in ((b"F", 50), (b"D", 13)) or (
                value[:1] == b"F" and value[1:2] not in PERM_NAMES):
            raise _Bad("value is neither a file nor a directory entry")
        e = tree_entry(path, value)
        if not math.isfinite(e.mtime):
            raise _Bad("entry has a time that is not a number")
        return ("D", e.count) if e.is_dir else ("F", e.perm, e.size, e.id)
    if table == "pathlog":
        if len(key) < 10 or key[-9] != 0:
            raise _Bad("key is not PATH NUL SEQUENCE")
        try:
            seqs = run_seqs(key, value)  # a run (compact) names more check-ins
        except ValueError as exc:
            raise _Bad(f"value is not a run of check-ins: {exc}") from exc
        return _text(key[:-9], "path"), seqs
    if table == "info":
        if key == EPOCH_KEY:  # the sync epoch: hex text, renewed by every rebuild
            if not value or any(c not in b"0123456789abcdef" for c in value):
                raise _Bad("a sync epoch that is not hex text")
            return value.decode()
        if key not in INFO_KEYS:
            raise _Bad("unknown key (only the counters and the sync epoch belong here)")
        return _u64(value, "counter")
    if table == "blob":
        _id(key, "key")
        kind = value[:1]
        if kind not in (blobfmt.WHOLE, blobfmt.RAW, blobfmt.CHUNKED, *blobfmt.DELTAS):
            raise _Bad(f"unknown stored form {kind!r}")
        if kind in blobfmt.DELTAS and len(value) < 1 + blobfmt.ID_LEN:
            raise _Bad("delta form too short for its base id")
        if kind == blobfmt.CHUNKED:
            try:
                blobfmt.chunk_layout(value, key)
            except HeroFossilError as exc:
                raise _Bad(str(exc)) from exc
        return None
    return None  # meta: not derived, only read


def _describe(table: str, key: bytes) -> str:
    """``key`` of ``table`` as a person reads it (never raises)."""
    try:
        if table in ("seq", "cseq"):
            return f"sequence {_u64(key)}"
        if table in ("phantom", "chain", "deps"):
            return f"artifact {id_name(_id(key))}"
        if table == "checkin":
            return f"check-in {id_name(_id(key))}"
        if table == "child":
            return f"parent {id_name(key[:32])} child {id_name(key[32:])}" if len(key) == 64 \
                else f"key {id_name(key)}"
        if table == "leaf":
            branch, cid = _named(key, "branch")
            return f"branch {branch!r} check-in {id_name(cid)}"
        if table == "tag":
            name, cid = _named(key, "tag name")
            return f"tag {name!r} check-in {id_name(cid)}"
        if table == "tip":
            return f"branch {_text(key, 'branch')!r}"
        if table == "tree":
            branch, path = _tree_key(key)
            return f"branch {branch!r} path {path!r}"
        if table == "pathlog":
            path, seq = _text(key[:-9], "path"), _u64(key[-8:])
            return f"path {path!r} sequence {seq}"
        if table == "info":
            return f"key {key.decode('ascii')!r}"
    except (_Bad, UnicodeDecodeError):
        pass
    return f"key {id_name(key)}"


class _Emitter:
    """The child's side of the protocol: one JSON object a line."""

    def __init__(self, out):
        self.out = out

    def send(self, **msg) -> None:
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def doing(self, what: str) -> None:
        self.send(doing=what)

    def problem(self, text: str) -> None:
        self.send(problem=text)

    def progress(self, label: str, done: int, total: int | None) -> None:
        self.send(progress=[label.replace("rebuild:", "verify:"), done, total])


class _Lines:
    """Problem lines of one table, at most ``LINES_PER_TABLE`` and a count of the rest."""

    def __init__(self, emit: _Emitter, table: str, remedy: str = REBUILD):
        self.emit = emit
        self.table = table
        self.remedy = remedy
        self.n = 0

    def add(self, text: str) -> None:
        self.n += 1
        if self.n <= LINES_PER_TABLE:
            self.emit.problem(f"table {self.table}: {text}; {self.remedy}")

    def close(self) -> None:
        if self.n > LINES_PER_TABLE:
            self.emit.problem(f"table {self.table}: and {self.n - LINES_PER_TABLE} more "
                              f"problems; {self.remedy}")


def _merge(a: Iterator, b: Iterator):
    """(key, a's value or None, b's value or None) over two key-ordered iterators."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            yield x[0], x[1], None
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            yield y[0], None, y[1]
            y = next(b, None)
        else:
            yield x[0], x[1], y[1]
            x, y = next(a, None), next(b, None)


class _Checker:
    """Every check of one store, inside one read snapshot of it (in the child)."""

    def __init__(self, env, scratch_dir: str, emit: _Emitter):
        self.env = env
        self.snapshot = env.read()
        self.txn = self.snapshot.txn
        self.db = env.db
        self.scratch_dir = scratch_dir
        self.emit = emit
        self.stxn = None  # the scratch write transaction: the copy of blob, the rebuild
        self.sdb: dict = {}
        self.complete = False  # every artifact was copied
        self.rebuilt = False  # the scratch holds the rebuilt local tables
        self.max_seq = {"seq": 0, "cseq": 0}
        self.bad_artifacts = _Lines(emit, "blob", RESTORE)
        self.loose_parts = 0

    # ---- reading the store
    def items(self, table: str) -> Iterator:
        """Every (key, value) of the store's ``table``, in order; entries out of key order
        (a damaged page) are reported and skipped, and the count is checked against
        LMDB's at the end."""
        self.emit.doing(f"reading table {table}")
        pages = _Lines(self.emit, table, f"the data file is damaged: {RESTORE}")
        n, prev = 0, None
        for key, value in self.txn.cursor(db=self.db[table]):
            n += 1
            if prev is not None and key <= prev:
                pages.add(f"{_describe(table, key)}: out of key order after "
                          f"{_describe(table, prev)}")
                continue
            prev = key
            yield key, value
        entries = self.txn.stat(self.db[table])["entries"]
        if n != entries:
            pages.add(f"LMDB counts {entries} entries but {n} were read")
        pages.close()

    def scratch_items(self, table: str) -> Iterator:
        if not self.rebuilt:
            return iter(())
        return iter(self.stxn.cursor(db=self.sdb[table]))

    def damaged(self, table: str, exc: lmdb.Error) -> None:
        """Report an error of LMDB's reading ``table``; go on in a new snapshot (LMDB
        ends the transaction an error happened in)."""
        self.emit.problem(f"the data file is damaged: reading table {table}: {exc}; {RESTORE}")
        self.renew()

    def renew(self) -> None:
        self.snapshot.close()
        self.snapshot = self.env.read()
        self.txn = self.snapshot.txn

    # ---- the whole check
    def run(self) -> None:
        senv = None
        try:
            self.check_dictionaries()
            self.check_segments()
            senv = self.copy_artifacts()
            self.rebuild()
            self.check_parts()
            for i, table in enumerate((*LOCAL_TABLES, "meta"), 1):
                lines = _Lines(self.emit, table)
                try:
                    getattr(self, f"check_{table}", self.check_exact)(table, lines)
                except lmdb.Error as exc:
                    self.damaged(table, exc)
                lines.close()
                self.emit.progress("verify: compare tables", i, len(LOCAL_TABLES) + 1)
        finally:
            if self.stxn is not None:
                self.stxn.abort()
            if senv is not None:
                senv.close()
        counts = {"loose_parts": self.loose_parts}
        for name, table in (("artifacts", "blob"), ("checkins", "checkin"),
                            ("phantoms", "phantom")):
            try:
                counts[name] = self.txn.stat(self.db[table])["entries"]
            except lmdb.Error:
                pass
        self.snapshot.close()
        self.emit.send(counts=counts)

    def copy_artifacts(self):
        """The ``blob`` table, walked and copied into a scratch environment."""
        size = os.path.getsize(os.path.join(self.env.path, "data.mdb"))
        try:
            # Never committed: below LMDB's dirty-page limit the copy stays in memory.
            senv = lmdb_open(self.scratch_dir, 4 * size + (1 << 30), sync=False,
                             metasync=False, lock=False, readahead=False)
            stxn = senv.begin(write=True)
            self.sdb = {name: senv.open_db(name.encode(), txn=stxn) for name in ALL_TABLES}
        except lmdb.Error as exc:
            raise _ScratchError(exc) from exc
        self.stxn = stxn
        lines = self.bad_artifacts
        total = self.txn.stat(self.db["blob"])["entries"]
        failed = []

        forms = BlobReader(self.txn, self.db)

        def good():
            try:
                for n, (key, value) in enumerate(self.items("blob"), 1):
                    try:
                        if value[:1] == blobfmt.SEGMENT:  # copied as the form it names
                            try:
                                value = forms.form(key, value)
                            except IntegrityError as exc:
                                raise _Bad(str(exc).removeprefix(
                                    f"artifact {id_name(key)} ")) from exc
                        _decode("blob", key, value)
                        did = blobfmt.stored_dictionary(value)
                        if did and did not in self.dictionaries:
                            raise _Bad(f"compressed with dictionary {did}, which the store "
                                       "lacks")
                    except _Bad as exc:
                        lines.add(f"{_describe('blob', key)}: {exc}")
                        continue
                    if n % 1024 == 0:
                        self.emit.progress("verify: copy artifacts", n, total)
                    yield key, value
            except lmdb.Error as exc:  # what was read before is checked still
                failed.append(exc)

        try:
            stxn.cursor(db=self.sdb["blob"]).putmulti(good(), append=True)
        except lmdb.Error as exc:
            raise _ScratchError(exc) from exc
        if failed:
            self.damaged("blob", failed[0])
        self.complete = not failed
        return senv

    def rebuild(self) -> None:
        """Rebuild the local state in the scratch transaction, re-hashing every artifact."""
        from herofossil.store.maintenance import rebuild_txn

        hashed: set[bytes] = set()

        def check(aid: bytes, data: bytes | None, error: Exception | None) -> None:
            hashed.add(aid)
            if error is not None:
                said = str(error)
                name = id_name(aid)
                self.bad_artifacts.add(said if name in said else f"artifact {name}: {said}")
            elif not hashes_to(aid, data):
                self.bad_artifacts.add(f"artifact {id_name(aid)}: content does not match its hash")

        indexed, tips = set(), {}
        self.emit.doing("reading table tip")
        try:
            for key, value in self.txn.cursor(db=self.db["tip"]):
                branch = key.decode("utf-8", "replace")
                tips[branch] = value[:32]
                if value[32:] == INDEXED:
                    indexed.add(branch)
        except lmdb.Error:
            self.renew()  # reported when the table is compared
        if not self.complete:  # a rebuild from part of the artifacts would differ everywhere
            self.rehash(hashed, check)
            self.bad_artifacts.close()
            return
        self.emit.doing("rebuilding the local state from the artifacts")
        try:
            rebuild_txn(self.stxn, self.sdb, self.emit.progress, indexed=indexed, tips=tips,
                        on_content=check)
            self.rebuilt = True
        except (HeroFossilError, ValueError, KeyError, RecursionError) as exc:
            self.emit.problem(f"the artifacts do not rebuild: {exc}; the local state was not "
                              f"compared; {RESTORE}")
            self.rehash(hashed, check)
        except lmdb.Error as exc:  # only the scratch environment is written
            raise _ScratchError(exc) from exc
        self.bad_artifacts.close()

    def rehash(self, hashed: set[bytes], check) -> None:
        """Re-hash the copied artifacts that no rebuild reached."""
        from herofossil.store.maintenance import _ContentCache

        reader = _ContentCache(self.stxn, self.sdb)
        self.emit.doing("re-hashing the artifacts")
        for aid, stored in self.stxn.cursor(db=self.sdb["blob"]):
            if aid in hashed or blobfmt.is_chunked(stored) or not (
                    self.complete or self.copied_chain(aid)):
                continue  # chunked: ``check_parts`` hashes them
            try:
                check(aid, reader.content(aid), None)
            except HeroFossilError as exc:
                check(aid, None, exc)

    def check_dictionaries(self) -> None:
        """Every dictionary of the ``zdict`` table is a zstd dictionary carrying the id it
        is keyed by and derived from its bytes; their ids (``copy_artifacts`` checks that
        every packed form names one of them, from this store, not another one's)."""
        self.dictionaries: set[int] = set()
        if "zdict" not in self.db:  # made by an earlier release: nothing is packed
            return
        lines = _Lines(self.emit, "zdict", RESTORE)
        try:
            for key, raw in self.txn.cursor(db=self.db["zdict"]):
                name = f"dictionary {int.from_bytes(key, 'big')}" if len(key) == 4 else \
                    f"key {bytes(key).hex()}"
                try:
                    did = blobfmt.check_dictionary(bytes(raw))
                except IntegrityError as exc:
                    lines.add(f"{name}: {exc}")
                    continue
                if key != did.to_bytes(4, "big"):
                    lines.add(f"{name}: holds dictionary {did}")
                    continue
                self.dictionaries.add(did)
        except lmdb.Error as exc:
            self.damaged("zdict", exc)
        lines.close()

    def check_segments(self) -> None:
        """Every entry of the ``segment`` table is keyed by a segment number and holds
        bytes, a solid one forms that decompress and hash to its digest
        (``copy_artifacts`` reads the forms each reference of ``blob`` names)."""
        if "segment" not in self.db:  # made by an earlier release: nothing is in segments
            return
        lines = _Lines(self.emit, "segment", RESTORE)
        try:
            for key, value in self.items("segment"):
                if len(key) != 4:
                    lines.add(f"key {bytes(key).hex()}: not a segment number")
                elif not value:
                    lines.add(f"segment {int.from_bytes(key, 'big')}: empty")
                else:  # a solid one: its frame decompresses and its forms hash to its digest
                    try:
                        holds = blobfmt.segment_digest_holds(value)
                    except IntegrityError as exc:
                        lines.add(f"segment {int.from_bytes(key, 'big')}: {exc}")
                        continue
                    if not holds:
                        lines.add(f"segment {int.from_bytes(key, 'big')}: its forms do not "
                                  "hash to its digest")
        except lmdb.Error as exc:
            self.damaged("segment", exc)
        lines.close()

    def check_parts(self) -> None:
        """Hash every large artifact part by part (each part against its id, the whole
        against the artifact's), from the store's own ``chunk`` table; count the parts
        no artifact names."""
        if "chunk" not in self.db:  # made by an earlier release: nothing is chunked
            return
        lines = _Lines(self.emit, "chunk", RESTORE)
        self.emit.doing("hashing the parts of large artifacts")
        named: set[bytes] = set()
        try:
            reader = BlobReader(self.txn, self.db)
            for aid, stored in self.txn.cursor(db=self.db["blob"]):
                if not blobfmt.is_chunked(stored):
                    continue
                aid, stored = bytes(aid), bytes(stored)
                whole = hashlib.sha3_256()
                try:
                    ids = blobfmt.chunk_layout(stored, aid)[2]
                    named.update(ids)
                    for cid, data in zip(ids, reader.parts(aid, stored), strict=True):
                        if artifact_id(data) != cid:
                            raise IntegrityError(f"artifact {id_name(aid)}: part {id_name(cid)} "
                                                 "does not match its hash")
                        whole.update(data)
                except HeroFossilError as exc:
                    lines.add(str(exc))
                    continue
                if whole.digest() != aid:
                    lines.add(f"artifact {id_name(aid)}: content does not match its hash")
            self.loose_parts = sum(1 for cid in self.txn.cursor(db=self.db["chunk"])
                                   .iternext(values=False) if cid not in named)
        except lmdb.Error as exc:
            self.damaged("chunk", exc)
        lines.close()

    def artifacts(self):
        """(transaction, table) to look artifacts up in: the copy, once it is complete."""
        return (self.stxn, self.sdb["blob"]) if self.complete else (self.txn, self.db["blob"])

    def copied_chain(self, aid: bytes) -> bool:
        """True unless the delta chain of ``aid`` leaves the (partial) copy of the artifacts."""
        for _ in range(blobfmt.MAX_CHAIN * 4):
            stored = self.stxn.get(aid, db=self.sdb["blob"])
            if stored is None:
                return False
            aid = blobfmt.delta_base(stored)
            if aid is None:
                break
        return True

    # ---- the tables
    def check_exact(self, table: str, lines: _Lines, compare=None, same=None) -> None:
        """Same keys, and values equal: ``same(value)`` is the part that must be equal
        (default: all of it), ``compare(key, have, want)`` the detail of a difference
        (None: no difference after all). A value equal to the rebuilt one decodes, as the
        rebuilt one does: only the others are decoded."""
        rebuilt = self.rebuilt and table != "meta"
        same = same or (lambda value: value)
        for key, have, want in _merge(self.items(table), self.scratch_items(table)):
            if have is not None and want is not None and same(have) == same(want):
                if table == "checkin":
                    self.check_numbered(key, _RECORD_SEQ.unpack_from(have, 1)[0], lines)
                continue
            what = _describe(table, key)
            if have is not None:
                try:
                    mine = _decode(table, key, have)
                except _Bad as exc:
                    lines.add(f"{what}: does not decode ({exc})")
                    continue
                if table == "checkin":
                    self.check_numbered(key, mine.seq, lines)
            if not rebuilt:
                continue
            if have is None:
                lines.add(f"{what}: missing (the artifacts imply it)")
            elif want is None:
                lines.add(f"{what}: not implied by the artifacts")
            else:
                detail = "differs from what the artifacts imply"
                if compare is not None:
                    detail = compare(key, mine, _decode(table, key, want))
                if detail:
                    lines.add(f"{what}: {detail}")

    def check_checkin(self, table: str, lines: _Lines) -> None:
        def compare(key, mine, theirs):
            names = [f.name for f in dataclasses.fields(mine)
                     if f.name != "seq" and getattr(mine, f.name) != getattr(theirs, f.name)]
            return f"its record differs from its manifest in {', '.join(names)}" if names \
                else None

        def same(value):  # all but the sequence, of the record as written (not packed)
            try:
                value = plain_record(b"", value)
            except (IntegrityError, IndexError):
                pass  # compared as it is: it differs, and ``_decode`` says how
            return value[:1] + value[9:]

        self.check_exact(table, lines, compare, same=same)

    def check_numbered(self, cid: bytes, seq: int, lines: _Lines) -> None:
        if Numbered(self.txn, self.db["cseq"]).get(seq) != cid:
            lines.add(f"check-in {id_name(cid)}: its record's sequence {seq} does not name it in "
                      "table cseq")

    def check_deps(self, table: str, lines: _Lines) -> None:
        self.check_exact(table, lines, lambda key, mine, theirs: None if mine == theirs else (
            f"counts {mine} deltas on it, {theirs} are stored"))

    def check_tree(self, table: str, lines: _Lines) -> None:
        self.check_exact(table, lines, lambda key, mine, theirs: None if mine == theirs else (
            f"entry {mine} differs from the tip's manifest: {theirs}"),
            same=lambda v: v[:10] + v[18:] if v[:1] == b"F" else v[:5])

    def check_tip(self, table: str, lines: _Lines) -> None:
        """The rebuild keeps the store's tips that name a check-in of their branch, so
        any difference is a bad tip; a branch may lack one (an interrupted bulk import
        leaves new branches without, see ``bulk``) unless it has a tree index."""
        self.check_exact(table, lines, lambda key, mine, theirs: (
            f"points at {id_name(mine[:32])}, which is not a check-in of that branch"
            if mine[:32] != theirs[:32] else "differs from what the artifacts imply"))
        if not self.rebuilt:
            return
        branches = {key[:-33] for key in
                    self.stxn.cursor(db=self.sdb["leaf"]).iternext(values=False)}
        cur = self.txn.cursor(db=self.db["tree"])
        for branch in sorted(branches):
            if self.txn.get(branch, db=self.db["tip"]) is None and cur.set_range(
                    branch + b"\0") and cur.key().startswith(branch + b"\0"):
                lines.add(f"{_describe(table, branch)}: missing, but the branch has a tree "
                          "index")

    def check_chain(self, table: str, lines: _Lines) -> None:
        rebuilt = self.rebuilt
        for key, have, want in _merge(self.items(table), self.scratch_items(table)):
            what = _describe(table, key)
            if have is None:
                if rebuilt:
                    lines.add(f"{what}: missing (a delta chain of {_count(want, 2)} ends on it)")
                continue
            try:
                mine = _decode(table, key, have)
            except _Bad as exc:
                lines.add(f"{what}: does not decode ({exc})")
                continue
            txn, db = self.artifacts()
            stored = txn.get(key, db=db)
            if stored is not None and stored[:1] == blobfmt.SEGMENT:  # only in the store
                try:
                    stored = blobfmt.resolve(txn, self.db, key, stored)
                except IntegrityError:  # reported with table blob
                    stored = None
            if stored is None or not blobfmt.is_whole(stored):
                lines.add(f"{what}: not an artifact stored whole")
            elif mine > blobfmt.MAX_CHAIN:
                lines.add(f"{what}: says {mine}, more than the bound {blobfmt.MAX_CHAIN}")
            elif want is not None and mine < _count(want, 2):
                lines.add(f"{what}: says {mine}, but a delta chain of {_count(want, 2)} ends "
                          "on it")

    def check_seq(self, table: str, lines: _Lines) -> None:
        """Distinct numbers naming each stored artifact once (``cseq``: each check-in)."""
        txn, db = self.artifacts() if table == "seq" else (self.txn, self.db["checkin"])
        seen: set[bytes] = set()
        for n, aid in self.numbered(table, lines):
            key = pack_u64(n)
            if n > self.max_seq[table]:
                self.max_seq[table] = n
            raw = txn.get(aid, db=db)
            if raw is not None and aid not in seen and (table == "seq" or (
                    len(raw) >= 9 and _RECORD_SEQ.unpack_from(raw, 1)[0] == n)):
                seen.add(aid)
                continue
            what = _describe(table, key)
            if aid in seen:
                lines.add(f"{what}: names {id_name(aid)} a second time")
            elif raw is None:
                lines.add(f"{what}: names {id_name(aid)}, which is not "
                          + ("stored" if table == "seq" else "a check-in"))
            elif table == "cseq" and len(raw) >= 9:  # shorter: reported with table checkin
                said = _RECORD_SEQ.unpack_from(raw, 1)[0]
                if said != n:
                    lines.add(f"{what}: names check-in {id_name(aid)}, whose record says "
                              f"sequence {said}")
            seen.add(aid)
        for aid in txn.cursor(db=db).iternext(values=False):
            if aid not in seen:
                lines.add(f"{'artifact' if table == 'seq' else 'check-in'} {id_name(aid)}: has "
                          "no sequence number")

    check_cseq = check_seq

    def check_pathlog(self, table: str, lines: _Lines) -> None:
        """Every (path, check-in) pair the rebuild derives, each side's numbers read
        through its own cseq; and more only where the check-in's manifest has a card for
        the path (``named``)."""
        want: set[tuple[bytes, bytes]] = set()
        for key, _ in self.scratch_items(table):
            want.add((key[:-9], self.stxn.get(key[-8:], db=self.sdb["cseq"])))
        numbered = Numbered(self.txn, self.db["cseq"])
        for key, value in self.items(table):
            what = _describe(table, key)
            try:
                path, seqs = _decode(table, key, value)
            except _Bad as exc:
                lines.add(f"{what}: does not decode ({exc})")
                continue
            for seq in seqs:
                cid = numbered.get(seq)
                if cid is None:
                    lines.add(f"path {path!r} sequence {seq}: no check-in has that sequence")
                elif self.rebuilt:
                    if (key[:-9], cid) in want:
                        want.discard((key[:-9], cid))
                    elif not self.named(cid, path):
                        lines.add(f"path {path!r} check-in {id_name(cid)}: not implied by the "
                                  "artifacts")
        for path, cid in sorted(want):
            lines.add(f"path {path.decode('utf-8', 'replace')!r} check-in "
                      f"{id_name(cid or b'')}: missing (the artifacts imply it)")

    def named(self, cid: bytes, path: str) -> bool:
        """True when check-in ``cid``'s manifest has a card for ``path``.

        The write path logs every path a check-in's changes name, the rebuild only
        those whose card differs from the parent's: a file overwritten with the same
        bytes, or moved away and back, is in the first and not in the second.
        """
        from herofossil.store.checkins import MANIFESTS
        from herofossil.store.maintenance import _ContentCache

        try:
            m = MANIFESTS.manifest(_ContentCache(self.stxn, self.sdb), cid)
        except HeroFossilError:
            return False
        return any(card.name == path for card in m.files)

    def numbered(self, table: str, lines: _Lines) -> Iterator[tuple[int, bytes]]:
        """(number, id) of every id of a numbered table (runs unfolded)."""
        for key, value in self.items(table):
            if len(key) == 8 and len(value) == 32:
                yield unpack_u64(key), value
                continue
            try:
                yield from _decode(table, key, value)
            except _Bad as exc:
                lines.add(f"{_describe(table, key)}: does not decode ({exc})")

    def check_info(self, table: str, lines: _Lines) -> None:
        found = {}
        for key, value in self.items(table):
            try:
                found[key] = _decode(table, key, value)
            except _Bad as exc:
                lines.add(f"{_describe(table, key)}: does not decode ({exc})")
        for key, name in zip(INFO_KEYS, ("seq", "cseq"), strict=True):
            top = self.max_seq[name]
            if key in found and found[key] <= top:
                lines.add(f"key {key.decode()!r}: {found[key]} is not above sequence {top} in "
                          f"table {name}")
            elif key not in found and top:
                lines.add(f"key {key.decode()!r}: missing, and table {name} uses numbers up to "
                          f"{top}")


def _check(path: str, scratch: str, emit: _Emitter) -> None:
    from herofossil.store.lmdbenv import open_env

    emit.doing("opening the store")
    try:
        env = open_env(path, readonly=True)
    except HeroFossilError as exc:
        emit.problem(f"the store cannot be opened: {exc}")
        return
    except lmdb.Error as exc:
        emit.problem(f"the data file is damaged: opening the store: {exc}; {RESTORE}")
        return
    try:
        _Checker(env, scratch, emit).run()
    finally:
        env.close()


def main(argv: list[str]) -> int:
    """The checker: ``python -m herofossil.store.verify STORE SCRATCH_DIR``."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the protocol
    emit = _Emitter(out)
    try:
        _check(argv[0], argv[1], emit)
    except _ScratchError as exc:
        emit.problem(f"verify could not finish: its scratch copy in {argv[1]} failed "
                     f"({exc.__cause__}); make room there, or point TMPDIR elsewhere, and "
                     "run it again")
    except lmdb.Error as exc:
        emit.problem(f"the data file is damaged: {exc}; {RESTORE}")
    except Exception as exc:  # noqa: BLE001 - damage can surface as any error: report it
        import traceback

        traceback.print_exc()
        emit.problem(f"the checker failed: {type(exc).__name__}: {exc}; the store may be "
                     f"damaged: {RESTORE}")
    emit.send(done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
