"""HeroScript writers: the edit-preserving ``dumps`` and the canonical ``format``.

``dumps`` rewrites only the source spans of edited values (recorded by the reader), adds
new parameters after an action's last line (or at the end of a one-line action) and
removes deleted ones with their comments. ``format`` writes the canonical form of the
reference export. Both spell values with ``render_value``, which never writes what the
reference would misread where a spelling exists (see the ``heroscript`` docstring).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .params import Param

if TYPE_CHECKING:
    from .heroscript import Action, Playbook

__all__ = ["dumps", "format", "render_value"]

BANGS = {"dal": 1, "sal": 2, "macro": 3, "wal": 4}
_PLAIN = re.compile(r"[^\s'\"\\:,]+(?:,[^\s'\"\\:,]+)*")
_FIELD_WIDTH = 80  # ``format`` keeps the action line at most this long
_SHORT = 40  # ... and puts there only items up to this long


# -- writing: edit-preserving --------
def render_value(value: str, indent: str = "    ") -> str:
    """Spell ``value`` so that this parser and the reference read it back as ``value``.

    Plain when safe, else ``'...'`` with ``\\'``; a value with a newline becomes a block whose
    lines are indented by ``indent`` (the closing quote too).
    """
    if "\n" not in value:
        if value and "//" not in value and _PLAIN.fullmatch(value):
            return value
        if not value.endswith("\\"):
            return "'" + value.replace("'", "\\'") + "'"
        for q in ("'''", '"""'):
            if q not in value:
                return q + value + q
    lines = value.split("\n")
    for q in ("'", '"', "'''", '"""'):
        if all(ln.strip() != q for ln in lines):
            body = "\n".join(indent + ln if ln.strip() else "" for ln in lines)
            return f"{q}\n{body}\n{indent}{q}"
    raise ValueError("value has lines holding each of ' \" ''' \"\"\": no spelling reads it back")


def _indent_at(text: str, pos: int) -> str:
    """Leading whitespace of the line holding offset ``pos``."""
    s = text.rfind("\n", 0, pos) + 1
    e = s
    while e < len(text) and text[e] in " \t":
        e += 1
    return text[s:e]


def _render_edit(p: Param, text: str) -> str:
    v = p.value
    q = p._quote
    if "\n" not in v:
        if q in ("'", '"') and not v.endswith("\\"):
            return q + v.replace(q, "\\" + q) + q
        if q in ("'''", '"""') and q not in v and not v.endswith(q[0]):
            return q + v + q
    if q == "block":  # keep the block's own indentation: that of its closing quote
        return render_value(v, _indent_at(text, p._ve - 1))
    return render_value(v, _indent_at(text, p._ts) + "    ")


def _value_edit(p: Param, text: str, head_end: int) -> tuple[int, int, str]:
    new = _render_edit(p, text)
    if "\n" not in new:
        return p._vs, p._ve, new
    le = text.find("\n", p._ve)
    le = len(text) if le < 0 else le
    rest = text[p._ve:le].rstrip("\r")
    if not rest.strip(" \t"):
        return p._vs, p._ve, new
    # a block's closing quote must be alone on its line: what followed moves to the next
    indent = _indent_at(text, p._ts) + ("    " if p._ts <= head_end else "")
    return p._vs, p._ve + len(rest), new + "\n" + indent + rest.lstrip(" \t")


def dumps(pb: Playbook) -> str:
    """The source text of ``pb`` with only edited values changed (see ``Playbook.dumps``)."""
    text = pb.source
    nl = "\r\n" if "\r\n" in text else "\n"
    edits: list[tuple[int, int, str]] = []
    for a in pb.actions:
        if a._src is not pb._src:
            continue
        ps = a.params
        for p in ps._named.values():
            if p._orig is not None and p.value != p._orig:
                edits.append(_value_edit(p, text, a._head_end))
        for p in ps._deleted:
            for q in (p, *getattr(p, "_shadows", ())):
                edits.append(_deletion(q, text, a._head_end))
                cspan = getattr(q, "_cspan", None)
                if cspan is not None and edits[-1][1] <= cspan[0]:  # its comment goes too
                    s = cspan[0]
                    while s > 0 and text[s - 1] in " \t":
                        s -= 1
                    edits.append((max(s, edits[-1][1]), cspan[1], ""))
        if ps._added:
            edits.append(_insertion(a, ps._added, text, nl))
    if not edits:
        return text
    edits.sort(key=lambda e: (e[0], e[1]))
    out = []
    cur = 0
    for s, e, r in edits:
        if s < cur:
            continue
        out.append(text[cur:s])
        out.append(r)
        cur = e
    out.append(text[cur:])
    return "".join(out)


def _spell(p: Param, indent: str) -> str:
    return p.value if p.key is None else f"{p.key}:{render_value(p.value, indent + '    ')}"


def _insertion(a: Action, added: list[Param], text: str, nl: str) -> tuple[int, int, str]:
    ps = a.params
    spans = [p._ts for p in (*ps._named.values(), *ps._args, *ps._deleted)
             if p._orig is not None and p._ts > a._head_end]
    indent = _indent_at(text, max(spans)) if spans else a._indent + "    "
    if a._inline_ok and not any(p.comment or "\n" in p.value for p in added):
        tokens = " ".join(_spell(p, indent) for p in added)
        return a._last_end, a._last_end, " " + tokens
    rows = []
    for p in added:
        rows.extend(indent + ("// " + c).rstrip() for c in p.comment.split("\n") if p.comment)
        rows.append(indent + _spell(p, indent).replace("\n", nl))
    pos = a._next_start
    if pos > len(text):
        return len(text), len(text), nl + nl.join(rows)
    return pos, pos, nl.join(rows) + nl


def _deletion(p: Param, text: str, head_end: int) -> tuple[int, int, str]:
    ts, te = p._ts, p._ve
    ls = text.rfind("\n", 0, ts) + 1
    le = text.find("\n", te)
    rest = text[te:le if le >= 0 else len(text)].strip(" \t\r")
    if ts > head_end and not text[ls:ts].strip(" \t") and (not rest or rest[:2] == "//"):
        s = getattr(p, "_pstart", -1)  # with the `//` lines just above: its comment
        if not head_end < s < ls:
            s = ls
        e = text.find("\n", te)
        return (s, e + 1, "") if e >= 0 else (max(s - 1, 0), len(text), "")
    s = ts
    while s > 0 and text[s - 1] in " \t":
        s -= 1
    if s == 0 or text[s - 1] == "\n":  # first on its line: keep the indentation
        e = te
        while e < len(text) and text[e] in " \t":
            e += 1
        return ts, e, ""
    return s, te, ""


# -- writing: canonical --------
def format(playbook: Playbook | list[Action]) -> str:  # noqa: A001 - the module's writer
    """The canonical form of the reference export, read back by ``parse`` to the same actions.

    Per action: its comments as ``//`` lines, then ``!!actor.name``; items in the order
    ``id:N`` (only when the id is not the action's position), positional args (sorted),
    ``name``, other keys (sorted). Short items without a comment stay on the action line,
    the rest go one per line indented by 4, a one-line comment after them (``//c``), a
    longer one on ``//`` lines above. One blank line between actions.
    """
    actions = playbook if isinstance(playbook, list) else playbook.actions
    return "\n".join(_format_action(a, pos) for pos, a in enumerate(actions, 1))


def _format_action(a: Action, pos: int) -> str:
    out = [("// " + c).rstrip() for c in a.comments.split("\n")] if a.comments else []
    ind = "    "
    items: list[tuple[str, str]] = []
    if a.id != pos:
        items.append((f"id:{a.id}", ""))
    ps = a.params
    for p in sorted(ps._args, key=lambda p: p.value):
        items.append((p.value, p.comment))
    keys = sorted(ps._named)
    if "name" in ps._named:
        keys.remove("name")
        keys.insert(0, "name")
    for k in keys:
        p = ps._named[k]
        items.append((f"{k}:{render_value(p.value, ind + ind)}", p.comment))
    head = "!" * BANGS[a.kind] + a.fullname
    rest = []
    for tok, comment in items:
        if (not comment and "\n" not in tok and len(tok) <= _SHORT
                and len(head) + 1 + len(tok) <= _FIELD_WIDTH):
            head += " " + tok
        else:
            rest.append((tok, comment))
    out.append(head)
    for tok, comment in rest:
        if comment and ("\n" in comment or "\n" in tok or "'" in comment or '"' in comment):
            out.extend(ind + ("// " + c).rstrip() for c in comment.split("\n"))
            out.append(ind + tok)
        elif comment:
            out.append(f"{ind}{tok} //{comment}")
        else:
            out.append(ind + tok)
    if ps.end_comment:
        out.extend(ind + ("// " + c).rstrip() for c in ps.end_comment.split("\n"))
    return "\n".join(out) + "\n"
