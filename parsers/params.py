"""Parameters of one HeroScript action, with the typed getters modules use.

Every value is a string until a getter converts it (as in the reference
``paramsparser``). A getter that cannot convert raises ``ParseError`` naming
the file and line of the parameter and what was expected. Each getter takes
an optional ``default``; ``get_X_default(key, default)`` spellings exist too,
for code ported from the reference.

``Params`` also records where each value sits in the source text, so that
``Playbook.dumps()`` can rewrite only the values that were edited.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterator
from typing import Any

from herofossil.errors import ParseError

_MISSING: Any = object()

KEY_CHARS = "A-Z a-z 0-9 _ , . /"
_BAD_KEY_CHAR = re.compile(r"[^A-Za-z0-9_,./]")

_TRUE = frozenset(("1", "true", "y", "yes"))
_FALSE = frozenset(("0", "false", "n", "no"))

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)
_SIZE_EXP = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}

_DURATION_PART = re.compile(r"\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_DURATION_UNIT = {
    "": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400, "w": 604800, "week": 604800,
    "M": 30 * 86400, "y": 365 * 86400, "Y": 365 * 86400,
}

_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_CLOCK12 = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*([ap])m", re.IGNORECASE)
_CLOCK24 = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")

_LIST_ITEM = re.compile(r"""\s*("[^"]*"|'[^']*'|[^,]*?)\s*(,|$)""")


def check_key(key: str, file: str | None = None, line: int | None = None) -> str:
    """Return ``key`` normalised (lower-cased, leading ``/`` removed); raise on a bad character."""
    m = _BAD_KEY_CHAR.search(key)
    if m or not key:
        what = f"invalid character {m.group()!r} in key {key!r}" if m else "empty key"
        raise ParseError(f"{what}: keys may contain only {KEY_CHARS}", file, line)
    return key.lower().lstrip("/")


class Param:
    """One named parameter (``key`` set) or positional argument (``key`` None)."""

    __slots__ = ("key", "value", "comment", "line", "_orig", "_ts", "_vs", "_ve", "_quote",
                 "_shadows", "_cspan", "_pstart")

    def __init__(self, key: str | None, value: str, comment: str = "", line: int | None = None,
                 _orig: str | None = None, _ts: int = 0, _vs: int = 0, _ve: int = 0,
                 _quote: str = ""):
        self.key = key
        self.value = value
        self.comment = comment
        self.line = line
        self._orig = _orig  # value as read; None for a parameter added later
        self._ts = _ts  # source offset where the token (key, or the argument) starts
        self._vs = _vs  # source span of the value, quotes included: [_vs, _ve)
        self._ve = _ve
        self._quote = _quote  # "", "'", '"', "'''", '"""', "block" or "list"
        # set only when needed: _shadows (earlier occurrences of a repeated key) and
        # _cspan (source span of the `//` comment that follows on the token's line),
        # _pstart (start of the `//` lines just above it, which are its comment)

    def __repr__(self) -> str:
        if self.key is None:
            return f"Param(arg={self.value!r})"
        return f"Param({self.key!r}={self.value!r})"


class Params:
    """Named parameters (file order, last value of a repeated key wins) and positional args."""

    def __init__(self, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        self._named: dict[str, Param] = {}
        self._args: list[Param] = []
        self._deleted: list[Param] = []
        self._added: list[Param] = []
        self.end_comment = ""  # `//` lines after the last parameter

    # -- reading -----------------------------------------------------------------------------
    def _add_named(self, p: Param) -> None:
        old = self._named.get(p.key)  # type: ignore[arg-type]
        if old is not None:
            p._shadows = [*getattr(old, "_shadows", ()), old]
            if not p.comment:
                p.comment = old.comment
        self._named[p.key] = p  # type: ignore[index]

    def _add_arg(self, p: Param) -> None:
        for a in self._args:
            if a.value == p.value:
                a._shadows = [*getattr(a, "_shadows", ()), p]
                return
        self._args.append(p)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as a string, or ``default`` when absent."""
        p = self._named.get(key.lower())
        return default if p is None else p.value

    def get_default(self, key: str, default: Any) -> Any:
        """Same as ``get``; the reference's spelling."""
        return self.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self._raw(key)

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._named

    def __len__(self) -> int:
        return len(self._named)

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.args == other.args

    def __repr__(self) -> str:
        return f"Params({self.to_dict()!r}, args={self.args!r})"

    def keys(self) -> list[str]:
        """Keys in file order."""
        return list(self._named)

    def items(self) -> list[tuple[str, str]]:
        """(key, value) pairs in file order."""
        return [(k, p.value) for k, p in self._named.items()]

    def to_dict(self) -> dict[str, str]:
        """The named parameters as a plain dict."""
        return {k: p.value for k, p in self._named.items()}

    @property
    def args(self) -> list[str]:
        """Positional arguments in file order (de-duplicated)."""
        return [a.value for a in self._args]

    def param(self, key: str) -> Param | None:
        """The ``Param`` record of ``key`` (value, comment, line), or None."""
        return self._named.get(key.lower())

    def arg_params(self) -> list[Param]:
        """``Param`` records of the positional arguments."""
        return list(self._args)

    def comment(self, key: str) -> str:
        """The comment attached to ``key`` ('' if none)."""
        p = self._named.get(key.lower())
        return "" if p is None else p.comment

    def exists(self, key: str) -> bool:
        """True when named parameter ``key`` is present."""
        return key.lower() in self._named

    def exists_arg(self, value: str) -> bool:
        """True when ``value`` is one of the positional arguments."""
        return any(a.value == value for a in self._args)

    # -- editing (kept by Playbook.dumps) ----------------------------------------------------------
    def set(self, key: str, value: Any, comment: str | None = None) -> None:
        """Set ``key`` to ``value`` (converted to str, trimmed); adds the key when absent."""
        key = check_key(key, self.file, self.line)
        value = _to_str(value)
        p = self._named.get(key)
        if p is None:
            p = Param(key, value, comment or "", None)
            self._named[key] = p
            self._added.append(p)
        else:
            p.value = value
            if comment is not None:
                p.comment = comment

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""
        p = self._named.pop(key.lower(), None)
        if p is not None:
            self._forget(p)

    def add_arg(self, value: str) -> None:
        """Append a positional argument (no-op when already present)."""
        value = value.strip()
        check_key(value, self.file, self.line)
        if not self.exists_arg(value):
            p = Param(None, value)
            self._args.append(p)
            self._added.append(p)

    def delete_arg(self, value: str) -> None:
        """Remove positional argument ``value`` (no error when absent)."""
        for i, a in enumerate(self._args):
            if a.value == value:
                del self._args[i]
                self._forget(a)
                return

    def _forget(self, p: Param) -> None:
        if p._orig is None:
            self._added.remove(p)
        else:
            self._deleted.append(p)

    # -- typed getters -----------------------------------------------------------------------
    def _raw(self, key: str) -> str:
        p = self._named.get(key.lower())
        if p is None:
            raise ParseError(f"missing parameter {key!r}", self.file, self.line)
        return p.value

    def _fail(self, key: str, expected: str, value: str) -> ParseError:
        p = self._named.get(key.lower())
        line = p.line if p is not None and p.line is not None else self.line
        return ParseError(f"parameter {key!r}: expected {expected}, got {value!r}", self.file, line)

    def _typed(self, key: str, default: Any, conv: Callable[[str], Any], expected: str) -> Any:
        if default is not _MISSING and key.lower() not in self._named:
            return default
        v = self._raw(key)
        try:
            return conv(v)
        except (ValueError, OverflowError):
            raise self._fail(key, expected, v) from None

    def get_str(self, key: str, default: Any = _MISSING) -> str:
        """The value of ``key``; ParseError when absent and no default."""
        return self._typed(key, default, str, "a string")

    def get_int(self, key: str, default: Any = _MISSING) -> int:
        """The value as an integer."""
        return self._typed(key, default, _int, "an integer")

    def get_u32(self, key: str, default: Any = _MISSING) -> int:
        """The value as an integer in 0 .. 2**32-1."""
        return self._typed(key, default, lambda v: _uint(v, 32), "an integer in 0..4294967295")

    def get_u64(self, key: str, default: Any = _MISSING) -> int:
        """The value as an integer in 0 .. 2**64-1."""
        return self._typed(key, default, lambda v: _uint(v, 64), "an integer in 0..2**64-1")

    def get_float(self, key: str, default: Any = _MISSING) -> float:
        """The value as a float; a ``%`` in it divides by 100 (``'19%'`` → 0.19)."""
        return self._typed(key, default, _float, "a number")

    def get_percentage(self, key: str, default: Any = _MISSING) -> float:
        """A percentage 0..100 (with or without ``%``) as 0..1: ``'19'`` → 0.19."""
        return self._typed(key, default, _percentage, "a percentage between 0 and 100")

    def get_default_true(self, key: str) -> bool:
        """True when absent, empty or one of ``1 true y yes`` (any case); else False."""
        v = self.get(key, "").strip().lower()
        return v == "" or v in _TRUE

    def get_default_false(self, key: str) -> bool:
        """False when absent, empty or one of ``0 false n no`` (any case); else True."""
        v = self.get(key, "").strip().lower()
        return not (v == "" or v in _FALSE)

    def get_bool(self, key: str, default: Any = _MISSING) -> bool:
        """Strict boolean: ``1 true y yes`` or ``0 false n no`` (any case)."""
        return self._typed(key, default, _bool, "a boolean (true/false, yes/no, 1/0)")

    def get_list(self, key: str, default: Any = _MISSING) -> list[str]:
        """Comma-separated items (``[ ]`` around the list and quotes around items removed)."""
        return self._typed(key, default, split_list, "a list")

    def get_list_int(self, key: str, default: Any = _MISSING) -> list[int]:
        """A list of integers."""
        return self._typed(key, default, lambda v: [_int(x) for x in split_list(v)],
                           "a list of integers")

    def get_list_u32(self, key: str, default: Any = _MISSING) -> list[int]:
        """A list of integers in 0 .. 2**32-1."""
        return self._typed(key, default, lambda v: [_uint(x, 32) for x in split_list(v)],
                           "a list of integers in 0..4294967295")

    def get_list_u64(self, key: str, default: Any = _MISSING) -> list[int]:
        """A list of integers in 0 .. 2**64-1."""
        return self._typed(key, default, lambda v: [_uint(x, 64) for x in split_list(v)],
                           "a list of integers in 0..2**64-1")

    def get_list_float(self, key: str, default: Any = _MISSING) -> list[float]:
        """A list of floats (``%`` divides by 100)."""
        return self._typed(key, default, lambda v: [_float(x) for x in split_list(v)],
                           "a list of numbers")

    def get_list_namefix(self, key: str, default: Any = _MISSING) -> list[str]:
        """A list of names, each normalised like action names."""
        return self._typed(key, default, lambda v: [name_fix(x) for x in split_list(v)],
                           "a list of names")

    def get_storagesize(self, key: str, default: Any = _MISSING) -> int:
        """A size in bytes: ``'10 KB'``, ``'1.5GB'`` (1024-based), plain number = bytes."""
        return self._typed(key, default, parse_storagesize, "a storage size like '10 MB'")

    def get_duration(self, key: str, default: Any = _MISSING) -> int:
        """Seconds from ``'+1w +2d -4h'`` (units s m h d w M y; no unit = seconds)."""
        return self._typed(key, default, parse_duration, "a duration like '+1d -4h'")

    def get_time(self, key: str, default: Any = _MISSING, *,
                 now: _dt.datetime | None = None) -> _dt.datetime:
        """A local datetime from ``YYYY-MM-DD [HH:mm[:ss]]``, ``10PM``, ``22:15``, ``+1h``."""
        return self._typed(key, default, lambda v: parse_time(v, now),
                           "a time like 'YYYY-MM-DD HH:mm:ss', '10PM', '22:15' or '+1h'")

    def get_arg(self, n: int) -> str:
        """Positional argument ``n`` (0-based); ParseError when there are fewer."""
        if 0 <= n < len(self._args):
            return self._args[n].value
        raise ParseError(f"expected at least {n + 1} positional argument(s), found "
                         f"{len(self._args)}", self.file, self.line)

    def get_arg_default(self, n: int, default: Any) -> Any:
        """Positional argument ``n`` or ``default``."""
        return self._args[n].value if 0 <= n < len(self._args) else default


def _default_variant(name: str) -> Callable[..., Any]:
    getter = getattr(Params, name)

    def variant(self: Params, key: str, default: Any) -> Any:
        return getter(self, key, default)

    variant.__name__ = name + "_default"
    variant.__doc__ = f"``{name}`` returning ``default`` when the key is absent."
    return variant


for _name in ("get_int", "get_u32", "get_u64", "get_float", "get_percentage", "get_bool",
              "get_list", "get_list_int", "get_list_u32", "get_list_u64", "get_list_float",
              "get_list_namefix", "get_storagesize", "get_duration", "get_time"):
    setattr(Params, _name + "_default", _default_variant(_name))


# -- conversions --------
def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(f'"{x}"' if " " in str(x) else str(x) for x in value)
    return str(value).strip()


def _int(v: str) -> int:
    return int(v.strip().replace("_", "") if "_" in v else v.strip(), 10)


def _uint(v: str, bits: int) -> int:
    n = _int(v)
    if not 0 <= n < (1 << bits):
        raise ValueError(v)
    return n


def _float(v: str) -> float:
    v = v.strip()
    if "%" in v:
        return float(v.replace("%", "")) / 100
    return float(v)


def _percentage(v: str) -> float:
    x = float(v.strip().strip("%"))
    if not 0 <= x <= 100:
        raise ValueError(v)
    return x / 100


def _bool(v: str) -> bool:
    v = v.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(v)


def split_list(value: str) -> list[str]:
    """Split a list value: commas separate, ``[ ]`` around and quotes around items go."""
    s = value.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    out: list[str] = []
    pos = 0
    while pos <= len(s):
        m = _LIST_ITEM.match(s, pos)
        if m is None:  # pragma: no cover - the pattern always matches
            break
        item = m.group(1)
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1].strip()
        if item:
            out.append(item)
        if not m.group(2):
            break
        pos = m.end()
    return out


def name_fix(name: str) -> str:
    """Normalise a name: lower-case snake_case, ``- ; : . space`` → ``_``, ``#...`` cut."""
    name = name.split("#", 1)[0].lower()
    out = []
    for ch in name:
        if ch in "-;:. \t":
            ch = "_"
        elif not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "_"):
            continue
        if ch == "_" and out and out[-1] == "_":
            continue
        out.append(ch)
    return "".join(out)


def parse_storagesize(v: str) -> int:
    """Bytes from ``'10 KB'``, ``'1.5GB'``, ``'512'`` (1024-based)."""
    m = _SIZE.fullmatch(v.strip())
    if m is None:
        raise ValueError(v)
    return int(float(m.group(1)) * 1024 ** _SIZE_EXP[m.group(2).lower()])


def parse_duration(v: str) -> int:
    """Signed seconds from ``'+1w +2d -4h'``; a bare number is seconds."""
    s = v.strip()
    if not s:
        raise ValueError(v)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.end() == pos:
            raise ValueError(v)
        unit = m.group(3)
        mult = _DURATION_UNIT.get(unit) or _DURATION_UNIT.get(unit.lower())
        if mult is None:
            raise ValueError(v)
        x = float(m.group(2)) * mult
        total += -x if m.group(1) == "-" else x
        pos = m.end()
    return round(total)


def parse_time(v: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """A local datetime from a timestamp, a clock time (today) or a relative ``+1h``."""
    s = v.strip()
    now = now or _dt.datetime.now()
    if s[:1] in ("+", "-"):
        return now + _dt.timedelta(seconds=parse_duration(s))
    m = _DATE.fullmatch(s)
    if m:
        y, mo, d, hh, mm, ss = (int(x) if x else 0 for x in m.groups())
        return _dt.datetime(y, mo, d, hh, mm, ss)
    m = _CLOCK12.fullmatch(s)
    if m:
        hh, mm = int(m.group(1)), int(m.group(2) or 0)
        if not 1 <= hh <= 12:
            raise ValueError(v)
        hh = hh % 12 + (12 if m.group(3).lower() == "p" else 0)
        return now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    m = _CLOCK24.fullmatch(s)
    if m:
        return now.replace(hour=int(m.group(1)), minute=int(m.group(2)),
                           second=int(m.group(3) or 0), microsecond=0)
    if s.isdigit():
        return _dt.datetime.fromtimestamp(int(s))
    raise ValueError(v)
