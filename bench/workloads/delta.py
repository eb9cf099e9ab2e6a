"""Workload 5: Fossil delta create/apply (bench.delta_vs_fossil) and zstd with a dictionary."""

from __future__ import annotations

import time

from bench.util import Row, best_of, missing, progress

NAME = "delta"


def _mb(ctx) -> int:
    return {"S": 1, "M": 5, "L": 20}[ctx.size]


def fossil_rows(size_mb: int) -> list[Row]:
    """Rows from ``bench.delta_vs_fossil.run``, or one stating why it could not run."""
    w = f"5 delta ({size_mb} MB text, ~300 lines edited)"
    try:
        from bench import delta_vs_fossil
        rows = delta_vs_fossil.run(size_mb=size_mb)
    except Exception as e:  # the module belongs to another issue: report, don't fail
        return [missing(w, "create/apply", f"bench.delta_vs_fossil failed: {e!r}"[:300])]
    out = []
    for r in rows:
        metric = f"{r['op']} ({r['codec']})"
        if "fossil" not in r:
            out.append(Row(w, metric, r["ours"], "s", note="fossil not installed"))
            continue
        if r["fossil"] - r["fossil_noop"] > 0.05 * r["fossil"]:
            out.append(Row(w, metric, r["ours"], "s", "fossil test-delta-* net of start-up",
                           r["fossil_net"], budget=("<=", 1.0),
                           note="budget: at least Fossil's C speed; net figure flatters fossil"))
        else:
            out.append(Row(w, metric, r["ours"], "s", "fossil test-delta-* net of start-up",
                           None, note="fossil's own work is within its start-up noise at this "
                                      "size: no net figure"))
        out.append(Row(w, metric, r["ours"], "s", "fossil test-delta-* whole process",
                       r["fossil"], note="includes fossil start-up and file reads"))
    return out


def zstd_rows(size_mb: int) -> list[Row]:
    """Fossil delta (+ zstd, as stored) against zstd with the old version as dictionary."""
    import zstandard as zstd

    from bench.delta_vs_fossil import make_pair
    from herofossil import delta

    w = f"5 delta vs zstd-dict ({size_mb} MB text)"
    source, target = make_pair(size_mb)
    d = delta.create(source, target)
    stored = zstd.ZstdCompressor(level=3).compress(d)
    zdict = zstd.ZstdCompressionDict(source, dict_type=zstd.DICT_TYPE_RAWCONTENT)
    # like ``zstd --patch-from``: window, hash and chain tables cover the old version
    # (with level 3's defaults the 5 MB dictionary is barely indexed: 70x bigger output)
    logs = min(27, max(17, len(source).bit_length()))
    params = zstd.ZstdCompressionParameters.from_level(
        3, window_log=max(logs, 20), hash_log=logs, chain_log=logs, source_size=len(target))
    comp = zstd.ZstdCompressor(dict_data=zdict, compression_params=params)
    blob = comp.compress(target)
    dec = zstd.ZstdDecompressor(dict_data=zdict, max_window_size=1 << 27)
    assert dec.decompress(blob) == target
    t0 = time.perf_counter()
    t_create = best_of(lambda: zstd.ZstdCompressor(level=3).compress(delta.create(source,
                                                                                  target)))
    t_zc = best_of(lambda: zstd.ZstdCompressor(
        dict_data=zstd.ZstdCompressionDict(source, dict_type=zstd.DICT_TYPE_RAWCONTENT),
        compression_params=params).compress(target))
    t_apply = best_of(lambda: delta.apply(source, zstd.ZstdDecompressor().decompress(stored)))
    t_zd = best_of(lambda: zstd.ZstdDecompressor(
        dict_data=zstd.ZstdCompressionDict(source, dict_type=zstd.DICT_TYPE_RAWCONTENT),
        max_window_size=1 << 27).decompress(blob))
    progress(f"zstd-dict comparison took {time.perf_counter() - t0:.1f} s")
    note = (f"zstd level 3, window/hash/chain log {logs} (as --patch-from); dictionary "
            "loaded from the old version each time, as a store would")
    return [
        Row(w, "encode: delta+zstd vs zstd(dict=old)", t_create, "s", "zstd with dictionary",
            t_zc, note=note),
        Row(w, "decode: unzstd+apply vs unzstd(dict=old)", t_apply, "s",
            "zstd with dictionary", t_zd, note=note),
        Row(w, "stored bytes: zstd(delta) vs zstd(dict=old)", len(stored), "B",
            "zstd with dictionary", len(blob), note=f"raw delta {len(d):,} bytes"),
    ]


def run(ctx) -> list[Row]:
    """Both comparisons on the same pair."""
    size_mb = _mb(ctx)
    progress(f"delta create/apply on {size_mb} MB")
    return fossil_rows(size_mb) + zstd_rows(size_mb)
