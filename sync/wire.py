"""Our sync protocol's message format (one request and one response per round trip).

A message is::

    b"HFS" + version (1 byte)
    header length (4 bytes, big-endian) + header (UTF-8 JSON object)
    for each of header["artifacts"] artifacts:
        id (32 bytes) + stored-form length (4 bytes, big-endian) + stored form

Stored forms are the store's own (``herofossil.store.blobs``): whole zstd
frames or Fossil deltas, sent as they are stored. Anything else — another
magic, another version, a header that is not a JSON object, a count or a
length that does not match the bytes — is refused with ``SyncError``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from herofossil.errors import SyncError

MAGIC = b"HFS"
VERSION = 1
CONTENT_TYPE = "application/x-herofossil-sync"
# Documented limits: a header, one artifact, one message.
MAX_HEADER = 64 << 10
MAX_ARTIFACT = 256 << 20
MAX_MESSAGE = 1 << 30
_LEN = struct.Struct(">I")


@dataclass
class Message:
    """A header (JSON-able dict) and artifacts as (32-byte id, stored form)."""

    header: dict
    artifacts: list[tuple[bytes, bytes]] = field(default_factory=list)


def encode(msg: Message) -> bytes:
    """The bytes of ``msg``."""
    header = dict(msg.header, artifacts=len(msg.artifacts))
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    parts = [MAGIC, bytes([VERSION]), _LEN.pack(len(head)), head]
    for aid, stored in msg.artifacts:
        parts += [aid, _LEN.pack(len(stored)), stored]
    return b"".join(parts)


def decode(data: bytes) -> Message:
    """The message in ``data``; ``SyncError`` for anything malformed."""
    if len(data) > MAX_MESSAGE:
        raise SyncError(f"a sync message of {len(data)} bytes is over the {MAX_MESSAGE} limit")
    if data[:3] != MAGIC:
        raise SyncError("not a herofossil sync message (the peer speaks another protocol)")
    if len(data) < 8:
        raise SyncError("a truncated sync message")
    if data[3] != VERSION:
        raise SyncError(f"the peer speaks sync protocol version {data[3]}; this herofossil "
                        f"speaks version {VERSION}: upgrade the older side")
    (hlen,) = _LEN.unpack_from(data, 4)
    if hlen > MAX_HEADER or 8 + hlen > len(data):
        raise SyncError("a sync message with a truncated or oversized header")
    try:
        header = json.loads(data[8:8 + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SyncError(f"a sync message with a malformed header: {exc}") from exc
    if not isinstance(header, dict):
        raise SyncError("a sync message whose header is not an object")
    count = header.get("artifacts", 0)
    if not isinstance(count, int) or count < 0:
        raise SyncError("a sync message with a malformed artifact count")
    pos = 8 + hlen
    artifacts = []
    view = memoryview(data)
    for _ in range(count):
        if pos + 36 > len(data):
            raise SyncError("a truncated sync message (an artifact is cut off)")
        aid = bytes(view[pos:pos + 32])
        (size,) = _LEN.unpack_from(data, pos + 32)
        pos += 36
        if size == 0 or size > MAX_ARTIFACT or pos + size > len(data):
            raise SyncError(f"a sync message with a bad artifact length ({size} bytes)")
        artifacts.append((aid, bytes(view[pos:pos + size])))
        pos += size
    if pos != len(data):
        raise SyncError("a sync message with bytes after its last artifact")
    return Message(header, artifacts)
