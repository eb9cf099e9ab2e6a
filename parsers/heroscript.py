"""HeroScript reader and writers, compatible with the reference ``herolib`` playbook parser.

``parse(text)`` reads every file the reference reads (see the project's ``shared/HEROSCRIPT.md``)
into a ``Playbook`` of ``Action``; ``Playbook.dumps()`` writes the original text back with
only edited values changed; ``format(playbook)`` writes the canonical form of the reference
export.

The tokenizer is line-oriented: it walks lines with ``str`` methods and compiled regexes
(no per-character state machine), which keeps it faster than ``tomllib`` on equivalent data
(``bench/heroscript_vs_tomllib.py``).

Decisions on the reference's quirks (each pinned by a test in ``tests/test_heroscript.py``):

* Quotes: ``'`` and ``"`` both quote, and a value ends at the quote that opened it, so
  ``cmd:'echo "hi"'`` reads ``echo "hi"`` (the reference turns every ``"`` into ``'`` and
  fails). A superset: everything the reference reads the same, reads the same here.
  ``\\'`` inside a quoted value is a quote (the backslash is consumed). ``format`` only
  writes ``'`` quotes; a value holding ``"`` has no spelling the reference reads back.
* ``//`` inside an unquoted value is NOT a comment: a comment starts only at a token
  boundary, so ``url:https://x.com`` reads ``https://x.com`` (the reference reads
  ``https:``). The writers quote every value containing ``//``, so the reference reads
  what they write. The reference's "no quote after the last ``//``" rule is not needed:
  the tokenizer knows where quotes are, so ``a:1 // it's`` is a comment here.
* Blank lines inside a multi-line value are kept (the reference drops them, which loses
  data); the writers keep them too.
* An open quote runs to its closing quote whatever the indentation of the lines between
  (the reference ends the action at an unindented line and then fails).
* List items holding a space are always re-quoted with ``"`` (the reference forgets the
  last item when another parameter follows the list on the same line).
* ``key:`` with nothing after it reads as the empty value.
* ``id`` must be an integer to count as the sequence number; otherwise it is dropped as
  the reference drops it, and the action keeps its position as ``id``.
* Action comments: ``//`` lines at column 0 above an action, blank lines between allowed
  (as in the reference); they are stripped of leading ``/`` and spaces like the reference.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator

from herofossil.errors import ParseError

from .heroscript_write import dumps as _dumps
from .heroscript_write import format, render_value
from .params import KEY_CHARS, Param, Params, name_fix

__all__ = ["Action", "Playbook", "parse", "format", "render_value", "KINDS"]

KINDS = {1: "dal", 2: "sal", 3: "macro", 4: "wal"}

_HEAD = re.compile(r"!+[^ \t]*")
_KEY = re.compile(r"(?:[A-Za-z0-9_,.]|/(?!/))*")
# key:value with a one-line value (an unquoted list only without spaces or quotes);
# groups: key, '..', "..", unquoted
_FAST = re.compile(r"""([A-Za-z0-9_,./]+):[ \t]*(?:'(?!'')([^'\\\n]*)'|"(?!"")([^"\\\n]*)"|"""
                   r"""(?!//)([^ \t,'"][^ \t]*+))(?![ \t]*,)""")
_SLOW_LIST = re.compile(r",['\"]|,$")  # list items the fast path must leave to _value
_UNQUOTED = re.compile(r"[^ \t,]*")


class Action:
    """One action: ``kind`` (dal, sal, macro, wal), ``actor``, ``name``, ``params``, ..."""

    __slots__ = ("kind", "actor", "name", "params", "comments", "line", "file", "id",
                 "_given_id", "_src", "_head_end", "_last_end", "_next_start", "_inline_ok",
                 "_indent")  # _indent: the action line's indentation

    def __init__(self, kind: str, actor: str, name: str, params: Params | None = None,
                 comments: str = "", line: int | None = None, file: str | None = None,
                 id: int = 0):  # noqa: A002 - the reference's field name
        self.kind = kind
        self.actor = actor
        self.name = name
        self.params = params if params is not None else Params(file, line)
        self.comments = comments
        self.line = line
        self.file = file
        self.id = id
        self._given_id: int | None = None
        self._src: object = None
        self._head_end = 0
        self._last_end = 0
        self._next_start = 0
        self._inline_ok = False
        self._indent = ""

    @property
    def fullname(self) -> str:
        """``actor.name``."""
        return f"{self.actor}.{self.name}"

    def __repr__(self) -> str:
        return f"Action({self.kind} {self.fullname} line={self.line} {self.params!r})"


class Playbook:
    """Actions in file order, plus the source text for ``dumps``."""

    def __init__(self, actions: list[Action] | None = None, file: str | None = None,
                 source: str = ""):
        self.actions = actions if actions is not None else []
        self.file = file
        self.source = source
        self._src = object()

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def __repr__(self) -> str:
        return f"Playbook({self.file!r}, {len(self.actions)} actions)"

    def find(self, filter: str = "*.*") -> list[Action]:  # noqa: A002
        """Actions matching ``'actor.name'`` with ``*``/``?`` globs; no dot means actor core."""
        f = filter.strip().lower()
        actor, _, name = f.rpartition(".")
        actor = actor or "core"
        return [a for a in self.actions
                if fnmatch.fnmatchcase(a.actor, actor) and fnmatch.fnmatchcase(a.name, name)]

    def get(self, filter: str) -> Action:  # noqa: A002
        """The one action matching ``filter``; ParseError when none or several match."""
        found = self.find(filter)
        if len(found) != 1:
            raise ParseError(f"expected exactly one action matching {filter!r}, found "
                             f"{len(found)}", self.file)
        return found[0]

    def exists(self, filter: str) -> bool:  # noqa: A002
        """True when at least one action matches."""
        return bool(self.find(filter))

    def exists_once(self, filter: str) -> bool:  # noqa: A002
        """True when exactly one action matches."""
        return len(self.find(filter)) == 1

    def dumps(self) -> str:
        """The source text with only edited values changed (comments and layout kept)."""
        return _dumps(self)

    def format(self) -> str:
        """The canonical form (see module ``format``)."""
        return format(self)


# -- reading --------
def parse(text: str, file: str | None = None, *,
          include: Callable[[str], str] | None = None,
          replace: dict[str, str] | None = None) -> Playbook:
    """Parse HeroScript ``text`` into a Playbook; ParseError naming file and line on bad input.

    ``include(path) -> text`` loads the target of ``!!play.include path:...`` (the include
    action is replaced by the included actions; cycles are an error). ``replace`` maps keys
    to values substituted for ``@key``, ``${key}`` and ``{key}`` before parsing.
    """
    pb = Playbook(None, file, "")
    text = _template(text, replace)
    pb.source = text
    pb.actions = _read(text, file, pb._src, include, replace, [file] if file else [])
    _number(pb.actions)
    return pb


def parse_masked(scan: str, source: str, file: str | None = None) -> Playbook:
    """Parse ``scan`` (``source`` with non-HeroScript lines blanked, same offsets).

    Used for Markdown: line numbers are the Markdown file's and ``dumps`` returns the whole
    Markdown text with only edited values changed.
    """
    pb = Playbook(None, file, source)
    pb.actions = _read(scan, file, pb._src, None, None, [])
    _number(pb.actions)
    return pb


def _template(text: str, replace: dict[str, str] | None) -> str:
    for key, value in (replace or {}).items():
        if key[:1] in ("@", "$", "{", "["):
            text = text.replace(key, value)
        else:
            text = text.replace("@" + key, value).replace("${" + key + "}", value)
            text = text.replace("{" + key + "}", value)
    return text


def _number(actions: list[Action]) -> None:
    for i, a in enumerate(actions, 1):
        a.id = a._given_id if a._given_id is not None else i


def _read(text: str, file: str | None, src: object, include: Callable[[str], str] | None,
          replace: dict[str, str] | None, stack: list[str]) -> list[Action]:
    actions = _scan(text, file, src)
    if include is None:
        return actions
    out: list[Action] = []
    for a in actions:
        if a.actor != "play" or a.name != "include":
            out.append(a)
            continue
        path = a.params.get("path") or a.params.get_arg_default(0, None)
        if not path:
            raise ParseError("!!play.include: expected path:...", file, a.line)
        if path in stack:
            raise ParseError("include cycle: " + " -> ".join([*stack, path]), file, a.line)
        sub = _template(include(path), replace)
        out.extend(_read(sub, path, object(), include, replace, [*stack, path]))
    return out


def _width(line: str, k: int) -> int:
    """Columns of ``line[:k]`` (leading whitespace) with a tab counting as 4."""
    return k + 3 * line.count("\t", 0, k)


def _scan(text: str, file: str | None, src: object) -> list[Action]:
    lines = text.split("\n")
    starts = []
    pos = 0
    for i, ln in enumerate(lines):
        starts.append(pos)
        pos += len(ln) + 1
        if ln[-1:] == "\r":
            lines[i] = ln[:-1]
    common = -1
    for ln in lines:
        s = ln.lstrip(" \t")
        if s:
            w = _width(ln, len(ln) - len(s))
            if common < 0 or w < common:
                common = w
                if w == 0:
                    break
    actions: list[Action] = []
    pending: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        ln = lines[i]
        s = ln.lstrip(" \t")
        if not s:
            i += 1
            continue
        if s[0] == "!" and s[:2] != "![":
            a, i = _action(lines, starts, i, common, file)
            a.comments = "\n".join(pending)
            a._src = src
            pending = []
            actions.append(a)
            continue
        if s[:2] == "//" and _width(ln, len(ln) - len(s)) == common:
            pending.append(s.lstrip("/ \t").rstrip())
        else:
            pending = []
        i += 1
    return actions


def _err(msg: str, file: str | None, li: int) -> ParseError:
    return ParseError(msg, file, li + 1)


def _action(lines: list[str], starts: list[int], i: int, common: int,
            file: str | None) -> tuple[Action, int]:
    """Read the action starting on line ``i``; return it and the index of the line after it."""
    line = lines[i]
    lead = len(line) - len(line.lstrip(" \t"))
    act, col = _action_head(line, lead, file, i)
    params = act.params
    named = params._named
    pending: list[str] = []
    pstart = 0  # offset of the first pending `//` line
    first: Param | None = None  # the parameter that started the current line
    n = len(lines)
    li = i
    base = starts[li]
    L = len(line)
    head_comment = False
    while True:
        while col < L and (line[col] == " " or line[col] == "\t"):
            col += 1
        if col >= L:
            j = li + 1
            while j < n and not lines[j].strip(" \t"):
                j += 1
            if j >= n:
                break
            nl = lines[j]
            s = nl.lstrip(" \t")
            k = len(nl) - len(s)
            if s[0] == "!" or _width(nl, k) - common < 2:
                break
            li, line, base, col, L, first = j, nl, starts[j], k, len(nl), None
            continue
        c = line[col]
        if c == "/" and line.startswith("//", col):
            ctext = line[col + 2:].lstrip("/ \t").rstrip()
            if first is not None:
                first.comment = f"{first.comment}\n{ctext}" if first.comment else ctext
                first._cspan = (base + col, base + L)
            else:
                if not pending:
                    pstart = base if li != i else -1
                pending.append(ctext)
            if li == i:
                head_comment = True
            col = L
            continue
        m2 = _FAST.match(line, col)
        if m2 is not None and "//" not in m2.group(1) and not (
                m2.lastindex == 4 and "," in m2.group(4) and _SLOW_LIST.search(m2.group(4))):
            # the common token: key:value on one line, no list, no escapes
            g = m2.lastindex
            value = m2.group(g)  # type: ignore[arg-type]
            vs = m2.start(g) - (g != 4)  # type: ignore[arg-type]
            ve = m2.end()
            key = m2.group(1).lower()
            if key[0] == "/":
                key = key.lstrip("/")
                if not key:
                    raise _err("expected a key before ':'", file, li)
            if g == 4:
                p = Param(key, value, "", li + 1, value, base + col, base + vs, base + ve, "")
            else:
                value = value.strip()
                p = Param(key, value, "", li + 1, value, base + col, base + vs, base + ve,
                          "'" if g == 2 else '"')
            col = ve
            if key in named:
                params._add_named(p)
            else:
                named[key] = p
        else:
            oli = li
            p, li, col = _token(lines, starts, li, col, params, file)
            if li != oli:
                line, base, L = lines[li], starts[li], len(lines[li])
        if pending:
            p.comment = "\n".join(pending)
            p._pstart = pstart
            pending = []
        if first is None or p.line != li + 1:
            first = p
    params.end_comment = "\n".join(pending)
    _action_end(act, lines, starts, i, li, lead, head_comment)
    return act, li + 1


def _action_head(line: str, lead: int, file: str | None, i: int) -> tuple[Action, int]:
    """The action named by ``!!actor.name`` at ``line[lead:]`` (line ``i``), still without
    parameters, and the column after its name."""
    m = _HEAD.match(line, lead)
    assert m is not None
    head = m.group()
    full = head.lstrip("!")
    bangs = len(head) - len(full)
    if bangs > 4:
        raise _err(f"an action starts with 1 to 4 '!', found {bangs}", file, i)
    parts = full.split(".")
    if len(parts) > 2:
        raise _err(f"action name {full!r} has {len(parts)} parts: expected 'actor.name' or "
                   "'name'", file, i)
    actor, name = ("core", parts[0]) if len(parts) == 1 else parts
    actor, name = name_fix(actor), name_fix(name)
    if not actor or not name:
        raise _err(f"expected an action name after {'!' * bangs!r}, found {full!r}", file, i)
    params = Params(file, i + 1)
    return Action(KINDS[bangs], actor, name, params, "", i + 1, file), m.end()


def _action_end(act: Action, lines: list[str], starts: list[int], i: int, li: int, lead: int,
                head_comment: bool) -> None:
    """Record what editing ``act`` in place needs: its given id and the spans of its lines
    ``i`` to ``li``."""
    idp = act.params._named.pop("id", None)
    if idp is not None and idp.value.isdigit():
        act._given_id = int(idp.value)
    last = lines[li]
    act._head_end = starts[i] + len(lines[i])
    act._last_end = starts[li] + len(last)
    act._next_start = starts[li + 1] if li + 1 < len(lines) else starts[li] + len(last) + 1
    act._inline_ok = li == i and not head_comment
    act._indent = lines[i][:lead]


def _token(lines: list[str], starts: list[int], li: int, col: int, params: Params,
           file: str | None) -> tuple[Param, int, int]:
    """Read one parameter or positional argument at ``lines[li][col:]`` (the general case)."""
    line = lines[li]
    L = len(line)
    base = starts[li]
    km = _KEY.match(line, col)
    kend = km.end()  # type: ignore[union-attr]
    nc = line[kend] if kend < L else " "
    key = line[col:kend]
    if nc == ":":
        nkey = key.lower().lstrip("/")
        if not nkey:
            raise _err("expected a key before ':'", file, li)
        kli, kcol = li, col
        col = kend + 1
        while col < L and (line[col] == " " or line[col] == "\t"):
            col += 1
        value, vs, quote, li, col = _value(lines, starts, li, col, file)
        end = starts[li] + col
        p = Param(nkey, value, "", kli + 1, value, starts[kli] + kcol, vs, end, quote)
        if nkey in params._named:
            params._add_named(p)
        else:
            params._named[nkey] = p
        return p, li, col
    if nc == " " or nc == "\t" or (nc == "/" and line.startswith("//", kend)):
        p = Param(None, key, "", li + 1, key, base + col, base + col, base + kend)
        params._add_arg(p)
        return p, li, kend
    raise _err(f"invalid character {nc!r} in {key + nc!r}: keys and positional "
               f"arguments may contain only {KEY_CHARS}", file, li)


def _value(lines: list[str], starts: list[int], li: int, col: int,
           file: str | None) -> tuple[str, int, str, int, int]:
    """Read a value at ``lines[li][col:]``: (value, start offset, quote, end line, end col)."""
    line = lines[li]
    L = len(line)
    vs = starts[li] + col
    if col >= L or line.startswith("//", col):
        return "", vs, "", li, col
    items: list[str] = []
    quote = ""
    while True:
        c = line[col] if col < L else ""
        if c == "'" or c == '"':
            q = c * 3 if line.startswith(c * 3, col) else c
            start = col + len(q)
            if not line[start:].strip(" \t"):
                item, li, col = _block(lines, li, q, file)
                quote = "block"
            else:
                item, li, col = _quoted(lines, li, start, q, file)
                quote = q
            line = lines[li]
            L = len(line)
        else:
            e = _UNQUOTED.match(line, col).end()  # type: ignore[union-attr]
            item = line[col:e]
            col = e
            quote = ""
        items.append(item)
        k = col
        while k < L and (line[k] == " " or line[k] == "\t"):
            k += 1
        if k < L and line[k] == ",":
            col = k + 1
            while col < L and (line[col] == " " or line[col] == "\t"):
                col += 1
            if col >= L or line.startswith("//", col):
                items.append("")
                col = k + 1
                break
            continue
        break
    if len(items) == 1:
        return items[0].strip(), vs, quote, li, col
    value = ",".join(f'"{x}"' if " " in x else x for x in (t.strip() for t in items))
    return value, vs, "list", li, col


def _find_close(line: str, q: str, start: int) -> int:
    e = line.find(q, start)
    if len(q) == 1:
        while e > 0 and line[e - 1] == "\\":
            e = line.find(q, e + 1)
    return e


def _quoted(lines: list[str], li: int, start: int, q: str,
            file: str | None) -> tuple[str, int, int]:
    """A quoted value opened mid-line; lines it spans are joined with single spaces."""
    line = lines[li]
    e = _find_close(line, q, start)
    if e >= 0:
        raw = line[start:e]
        if len(q) == 1 and "\\" in raw:
            raw = raw.replace("\\" + q, q)
        return raw, li, e + len(q)
    pieces = [line[start:].strip()]
    for j in range(li + 1, len(lines)):
        ln = lines[j]
        e = _find_close(ln, q, 0)
        if e >= 0:
            pieces.append(ln[:e].strip())
            raw = " ".join(x for x in pieces if x)
            if len(q) == 1 and "\\" in raw:
                raw = raw.replace("\\" + q, q)
            return raw, j, e + len(q)
        pieces.append(ln.strip())
    raise _err(f"unterminated quoted value: expected a closing {q}", file, li)


def _block(lines: list[str], li: int, q: str, file: str | None) -> tuple[str, int, int]:
    """A multi-line value: from a line ending in ``key:'`` to a line holding only ``'``."""
    for j in range(li + 1, len(lines)):
        ln = lines[j]
        if ln.strip(" \t") == q:
            return _dedent(lines[li + 1:j]), j, ln.index(q) + len(q)
    raise _err(f"unterminated multi-line value: expected a line holding only {q}", file, li)


def _dedent(block: list[str]) -> str:
    rows = []
    low = -1
    for ln in block:
        s = ln.lstrip(" \t")
        if not s:
            rows.append((0, ""))
            continue
        w = _width(ln, len(ln) - len(s))
        rows.append((w, s))
        if low < 0 or w < low:
            low = w
    return "\n".join(" " * (w - low) + s if s else "" for w, s in rows).strip()
