"""Round trips over generated HeroScript: ``dumps`` keeps unedited text byte-identical and
changes only the edited value's bytes; ``parse(format(pb))`` gives back the same actions."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herofossil.parsers.heroscript import Playbook, format, parse, render_value

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ident = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
plain = st.from_regex(r"[A-Za-z0-9_.@/+-]{1,10}", fullmatch=True).filter(lambda s: "//" not in s)
words = st.text(string.ascii_letters + string.digits + " .,:/'\"!#-", min_size=0, max_size=20)
comment = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ,.!?]{0,15}", fullmatch=True).map(str.rstrip)


@st.composite
def value_src(draw, indent: str) -> str:
    """Source spelling of a value (what follows ``key:``)."""
    kind = draw(st.sampled_from(["plain", "sq", "dq", "list", "block", "escaped", "empty"]))
    if kind == "plain":
        return draw(plain)
    if kind == "sq":
        return "'" + draw(words).replace("'", "").replace("\\", "") + "'"
    if kind == "dq":
        return '"' + draw(words).replace('"', "").replace("\\", "") + '"'
    if kind == "list":
        return ", ".join(draw(st.lists(plain, min_size=2, max_size=4)))
    if kind == "escaped":
        return "'" + draw(plain) + "\\'" + draw(plain) + "'"
    if kind == "empty":
        return "''"
    lines = draw(st.lists(st.from_regex(r"[A-Za-z0-9 #:,.]{0,12}", fullmatch=True),
                          min_size=1, max_size=4))
    body = "\n".join(indent + "    " + ln if ln.strip() else "" for ln in lines)
    return f"'\n{body}\n{indent}    '"


@st.composite
def action_src(draw) -> str:
    bangs = "!" * draw(st.integers(1, 4))
    head = bangs + draw(ident) + ("." + draw(ident) if draw(st.booleans()) else "")
    out = [head]
    on_head = True
    for _ in range(draw(st.integers(0, 5))):
        if on_head and draw(st.booleans()):
            on_head = False
        indent = "    "
        item = (draw(ident) if draw(st.integers(0, 4)) == 0
                else f"{draw(ident)}:{draw(value_src(indent))}")
        if on_head and "\n" not in item:
            out[-1] += " " + item
        else:
            on_head = False
            if draw(st.booleans()) and draw(st.booleans()):
                out.append(f"{indent}// {draw(comment)}")
            out.append(indent + item)
        if draw(st.integers(0, 3)) == 0 and "\n" not in item:
            out[-1] += " // " + draw(comment)
            on_head = False
    if draw(st.booleans()):
        out.insert(0, "// " + draw(comment))
    return "\n".join(out)


@st.composite
def script(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append(draw(st.sampled_from(["", "\n", "# heading\n", "some prose\n", "\n\n"])))
        parts.append(draw(action_src()) + "\n")
    text = "".join(parts)
    return text if draw(st.booleans()) else text.rstrip("\n")


def snapshot(pb: Playbook) -> list[tuple]:
    """What must survive a round trip: everything but order inside an action."""
    out = []
    for a in pb.actions:
        ps = a.params
        out.append((a.kind, a.actor, a.name, a.id, a.comments, ps.to_dict(),
                    sorted((p.value, p.comment) for p in ps.arg_params()),
                    {k: ps.comment(k) for k in ps}, ps.end_comment))
    return out


new_value = st.one_of(
    plain, words.map(str.strip),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\t"),
            max_size=30).map(lambda s: "\n".join(ln.rstrip() for ln in s.split("\n")).strip()),
)


@SETTINGS
@given(script())
def test_dumps_of_unedited_input_is_identical(text):
    assert parse(text).dumps() == text


@SETTINGS
@given(script())
def test_format_reads_back_to_the_same_actions(text):
    pb = parse(text)
    out = format(pb)
    assert snapshot(parse(out)) == snapshot(pb)
    assert format(parse(out)) == out  # canonical: a fixed point


@SETTINGS
@given(script(), st.data())
def test_editing_one_value_changes_only_that_value(text, data):
    pb = parse(text)
    candidates = [(a, k) for a in pb.actions for k in a.params]
    if not candidates:
        return
    a, key = data.draw(st.sampled_from(candidates))
    value = data.draw(new_value)
    p = a.params.param(key)
    vs, ve = p._vs, p._ve
    before = snapshot(pb)
    a.params.set(key, value)
    out = pb.dumps()
    assert out[:vs] == text[:vs]
    i = pb.actions.index(a)
    before[i][5][key] = value.strip()
    line_rest = text[ve:].split("\n", 1)[0]
    if "\n" in value.strip() and line_rest.strip():
        # what followed the value on its line moved below the block's closing quote;
        # values are kept, a moved comment may attach to another parameter
        assert [s[5] for s in snapshot(parse(out))] == [s[5] for s in before]
        return
    assert out[len(out) - (len(text) - ve):] == text[ve:]
    assert snapshot(parse(out)) == before


@SETTINGS
@given(new_value, st.sampled_from(["!!a.b x:1", "!!a.b\n    x:1 // c\n", "!!a.b"]))
def test_any_value_set_reads_back_through_dumps_and_format(value, text):
    pb = parse(text)
    pb.actions[0].params.set("v", value)
    assert parse(pb.dumps()).actions[0].params.get("v") == value.strip()
    assert parse(format(pb)).actions[0].params.get("v") == value.strip()
    assert parse("!!a.b k:" + render_value(value.strip())).actions[0].params.get("k") == \
        value.strip()


@SETTINGS
@given(script(), st.data())
def test_delete_and_add_keep_other_values(text, data):
    pb = parse(text)
    if not pb.actions:
        return
    a = data.draw(st.sampled_from(pb.actions))
    before = snapshot(pb)
    i = pb.actions.index(a)
    if len(a.params):
        key = data.draw(st.sampled_from(a.params.keys()))
        a.params.delete(key)
        del before[i][5][key]
        del before[i][7][key]
    a.params.set("zz_new", "added value")
    before[i][5]["zz_new"] = "added value"
    before[i][7]["zz_new"] = ""
    after = snapshot(parse(pb.dumps()))
    for x in (after[i], before[i]):
        x[7].pop("zz_new", None)  # a comment line just above may attach to the new key
    assert after == before
