"""Workload 7: WebDAV and HeroScript rows from their own benchmark modules, when present."""

from __future__ import annotations

import importlib

from bench.util import Row, missing, progress

NAME = "extra"


def _module(name: str):
    """``bench.NAME``, or the reason it cannot be used."""
    try:
        return importlib.import_module(f"bench.{name}"), ""
    except ModuleNotFoundError as e:
        if e.name == f"bench.{name}":
            return None, f"bench/{name}.py not present yet"
        return None, f"bench.{name} cannot be imported: {e!r}"
    except Exception as e:  # another issue's module: report, never fail the run
        return None, f"bench.{name} cannot be imported: {e!r}"


def heroscript_rows(ctx) -> list[Row]:
    """HeroScript parse time against tomllib on the same records."""
    w = "7 HeroScript parse vs tomllib"
    mod, why = _module("heroscript_vs_tomllib")
    if mod is None:
        return [missing(w, "parse time", why)]
    n = {"S": 200, "M": 2000, "L": 5000}[ctx.size]
    try:
        rows = mod.run(n_actions=n)
    except Exception as e:
        return [missing(w, "parse time", f"heroscript_vs_tomllib.run failed: {e!r}"[:300])]
    return [Row(w, f"parse {r['actions']} actions, {r['layout']}", r["heroscript_ms"] / 1e3, "s",
                "tomllib.loads, same records", r["tomllib_ms"] / 1e3) for r in rows]


def webdav_rows(ctx) -> list[Row]:
    """WebDAV PUT+GET and PROPFIND: ``herofossil serve`` against wsgidav on the filesystem."""
    w = "7 WebDAV vs filesystem"
    mod, why = _module("webdav_vs_fs")
    if mod is None:
        return [missing(w, "PUT+GET, PROPFIND", why)]
    n_files, entries = {"S": (50, 500), "M": (200, 2000), "L": (300, 5000)}[ctx.size]
    try:
        rows = mod.run(n_files=n_files, folder_entries=entries)
    except Exception as e:
        return [missing(w, "PUT+GET, PROPFIND", f"webdav_vs_fs.run failed: {e!r}"[:300])]
    out = []
    goal = "goal (issue 12): with 4 connections, 0.8 of the plain filesystem's rate"
    durable_goal = ("goal (issue 12): PUT+GET >= 1.0x of the filesystem that syncs each PUT, "
                    "the fair baseline for a durable write")
    for r in rows:
        try:
            label, hf, fs = r["measure"], float(r["herofossil"]), float(r["filesystem"])
        except (KeyError, TypeError, ValueError):
            out.append(missing(w, "?", f"row not understood: {r}"[:300]))
            continue
        other = r.get("other", mod.FS)
        if other != mod.FS:  # the synced filesystem: durability on both sides
            both = label.startswith("PUT+GET")
            out.append(Row(w, label.removesuffix(" (files/s)"), hf, "files/s", other, fs,
                           better="higher", budget=(">=", 1.0) if both else None,
                           note=durable_goal if both else "each PUT synced on both sides"))
        elif label.endswith("(files/s)"):
            four = "4 connections" in label
            out.append(Row(w, label.removesuffix(" (files/s)"), hf, "files/s", other, fs,
                           better="higher", budget=(">=", 0.8) if four else None,
                           note=goal if four else "a reference: the plain filesystem does "
                           "not sync, every herofossil PUT is a durable check-in"))
        else:
            out.append(Row(w, label.removesuffix(" (s)"), hf, "s", other, fs,
                           budget=("<=", 1.25), note=goal + " (time: ratio <= 1.25)"))
    return out


def run(ctx) -> list[Row]:
    """Both, each stating why when its module is absent or fails."""
    progress("extra: heroscript vs tomllib, webdav vs fs")
    return heroscript_rows(ctx) + webdav_rows(ctx)
