"""Damage a store behind its back, as a bad disk or a bug would, and run a command on it."""

from __future__ import annotations

import subprocess
import sys

import lmdb


def put_raw(store, table: str, key: bytes, value: bytes | None) -> None:
    """Write ``value`` under ``key`` in ``table`` of the store at ``store`` with LMDB
    alone (``None``: delete the entry)."""
    env = lmdb.open(str(store), max_dbs=32)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(table.encode(), txn=txn)
            if value is None:
                txn.delete(key, db=db)
            else:
                txn.put(key, value, db=db)
    finally:
        env.close()


def refused(store, *command: str) -> str:
    """Run ``herofossil -R STORE COMMAND``, which must fail with a message, not a
    traceback; what it said (stdout and stderr)."""
    proc = subprocess.run([sys.executable, "-m", "herofossil", "-R", str(store), *command],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr
