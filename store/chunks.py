"""Large artifacts stored in parts, and streams staged into the store part by part.

An artifact of ``blobs.LARGE`` bytes or more is kept as a list of parts of
``blobs.CHUNK_SIZE`` bytes, each in the ``chunk`` table under the SHA3-256 of
its bytes (see ``blobs``). ``stage`` reads a stream (a WebDAV PUT's body, a
file) and stores its parts as they arrive, each in a short durable
transaction of its own, so that memory stays bounded by ``LARGE`` whatever
the size; the check-in that names the artifact is made afterwards, in one
transaction, like any other write (``Put`` with the ``Staged`` as its data).

A staged part that no check-in comes to name (a failed precondition, a cut
upload, a crash) is left unreferenced: ``compact`` drops it, and ``verify``
counts it. Parts are never deleted anywhere else, since an identical part may
be shared by another version or by another upload staging at the same time;
parts staged in this process and not yet named are kept by ``compact`` too.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field

from herofossil.store import blobs

_live_lock = threading.Lock()
_live: Counter[bytes] = Counter()  # parts staged in this process, not yet named


def live_parts() -> set[bytes]:
    """The parts that uploads of this process staged and have not committed or dropped."""
    with _live_lock:
        return set(_live)


@dataclass
class Staged:
    """A stream stored as parts, waiting for the check-in that names it."""

    aid: bytes
    size: int
    parts: list[bytes]
    _held: bool = field(default=True, repr=False)

    @property
    def stored(self) -> bytes:
        """The artifact's stored form (its list of parts)."""
        return blobs.encode_chunked(self.size, self.parts)

    def release(self) -> None:
        """The check-in is made (or given up): ``compact`` may judge the parts again."""
        if self._held:
            self._held = False
            with _live_lock:
                _live.subtract(self.parts)
                for cid in set(self.parts):
                    if _live[cid] <= 0:
                        del _live[cid]


def split(data: bytes) -> list[bytes]:
    """``data`` cut into parts of ``CHUNK_SIZE`` bytes (the last shorter)."""
    step = blobs.CHUNK_SIZE
    return [data[i:i + step] for i in range(0, len(data), step)]


def put_part(txn, chunk_db, part: bytes, cid: bytes | None = None) -> bytes:
    """Store one part (unless an identical one is stored); returns its id (``cid``, when
    the caller hashed it already)."""
    cid = cid or blobs.artifact_id(part)
    if not txn.cursor(db=chunk_db).set_key(cid):  # (a get would read the value back)
        txn.put(cid, blobs.encode_whole(part), db=chunk_db)
    return cid


class Stager:
    """Takes a stream's bytes as they come (``push``), storing each full part of a large
    one at once; ``finish`` gives its bytes (shorter than ``LARGE``) or a ``Staged``.
    Memory holds at most ``LARGE`` bytes of it."""

    def __init__(self, env):
        self.env = env
        self._buf = bytearray()
        self._whole = hashlib.sha3_256()
        self._staged: Staged | None = None  # once the stream reached LARGE bytes

    def push(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        self._buf += data
        if self._staged is None and len(self._buf) < blobs.LARGE:
            return
        if self._staged is None:
            self._staged = Staged(b"", 0, [])
        step = blobs.CHUNK_SIZE
        while len(self._buf) >= step:
            self._store(bytes(self._buf[:step]))
            del self._buf[:step]

    def finish(self) -> bytes | Staged:
        """The stream ended: its bytes, or its ``Staged`` (``release`` it once named)."""
        if self._staged is None:
            return bytes(self._buf)
        if self._buf:
            self._store(bytes(self._buf))
            self._buf.clear()
        self._staged.aid = self._whole.digest()
        return self._staged

    def discard(self) -> None:
        """The stream is given up: its parts are left to ``compact``."""
        self._buf = bytearray()
        if self._staged is not None:
            self._staged.release()

    def _store(self, part: bytes) -> None:
        staged = self._staged
        self._whole.update(part)
        cid = blobs.artifact_id(part)
        with _live_lock:  # held before it is stored: a compaction meanwhile keeps it
            _live[cid] += 1
        staged.parts.append(cid)
        staged.size += len(part)
        self.env.write(lambda txn: put_part(txn, self.env.db["chunk"], part, cid))


def stage(env, stream) -> bytes | Staged:
    """Read ``stream`` (``read(n)``) to its end through a ``Stager``: its bytes when
    shorter than ``LARGE``, else a ``Staged`` whose parts are stored and durable."""
    stager = Stager(env)
    try:
        while data := stream.read(blobs.CHUNK_SIZE):
            stager.push(data)
        return stager.finish()
    except BaseException:
        stager.discard()
        raise


def noting_parts(items, named: set[bytes]):
    """``items`` ((id, stored form) of the ``blob`` table) as they are, adding to
    ``named`` every part a chunked one names (compact copies and looks in one pass)."""
    for aid, stored in items:
        if blobs.is_chunked(stored):
            named.update(blobs.chunk_layout(stored, bytes(aid))[2])
        yield aid, stored
