"""Packed history: the stored forms of a store compressed with a dictionary trained on them.

Compressed one by one, small artifacts (manifests, their deltas, small files and
the deltas between versions) each pay zstd's whole learning cost: on the real
history of ``../shared/corpora`` 2,535 of 2,561 stored forms are under 2 KB. A
dictionary of 32 KB trained on the store's own artifacts takes that cost once.
``compact`` (``lmdbenv.StoreEnv.compact``) trains one (``train``) and rewrites every
stored form with it where that is smaller (``Packer``), and the texts of the check-in
records (local state: comments, users, dates); the dictionary goes into the global
``zdict`` table, keyed by its id (``blobs.dictionary_id``), and the frames name it.
A form compressed with an older dictionary is rewritten, so a compact leaves only the
dictionary it made.

Measured on the three bench corpora (stored bytes before -> after, dictionary included;
``herofossil stats``): real history 2.43 -> 2.25 MB, config-L 2.81 -> 2.08 MB, code-L
27.1 -> 26.1 MB; check-in records on the real history 266 -> 213 KB of pages.
Trained with fixed cover parameters (k=256, d=8): zstd's
search over them took 3-18 s for a gain under 1%.

``compact`` also puts the forms of artifacts that no indexed branch tip holds into solid
segments (``Segmenter``, ``blobs.SOLID``): compressed together with the dictionary, in
Git's pack order, they share what a dictionary alone cannot. On the real history the
2,545 forms of history took 641 KB of pages stored one by one and take 598 KB in
segments of 16 KB (their size bounds what an old version's read alone pays: see
``SEGMENT_BYTES``); each keeps a reference of 13 bytes in ``blob`` under its 32-byte id
(about 180 KB of pages there), so the store is 3.09 -> 3.01 MB: the gain is held back by
that per-artifact entry, which a sorted index of packed history would replace (not
built). The dictionary also packs the tips' forms, the check-in records and what a clone
sends (``exchange.portable``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import zstandard

from herofossil.errors import HeroFossilError
from herofossil.store import blobs, checkins, keys

DICT_SIZE = 32 << 10  # 32 KB measured best of 16-112 KB on the real history and config-L
MIN_DICT_SIZE = 4 << 10  # zstd's smallest useful one
SAMPLE_MAX = 16 << 10  # artifacts larger than this gain little from a dictionary
SAMPLE_BYTES = 8 << 20  # zstd wants ~100x the dictionary's size of samples; more is slower
MIN_SAMPLES = 64  # below this a store is too small for a dictionary to pay its own size


def payload(aid: bytes, stored: bytes) -> bytes | None:
    """What a stored form compresses: the artifact of a whole one, the Fossil delta of a
    delta; None for an artifact kept in parts (never packed)."""
    if blobs.is_chunked(stored):
        return None
    if blobs.is_whole(stored):
        return blobs.decode_whole(stored, aid)
    return blobs.delta_payload(stored, aid)


def train(forms: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """A dictionary trained on the payloads of ``forms`` (sampled evenly when they are
    many), carrying its derived id; None when there are too few to train on or no
    dictionary saves more than its own size."""
    samples, size = [], 0
    step = 1
    for n, (aid, stored) in enumerate(forms):
        if n % step:
            continue
        data = payload(aid, bytes(stored))
        if data is None or not data or len(data) > SAMPLE_MAX:
            continue
        samples.append(data)
        size += len(data)
        if size > SAMPLE_BYTES:  # keep every other one from here on
            samples = samples[::2]
            size = sum(map(len, samples))
            step *= 2
    if len(samples) < MIN_SAMPLES:
        return None
    # zstd's guide: samples of about 100 times the dictionary's size. Net of its own size
    # a quarter of that size was best on some stores (the kill campaign's: 8 KB saved
    # 7 KB where 32 KB cost 10 KB), so both are tried, by a cheap estimate at level 3.
    plain = zstandard.ZstdCompressor(level=3)
    unpacked = sum(len(plain.compress(d)) for d in samples)
    best, best_gain = None, 0
    for dict_size in sorted({min(DICT_SIZE, size // 10), min(DICT_SIZE // 4, size // 10)}):
        if dict_size < MIN_DICT_SIZE:
            continue
        try:
            trained = zstandard.train_dictionary(dict_size, samples, k=256, d=8,
                                                 level=blobs.DICT_LEVEL_LARGE)
        except zstandard.ZstdError:
            continue  # zstd found nothing to learn (e.g. random bytes)
        raw = blobs.with_dictionary_id(trained.as_bytes())
        packer = zstandard.ZstdCompressor(level=3,
                                          dict_data=zstandard.ZstdCompressionDict(raw))
        gain = (unpacked - sum(len(packer.compress(d)) for d in samples)) * step - len(raw)
        if gain > best_gain:
            best, best_gain = raw, gain
    return best


class Packer:
    """Rewrites stored forms with dictionary ``raw`` (registered on creation)."""

    def __init__(self, raw: bytes):
        self.did = blobs.register_dictionary(raw)
        self.raw = raw
        self.key = self.did.to_bytes(4, "big")  # its key in the ``zdict`` table
        # Check-in records are local state (verify derives them again): no checksum.
        self.record = blobs.dictionary_compressor(self.did, blobs.DICT_LEVEL_SMALL, False)
        self.count = 0  # stored forms compressed with the dictionary (now or already)

    def pack(self, aid: bytes, stored: bytes) -> bytes:
        """The smaller of ``stored`` and its form with the dictionary (a form with another
        dictionary never stays so: that one is dropped)."""
        if stored[:1] == blobs.SEGMENT:  # a reference into this compact's segments
            return stored
        old = blobs.stored_dictionary(stored)
        if old == self.did:  # packed by an earlier compact with this same dictionary
            self.count += 1
            return stored
        data = payload(aid, stored)
        if data is None:
            return stored
        packed = blobs.packed_form(data, blobs.delta_base(stored), self.did)
        # A form with another dictionary is rewritten either way: that one is dropped.
        kept = blobs.plain_form(stored, aid) if old else stored
        if len(packed) >= len(kept):
            return kept
        self.count += 1
        return packed

    def packed(self, items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        """``items`` (key, stored form) of the blob table, each packed."""
        for aid, stored in items:
            yield aid, self.pack(bytes(aid), bytes(stored))

    def packed_records(self, items: Iterable[tuple[bytes, bytes]], kept: bool
                       ) -> Iterator[tuple[bytes, bytes]]:
        """``items`` (key, record) of the checkin table, their texts packed (a record of an
        earlier compact's dictionary is unpacked first), only if the dictionary is ``kept``
        (a stored form or a segment took it: ``zdict`` names it only then)."""
        for cid, raw in items:
            cid, raw = bytes(cid), checkins.plain_record(bytes(cid), bytes(raw))
            yield cid, checkins.pack_record(raw, self.record) if kept else raw


# A solid segment holds about this many bytes of forms before compression, then as many
# more as fill the last of its pages (``Segmenter._write``). Measured on the real
# history's 2,545 cold forms with the store's dictionary, pages filled: 16 KB 590 KB,
# 32 KB 565 KB, 64 KB 532 KB of pages; without the dictionary nor filling 64 KB took
# 614 KB. An old version's first read decompresses its segments whole (16, 32, 64 KB: 31,
# 53, 75 us each here; ``blobs.SEGMENTS`` keeps them for the next), which a read alone
# pays: see ``python -m bench --only size``, row 2's cold reads.
SEGMENT_BYTES = 16 << 10
# Larger forms stay in ``blob``, compressed alone: as large as segments, they lose little.
SEGMENT_FORM_MAX = 64 << 10
# Level 15 made 0.4% more bytes than 19 in a third of the time (12 MB/s here).
SEGMENT_LEVEL = 15
_FILL_TRIES = 4  # compressions more to fill a segment's last page (about 3 were needed)
_FILL_SLACK = 128  # bytes left free in the last page that are not worth another try
_PAGE_HEADER = 16  # LMDB's page header, also on the first page of a large value
_FILE_CARD = re.compile(rb"^F (\S+) ([0-9a-f]{64}|[0-9a-f]{40})\b", re.M)


def inline_limit(psize: int) -> int:
    """The largest value LMDB keeps in a leaf page beside a 32-byte key (larger ones get
    whole pages of their own): its node limit (``me_nodemax``) less the node header."""
    return (((psize - _PAGE_HEADER) // 2) & ~1) - 2 - 8 - blobs.ID_LEN


def tip_artifacts(txn, dbs) -> set[bytes]:
    """The artifacts of every indexed branch tip (the ``tree`` table) and the manifests of
    the tips (the ``tip`` table): hot, not packed history, so a tip read never goes
    through a segment, nor does the next check-in, which turns its parent's manifest into
    a delta."""
    hot = {bytes(value[-blobs.ID_LEN:]) for value in
           txn.cursor(db=dbs["tree"]).iternext(keys=False) if value[:1] == b"F"}
    hot.update(bytes(v[:blobs.ID_LEN]) for v in txn.cursor(db=dbs["tip"]).iternext(keys=False))
    return hot


def first_paths(forms: blobs.BlobReader, checkin_ids: Iterable[bytes]) -> dict[bytes, bytes]:
    """The id of every file version the manifests ``checkin_ids`` name -> a path (as its
    F card spells it) where one of them holds it."""
    paths: dict[bytes, bytes] = {}
    for cid in checkin_ids:
        try:
            text = forms.content(cid)
        except HeroFossilError:
            continue  # ``verify`` names it; the order of packed history is only a hint
        for m in _FILE_CARD.finditer(text):
            paths.setdefault(keys.id_key(m.group(2).decode()), m.group(1))
    return paths


class Segmenter:
    """Puts the stored forms of artifacts no indexed tip holds into solid segments (values
    of the ``segment`` table written through ``cursor``) and gives the references that
    take their place in ``blob``.

    Forms go in Git's pack order: manifests apart from files, then by the end of the path
    of the version their delta chain starts from (what Git's name hash sorts by, so that
    ``a/x.toml`` and ``b/x.toml`` meet), then the path, then along the chain. Measured on
    the real history, 64 KB segments: 507 KB in this order, 588 KB in id order."""

    def __init__(self, cursor, psize: int, hot: set[bytes], did: int = 0):
        self.cursor = cursor
        self.psize = psize
        self.hot = hot
        self.did = did  # the dictionary segments are compressed with (0: none)
        self.refs: dict[bytes, bytes] = {}  # artifact id -> its reference
        self.number = 1  # of the next segment
        self.segments = 0  # written

    def fill(self, forms: blobs.BlobReader, items: Iterable[tuple[bytes, bytes]],
             checkin_ids: set[bytes], progress=None) -> None:
        """Segment the cold forms of ``items`` (key, value of ``blob``), read through
        ``forms``; ``checkin_ids``: the ids of the manifests among them; ``progress``:
        called (forms done, forms in all) along the way."""
        bases: dict[bytes, bytes | None] = {}
        for aid, value in items:
            aid = bytes(aid)
            if aid in self.hot:
                continue
            stored = forms.form(aid, value)
            if not blobs.is_chunked(stored):
                bases[aid] = blobs.delta_base(stored)
        paths = first_paths(forms, (cid for cid in checkin_ids if cid in bases))

        def order(aid: bytes):
            depth, root = 0, aid
            while (base := bases.get(root)) is not None and depth <= blobs.MAX_CHAIN * 4:
                root, depth = base, depth + 1
            path = paths.get(root, b"")
            return aid in checkin_ids, path[-16:][::-1], path, root, -depth

        pending: list[tuple[bytes, bytes]] = []  # forms in order, not yet in a segment
        held = 0
        for n, aid in enumerate(sorted(bases, key=order), 1):
            if progress is not None and n % 256 == 0:
                progress(n, len(bases))
            stored = forms.stored(aid)
            plain = blobs.RAW + blobs.decode_whole(stored, aid) if bases[aid] is None else \
                blobs.RAW_DELTA + bases[aid] + blobs.delta_payload(stored, aid)
            if len(plain) > SEGMENT_FORM_MAX:
                continue
            pending.append((aid, plain))
            held += len(plain)
            # Enough ahead to fill a segment's last page: filling takes a few pages' worth.
            while held >= 2 * SEGMENT_BYTES + SEGMENT_FORM_MAX:
                held -= self._write(pending)
        while pending:
            self._write(pending)
        if progress is not None:
            progress(len(bases), len(bases))

    def _write(self, pending: list[tuple[bytes, bytes]]) -> int:
        """Write the next segment: the first forms of ``pending`` (taken from it) making
        about ``SEGMENT_BYTES``, and more while its value still fits its last page; the
        bytes of forms it took."""
        n = raw = 0
        while n < len(pending) and raw < SEGMENT_BYTES:
            raw += len(pending[n][1])
            n += 1
        value = self._solid(pending, n)
        pages = -(-(len(value) + _PAGE_HEADER) // self.psize)  # LMDB's, for a large value
        limit = pages * self.psize - _PAGE_HEADER
        for _ in range(_FILL_TRIES):
            room = limit - len(value)
            if room < _FILL_SLACK or n == len(pending):
                break
            want = 0.9 * room * raw / len(value)  # forms likely to fit, at the ratio so far
            more = k = 0
            while n + k < len(pending) and more + len(pending[n + k][1]) <= want:
                more += len(pending[n + k][1])
                k += 1
            if not k:
                break
            bigger = self._solid(pending, n + k)
            if len(bigger) > limit:
                break
            n, raw, value = n + k, raw + more, bigger
        offset = 0
        for aid, plain in pending[:n]:
            self.refs[aid] = blobs.segment_ref(self.number, offset, len(plain))
            offset += len(plain)
        self.cursor.put(blobs.segment_key(self.number), value, append=True)
        self.number += 1
        self.segments += 1
        del pending[:n]
        return raw

    def _solid(self, pending: list[tuple[bytes, bytes]], n: int) -> bytes:
        return blobs.solid_segment(b"".join(plain for _, plain in pending[:n]),
                                   SEGMENT_LEVEL, self.did)

    def segmented(self, items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        """``items`` (key, stored form) of the blob table, the segmented ones replaced by
        their references."""
        refs = self.refs
        for aid, stored in items:
            yield aid, refs.get(aid, stored)

    @property
    def count(self) -> int:
        """Forms put into segments."""
        return len(self.refs)
