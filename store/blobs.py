"""Artifacts: content-addressed bytes kept zstd-compressed, whole or as a Fossil delta.

Stored form of an artifact (the value of the ``blob`` table, keyed by the
32-byte SHA3-256 of the artifact):

    b"W" + zstd frame                 the whole artifact
    b"R" + bytes                      the whole artifact, uncompressed (when zstd does not help)
    b"D" + base id (32) + zstd frame  a Fossil delta that turns ``base`` into it
    b"d" + base id (32) + bytes       the same, uncompressed (small deltas)
    b"C" + size (8) + part size (4) + part ids (32 each)
                                      a large artifact, in parts (the last one shorter)
    b"S" + segment (4) + offset (4) + length (4)
                                      one of the forms above but b"C", kept in packed history

A part's id is the SHA3-256 of its bytes; the ``chunk`` table maps it to a
whole stored form (b"W" or b"R") of those bytes. Artifacts of ``LARGE`` bytes
or more are stored so, which lets an upload stream into the store part by part
(``chunks``), a reader stream out of it, and versions that share whole parts
(a file that grew at its end) share their storage; they are never deltas.

Whole frames carry zstd's content checksum; delta frames do not, since a
Fossil delta ends in a checksum of its own that ``apply`` always checks.

Packed history (``packing``, made by ``compact``): a b"W" or b"D" frame may be
compressed with a zstd dictionary of the ``zdict`` table, which the frame names
by its dictionary id (zstd's own header field). A dictionary's id is derived from
its bytes (``dictionary_id``), so one id names one dictionary in every store and a
process keeps one registry of them (``register_dictionary``), filled as frames need them.

Segments (packed history, made by ``compact``): the stored forms of artifacts that no
indexed branch tip holds, compressed together. A value of the ``segment`` table is

    b"Z" + digest (16) + zstd frame   a solid segment: forms end to end (kept
                                      uncompressed, b"R" and b"d"), compressed as one
                                      frame with the store's dictionary (the frame
                                      names it); the digest (BLAKE2b of the forms)
                                      names them in the cache of decompressed segments
    forms end to end                  a plain segment (format 3, an earlier release's
                                      ``compact``): forms as they were stored

and ``blob`` keeps a b"S" reference (segment, offset and length in the forms) in their
place; every reader of stored forms resolves it (``resolve``, ``BlobReader``). Ordered by
path as Git's pack is (``packing.Segmenter``), similar files and the versions of one file
are neighbours, so the frame holds what compressing them one by one could not share. A
segment is never changed: a form written again (a delta re-rooted) replaces the
reference, and the old bytes are dropped by the next ``compact``.

The stored form is what sync sends, as it is (a chunked artifact goes whole, a
frame with a dictionary without it: ``plain_form``).
Reverse deltas: the newest version of a file is whole and older versions
become deltas on newer ones; the ``chain`` table bounds the length of every
delta chain to ``MAX_CHAIN``.
"""

from __future__ import annotations

import hashlib
import struct
import threading

import zstandard

from herofossil import delta
from herofossil.errors import DeltaError, IntegrityError, NotFoundError
from herofossil.store.keys import id_name, is_sha1_key, pack_u64, unpack_u64  # noqa: F401  (verify, sync, tests)
from herofossil.store.lru import LRU

WHOLE = b"W"
RAW = b"R"
DELTA = b"D"
RAW_DELTA = b"d"
CHUNKED = b"C"
SEGMENT = b"S"
SOLID = b"Z"  # the first byte of a solid segment (never one of a form)
_SOLID_HEAD = 1 + 16
_SEGMENT_REF = struct.Struct(">III")  # segment id, offset, length (after the kind byte)
SEGMENT_REF_LEN = 1 + _SEGMENT_REF.size
DELTAS = (DELTA, RAW_DELTA)
ID_LEN = 32
# Artifacts of this size or more are stored in parts of CHUNK_SIZE bytes: memory stays
# bounded by a part while an upload streams in, and Fossil deltas (which hold both
# versions whole) are not made for them.
LARGE = 16 << 20
CHUNK_SIZE = 4 << 20
_CHUNK_HEAD = 1 + 8 + 4
# The longest delta chain (deltas applied to read the oldest version): Git packs at depth
# 50 by default. Measured on the real history: 32 -> 64 kept 15 fewer versions whole,
# 52 KB less of 2.48 MB stored and of a Fossil client's clone (2.82 -> 2.77 MB; Fossil's
# own server sends 2.78); reads of old versions go through ``BASES``.
MAX_CHAIN = 64
# Below this size a delta saves too little to pay for the chain it creates.
MIN_DELTA_SIZE = 256
# A delta is kept only when its compressed form is at most this share of the whole's.
DELTA_GAIN = 0.75
ZSTD_LEVEL = 3
# Manifests (card text, mostly hex hashes) come out as small at level 1, twice as fast.
ZSTD_LEVEL_CARDS = 1
# Forms compressed with a dictionary (``packing.Packer``, ``compressed_form``): small ones
# at level 19 in about 0.1 ms; larger ones at 9 (level 19 on code-L's larger files took
# 16.7 s instead of 1.5 s for 0.6% fewer bytes).
DICT_SMALL = 8 << 10
DICT_LEVEL_SMALL = 19
DICT_LEVEL_LARGE = 9
# A zstd frame costs at least 9 bytes of header and checksum: below this, keep bytes raw.
MIN_COMPRESS_SIZE = 32

# zstd reserves dictionary ids below 32768 and from 2**31 for a public registry.
_DICT_IDS = (32768, 2**31)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_local = threading.local()
# Contents of delta bases met while reading (as Git's delta base cache): reading the
# versions of a file one after another then applies the deltas between them, not each
# chain from its whole end. Measured on the real history, 300 old versions of its three
# most-changed files read one by one (``python -m bench --only size``): see ``content``.
BASES = LRU(max_bytes=32 << 20)
# Decompressed solid segments by digest: reading the versions of a file one after another
# decompresses their segment once.
SEGMENTS = LRU(max_bytes=16 << 20)
BASE_MAX = 1 << 20  # larger contents are not kept (a few would push out every other)


def _zc(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    name = f"zc{level}"
    c = getattr(_local, name, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level, write_checksum=True)
        setattr(_local, name, c)
    return c


def _zc_delta() -> zstandard.ZstdCompressor:
    c = getattr(_local, "zcd", None)
    if c is None:
        c = _local.zcd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
    return c


def _zd() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = zstandard.ZstdDecompressor()
    return d


# The dictionaries this process has met, by id (see ``dictionary_id``): registered by
# ``compact`` and by a sync that brings one, else found the first time a frame names one
# through the sources (each open ``StoreEnv`` is one: it reads its ``zdict`` table, so a
# dictionary another process stored since this one opened the store is found too).
_dictionaries: dict[int, bytes] = {}
_dictionary_sources: list = []
_dict_lock = threading.Lock()
_THREAD_CACHE = 16  # prepared dictionaries a thread keeps (a store has one)


def dictionary_id(raw: bytes) -> int:
    """The id a zstd dictionary must carry: derived from its bytes after the id field."""
    n = int.from_bytes(hashlib.sha3_256(bytes(raw[8:])).digest()[:4], "big")
    return _DICT_IDS[0] + n % (_DICT_IDS[1] - _DICT_IDS[0])


def with_dictionary_id(raw: bytes) -> bytes:
    """``raw`` (a zstd dictionary as trained) carrying its derived id."""
    return bytes(raw[:4]) + dictionary_id(raw).to_bytes(4, "little") + bytes(raw[8:])


def check_dictionary(raw: bytes) -> int:
    """The id of dictionary ``raw``; ``IntegrityError`` unless it is a zstd dictionary
    carrying its derived id."""
    if len(raw) < 16 or raw[:4] != b"\x37\xa4\x30\xec":
        raise IntegrityError("a compression dictionary is not a zstd dictionary")
    did = int.from_bytes(raw[4:8], "little")
    if did != dictionary_id(raw):
        raise IntegrityError(f"compression dictionary {did} does not hash to its id")
    return did


def register_dictionary(raw: bytes) -> int:
    """Make dictionary ``raw`` known to this process's readers; returns its id."""
    raw = bytes(raw)
    did = check_dictionary(raw)
    with _dict_lock:
        known = _dictionaries.setdefault(did, raw)
    if known != raw:  # 2**-31 by chance: two stores' dictionaries share an id
        raise IntegrityError(f"two compression dictionaries carry id {did}")
    return did


def forget_dictionaries(dids: list[int]) -> None:
    """Drop dictionaries ``dids`` from the registry (those a refused sync brought)."""
    with _dict_lock:
        for did in dids:
            _dictionaries.pop(did, None)
    for name in ("dicts", "zdd"):
        cache = getattr(_local, name, None)
        for did in dids if cache else ():
            cache.pop(did, None)


def add_dictionary_source(source) -> None:
    """``source(did)``: the bytes of dictionary ``did`` from an open store, or None."""
    with _dict_lock:
        _dictionary_sources.append(source)


def remove_dictionary_source(source) -> None:
    with _dict_lock:
        if source in _dictionary_sources:
            _dictionary_sources.remove(source)


def dictionary_bytes(did: int) -> bytes | None:
    """The bytes of dictionary ``did``: registered, or found in an open store (and then
    registered); None when no open store holds it."""
    raw = _dictionaries.get(did)
    if raw is not None:
        return raw
    with _dict_lock:
        sources = list(_dictionary_sources)
    for source in sources:
        found = source(did)
        if found is not None:
            try:
                register_dictionary(found)
            except IntegrityError:
                continue  # damaged in that store: ``verify`` names it
            return _dictionaries[did]
    return None


def _thread_cached(name: str, did: int, make):
    """``make()`` for dictionary ``did``, kept in this thread's cache ``name``."""
    cache = getattr(_local, name, None)
    if cache is None:
        cache = {}
        setattr(_local, name, cache)
    found = cache.get(did)
    if found is None:
        if len(cache) >= _THREAD_CACHE:
            cache.clear()
        found = cache[did] = make()
    return found


def _dictionary(did: int, what: bytes) -> zstandard.ZstdCompressionDict:
    def load():
        raw = dictionary_bytes(did)
        if raw is None:
            holder = f"artifact {id_name(what)}" if what else "a segment of packed history"
            raise IntegrityError(f"{holder} is compressed with dictionary {did}, which the "
                                 "store lacks")
        return zstandard.ZstdCompressionDict(bytes(raw))

    return _thread_cached("dicts", did, load)


def frame_dictionary(frame) -> int:
    """The dictionary id a zstd frame names (0: none)."""
    if len(frame) < 6 or bytes(frame[:4]) != _ZSTD_MAGIC or not frame[4] & 3:
        return 0
    try:
        return zstandard.get_frame_parameters(bytes(frame[:18])).dict_id
    except zstandard.ZstdError:
        return 0


def decompressor(frame, what: bytes) -> zstandard.ZstdDecompressor:
    """The decompressor for ``frame``: with the dictionary it names, if any."""
    did = frame_dictionary(frame)
    if not did:
        return _zd()
    return _thread_cached(
        "zdd", did, lambda: zstandard.ZstdDecompressor(dict_data=_dictionary(did, what)))


def dictionary_compressor(did: int, level: int, checksum: bool) -> zstandard.ZstdCompressor:
    """A compressor with dictionary ``did`` (registered) that names it in its frames."""
    return zstandard.ZstdCompressor(level=level, dict_data=_dictionary(did, b""),
                                    write_checksum=checksum, write_dict_id=True)


def artifact_id(data: bytes) -> bytes:
    """The binary SHA3-256 of ``data`` (its artifact id; ``.hex()`` is Fossil's name).

    With ``artifact_hex`` the one place artifacts are hashed: the store keys
    the binary form, names, ETags and the deconstruct layout use the hex one.
    """
    return hashlib.sha3_256(data).digest()


def artifact_hex(data: bytes) -> str:
    """The artifact id of ``data`` as Fossil names it (lowercase hex SHA3-256)."""
    return hashlib.sha3_256(data).hexdigest()


def hashes_to(key: bytes, data: bytes) -> bool:
    """True when ``data`` is the artifact keyed ``key``: its SHA3-256, or for the key of a
    SHA1-named artifact of an older Fossil repository (``keys.id_key``), its SHA1."""
    if is_sha1_key(key):
        return hashlib.sha1(data).digest() == key[:20]
    return artifact_id(data) == key


def encode_whole(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """The stored form of ``data`` kept whole (compressed unless that makes it larger)."""
    if len(data) < MIN_COMPRESS_SIZE:
        return RAW + data
    packed = _zc(level).compress(data)
    if len(packed) >= len(data):
        return RAW + data
    return WHOLE + packed


def encode_chunked(size: int, chunk_ids: list[bytes], part: int = CHUNK_SIZE) -> bytes:
    """The stored form of an artifact of ``size`` bytes kept in the parts ``chunk_ids``,
    each ``part`` bytes long but the last."""
    return CHUNKED + size.to_bytes(8, "big") + part.to_bytes(4, "big") + b"".join(chunk_ids)


def is_chunked(stored: bytes) -> bool:
    """True for the stored form of an artifact kept in parts."""
    return stored[:1] == CHUNKED


def chunk_layout(stored: bytes, what: bytes) -> tuple[int, int, list[bytes]]:
    """(size, part size, part ids in order) of a chunked stored form."""
    ids = bytes(stored[_CHUNK_HEAD:])
    size = int.from_bytes(stored[1:9], "big")
    part = int.from_bytes(stored[9:_CHUNK_HEAD], "big")
    if len(stored) < _CHUNK_HEAD or not part or len(ids) % ID_LEN or \
            len(ids) // ID_LEN != -(-size // part):
        raise IntegrityError(f"artifact {id_name(what)} has a damaged list of parts")
    return size, part, [ids[i:i + ID_LEN] for i in range(0, len(ids), ID_LEN)]


def is_whole(stored: bytes) -> bool:
    """True for a stored form that holds the whole artifact (no delta base)."""
    return stored[:1] in (WHOLE, RAW)


def decode_whole(stored: bytes, what: bytes) -> bytes:
    """The artifact a whole stored form holds."""
    if stored[:1] == RAW:
        return stored[1:]
    return decompress(stored[1:], what)


def encode_delta(base_id: bytes, delta_bytes: bytes) -> bytes:
    """The stored form of an artifact kept as ``delta_bytes`` against ``base_id``."""
    packed = _zc_delta().compress(delta_bytes)
    if len(packed) >= len(delta_bytes):
        return RAW_DELTA + base_id + delta_bytes
    return DELTA + base_id + packed


def delta_payload(stored: bytes, what: bytes) -> bytes:
    """The Fossil delta a delta stored form holds."""
    if stored[:1] == RAW_DELTA:
        return bytes(stored[1 + ID_LEN :])
    return decompress(stored[1 + ID_LEN :], what)


def decompress(frame: bytes, what: bytes) -> bytes:
    """Decompress a zstd frame of a stored form, naming the artifact on damage."""
    try:
        # Byte 4 of a frame says whether it names a dictionary: checked inline, as a tip
        # read decompresses each file it did not keep (``decompressor`` costs 1.6 us more).
        if len(frame) > 5 and frame[4] & 3:
            return decompressor(frame, what).decompress(frame)
        return _zd().decompress(frame)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"artifact {id_name(what)} is damaged: {exc}") from exc


def stored_size(stored: bytes) -> int | None:
    """The size of the artifact a whole stored form holds, without decompressing."""
    if stored[:1] == WHOLE:
        size = zstandard.frame_content_size(stored[1:])
        return size if size >= 0 else None
    if stored[:1] == RAW:
        return len(stored) - 1
    if stored[:1] == CHUNKED and len(stored) >= _CHUNK_HEAD:
        return int.from_bytes(stored[1:9], "big")
    return None


def stored_dictionary(stored) -> int:
    """The dictionary id a stored form's frame is compressed with (0: none)."""
    kind = stored[:1]
    if kind == WHOLE:
        return frame_dictionary(stored[1:])
    if kind == DELTA:
        return frame_dictionary(stored[1 + ID_LEN:])
    return 0


def packed_form(data: bytes, base: bytes | None, did: int) -> bytes:
    """The stored form of ``data`` (an artifact's bytes, or with ``base`` a delta's payload
    on it) compressed with dictionary ``did`` (registered), as ``compact`` packs a form."""
    level = DICT_LEVEL_SMALL if len(data) <= DICT_SMALL else DICT_LEVEL_LARGE
    head = WHOLE if base is None else DELTA + base
    return head + _cached_compressor(did, level, base is None).compress(data)


def _cached_compressor(did: int, level: int, checksum: bool) -> zstandard.ZstdCompressor:
    return _thread_cached(f"zcdict{level}{checksum}", did,
                          lambda: dictionary_compressor(did, level, checksum))


def compressed_form(stored: bytes, did: int = 0) -> bytes:
    """``stored`` compressed where it is kept uncompressed (b"R", b"d") and that helps;
    with dictionary ``did`` (registered) when not 0, as ``compact`` packs a form."""
    kind = stored[:1]
    if kind not in (RAW, RAW_DELTA):
        return stored
    base = None if kind == RAW else stored[1:1 + ID_LEN]
    data = stored[1:] if base is None else stored[1 + ID_LEN:]
    if not did:
        return encode_whole(data) if base is None else encode_delta(base, data)
    packed = packed_form(data, base, did)
    return packed if len(packed) < len(stored) else stored


def plain_form(stored: bytes, what: bytes) -> bytes:
    """``stored`` with no dictionary: what a peer can read without this store's."""
    if not stored_dictionary(stored):
        return stored
    if stored[:1] == WHOLE:
        return encode_whole(decode_whole(stored, what))
    return encode_delta(bytes(stored[1:1 + ID_LEN]), delta_payload(stored, what))


def segment_ref(segment: int, offset: int, length: int) -> bytes:
    """The ``blob`` value that stands for a form kept in ``segment`` at ``offset``."""
    return SEGMENT + _SEGMENT_REF.pack(segment, offset, length)


def segment_key(segment: int) -> bytes:
    """The ``segment`` table's key of segment number ``segment``."""
    return segment.to_bytes(4, "big")


def resolve(txn, dbs, aid: bytes, stored):
    """The stored form a ``blob`` value stands for: the value itself, or the form a
    segment reference names (``IntegrityError`` when it names none). ``dbs``: the store's
    tables (its ``segment`` table is read)."""
    if stored is None or stored[:1] != SEGMENT:
        return stored
    def segment_of(key: bytes, what: bytes):
        value = txn.get(key, db=dbs["segment"]) if "segment" in dbs else None
        return None if value is None else segment_forms(value, what)

    return form_in_segment(aid, stored, segment_of)


def solid_segment(forms: bytes, level: int, did: int = 0) -> bytes:
    """The ``segment`` value holding ``forms`` (end to end) compressed as one frame, with
    dictionary ``did`` (registered; the frame names it) unless 0."""
    digest = hashlib.blake2b(forms, digest_size=_SOLID_HEAD - 1).digest()
    compressor = _cached_compressor(did, level, True) if did else _zc(level)
    return SOLID + digest + compressor.compress(forms)


def segment_forms(value, what: bytes = b"") -> bytes:
    """The forms a ``segment`` value holds end to end (a solid one decompressed, or taken
    from ``SEGMENTS``); ``IntegrityError`` naming ``what`` (an artifact, or none) when a
    solid one is damaged."""
    if value[:1] != SOLID:
        return bytes(value)
    digest = bytes(value[1:_SOLID_HEAD])
    forms = SEGMENTS.get(digest)
    if forms is None:
        # The frame's checksum covers the forms; the digest is checked by ``verify``
        # (``segment_digest_holds``), not here: hashing would add half to a read's cost.
        forms = _solid_forms(value, what)
        SEGMENTS.put(digest, forms)
    return forms


def _solid_forms(value, what: bytes) -> bytes:
    # All of it, in one call: decompressing only as far as a read needs (zstd's streaming
    # API) took longer on the real history's 64 and 256 KB segments.
    frame = bytes(value[_SOLID_HEAD:])
    try:
        return decompressor(frame, what).decompress(frame)
    except zstandard.ZstdError as exc:
        holding = f" holding artifact {id_name(what)}" if what else ""
        raise IntegrityError(f"a segment of packed history{holding} is damaged: "
                             f"{exc}") from exc


def segment_digest_holds(value) -> bool:
    """True unless ``value`` is a solid segment whose forms do not hash to its digest
    (decompressed from ``value`` itself, never taken from ``SEGMENTS``)."""
    if value[:1] != SOLID:
        return True
    forms = _solid_forms(value, b"")
    return hashlib.blake2b(forms, digest_size=_SOLID_HEAD - 1).digest() == \
        bytes(value[1:_SOLID_HEAD])


def form_in_segment(aid: bytes, ref, segment_of) -> bytes:
    """The form reference ``ref`` names; ``segment_of(key, aid)``: the forms of a
    segment (as ``segment_forms`` gives them), or None."""
    if len(ref) != SEGMENT_REF_LEN:
        raise IntegrityError(f"artifact {id_name(aid)} has a damaged reference into packed "
                             "history")
    seg, offset, length = _SEGMENT_REF.unpack_from(ref, 1)
    data = segment_of(segment_key(seg), aid)
    if data is None:
        raise IntegrityError(f"artifact {id_name(aid)} is kept in segment {seg}, which the "
                             "store lacks")
    form = bytes(data[offset:offset + length])
    if not length or offset + length > len(data) or form[:1] in (SEGMENT, CHUNKED, b""):
        raise IntegrityError(f"artifact {id_name(aid)} has a damaged reference into segment "
                             f"{seg} ({length} bytes at {offset} of {len(data)})")
    return form


def delta_base(stored: bytes) -> bytes | None:
    """The base id of a delta stored form, or None for a whole one."""
    return stored[1 : 1 + ID_LEN] if stored[:1] in DELTAS else None


class BlobReader:
    """Reconstructs artifacts from their stored forms inside one transaction (``dbs``:
    the store's tables, of which it reads ``blob`` and ``chunk``)."""

    def __init__(self, txn, dbs):
        self.txn = txn
        self.db = dbs["blob"]
        self.chunk_db = dbs.get("chunk")
        self.segment_db = dbs.get("segment")
        self._segment: tuple[bytes, bytes] = (b"", b"")  # the last segment read

    def stored(self, aid: bytes) -> bytes | None:
        """The stored form of ``aid``, or None."""
        stored = self.txn.get(aid, db=self.db)
        if stored is not None and stored[:1] == SEGMENT:
            return form_in_segment(aid, stored, self._segment_bytes)
        return stored

    def form(self, aid: bytes, value):
        """The stored form a value of ``blob`` (read by a walk over it) stands for."""
        if value[:1] == SEGMENT:
            return form_in_segment(aid, value, self._segment_bytes)
        return value

    def _segment_bytes(self, key: bytes, what: bytes):
        # Consecutive reads often meet one segment (the versions of a file, one by one).
        if self._segment[0] != key:
            data = None if self.segment_db is None else self.txn.get(key, db=self.segment_db)
            if data is None:
                return None
            self._segment = (key, segment_forms(data, what))
        return self._segment[1]

    def has(self, aid: bytes) -> bool:
        return self.stored(aid) is not None

    def content(self, aid: bytes, memo: dict[bytes, bytes] | None = None) -> bytes:
        """The bytes of artifact ``aid``; follows its delta chain. ``memo``: bytes of
        artifacts known already, taken where the chain meets one and given the bytes of
        every artifact on the chain (a caller reading many artifacts of shared chains then
        applies each delta once)."""
        chain: list[tuple[bytes, bytes]] = []
        cur = aid
        # With a memo (verify, the pre-commit check) every byte comes from the stored
        # forms; without, a base read before is taken from ``BASES``.
        bases = BASES if memo is None else None
        while True:
            if memo is not None and cur in memo:
                data = memo[cur]
                break
            if bases is not None and chain and (known := bases.get(cur)) is not None:
                data = known
                break
            stored = self.stored(cur)
            if stored is None:
                if cur == aid:
                    raise NotFoundError(f"artifact {id_name(aid)} is not in the store")
                raise IntegrityError(
                    f"artifact {id_name(chain[-1][0])} is a delta on {id_name(cur)}, which is "
                    "missing"
                )
            kind = stored[:1]
            if kind == WHOLE or kind == RAW:
                data = decode_whole(stored, cur)
                break
            if kind == CHUNKED:
                data = b"".join(self.parts(cur, stored))
                break
            if kind not in DELTAS or len(stored) < 1 + ID_LEN:
                raise IntegrityError(f"artifact {id_name(cur)} has an unknown stored form")
            chain.append((cur, stored))
            if len(chain) > MAX_CHAIN * 4:
                raise IntegrityError(f"artifact {id_name(aid)} has a delta chain that loops")
            cur = stored[1 : 1 + ID_LEN]
        for cid, stored in reversed(chain):
            try:
                data = delta.apply(data, delta_payload(stored, cid))
            except DeltaError as exc:
                raise IntegrityError(f"artifact {id_name(cid)} is damaged: {exc}") from exc
            if memo is not None:
                memo[cid] = data
            elif cid != aid and len(data) <= BASE_MAX:
                BASES.put(cid, data)
        return data

    def size(self, aid: bytes) -> int:
        stored = self.stored(aid)
        if stored is None:
            raise NotFoundError(f"artifact {id_name(aid)} is not in the store")
        size = stored_size(stored)
        if size is None:
            try:
                size = delta.output_size(delta_payload(stored, aid))
            except DeltaError as exc:
                raise IntegrityError(f"artifact {id_name(aid)} is damaged: {exc}") from exc
        return size

    def parts(self, aid: bytes, stored: bytes | None = None, first: int = 0):
        """The bytes of chunked artifact ``aid``, part by part from part ``first`` (each
        checked for its length, not its hash: ``verify`` hashes)."""
        stored = self.stored(aid) if stored is None else stored
        size, part, ids = chunk_layout(stored, aid)
        for n in range(first, len(ids)):
            cid = ids[n]
            raw = None if self.chunk_db is None else self.txn.get(cid, db=self.chunk_db)
            if raw is None:
                raise IntegrityError(f"artifact {id_name(aid)} lacks its part {id_name(cid)}")
            data = decode_whole(raw, cid)
            if len(data) != min(part, size - n * part):
                raise IntegrityError(f"artifact {id_name(aid)} has a damaged part {id_name(cid)}")
            yield data
