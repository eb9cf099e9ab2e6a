"""Our sync protocol's message format (one request and one response per round trip).

A message is::

    b"HFS" + version (1 byte)
    header length (4 bytes, big-endian) + header (UTF-8 JSON object)
    a reconcile section of header["rc"] bytes, when the header has "rc"
    for each of header["zd"] compression dictionaries (none when absent):
        length (4 bytes, big-endian) + the zstd dictionary
    for each of header["artifacts"] artifacts (none when absent):
        id (32 bytes) + stored-form length (4 bytes, big-endian) + stored form

Stored forms are the store's own (``herofossil.store.blobs``): whole zstd
frames or Fossil deltas, sent as they are stored. A frame compressed with a
dictionary (packed history) goes only to a peer whose request said it takes them
(header "packs": the ids of the dictionaries it holds), with the dictionaries it
lacks in the same message.

The reconcile section (range-based set reconciliation over artifact ids, see
``herofossil.sync.backend``) is a run of items, each a kind byte and then::

    FINGERPRINT  range, count (4 bytes), fingerprint (16 bytes)
    IDS          range, count (4 bytes), that many ids
    WANT/HAVE/NEED/AHEAD  count (4 bytes), that many ids
    AHEAD_AT     count (4 bytes), that many ids each with a sequence number (8 bytes)

A range is the ids that start with a hex prefix: its length in nibbles
(1 byte, at most 64), then the prefix packed two nibbles a byte (a last odd
nibble in the high half, the low half zero). Anything else — another magic,
another version, a header that is not a JSON object, a count or a length
that does not match the bytes, an id outside its range — is refused with
``SyncError``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from herofossil.errors import SyncError

MAGIC = b"HFS"
VERSION = 2
CONTENT_TYPE = "application/x-herofossil-sync"
# Documented limits: a header, one artifact, a reconcile section, one message.
MAX_HEADER = 64 << 10
MAX_ARTIFACT = 256 << 20
MAX_RECONCILE = 32 << 20  # about a million ids
MAX_MESSAGE = 1 << 30
MAX_DICTIONARY = 1 << 20  # ``packing`` trains 8-32 KB ones
MAX_DICTIONARIES = 16
ID_LEN = 32
FP_LEN = 16
_LEN = struct.Struct(">I")
FINGERPRINT, IDS, WANT, HAVE, NEED, AHEAD, AHEAD_AT = range(7)


@dataclass
class Reconcile:
    """One message's part of a set reconciliation (ranges are hex prefixes of ids).

    ``fingerprints``: (range, count, fingerprint) of the sender's ids there;
    ``idlists``: (range, every id the sender holds there);
    ``want``: ids the sender asks for; ``have``: ids the sender holds and the
    receiver lacks, not sent in this message; ``need``: ids the sender lacks;
    ``ahead``: ids a chunked stream sent before it reached them (see ``backend``),
    ``ahead_at``: the same with the sequence numbers where the stream reaches them.
    """

    fingerprints: list[tuple[str, int, bytes]] = field(default_factory=list)
    idlists: list[tuple[str, list[bytes]]] = field(default_factory=list)
    want: list[bytes] = field(default_factory=list)
    have: list[bytes] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)
    ahead: list[bytes] = field(default_factory=list)
    ahead_at: list[tuple[bytes, int]] = field(default_factory=list)

    def id_count(self) -> int:
        return (sum(len(ids) for _, ids in self.idlists) + len(self.want) + len(self.have)
                + len(self.need) + len(self.ahead) + len(self.ahead_at))


@dataclass
class Message:
    """A header (JSON-able dict), artifacts as (32-byte id, stored form), and maybe a
    reconcile section."""

    header: dict
    artifacts: list[tuple[bytes, bytes]] = field(default_factory=list)
    reconcile: Reconcile | None = None
    dictionaries: list[bytes] = field(default_factory=list)  # zstd dictionaries (packed forms)


def _prefix(p: str) -> bytes:
    return bytes([len(p)]) + bytes.fromhex(p + "0" * (len(p) % 2))


def encode_reconcile(rc: Reconcile) -> bytes:
    """The bytes of a reconcile section."""
    parts = []
    for p, count, fp in rc.fingerprints:
        parts += [bytes([FINGERPRINT]), _prefix(p), _LEN.pack(count), fp]
    for p, ids in rc.idlists:
        parts += [bytes([IDS]), _prefix(p), _LEN.pack(len(ids)), *ids]
    for kind, ids in ((WANT, rc.want), (HAVE, rc.have), (NEED, rc.need), (AHEAD, rc.ahead)):
        if ids:
            parts += [bytes([kind]), _LEN.pack(len(ids)), *ids]
    if rc.ahead_at:
        parts += [bytes([AHEAD_AT]), _LEN.pack(len(rc.ahead_at))]
        parts += [aid + seq.to_bytes(8, "big") for aid, seq in rc.ahead_at]
    return b"".join(parts)


def decode_reconcile(data: bytes) -> Reconcile:
    """The reconcile section in ``data``; ``SyncError`` for anything malformed."""
    rc = Reconcile()
    pos, end = 0, len(data)

    def need(n):
        if pos + n > end:
            raise SyncError("a sync message with a truncated reconcile section")

    def ids_at(count):
        nonlocal pos
        need(count * ID_LEN)
        out = [data[pos + i * ID_LEN:pos + (i + 1) * ID_LEN] for i in range(count)]
        pos += count * ID_LEN
        return out

    while pos < end:
        kind = data[pos]
        pos += 1
        if kind in (FINGERPRINT, IDS):
            need(1)
            depth = data[pos]
            nbytes = (depth + 1) // 2
            need(1 + nbytes + 4)
            if depth > 2 * ID_LEN:
                raise SyncError(f"a reconcile range {depth} nibbles deep (at most 64)")
            p = data[pos + 1:pos + 1 + nbytes].hex()
            if depth % 2:
                if p[-1] != "0":
                    raise SyncError("a reconcile range in a non-canonical form")
                p = p[:-1]
            pos += 1 + nbytes
            (count,) = _LEN.unpack_from(data, pos)
            pos += 4
            if kind == FINGERPRINT:
                need(FP_LEN)
                rc.fingerprints.append((p, count, data[pos:pos + FP_LEN]))
                pos += FP_LEN
            else:
                ids = ids_at(count)
                if p and not all(aid.hex().startswith(p) for aid in ids):
                    raise SyncError(f"a reconcile id list for range {p!r} with ids outside it")
                rc.idlists.append((p, ids))
        elif kind in (WANT, HAVE, NEED, AHEAD):
            need(4)
            (count,) = _LEN.unpack_from(data, pos)
            pos += 4
            getattr(rc, ("want", "have", "need", "ahead")[kind - WANT]).extend(ids_at(count))
        elif kind == AHEAD_AT:
            need(4)
            (count,) = _LEN.unpack_from(data, pos)
            pos += 4
            need(count * (ID_LEN + 8))
            for _ in range(count):
                rc.ahead_at.append((data[pos:pos + ID_LEN],
                                    int.from_bytes(data[pos + ID_LEN:pos + ID_LEN + 8], "big")))
                pos += ID_LEN + 8
        else:
            raise SyncError(f"a reconcile section with an unknown item kind {kind}")
    return rc


def encode(msg: Message) -> bytes:
    """The bytes of ``msg``."""
    header = dict(msg.header)
    header.pop("artifacts", None)
    header.pop("rc", None)
    header.pop("zd", None)
    if msg.artifacts:
        header["artifacts"] = len(msg.artifacts)
    section = b""
    if msg.reconcile is not None:
        section = encode_reconcile(msg.reconcile)
        header["rc"] = len(section)
    if msg.dictionaries:
        header["zd"] = len(msg.dictionaries)
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    parts = [MAGIC, bytes([VERSION]), _LEN.pack(len(head)), head, section]
    for raw in msg.dictionaries:
        parts += [_LEN.pack(len(raw)), raw]
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
    reconcile = None
    if "rc" in header:
        rlen = header["rc"]
        if not isinstance(rlen, int) or rlen < 0 or rlen > MAX_RECONCILE \
                or pos + rlen > len(data):
            raise SyncError("a sync message with a truncated or oversized reconcile section")
        reconcile = decode_reconcile(data[pos:pos + rlen])
        pos += rlen
    dictionaries = []
    ndicts = header.get("zd", 0)
    if not isinstance(ndicts, int) or not 0 <= ndicts <= MAX_DICTIONARIES:
        raise SyncError(f"a sync message with a malformed dictionary count (at most "
                        f"{MAX_DICTIONARIES})")
    for _ in range(ndicts):
        if pos + 4 > len(data):
            raise SyncError("a truncated sync message (a dictionary is cut off)")
        (size,) = _LEN.unpack_from(data, pos)
        pos += 4
        if size == 0 or size > MAX_DICTIONARY or pos + size > len(data):
            raise SyncError(f"a sync message with a bad dictionary length ({size} bytes)")
        dictionaries.append(bytes(data[pos:pos + size]))
        pos += size
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
    return Message(header, artifacts, reconcile, dictionaries)
