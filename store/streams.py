"""Reading an artifact as a stream, straight from the LMDB map, without holding it whole.

A whole-stored artifact is decompressed block by block from the mapped value
(zstd checks its content checksum at the end); a raw one is sliced from the
map; a delta-stored (older) version is reconstructed in memory first.
"""

from __future__ import annotations

import io

import zstandard

from herofossil.errors import IntegrityError, NotFoundError
from herofossil.store import blobs
from herofossil.store.blobs import BlobReader
from herofossil.store.keys import id_name
from herofossil.store.lmdbenv import Snapshot


class ArtifactStream(io.RawIOBase):
    """A read-only binary stream of one artifact; holds a read snapshot until closed."""

    def __init__(self, env, aid: bytes):
        super().__init__()
        # Values point into LMDB's map: the snapshot keeps a resize away until closed.
        self._snapshot = Snapshot(env, buffers=True)
        self._aid = aid
        try:
            stored = self._snapshot.txn.get(aid, db=env.db["blob"])
            if stored is None:
                raise NotFoundError(f"artifact {id_name(aid)} is not in the store")
            kind = bytes(stored[:1])
            self._pos = 0
            self._frame = None
            if kind == blobs.WHOLE:
                self._frame = stored[1:]
                self._source = blobs.decompressor(self._frame, aid).stream_reader(self._frame)
            elif kind == blobs.RAW:
                self._source = io.BytesIO()
                self._view = stored[1:]
            elif kind == blobs.CHUNKED:
                self._source = _Parts(BlobReader(self._snapshot.txn, env.db), aid,
                                      bytes(stored))
            else:
                with Snapshot(env) as plain:  # BlobReader wants bytes, not map views
                    self._source = io.BytesIO(BlobReader(plain, env.db).content(aid))
        except BaseException:
            self._snapshot.close()
            raise
        if kind != blobs.RAW:
            self._view = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Seek; backwards in a compressed artifact restarts decompression."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._length()
        offset = max(offset, 0)
        if self._view is not None or self._frame is None:
            if self._view is None:
                offset = self._source.seek(offset)
            self._pos = offset
            return offset
        if offset < self._pos:
            self._source.close()
            self._source = blobs.decompressor(self._frame, self._aid).stream_reader(
                self._frame)
            self._pos = 0
        while self._pos < offset:
            chunk = self._source.read(min(offset - self._pos, 1 << 20))
            if not chunk:
                break
            self._pos += len(chunk)
        return self._pos

    def _length(self) -> int:
        if self._view is not None:
            return len(self._view)
        if isinstance(self._source, _Parts):
            return self._source.size
        if self._frame is None:
            return len(self._source.getbuffer())
        size = zstandard.frame_content_size(self._frame)
        if size < 0:
            raise IntegrityError(f"artifact {id_name(self._aid)} has no recorded size")
        return size

    def readinto(self, buffer) -> int:
        if self._view is not None:
            n = max(0, min(len(buffer), len(self._view) - self._pos))
            buffer[:n] = self._view[self._pos:self._pos + n]
            self._pos += n
            return n
        try:
            data = self._source.read(len(buffer))
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"artifact {id_name(self._aid)} is damaged: {exc}") from exc
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._view = None
            self._source.close()
            self._snapshot.close()
        super().close()


class _Parts:
    """The bytes of a chunked artifact, one part in memory at a time (seeks go straight
    to the part that holds the offset)."""

    def __init__(self, reader: BlobReader, aid: bytes, stored: bytes):
        self._reader, self._aid, self._stored = reader, aid, stored
        self.size, self._part, _ = blobs.chunk_layout(stored, aid)
        self._n, self._data, self._at = 0, b"", 0  # part number, its bytes, offset in them
        self._load(0)

    def _load(self, n: int) -> None:
        self._n, self._at = n, 0
        self._data = next(self._reader.parts(self._aid, self._stored, first=n), b"")

    def read(self, n: int) -> bytes:
        if self._at >= len(self._data):
            if (self._n + 1) * self._part >= self.size:
                return b""
            self._load(self._n + 1)
        out = self._data[self._at:self._at + n]
        self._at += len(out)
        return out

    def seek(self, offset: int) -> int:
        offset = min(offset, self.size)
        n = min(offset // self._part, max(0, -(-self.size // self._part) - 1))
        if n != self._n:
            self._load(n)
        self._at = offset - n * self._part
        return offset

    def close(self) -> None:
        self._data = b""
