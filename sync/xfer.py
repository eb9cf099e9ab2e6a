"""Fossil's xfer protocol on the wire: message framing and cards, in and out.

A message is lines of cards (``NAME ARG ...``, arguments fossilized: space
``\\s``, newline ``\\n``, backslash ``\\\\``); three cards carry bytes after
their line:

    file HASH [DELTASRC] SIZE\\n<SIZE bytes>          the artifact, or a delta on DELTASRC
    cfile HASH [DELTASRC] USIZE CSIZE\\n<CSIZE bytes>\\n   the same, ``compress``-ed
    config NAME SIZE\\n<SIZE bytes>\\n                  a configuration record

A ``cfile`` payload (and a ``application/x-fossil`` body) is Fossil's
``blob_compress`` form: the 4-byte big-endian size of the uncompressed
bytes, then zlib. For a delta, USIZE is the whole artifact's size and the
prefix the delta's. Lines starting with ``#`` are comments. See
``FOSSIL-XFER.md`` in the project's shared notes for what fossil 2.21 sends.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from herofossil.errors import SyncError
from herofossil.store.manifest import defossilize, fossilize

COMPRESSED = "application/x-fossil"
UNCOMPRESSED = "application/x-fossil-uncompressed"
DEBUG = "application/x-fossil-debug"
# What fossil's own server and client use (level 6 is zlib's default, as in blob_compress).
ZLIB_LEVEL = 6
# A message larger than this is refused before it is inflated (fossil's own rounds are
# a few MB).
MAX_PAYLOAD = 1 << 30
_HEX = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")


class XferError(SyncError):
    """A Fossil xfer message is malformed; nothing of it was stored. Fields: ``peer``,
    ``card`` (the line at fault, when known)."""

    fields = ("peer", "card")


@dataclass(slots=True)
class Card:
    """One card: its name, its (defossilized where text) arguments and its payload."""

    name: str
    args: list[str]
    payload: bytes | None = None
    line: bytes = b""


def is_hash(text: str) -> bool:
    """True for an artifact name: 40 (SHA1) or 64 (SHA3-256) lowercase hex digits."""
    return _HEX.fullmatch(text.encode()) is not None


def compress(data: bytes, level: int = ZLIB_LEVEL) -> bytes:
    """Fossil's ``blob_compress``: 4-byte big-endian size, then zlib."""
    return struct.pack(">I", len(data)) + zlib.compress(data, level)


def uncompress(data: bytes, limit: int = MAX_PAYLOAD) -> bytes:
    """Undo ``compress``, checking the size prefix; XferError on damage."""
    if len(data) < 4:
        raise XferError("a compressed xfer payload shorter than its size prefix")
    (size,) = struct.unpack(">I", data[:4])
    if size > limit:
        raise XferError(f"a compressed xfer payload of {size} bytes is over the limit")
    try:
        d = zlib.decompressobj()
        out = d.decompress(data[4:], size + 1)
    except zlib.error as exc:
        raise XferError(f"a damaged zlib stream in an xfer message: {exc}") from exc
    if len(out) != size:
        raise XferError(f"a compressed xfer payload holds {len(out)} bytes, not the {size} "
                        "it announces")
    return out


def decode_body(body: bytes, content_type: str) -> bytes:
    """The card text of an HTTP body of ``content_type``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == COMPRESSED:
        return uncompress(body)
    if kind in (UNCOMPRESSED, DEBUG):
        return body
    raise XferError(f"not a Fossil xfer content type: {content_type!r}")


def encode_body(payload: bytes, content_type: str) -> bytes:
    """The HTTP body carrying ``payload`` as ``content_type``."""
    return compress(payload) if content_type == COMPRESSED else payload


def parse(payload: bytes) -> list[Card]:
    """The cards of a message (XferError for a malformed line or payload)."""
    cards: list[Card] = []
    pos, end = 0, len(payload)
    while pos < end:
        nl = payload.find(b"\n", pos)
        line = payload[pos:end if nl < 0 else nl]
        pos = end if nl < 0 else nl + 1
        if not line.strip() or line.startswith(b"#"):
            continue
        try:
            words = line.decode("utf-8").split()
        except UnicodeDecodeError:
            raise XferError("a card line that is not UTF-8",
                            card=line[:80].decode("latin-1")) from None
        name, args = words[0], words[1:]
        card = Card(name, args, None, line)
        if name in ("file", "cfile", "config"):
            size, after = _payload_size(card)
            if size > end - pos:
                raise XferError(f"a {name} card announces {size} bytes; the message has "
                                f"{end - pos} left", card=_show(line))
            card.payload = payload[pos:pos + size]
            pos += size
            if after and payload[pos:pos + 1] == b"\n":  # fossil's server at times omits it
                pos += 1
        else:
            card.args = [defossilize(a) for a in args]
        cards.append(card)
    return cards


def _payload_size(card: Card) -> tuple[int, int]:
    """(bytes of payload, bytes after it) of a payload card."""
    n = len(card.args)
    ok = {"file": (2, 3), "cfile": (3, 4), "config": (2, 2)}[card.name]
    if not ok[0] <= n <= ok[1] or not card.args[-1].isdigit():
        raise XferError(f"malformed {card.name} line", card=_show(card.line))
    if card.name != "config":
        if not is_hash(card.args[0]) or (n == ok[1] and not is_hash(card.args[1])):
            raise XferError(f"malformed {card.name} line: not an artifact name",
                            card=_show(card.line))
        if card.name == "cfile" and not card.args[-2].isdigit():
            raise XferError("malformed cfile line", card=_show(card.line))
    return int(card.args[-1]), (0 if card.name == "file" else 1)


def _show(line: bytes) -> str:
    return line[:120].decode("utf-8", "replace")


class Writer:
    """A message being built, card by card."""

    def __init__(self):
        self._parts: list[bytes] = []
        self.size = 0

    def _add(self, data: bytes) -> None:
        self._parts.append(data)
        self.size += len(data)

    def card(self, name: str, *args: str | int) -> None:
        """A card without payload (text arguments are fossilized)."""
        words = [name, *(fossilize(str(a)) for a in args)]
        self._add(" ".join(words).encode() + b"\n")

    def file(self, name: str, data: bytes, delta_src: str | None = None) -> None:
        """A ``file`` card: the artifact ``data``, or a delta on ``delta_src``."""
        head = f"file {name} {delta_src} {len(data)}\n" if delta_src else \
            f"file {name} {len(data)}\n"
        self._add(head.encode())
        self._add(data)

    def cfile(self, name: str, usize: int, packed: bytes, delta_src: str | None = None
              ) -> None:
        """A ``cfile`` card: ``packed`` is ``compress`` of the artifact (usize bytes) or of
        its delta on ``delta_src``."""
        src = f"{delta_src} " if delta_src else ""
        self._add(f"cfile {name} {src}{usize} {len(packed)}\n".encode())
        self._add(packed)
        self._add(b"\n")

    def config(self, name: str, content: bytes) -> None:
        self._add(f"config {name} {len(content)}\n".encode())
        self._add(content)
        self._add(b"\n")

    def error(self, text: str) -> None:
        self.card("error", text)

    def message(self, text: str) -> None:
        self.card("message", text)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
