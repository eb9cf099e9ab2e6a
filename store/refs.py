"""Naming versions: check-in id or unique prefix, branch, tag, date, 'tip'."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from herofossil.errors import NotFoundError, UsageError
from herofossil.store.checkins import DEFAULT_BRANCH, CheckinIndex
from herofossil.store.keys import id_key, join_key

MAX_KEY = 511  # LMDB's key size limit

ALIAS_NS = "git-alias"  # meta namespace: another name of a branch -> the branch
_HEX = re.compile(r"[0-9a-fA-F]{4,64}\Z")
DATE_SHAPE = re.compile(r"(?:date:)?(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d(?:\.\d+)?)?))?Z?\Z")


def parse_date(text: str) -> float | None:
    """Seconds since the epoch for 'YYYY-MM-DD[ HH:MM[:SS[.fff]]]' (UTC), else None.

    Text of that shape that names no real moment (month 13, February 30, hour
    25) raises ``UsageError``.
    """
    m = DATE_SHAPE.match(text.strip())
    if not m:
        return None
    day, clock = m.groups()
    fmt = "%Y-%m-%d"
    value = day
    if clock:
        value += " " + clock
        fmt += " %H:%M" + (":%S" if clock.count(":") == 2 else "")
        if "." in clock:
            fmt += ".%f"
    else:
        value += " 23:59:59.999"
        fmt += " %H:%M:%S.%f"
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise UsageError(f"{text!r} is not a valid date: write YYYY-MM-DD[ HH:MM[:SS]] (UTC), "
                         "e.g. 2026-02-28 or '2026-02-28 13:05'") from None


def alias(ci: CheckinIndex, name: str) -> str | None:
    """The branch ``name`` is another name for (Git's default branch -> trunk), if any."""
    key = join_key(ALIAS_NS, name.encode("utf-8", "surrogateescape"))
    if len(key) > MAX_KEY:
        return None
    raw = ci.txn.get(key, db=ci.dbs["meta"])
    return raw.decode() if raw is not None else None


def _tip(ci: CheckinIndex, branch: str) -> bytes | None:
    if len(branch.encode("utf-8", "surrogateescape")) > MAX_KEY:
        return None
    cid = ci.tip(branch)
    if cid is None:
        target = alias(ci, branch)
        if target is not None:
            cid = ci.tip(target)
    return cid


def resolve(ci: CheckinIndex, ref: str | None, default_branch: str = DEFAULT_BRANCH) -> bytes:
    """The check-in id a version name stands for.

    Tried in order: none/'' (the default branch's tip), 'tip' (the newest
    check-in), a branch name or alias (its tip), a tag (the newest check-in carrying
    it), a hex prefix of at least 4 digits, 'BRANCH@DATE' or a date (the last
    check-in of the branch at or before it).
    """
    if ref is None or ref == "":
        ref = default_branch
    if not isinstance(ref, str):
        raise UsageError(f"a version is named by a string, not {type(ref).__name__}")
    if len(ref.encode("utf-8", "surrogateescape")) > MAX_KEY - 64:
        raise NotFoundError(f"no version {ref[:40]!r}...: the name is too long for any version",
                            ref=ref)
    if ref == "tip":
        cid = ci.newest()
        if cid is None:
            raise NotFoundError("the store has no check-ins")
        return cid
    cid = _tip(ci, ref)
    if cid is not None:
        return cid
    if ref == default_branch and not ci.count():
        raise NotFoundError("the store is empty: it has no check-in yet")
    tagged = ci.tagged(ref)
    if tagged:
        return max(tagged, key=lambda c: (ci.require(c).time, ci.require(c).seq))
    if _HEX.match(ref):
        found = ci.by_prefix(ref.lower())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"version {ref!r} is ambiguous: give more digits")
    branch, at, when = default_branch, ref, None
    if "@" in ref:
        branch, _, at = ref.partition("@")
    when = parse_date(at)
    if when is not None:
        tip = _tip(ci, branch)
        if tip is None:
            raise NotFoundError(f"no branch {branch!r}", ref=ref)
        return _at_date(ci, tip, when, ref)
    raise NotFoundError(
        f"no version {ref!r}: name a check-in id (4+ hex digits), a branch, a tag or a date",
        ref=ref,
    )


def _at_date(ci: CheckinIndex, tip: bytes, when: float, ref: str) -> bytes:
    cur = tip
    while True:
        rec = ci.require(cur)
        if rec.time <= when:
            return cur
        if not rec.parents:
            raise NotFoundError(f"no check-in at or before {ref!r}", ref=ref)
        cur = id_key(rec.parents[0])
        if ci.get(cur) is None:
            raise NotFoundError(f"no check-in at or before {ref!r} (history is incomplete)",
                                ref=ref)
