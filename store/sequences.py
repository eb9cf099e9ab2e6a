"""The numbered logs of local state: ``seq`` (artifacts in insert order) and ``cseq``
(check-ins in index order).

An entry is keyed by its number (8 bytes, big-endian) and holds a 32-byte id. In packed
history (``compact``, ``runs``) the entries of consecutive numbers are folded into runs:
the entry keyed by the first number holds the ids of it and of the numbers after it, end
to end. A run stays inside a leaf page; new numbers are appended as entries of their
own. Every reader goes through ``Numbered``, which sees runs and single entries alike.
Measured on config-L (11,912 artifacts, 2,664 check-ins): 610 KB and 139 KB of pages as
single entries (51 bytes each: 18 of key and node for 32 of id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from herofossil.store.keys import pack_u64, unpack_u64

ID_LEN = 32
RUN_IDS = 60  # 1,920 bytes: inside a leaf page (``packing.inline_limit``: 1,998)


def entry_ids(key: bytes, value: bytes) -> list[tuple[int, bytes]]:
    """(number, id) of each id one entry holds (``ValueError``: not an entry)."""
    if len(key) != 8 or not value or len(value) % ID_LEN:
        raise ValueError(f"{len(key)}-byte key, {len(value)}-byte value: not NUMBER -> "
                         "id(s) of 32 bytes")
    first = unpack_u64(key)
    return [(first + i, bytes(value[i * ID_LEN:(i + 1) * ID_LEN]))
            for i in range(len(value) // ID_LEN)]


def runs(items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """``items`` of a numbered table (key order), consecutive numbers folded into runs of
    at most ``RUN_IDS`` ids."""
    first, ids, last = 0, [], -1
    for key, value in items:
        for n, aid in entry_ids(bytes(key), bytes(value)):
            if ids and (n != last + 1 or len(ids) == RUN_IDS):
                yield pack_u64(first), b"".join(ids)
                ids = []
            if not ids:
                first = n
            ids.append(aid)
            last = n
    if ids:
        yield pack_u64(first), b"".join(ids)


class Numbered:
    """Reads (and deletes) by number in one numbered table, runs and single entries
    alike (``txn``: a transaction, ``db``: the table)."""

    def __init__(self, txn, db):
        self.txn = txn
        self.db = db

    def _holding(self, n: int):
        """A cursor on the entry that holds number ``n`` or, when none does, on the first
        entry after it (None: there is none)."""
        cur = self.txn.cursor(db=self.db)
        if cur.set_range(pack_u64(n)):
            if unpack_u64(cur.key()) == n:
                return cur
            if not cur.prev():
                cur.first()
                return cur
        elif not cur.last():
            return None
        first = unpack_u64(cur.key())  # an entry before ``n``: a run may hold it
        if first + len(cur.value()) // ID_LEN > n:
            return cur
        return cur if cur.next() else None

    def get(self, n: int) -> bytes | None:
        """The id numbered ``n``, or None."""
        cur = self._holding(n)
        if cur is None:
            return None
        first, value = unpack_u64(cur.key()), cur.value()
        at = (n - first) * ID_LEN
        if n < first or at + ID_LEN > len(value):
            return None
        return bytes(value[at:at + ID_LEN])

    def after(self, n: int) -> Iterator[tuple[int, bytes]]:
        """(number, id) of every id numbered above ``n``, ascending."""
        cur = self._holding(n + 1)
        if cur is None:
            return
        for key, value in cur:
            first = unpack_u64(key)
            for i in range(len(value) // ID_LEN):
                if first + i > n:
                    yield first + i, bytes(value[i * ID_LEN:(i + 1) * ID_LEN])

    def last(self) -> tuple[int, bytes] | None:
        """(number, id) of the highest number, or None for an empty table."""
        cur = self.txn.cursor(db=self.db)
        if not cur.last():
            return None
        first, value = unpack_u64(cur.key()), cur.value()
        count = len(value) // ID_LEN
        return first + count - 1, bytes(value[(count - 1) * ID_LEN:count * ID_LEN])

    def newest_first(self) -> Iterator[tuple[int, bytes]]:
        """(number, id) of every id, descending."""
        cur = self.txn.cursor(db=self.db)
        if not cur.last():
            return
        for key, value in cur.iterprev():
            first = unpack_u64(key)
            for i in reversed(range(len(value) // ID_LEN)):
                yield first + i, bytes(value[i * ID_LEN:(i + 1) * ID_LEN])

    def delete(self, n: int) -> bool:
        """Remove number ``n`` (a run holding it is split around it); False if absent."""
        cur = self._holding(n)
        if cur is None:
            return False
        first, value = unpack_u64(cur.key()), bytes(cur.value())
        at = (n - first) * ID_LEN
        if n < first or at + ID_LEN > len(value):
            return False
        cur.delete()
        if at:
            self.txn.put(pack_u64(first), value[:at], db=self.db)
        if at + ID_LEN < len(value):
            self.txn.put(pack_u64(n + 1), value[at + ID_LEN:], db=self.db)
        return True
