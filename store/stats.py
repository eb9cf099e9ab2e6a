"""Counts and sizes of a store: what ``herofossil stats`` prints."""

from __future__ import annotations

import os

from herofossil.store import blobs as blobfmt
from herofossil.store.blobs import BlobReader
from herofossil.store.checkins import CheckinIndex
from herofossil.store.schema import ALL_TABLES


def table_sizes(env) -> dict[str, dict[str, int]]:
    """Entries and bytes of pages of every table, of LMDB's list of tables (``(catalog)``),
    of the rest of the data file (``(free)``: LMDB's free list and meta pages, most of
    which ``compact`` gives back)."""
    out: dict[str, dict[str, int]] = {}
    used = 0
    with env.read() as txn:
        main = env.env.stat()
        psize = main["psize"]
        for name in ALL_TABLES:
            if name not in env.db:  # a table an earlier release did not make (read-only)
                continue
            st = txn.stat(env.db[name])
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            used += pages
            out[name] = {"entries": st["entries"], "bytes": pages * psize}
        catalog = main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
        used += catalog
        out["(catalog)"] = {"entries": main["entries"], "bytes": catalog * psize}
    total = os.path.getsize(os.path.join(env.path, "data.mdb")) // psize
    out["(free)"] = {"entries": 0, "bytes": max(total - used, 0) * psize}
    return out


def stats(env) -> dict:
    """Counts and sizes: artifacts, check-ins, stored vs raw bytes, disk use."""
    db = env.db
    out = {}
    with env.read() as txn:
        stored = raw = whole = deltas = packed = segmented = 0
        reader = BlobReader(txn, db)
        for aid, value in txn.cursor(db=db["blob"]):
            if value[:1] == blobfmt.SEGMENT:  # its bytes are counted with the segments
                segmented += 1
                value = reader.form(aid, value)
            else:
                stored += len(value)
            packed += blobfmt.stored_dictionary(value) != 0
            if blobfmt.is_whole(value) or blobfmt.is_chunked(value):
                whole += 1
                raw += blobfmt.stored_size(value) or 0
            else:
                deltas += 1
                raw += reader.size(aid)
        if "chunk" in db:  # parts are stored bytes too: their pages (reading every part
            st = txn.stat(db["chunk"])  # would map every large file into this process)
            stored += (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) * st["psize"]
        if "segment" in db:  # forms of packed history, compressed together
            stored += sum(len(v) for v in txn.cursor(db=db["segment"]).iternext(keys=False))
        dictionaries = 0
        if "zdict" in db:  # a packed store's dictionaries are stored bytes too
            for _, raw_dict in txn.cursor(db=db["zdict"]):
                dictionaries += 1
                stored += len(raw_dict)
        ci = CheckinIndex(txn, db)
        out.update(
            artifacts=whole + deltas,
            whole=whole,
            deltas=deltas,
            packed=packed,
            segmented=segmented,
            dictionaries=dictionaries,
            raw_bytes=raw,
            stored_bytes=stored,
            checkins=ci.count(),
            branches=len(ci.branches()),
            tags=len(ci.tags()),
            phantoms=txn.stat(db["phantom"])["entries"],
        )
    out["disk_bytes"] = env.disk_size()
    out["map_bytes"] = env.env.info()["map_size"]
    return out
