"""A write transaction that records its changes, for the write-ahead log.

Write functions receive a ``LoggedTxn`` instead of LMDB's transaction. It
offers what the store's code uses (get, put, delete, drop, stat, cursor, id)
and records each change that took effect as (op, table index, key, value);
a method it does not offer fails loudly rather than write unrecorded. Past
``limit`` bytes it stops recording (``ops`` becomes None): so large a
transaction is made durable by a checkpoint instead, and an import does
not hold a second copy of everything it writes.
"""

from __future__ import annotations

import lmdb

from herofossil.store.wal import CLEAR, DELETE, PUT


class LoggedTxn:
    """``txn`` with every put, delete and drop recorded in ``ops``."""

    __slots__ = ("_txn", "_tables", "ops", "size", "limit", "get", "stat", "id")

    def __init__(self, txn: lmdb.Transaction, tables: dict, limit: int):
        self._txn = txn
        self._tables = tables  # database handle -> table index
        self.ops: list[tuple[int, int, bytes, bytes]] | None = []
        self.size = 0
        self.limit = limit
        self.get = txn.get
        self.stat = txn.stat
        self.id = txn.id

    def record(self, op: int, table: int, key: bytes, value: bytes) -> None:
        """Add a change (of table index ``table``) to ``ops``, unless past the limit."""
        if self.ops is None:
            return
        self.size += len(key) + len(value) + 10
        if self.size > self.limit:
            self.ops = None
        else:
            self.ops.append((op, table, key, value))

    def child(self, txn: lmdb.Transaction) -> LoggedTxn:
        """A LoggedTxn for ``txn``, nested in this one (see ``adopt``)."""
        return LoggedTxn(txn, self._tables, self.limit)

    def adopt(self, child: LoggedTxn) -> None:
        """Add the changes of a nested transaction that committed."""
        if child.ops is None:
            self.ops = None
        for change in child.ops or ():
            self.record(*change)

    def put(self, key: bytes, value: bytes, db) -> bool:
        done = self._txn.put(key, value, db=db)
        if done:
            self.record(PUT, self._tables[db], key, value)
        return done

    def delete(self, key: bytes, db) -> bool:
        done = self._txn.delete(key, db=db)
        if done:
            self.record(DELETE, self._tables[db], key, b"")
        return done

    def drop(self, db, delete: bool = False) -> None:
        if delete:
            raise NotImplementedError("a store table is emptied, never deleted")
        self._txn.drop(db, delete=False)
        self.record(CLEAR, self._tables[db], b"", b"")

    def cursor(self, db) -> LoggedCursor:
        return LoggedCursor(self._txn.cursor(db=db), self._tables[db], self)


class LoggedCursor:
    """A cursor whose deletes are recorded; reads pass through."""

    __slots__ = ("_cur", "_table", "_log")

    def __init__(self, cur: lmdb.Cursor, table: int, log: LoggedTxn):
        self._cur = cur
        self._table = table
        self._log = log

    def __getattr__(self, name: str):
        if name in ("put", "putmulti", "replace", "pop"):
            raise NotImplementedError(f"cursor.{name} is not recorded for the write-ahead log")
        return getattr(self._cur, name)

    def __iter__(self):
        return iter(self._cur)

    def delete(self) -> bool:
        key = self._cur.key()
        done = self._cur.delete()
        if done:
            self._log.record(DELETE, self._table, key, b"")
        return done


def replay(txn: lmdb.Transaction, handles: list, ops) -> None:
    """Apply recorded ``ops`` in ``txn`` (``handles``: database handle of each table index)."""
    for op, table, key, value in ops:
        db = handles[table]
        if op == PUT:
            txn.put(key, value, db=db)
        elif op == DELETE:
            txn.delete(key, db=db)
        elif op == CLEAR:
            txn.drop(db, delete=False)
        else:
            raise ValueError(f"unknown op {op} in the write-ahead log")
