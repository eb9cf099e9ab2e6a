"""Power-loss simulation for tests: the iofault shim, its traces, and crash images built from them.

The shim (``tests/iofault/iofault.c``, loaded with LD_PRELOAD) records every write to a
watched file (offset, bytes) before passing it on, and a sync marker after every
fdatasync/fsync that succeeded (a write on an O_DSYNC fd is a write and a sync). From the
trace and a copy of the file taken before the run, ``crash_images`` rebuilds what a disk
could hold after a power cut at each sync point: every write the syncs so far made durable,
plus a chosen part of the writes issued after the last sync (lost, kept, kept page by page at
random, or the last one torn at a 512-byte sector). The model: a write reaches the disk whole
only once a sync after it returned; until then any of its pages may or may not be there.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_SOURCE = os.path.join(HERE, "iofault", "iofault.c")
HEADER = struct.Struct("<cBxxIQQQ")
SECTOR = 512
PAGE = 4096
WRITE_KIND, SYNC_KIND = 0, 1


def build_shim(dest_dir) -> str | None:
    """Compile the shim into ``dest_dir``; its path, or None when there is no C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    if not os.path.isfile(SHIM_SOURCE):
        raise FileNotFoundError(f"the shim's source {SHIM_SOURCE} is missing")
    out = os.path.join(str(dest_dir), "libiofault.so")
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", out, SHIM_SOURCE, "-ldl"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the iofault shim failed:\n{proc.stderr}")
    return out


def shim_env(shim: str, files: list[str], *, trace: str | None = None,
             ack: str | None = None, **fault) -> dict:
    """The environment that runs a subprocess under the shim (see the shim's header).

    ``fault``: ``kind`` ("write"/"sync"), ``n``, ``errno`` ("ENOSPC"/"EIO"), ``more``.
    """
    env = dict(os.environ, LD_PRELOAD=shim, IOFAULT_FILES=":".join(files))
    for name in ("IOFAULT_TRACE", "IOFAULT_ACK", "IOFAULT_FAULT", "IOFAULT_N",
                 "IOFAULT_ERRNO", "IOFAULT_MORE"):
        env.pop(name, None)
    if trace:
        env["IOFAULT_TRACE"] = trace
    if ack:
        env["IOFAULT_ACK"] = ack
    if fault:
        env["IOFAULT_FAULT"] = fault["kind"]
        env["IOFAULT_N"] = str(fault.get("n", 1))
        env["IOFAULT_ERRNO"] = fault.get("errno", "EIO")
        env["IOFAULT_MORE"] = str(fault.get("more", 0))
    return env


class Control:
    """The shim's control functions, from inside a process running under it."""

    def __init__(self):
        lib = ctypes.CDLL(None)
        try:
            self._arm = lib.iofault_arm
        except AttributeError as exc:
            raise RuntimeError("this process does not run under the iofault shim") from exc
        self._arm.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int, ctypes.c_long]
        self._disarm = lib.iofault_disarm
        self._calls = lib.iofault_calls
        self._calls.argtypes = [ctypes.c_int]
        self._calls.restype = ctypes.c_long
        self._failed = lib.iofault_failed
        self._failed.restype = ctypes.c_long

    def arm(self, kind: int, n: int, err: int, more: int = 0) -> None:
        """Fail the ``n``-th next call of ``kind`` (and ``more`` after it) with ``err``."""
        self._arm(kind, n, err, more)

    def disarm(self) -> None:
        """Stop failing calls."""
        self._disarm()

    def calls(self, kind: int) -> int:
        """Calls of ``kind`` on watched files so far."""
        return self._calls(kind)

    def failed(self) -> int:
        """Calls the shim has failed so far."""
        return self._failed()


@dataclass
class Record:
    kind: str  # O, W, S, T, A, M (see the shim)
    file: int
    pid: int
    seq: int
    offset: int
    data: bytes = b""


@dataclass
class Trace:
    records: list[Record] = field(default_factory=list)

    @classmethod
    def load(cls, path) -> Trace:
        """Parse a trace file; a record cut short by a kill at its end is dropped."""
        with open(path, "rb") as f:
            raw = f.read()
        out, pos = [], 0
        while pos + HEADER.size <= len(raw):
            kind, file, pid, seq, offset, length = HEADER.unpack_from(raw, pos)
            if pos + HEADER.size + length > len(raw):
                break
            data = raw[pos + HEADER.size : pos + HEADER.size + length]
            out.append(Record(kind.decode(), file, pid, seq, offset, data))
            pos += HEADER.size + length
        return cls(out)

    def of(self, kind: str, file: int | None = None) -> list[Record]:
        """The records of ``kind`` (of ``file``, for file records)."""
        return [r for r in self.records if r.kind == kind and (file is None or r.file == file)]

    def acks(self) -> list[bytes]:
        """The ack channel's writes, in order."""
        return [r.data for r in self.records if r.kind == "A"]


@dataclass
class CrashImage:
    point: int  # crash after sync point ``point`` (0: before the first sync)
    variant: str  # none, all, random-SEED, torn-SEED
    data: bytes
    acked: int  # how many ack records precede the end of this crash window
    pending: int  # writes of the window (not yet durable at the crash)


def _apply(buf: bytearray, rec: Record) -> None:
    if rec.kind == "T":
        del buf[rec.offset :]
        buf.extend(bytes(max(0, rec.offset - len(buf))))
        return
    end = rec.offset + len(rec.data)
    if len(buf) < end:
        buf.extend(bytes(end - len(buf)))
    buf[rec.offset : end] = rec.data


def _pages(rec: Record) -> list[Record]:
    """``rec`` cut at the disk's page boundaries (each can reach the disk or not)."""
    if rec.kind != "W":
        return [rec]
    out, pos = [], rec.offset
    end = rec.offset + len(rec.data)
    while pos < end:
        nxt = min(end, (pos // PAGE + 1) * PAGE)
        out.append(Record("W", rec.file, rec.pid, rec.seq, pos,
                          rec.data[pos - rec.offset : nxt - rec.offset]))
        pos = nxt
    return out


def _torn(rec: Record, rng: random.Random) -> Record | None:
    """A prefix of ``rec`` ending at a sector boundary inside it, or None (too small)."""
    cuts = [c for c in range(SECTOR, len(rec.data), SECTOR)
            if (rec.offset + c) % SECTOR == 0]
    if rec.kind != "W" or not cuts:
        return None
    cut = rng.choice(cuts)
    return Record("W", rec.file, rec.pid, rec.seq, rec.offset, rec.data[:cut])


def crash_windows(trace: Trace, file: int = 0) -> list[tuple[list[Record], list[Record], int]]:
    """For each crash point p (0: before the first sync, p: after the p-th sync): (records
    that sync p made durable, the window's pending records, acks recorded before the
    window's end).

    A sync covers the pending records of its own process up to its ``offset`` (the last
    write seq issued before it started) and those of other processes recorded before it.
    Point p's window holds what is not durable after sync p, up to sync p+1; every ack
    recorded before sync p+1 may precede the crash, so its write must be durable.
    """
    out, pending, made, acked = [], [], [], 0
    for rec in trace.records:
        if rec.kind == "A":
            acked += 1
        elif rec.file != file:
            continue
        elif rec.kind == "M":
            raise ValueError("the file was mapped writable: the trace does not see its writes")
        elif rec.kind in "WT":
            pending.append(rec)
        elif rec.kind == "S":
            out.append((made, list(pending), acked))
            made = [r for r in pending if r.pid != rec.pid or r.seq <= rec.offset]
            pending = [r for r in pending if r.pid == rec.pid and r.seq > rec.offset]
    out.append((made, list(pending), acked))
    return out


def crash_images(base: bytes, trace: Trace, *, file: int = 0, points=None,
                 seeds: tuple[int, ...] = (0, 1), torn: bool = True) -> Iterator[CrashImage]:
    """Every crash image of the file: per crash point (``points``: which ones, default all),
    the window's writes lost (``none``), kept (``all``), kept page by page at random (one
    image per seed) and, with ``torn``, all kept but the last torn at a sector."""
    windows = crash_windows(trace, file)
    wanted = set(range(len(windows)) if points is None else points)
    durable = bytearray(base)
    for p, (made_durable, pending, acked) in enumerate(windows):
        for rec in made_durable:
            _apply(durable, rec)
        if p not in wanted:
            continue
        yield CrashImage(p, "none", bytes(durable), acked, len(pending))
        if not pending:
            continue
        img = bytearray(durable)
        for rec in pending:
            _apply(img, rec)
        yield CrashImage(p, "all", bytes(img), acked, len(pending))
        for seed in seeds:
            rng = random.Random(seed * 1_000_003 + p)
            img = bytearray(durable)
            for rec in pending:
                for part in _pages(rec):
                    if rng.random() < 0.5:
                        _apply(img, part)
            yield CrashImage(p, f"random-{seed}", bytes(img), acked, len(pending))
        if torn:
            rng = random.Random(p)
            cut = _torn(pending[-1], rng)
            if cut is not None:
                img = bytearray(durable)
                for rec in pending[:-1]:
                    _apply(img, rec)
                _apply(img, cut)
                yield CrashImage(p, "torn", bytes(img), acked, len(pending))


def place_image(store: str, dest: str, image: bytes, data_name: str = "data.mdb") -> None:
    """A copy of ``store`` at ``dest`` with ``image`` as its data file, as after a reboot
    (no ``lock.mdb``)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(store, dest, ignore=shutil.ignore_patterns(data_name, "lock.mdb"))
    with open(os.path.join(dest, data_name), "wb") as f:
        f.write(image)


def run_under_shim(script: str, env: dict, *args,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c script *args`` under ``env``; raise with its output if it failed."""
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
