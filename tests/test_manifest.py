"""Fossil card format (store/manifest.py) and deconstruct layout (store/artifactdir.py).

Checked against the real ``fossil`` binary both ways: every artifact of a
repository made by Fossil parses and re-serialises byte-identically, and
check-ins built here are accepted by ``fossil reconstruct`` and
``fossil test-integrity --parse``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from herofossil.errors import IntegrityError, InvalidPathError, ParseError
from herofossil.store import manifest as manifest_module
from herofossil.store.artifactdir import artifact_path, iter_artifacts, write_artifact
from herofossil.store.manifest import (
    ControlArtifact,
    FileCard,
    Manifest,
    TagCard,
    date_now,
    date_to_datetime,
    datetime_to_date,
    defossilize,
    fossilize,
    parse_artifact,
    parse_manifest,
    repo_checksum,
    resolve_files,
    sha3_hex,
)

FOSSIL = shutil.which("fossil")
needs_fossil = pytest.mark.skipif(FOSSIL is None, reason="fossil binary not on PATH")

TRUNK_TAGS = [TagCard("*", "branch", "*", "trunk"), TagCard("*", "sym-trunk", "*")]


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "FOSSIL_HOME": str(home),
        "USER": "tester",
        "FOSSIL_USER": "tester",
        "TZ": "UTC",
    }


def fossil(home: Path, *args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Run fossil; return stdout+stderr; fail the test with the output on error."""
    r = subprocess.run(
        [FOSSIL or "fossil", *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    if check and r.returncode != 0:
        pytest.fail(f"fossil {' '.join(args)} exited {r.returncode}:\n{out}")
    return out


def with_z(body: bytes) -> bytes:
    """Append a correct Z card."""
    return body + b"Z " + hashlib.md5(body).hexdigest().encode() + b"\n"


H1 = "a" * 64
H2 = "b" * 64
H3 = "c" * 40


# ---------------------------------------------------------------------------
# A repository made by Fossil


@pytest.fixture(scope="module")
def fossil_repo(tmp_path_factory):
    """A Fossil repository exercising every check-in feature, deconstructed.

    Returns (home, repo, dec_dir, info) where info maps names to check-in hashes.
    """
    if FOSSIL is None:
        pytest.skip("fossil binary not on PATH")
    home = tmp_path_factory.mktemp("fossil_made")
    repo = home / "repo.fossil"
    wd = home / "wd"
    wd.mkdir()
    f = lambda *a: fossil(home, *a, cwd=wd)  # noqa: E731

    def commit(msg: str, *extra: str) -> str:
        f("commit", "--no-warnings", "-m", msg, *extra)
        prefix = f("info").split("checkout:")[1].split()[0]  # 40 chars of the hash
        with sqlite3.connect(repo) as db:
            q = "SELECT uuid FROM blob WHERE uuid >= ? AND uuid < ? || 'g'"
            (full,) = db.execute(q, (prefix, prefix)).fetchall()
        return full[0]

    fossil(home, "init", str(repo))
    f("open", str(repo))
    f("settings", "allow-symlinks", "on")
    (wd / "a.txt").write_text("alpha\n")
    (wd / "dir").mkdir()
    (wd / "dir" / "sp ace ü.txt").write_text("unicode name\n")
    (wd / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (wd / "run.sh").chmod(0o755)
    os.symlink("a.txt", wd / "link")
    f("add", ".")
    info = {"first": commit("first commit")}

    (wd / "a.txt").write_text("alpha 2\n")
    f("mv", "a.txt", "renamed.txt")
    (wd / "a.txt").rename(wd / "renamed.txt")
    info["second"] = commit(
        "second\nline  with \\ backslash\tand tab", "--mimetype", "text/x-markdown"
    )

    (wd / "run.sh").write_text("#!/bin/sh\necho feat\n")
    info["feat1"] = commit("on feat", "--branch", "feat")
    (wd / "feat.txt").write_text("feat only\n")
    f("add", "feat.txt")
    f("rm", "dir/sp ace ü.txt")
    info["feat_delta"] = commit("delta manifest", "--delta")
    (wd / "pick.txt").write_text("to be cherry-picked\n")
    f("add", "pick.txt")
    info["feat_pick"] = commit("pick me")

    f("update", "trunk")
    (wd / "trunk.txt").write_text("trunk only\n")
    f("add", "trunk.txt")
    info["trunk2"] = commit("trunk change")
    f("merge", "--cherrypick", info["feat_pick"])
    info["cherry"] = commit("cherry-picked")
    f("merge", "feat")
    info["merge"] = commit("merge feat")

    f("tag", "add", "rel1", info["first"])
    f("tag", "add", "ver", info["merge"], "1.0 beta value")
    f("tag", "cancel", "rel1", info["first"])
    f("amend", info["trunk2"], "-m", "amended comment")
    (home / "page.txt").write_text("W 12\nlooks like a card\nZ 0\n")
    f("wiki", "create", "Page", str(home / "page.txt"))
    f("wiki", "create", "--technote", "2024-01-01 12:00", "A note", str(home / "page.txt"))
    f("ticket", "add", "title", "A ticket", "status", "Open")
    f("close")

    dec = home / "dec"
    dec.mkdir()
    fossil(home, "deconstruct", "-R", str(repo), str(dec))
    return home, repo, dec, info


def _event_types(repo: Path) -> dict[str, str]:
    with sqlite3.connect(repo) as db:
        rows = db.execute("SELECT b.uuid, e.type FROM event e JOIN blob b ON b.rid=e.objid")
        return dict(rows.fetchall())


@needs_fossil
def test_fossil_made_artifacts_round_trip(fossil_repo):
    home, repo, dec, info = fossil_repo
    kinds = _event_types(repo)
    assert set(kinds.values()) >= {"ci", "g", "w", "e", "t"}
    counts = {"Manifest": 0, "ControlArtifact": 0, "NoneType": 0}
    for uuid, path in iter_artifacts(dec):
        data = path.read_bytes()
        assert sha3_hex(data) == uuid
        art = parse_artifact(data, str(path))
        counts[type(art).__name__] += 1
        kind = kinds.get(uuid)
        if kind == "ci":
            assert isinstance(art, Manifest), uuid
        elif kind == "g":
            assert isinstance(art, ControlArtifact), uuid
        else:
            assert art is None, (uuid, kind)
        if art is not None:
            assert art.to_bytes() == data, path
    print("artifact kinds:", counts)
    assert counts["Manifest"] == len(info) + 1  # + the initial empty check-in


@needs_fossil
def test_fossil_made_manifest_contents(fossil_repo):
    home, repo, dec, info = fossil_repo

    def load(uuid: str) -> Manifest:
        return parse_manifest(artifact_path(dec, uuid).read_bytes())

    first = load(info["first"])
    by_name = {fc.name: fc for fc in first.files}
    assert by_name["run.sh"].perm == "x"
    assert by_name["link"].perm == "l"
    assert "dir/sp ace ü.txt" in by_name
    assert first.user == "tester"
    assert first.tags == []
    root = load(first.parents[0])
    assert root.comment == "initial empty check-in" and root.files == []
    assert root.tags == TRUNK_TAGS and root.repo_checksum == repo_checksum([])

    second = load(info["second"])
    assert second.comment == "second\nline  with \\ backslash\tand tab"
    assert second.mimetype == "text/x-markdown"
    ren = {fc.name: fc for fc in second.files}["renamed.txt"]
    assert ren.oldname == "a.txt" and ren.perm == ""  # Fossil wrote "w"

    feat1 = load(info["feat1"])
    assert [(t.kind, t.name, t.value) for t in feat1.tags] == [
        ("*", "branch", "feat"),
        ("*", "sym-feat", None),
        ("-", "sym-trunk", None),
    ]

    delta = load(info["feat_delta"])
    assert delta.is_delta and delta.baseline == info["feat1"]
    removed = [fc.name for fc in delta.files if fc.uuid is None]
    assert removed == ["dir/sp ace ü.txt"]
    with pytest.raises(ValueError):
        resolve_files(delta, None)

    cherry = load(info["cherry"])
    assert cherry.cherrypicks == [("+" + info["feat_pick"], None)]
    merge = load(info["merge"])
    assert merge.parents[0] == info["cherry"] and len(merge.parents) == 2

    # Every check-in's resolved file list is what Fossil lists, and its R card
    # is what repo_checksum() computes from the file contents.
    for uuid in info.values():
        m = load(uuid)
        base = load(m.baseline) if m.baseline else None
        files = resolve_files(m, base)
        listed = fossil(home, "ls", "-R", str(repo), "-r", uuid).splitlines()
        assert list(files) == listed, uuid
        contents = [(n, artifact_path(dec, fc.uuid).read_bytes()) for n, fc in files.items()]
        assert m.repo_checksum == repo_checksum(contents), uuid


@needs_fossil
def test_fossil_made_control_artifacts(fossil_repo):
    home, repo, dec, info = fossil_repo
    ctrls = [
        a
        for _, p in iter_artifacts(dec)
        if isinstance(a := parse_artifact(p.read_bytes()), ControlArtifact)
    ]
    tags = {(t.kind, t.name, t.target, t.value) for c in ctrls for t in c.tags}
    assert ("+", "sym-rel1", info["first"], None) in tags
    assert ("-", "sym-rel1", info["first"], None) in tags
    assert ("+", "sym-ver", info["merge"], "1.0 beta value") in tags
    assert ("+", "comment", info["trunk2"], "amended comment") in tags
    for c in ctrls:
        date_to_datetime(c.date)
        assert c.user == "tester"


@needs_fossil
@pytest.mark.parametrize("prefix_len", [0, 1, 3])
def test_deconstruct_prefix_lengths(fossil_repo, tmp_path, prefix_len):
    home, repo, dec, info = fossil_repo
    out = tmp_path / "dec"
    out.mkdir()
    fossil(home, "deconstruct", "-R", str(repo), "-L", str(prefix_len), "-K", "-P", str(out))
    assert (out / ".rid1").exists()
    got = list(iter_artifacts(out))
    assert [u for u, _ in got] == [u for u, _ in iter_artifacts(dec)]
    for uuid, path in got:
        assert path == artifact_path(out, uuid, prefix_len)


# ---------------------------------------------------------------------------
# Check-ins made here, read by Fossil


def _build_history(d: Path, *, root_tags: list[TagCard]) -> dict[str, str]:
    """Write a small history with this module; return name -> artifact hash."""
    blobs: dict[str, str] = {}

    def put(data: bytes) -> str:
        uuid = sha3_hex(data)
        write_artifact(d, uuid, data, verify=True)
        return uuid

    contents = {
        "a.txt": b"hello\n",
        "dir/b c.txt": b"world\n",
        "run.sh": b"#!/bin/sh\n",
        "ünï.md": "# ünïcode\n".encode(),
    }
    for name, data in contents.items():
        blobs[name] = put(data)
    files = [
        FileCard("a.txt", blobs["a.txt"]),
        FileCard("dir/b c.txt", blobs["dir/b c.txt"]),
        FileCard("run.sh", blobs["run.sh"], "x"),
        FileCard("ünï.md", blobs["ünï.md"]),
    ]
    random.Random(1).shuffle(files)  # to_bytes sorts them
    c1 = Manifest(
        comment="first check-in\nwith two lines",
        date="2024-01-01T10:00:00.000",
        user="Alice Smith <alice@example.com>",
        files=files,
        tags=list(root_tags),
        repo_checksum=repo_checksum(contents.items()),
    )
    h = {"c1": put(c1.to_bytes())}
    new = put(b"new file\n")
    # A delta-manifest: removes a.txt, adds c.txt (full R over the resolved tree).
    c2 = Manifest(
        comment="delta on trunk",
        date="2024-01-02T10:00:00.000",
        user="bob",
        files=[FileCard("c.txt", new), FileCard("a.txt", None)],
        parents=[h["c1"]],
        baseline=h["c1"],
    )
    h["c2"] = put(c2.to_bytes())
    # A branch: propagating branch + sym tags, cancelling sym-trunk.
    c3 = Manifest(
        comment="start feat",
        date="2024-01-03T10:00:00.000",
        user="bob",
        files=[*files, FileCard("feat.txt", new)],
        parents=[h["c1"]],
        tags=[
            TagCard("-", "sym-trunk", "*"),
            TagCard("*", "sym-feat", "*"),
            TagCard("*", "branch", "*", "feat"),
        ],
    )
    h["c3"] = put(c3.to_bytes())
    # A merge of feat into trunk, with a rename.
    c4 = Manifest(
        comment="merge feat",
        date="2024-01-04T10:00:00.000",
        user="carol",
        files=[
            FileCard("c.txt", new),
            FileCard("dir/b c.txt", blobs["dir/b c.txt"]),
            FileCard("feat.txt", new),
            FileCard("run2.sh", blobs["run.sh"], "x", oldname="run.sh"),
            FileCard("ünï.md", blobs["ünï.md"]),
        ],
        parents=[h["c2"], h["c3"]],
    )
    h["c4"] = put(c4.to_bytes())
    ctrl = ControlArtifact(
        date="2024-01-05T10:00:00.000",
        user="carol",
        tags=[
            TagCard("+", "sym-v1.0", h["c4"]),
            TagCard("+", "comment", h["c2"], "delta on trunk (amended)"),
        ],
    )
    h["ctrl"] = put(ctrl.to_bytes())
    return h


def _reconstruct(home: Path, d: Path) -> Path:
    repo = home / "r.fossil"
    fossil(home, "reconstruct", str(repo), str(d))
    return repo


@needs_fossil
def test_made_here_accepted_by_fossil(tmp_path):
    d = tmp_path / "arts"
    h = _build_history(d, root_tags=TRUNK_TAGS)
    repo = _reconstruct(tmp_path, d)
    R = ("-R", str(repo))

    out = fossil(tmp_path, "test-integrity", "--parse", *R)
    assert re.search(r"checked:\s+0 errors", out), out
    assert "4 manifests" in out and "1 controls" in out, out
    assert "ERROR" not in out.upper().replace("0 ERRORS", ""), out

    for key in ("c1", "c2", "c4"):
        art = fossil(tmp_path, "artifact", h[key], *R).encode()
        assert art == artifact_path(d, h[key]).read_bytes()

    ls = lambda ref: fossil(tmp_path, "ls", *R, "-r", ref).splitlines()  # noqa: E731
    assert ls(h["c1"]) == ["a.txt", "dir/b c.txt", "run.sh", "ünï.md"]
    assert ls(h["c2"]) == ["c.txt", "dir/b c.txt", "run.sh", "ünï.md"]
    assert ls("feat") == ["a.txt", "dir/b c.txt", "feat.txt", "run.sh", "ünï.md"]
    assert ls("v1.0") == ["c.txt", "dir/b c.txt", "feat.txt", "run2.sh", "ünï.md"]
    assert ls("trunk") == ls("v1.0")

    timeline = fossil(tmp_path, "timeline", *R, "-n", "20", "-W", "0")
    for text in ("first check-in", "start feat", "merge feat", "delta on trunk (amended)"):
        assert text in timeline, timeline
    assert "user: Alice Smith <alice@example.com>" in timeline
    branches = fossil(tmp_path, "branch", "list", *R).split()
    assert branches == ["feat", "trunk"]
    assert "v1.0" in fossil(tmp_path, "tag", "list", *R).split()
    leaves = fossil(tmp_path, "leaves", *R, "-a")
    # A leaf has no child on its own branch: c3 stays feat's leaf after the merge.
    assert h["c4"][:10] in leaves and h["c3"][:10] in leaves and h["c2"][:10] not in leaves
    merge_tl = fossil(tmp_path, "timeline", *R, "-v", "-n", "1", "-W", "0", h["c4"])
    # Fossil shows a rename as the old name deleted (plus EDITED if the content changed).
    assert "DELETED run.sh" in merge_tl and "*MERGE*" in merge_tl, merge_tl


@needs_fossil
def test_fossil_needs_branch_tags_on_root(tmp_path):
    """Without ``T *branch * trunk`` + ``T *sym-trunk *`` on the first check-in,
    Fossil still accepts the artifacts, but the trunk is no branch at all.

    So the first check-in of a store must carry both tags, exactly as the
    initial check-in ``fossil init`` makes."""
    d = tmp_path / "arts"
    h = _build_history(d, root_tags=[])
    repo = _reconstruct(tmp_path, d)
    out = fossil(tmp_path, "test-integrity", "--parse", "-R", str(repo))
    assert re.search(r"checked:\s+0 errors", out), out
    assert fossil(tmp_path, "branch", "list", "-R", str(repo)).split() == ["feat"]
    # ... and its tip is not even listed as a leaf.
    leaves = fossil(tmp_path, "leaves", "-a", "-R", str(repo))
    assert h["c3"][:10] in leaves and h["c4"][:10] not in leaves, leaves


@needs_fossil
def test_r_card_is_checked_on_checkout(tmp_path):
    """The R card is optional; when present Fossil verifies it on checkout."""
    d = tmp_path / "arts"
    blob = b"hello\n"
    write_artifact(d, sha3_hex(blob), blob)
    files = [FileCard("a.txt", sha3_hex(blob))]
    uuids = {}
    for label, r in (("none", None), ("good", repo_checksum([("a.txt", blob)])), ("bad", "0" * 32)):
        m = Manifest(f"R {label}", "2024-01-01T00:00:00.000", "u", files, tags=TRUNK_TAGS)
        m.repo_checksum = r
        data = m.to_bytes()
        uuids[label] = sha3_hex(data)
        write_artifact(d, uuids[label], data)
    repo = _reconstruct(tmp_path, d)
    for label, uuid in uuids.items():
        wd = tmp_path / f"wd_{label}"
        wd.mkdir()
        out = fossil(tmp_path, "open", str(repo), uuid, cwd=wd)
        assert ("checksum does not agree" in out) == (label == "bad"), out
        assert (wd / "a.txt").read_bytes() == blob
        fossil(tmp_path, "close", "--force", cwd=wd)


# ---------------------------------------------------------------------------
# Escaping


@pytest.mark.parametrize(
    ("raw", "enc"),
    [
        ("plain", "plain"),
        ("a b", "a\\sb"),
        ("line1\nline2", "line1\\nline2"),
        ("back\\slash", "back\\\\slash"),
        ("tab\tcr\rvt\vff\f", "tab\\tcr\\rvt\\vff\\f"),
        ("nul\x00", "nul\\0"),
        ("ünïcödé ✓", "ünïcödé\\s✓"),
        ("", ""),
        ("\\s", "\\\\s"),
    ],
)
def test_fossilize(raw, enc):
    assert fossilize(raw) == enc
    assert defossilize(enc) == raw


def test_defossilize_like_fossil():
    assert defossilize("a\\qb") == "aqb"  # unknown escape: the char itself
    assert defossilize("end\\") == "end\\"  # trailing lone backslash kept


def test_escaping_random_round_trip():
    rng = random.Random(42)
    alphabet = "ab \n\t\\\r\x00é✓/."
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        e = fossilize(s)
        assert not set(e) & set(" \n\t\r\x00\v\f")
        assert defossilize(e) == s


def test_manifest_escaped_fields_round_trip():
    m = Manifest(
        comment="multi\nline  comment \\ with\ttab ✓",
        date="2024-02-29T23:59:59.999",
        user="j doe\\x",
        files=[
            FileCard("a b/c d.txt", H1, "x"),
            FileCard("z", H3, "l"),
            FileCard("ünï/ñ.md", H2, "", oldname="old name.md"),
        ],
        parents=[H2],
        tags=[TagCard("+", "sym-my tag", "*", "a value\nwith newline")],
        mimetype="text/x-markdown",
    )
    data = m.to_bytes()
    assert b"F a\\sb/c\\sd.txt " + H1.encode() + b" x\n" in data
    assert b" w old\\sname.md\n" in data
    back = parse_manifest(data)
    assert back == m
    assert back.to_bytes() == data


# ---------------------------------------------------------------------------
# Model behaviour


def test_sorting_and_z_card():
    m = Manifest(
        "c",
        "2024-01-01T00:00:00.000",
        "u",
        files=[FileCard("b", H1), FileCard("a/z", H1), FileCard("a", H1), FileCard("a.b", H1)],
        tags=[
            TagCard("-", "sym-trunk", "*"),
            TagCard("+", "x", H2),
            TagCard("*", "sym-f", "*"),
            TagCard("+", "x", "*"),
            TagCard("*", "branch", "*", "f"),
        ],
    )
    data = m.to_bytes()
    lines = data.decode().splitlines()
    assert [ln.split()[1] for ln in lines if ln[0] == "F"] == ["a", "a.b", "a/z", "b"]
    assert [ln for ln in lines if ln[0] == "T"] == [
        "T *branch * f",
        "T *sym-f *",
        "T +x *",
        "T +x " + H2,
        "T -sym-trunk *",
    ]
    body, z = data.rsplit(b"Z ", 1)
    assert z == hashlib.md5(body).hexdigest().encode() + b"\n"
    assert parse_manifest(data).to_bytes() == data


def test_to_bytes_rejects_bad_content():
    base = dict(comment="c", date="2024-01-01T00:00:00", user="u")
    with pytest.raises(InvalidPathError):
        Manifest(**base, files=[FileCard("a", H1), FileCard("a", H2)]).to_bytes()
    for bad in ("../x", "/abs", "a//b", "a/", "a/./b", ".", ""):
        with pytest.raises(InvalidPathError):
            Manifest(**base, files=[FileCard(bad, H1)]).to_bytes()
    with pytest.raises(ValueError):
        Manifest(**base, files=[FileCard("a", None)]).to_bytes()  # removal needs B card
    with pytest.raises(ValueError):
        Manifest(**base, files=[FileCard("a", "abc")]).to_bytes()
    with pytest.raises(ValueError):
        Manifest(**base, parents=["xyz"]).to_bytes()
    with pytest.raises(ValueError):
        ControlArtifact("2024-01-01T00:00:00", "u", [TagCard("+", "t", "*")]).to_bytes()
    with pytest.raises(ValueError):
        ControlArtifact("2024-01-01T00:00:00", "u", []).to_bytes()
    with pytest.raises(ValueError):
        Manifest(comment="c", date="yesterday", user="u").to_bytes()


def test_cards_reused_across_manifests_serialise_the_same_and_are_still_checked():
    base = dict(comment="c", date="2024-01-01T00:00:00", user="u")
    kept, gone = FileCard("dir/a b", H1, "x"), FileCard("old", None)
    delta = Manifest(**base, files=[kept, gone], baseline=H2).to_bytes()
    fresh = Manifest(**base, files=[FileCard("dir/a b", H1, "x"), FileCard("old", None)],
                     baseline=H2).to_bytes()
    assert delta == fresh
    full = Manifest(**base, files=[FileCard("z", H2), kept]).to_bytes()
    assert full == Manifest(**base, files=[FileCard("dir/a b", H1, "x"),
                                           FileCard("z", H2)]).to_bytes()
    with pytest.raises(ValueError):  # the removal card was formatted once, still refused here
        Manifest(**base, files=[kept, gone]).to_bytes()
    with pytest.raises(InvalidPathError):
        Manifest(**base, files=[kept, FileCard("dir/a b", H2)]).to_bytes()


def test_resolve_files_delta():
    base = Manifest(
        "b",
        "2024-01-01T00:00:00",
        "u",
        files=[FileCard("a", H1), FileCard("b", H1), FileCard("c", H1, "x")],
    )
    bh = sha3_hex(base.to_bytes())
    delta = Manifest(
        "d",
        "2024-01-02T00:00:00",
        "u",
        files=[FileCard("b", None), FileCard("c", H2, "x"), FileCard("d", H2)],
        parents=[bh],
        baseline=bh,
    )
    assert delta.is_delta and not base.is_delta
    parsed = parse_manifest(delta.to_bytes())
    assert b"F b\n" in delta.to_bytes()
    files = resolve_files(parsed, base)
    assert list(files) == ["a", "c", "d"]
    assert files["c"].uuid == H2 and files["a"].uuid == H1
    assert resolve_files(base, None) == {f.name: f for f in base.files}
    with pytest.raises(ParseError):
        resolve_files(parsed, parsed)  # a baseline must not be a delta


def test_dates():
    s = date_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", s)
    dt = date_to_datetime("2024-03-05T06:07:08.123")
    assert (dt.year, dt.month, dt.second, dt.microsecond) == (2024, 3, 8, 123000)
    assert dt.utcoffset().total_seconds() == 0
    assert datetime_to_date(dt) == "2024-03-05T06:07:08.123"
    assert date_to_datetime("2007-07-21T14:10:57").microsecond == 0
    with pytest.raises(ParseError):
        date_to_datetime("2024-13-01T00:00:00")
    with pytest.raises(ParseError):
        date_to_datetime("not a date")


def test_sha3_hex():
    assert sha3_hex(b"") == "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"


# ---------------------------------------------------------------------------
# Parsing: what is not an artifact, what is malformed


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world\n",
        b"\x00\x01binary" * 10,
        b"C not really\nZ 0123456789abcdef0123456789abcdef\n",  # wrong Z
        b"C x\nD 2024-01-01T00:00:00\nU u\nZ 0123456789abcdef0123456789abcdef",  # no final \n
        with_z(b"lowercase first\n"),
        # Structural artifacts of kinds this module does not model:
        with_z(b"M " + H1.encode() + b"\nM " + H2.encode() + b"\n"),  # cluster
        with_z(b"D 2024-01-01T00:00:00\nL Page\nN text/x-markdown\nU u\nW 8\nC x\nF y\n\n"),
        with_z(b"D 2024-01-01T00:00:00\nJ title x\nK " + H3.encode() + b"\nU u\n"),  # ticket
        with_z(b"A f.txt Page " + H1.encode() + b"\nD 2024-01-01T00:00:00\nU u\n"),
        with_z(b"C note\nD 2024-01-01T00:00:00\nE 2024-01-01T00:00:00 " + H3.encode() + b"\n"),
        with_z(b"D 2024-01-01T00:00:00\nH title\nU u\nW 2\nhi\n"),  # forum post
    ],
)
def test_not_a_checkin_or_control(data):
    assert parse_artifact(data) is None


def test_bad_z_card_raises_in_parse_manifest():
    good = Manifest("c", "2024-01-01T00:00:00", "u", files=[FileCard("a", H1)]).to_bytes()
    bad = good.replace(b"C c", b"C d")
    assert parse_artifact(bad) is None  # to Fossil, just file content
    with pytest.raises(ParseError, match="Z card"):
        parse_manifest(bad, "x.manifest")
    ctrl = ControlArtifact("2024-01-01T00:00:00", "u", [TagCard("+", "t", H1)]).to_bytes()
    with pytest.raises(ParseError, match="control artifact"):
        parse_manifest(ctrl)


D = b"D 2024-01-01T00:00:00.000\n"
C = b"C comment\n"
U = b"U user\n"
FA = b"F a " + H1.encode() + b"\n"


@pytest.mark.parametrize(
    ("body", "match", "line"),
    [
        (C + D + b"F b " + H1.encode() + b"\n" + FA + U, "sort order", 4),
        (C + D + FA + FA + U, "sort order", 4),
        (C + D + FA + b"X what\n" + U, "unknown card", 4),
        (C + D + b"F a " + H1[:-1].encode() + b"\n" + U, "wrong length", 3),
        (C + D + b"F a " + ("g" * 64).encode() + b"\n" + U, "bad hash", 3),
        (C + D + b"P " + H3[:39].encode() + b"\n" + U, "P card", 3),
        (b"B " + H1[:50].encode() + b"\n" + C + D + U, "B card", 1),
        (D + C + U, "out of order", 2),
        (C + C + D + U, "more than one C", 2),
        (C + D + FA, "U card missing", 4),
        (C + b"D yesterday\n" + U, "date", 2),
        (C + D + b"F a\n" + U, "missing hash", 3),
        (C + D + b"F ../a " + H1.encode() + b"\n" + U, "simple path", 3),
        (C + D + b"F a " + H1.encode() + b" x old extra\n" + U, "extra", 3),
        (C + D + b"R 1234\n" + U, "R card", 3),
        (C + D + b"T +abcdef *\n" + U, "looks like a hash", 3),
        (C + D + b"T sym-x *\n" + U, "does not start", 3),
        (C + D + b"T +y *\nT +x *\n" + U, "sort order", 4),
        (C + D + b"T +x " + H1.encode() + b"\nT +x *\n" + U, "sort order", 4),
        (C + D + b"T +x bogus\n" + U, "target", 3),
        (C + b"D 2024-01-01T00:00:00 extra\n" + U, "one argument", 2),
        (C + D + b"\n" + U, "empty line", 3),
        (C + D + b"Fx\n" + U, "bad card", 3),
        (D + b"T +x *\n" + U, "control artifact", 4),
        (D + b"T +x " + H1.encode() + b"\n", "U card missing", 3),
        (D + b"N text/plain\nT +x " + H1.encode() + b"\n" + U, "N card not allowed", 5),
    ],
)
def test_malformed_raises(body, match, line, f_cards):
    data = with_z(body)
    with pytest.raises(ParseError, match=match) as ei:
        parse_artifact(data, "art")
    assert ei.value.line == line and ei.value.file == "art", str(ei.value)


def test_parse_edge_forms_round_trip():
    # Old Fossil's empty P card, a bare "U" card, an empty comment, Q cards.
    for body in (
        b"C initial\\sempty\\scheck-in\nD 2007-07-21T14:10:57\nP\n"
        b"R d41d8cd98f00b204e9800998ecf8427e\nT *branch * trunk\nU drh\n",
        b"C \nD 2024-01-01T00:00:00\nU \n",
        b"C x\nD 2024-01-01T00:00:00\nP " + H1.encode() + b" " + H2.encode() + b"\n"
        b"Q +" + H2.encode() + b"\nQ -" + H1.encode() + b" " + H3.encode() + b"\nU u\n",
        b"D 2024-01-01T00:00:00\nT +x " + H1.encode() + b"\nT +x " + H2.encode() + b" v\\s1\nU u\n",
        b"C x\nD 2024-01-01T00:00:00\nF a " + H1.encode() + b" w\nU u\n",
    ):
        data = with_z(body)
        art = parse_artifact(data)
        assert art is not None and art.to_bytes() == data
    m = parse_manifest(with_z(b"C \nD 2024-01-01T00:00:00\nU \n"))
    assert m.comment == "" and m.user == ""


def test_pgp_clearsigned_round_trip():
    inner = Manifest("signed", "2024-01-01T00:00:00", "u", files=[FileCard("a", H1)]).to_bytes()
    data = (
        b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA1\n\n"
        + inner
        + b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    )
    m = parse_artifact(data)
    assert isinstance(m, Manifest) and m.comment == "signed"
    assert m.to_bytes() == data


# ---------------------------------------------------------------------------
# Deconstruct layout


def test_artifactdir_layout(tmp_path):
    data = b"content\n"
    u = sha3_hex(data)
    assert artifact_path(tmp_path, u) == tmp_path / u[:2] / u[2:]
    assert artifact_path(tmp_path, u, 0) == tmp_path / u
    assert artifact_path(tmp_path, u, 5) == tmp_path / u[:5] / u[5:]
    with pytest.raises(ValueError):
        artifact_path(tmp_path, "xyz")
    p = write_artifact(tmp_path, u, data)
    assert p.read_bytes() == data
    sha1 = hashlib.sha1(b"old").hexdigest()
    write_artifact(tmp_path, sha1, b"old", verify=True)
    with pytest.raises(IntegrityError):
        write_artifact(tmp_path, u, b"other", verify=True)
    (tmp_path / ".rid1").write_text(u)
    (tmp_path / ".private").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "junk").write_text("x")
    assert list(iter_artifacts(tmp_path)) == sorted(
        [(u, artifact_path(tmp_path, u)), (sha1, artifact_path(tmp_path, sha1))]
    )
    (tmp_path / u[:2] / "README").write_text("junk")
    with pytest.raises(ParseError, match="not an artifact"):
        list(iter_artifacts(tmp_path))
    with pytest.raises(ParseError):
        list(iter_artifacts(tmp_path / "missing"))


# ---------------------------------------------------------------------------
# Size


def test_large_manifest_speed():
    n = 100_000
    rng = random.Random(7)
    files = [
        FileCard(
            f"dir{i % 97}/sub {i % 13}/file{i:06d}.txt",
            hashlib.sha3_256(b"%d" % i).hexdigest(),
            rng.choice(("", "", "x")),
        )
        for i in range(n)
    ]
    rng.shuffle(files)
    m = Manifest("big", "2024-01-01T00:00:00.000", "u", files, parents=[H1])
    t0 = time.perf_counter()
    data = m.to_bytes()
    t1 = time.perf_counter()
    back = parse_artifact(data)
    t2 = time.perf_counter()
    assert isinstance(back, Manifest) and len(back.files) == n
    assert back.to_bytes() == data
    junk = data[:-40] + b"not an artifact, no Z card at the end\n"
    t3 = time.perf_counter()
    assert parse_artifact(junk) is None
    t4 = time.perf_counter()
    print(
        f"\n{n} F cards, {len(data) / 1e6:.1f} MB: to_bytes {t1 - t0:.3f}s (unsorted), "
        f"parse {t2 - t1:.3f}s, to_bytes {t3 - t2:.3f}s (sorted), reject non-artifact "
        f"{(t4 - t3) * 1e6:.0f}us"
    )


# ---------------------------------------------------------------------------
# The compiled F cards and their readable twin

COMPILED = manifest_module.FILE_CARDS
PARSERS = ["twin"] + (["compiled"] if COMPILED is not None else [])


@pytest.fixture(params=PARSERS)
def f_cards(request, monkeypatch):
    """Each test that takes it runs with the compiled F cards and with the twin alone."""
    if request.param == "twin":
        monkeypatch.setattr(manifest_module, "FILE_CARDS", None)
    return request.param


def test_the_compiled_f_cards_are_built():
    assert "compiled" in PARSERS, "herofossil.cext._manifest is not built"


def _random_name(rnd: random.Random) -> bytes:
    """Mostly plain names; now and then one the twin must judge or unescape."""
    plain = [b"src", b"readme.md", b"d", b"a-b_c", b"~x", b"\xc3\xa9t\xc3\xa9", b"\xff"]
    odd = [b"a b", b".hidden", b".", b"..", b"x\\y", b"", b"n\\sm", b"a\\nb", b"a..b"]
    parts = plain + odd if rnd.random() < 0.15 else plain
    name = b"/".join(rnd.choice(parts) for _ in range(rnd.randint(1, 3)))
    name += b"%d" % rnd.randrange(1000)
    if rnd.random() < 0.01:
        name = b"/" + name
    if rnd.random() < 0.01:
        name += b"/"
    return name.replace(b" ", b"\\s") if rnd.random() < 0.9 else name


def _random_f_line(rnd: random.Random, name: bytes) -> bytes:
    args = [name]
    shape = rnd.random()
    if shape > 0.05:
        args.append(rnd.choice([H1, H2, H3, H1[:-1], "g" * 64, ""]).encode()
                    if rnd.random() < 0.02 else rnd.choice([H1, H2, H3]).encode())
        if shape > 0.5:
            args.append(rnd.choice([b"x", b"l", b"w"]) if rnd.random() < 0.95 else
                        rnd.choice([b"", b"xl"]))
            if shape > 0.8:
                args.append(_random_name(rnd))
                if shape > 0.99:
                    args.append(b"extra")
    sep = b"  " if rnd.random() < 0.005 else b" "
    return b"F " + sep.join(args) + (b" " if rnd.random() < 0.005 else b"")


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_f_cards_read_every_manifest_as_the_twin_does(seed, monkeypatch):
    results = []
    for parser in PARSERS:
        monkeypatch.setattr(manifest_module, "FILE_CARDS", None if parser == "twin" else COMPILED)
        got = []
        rnd = random.Random(seed)  # the same cases for each
        for _ in range(60):
            names = sorted({_random_name(rnd) for _ in range(rnd.randint(0, 12))})
            if rnd.random() < 0.1 and len(names) > 1:
                names.reverse()  # out of sort order
            head = (b"B " + H2.encode() + b"\n") if rnd.random() < 0.3 else b""
            lines = [_random_f_line(rnd, n) for n in names]
            body = head + C + D + b"".join(line + b"\n" for line in lines) + U
            try:
                m = parse_manifest(with_z(body), "m")
                got.append([(c.name, c.uuid, c.perm, c.oldname) for c in m.files])
            except ParseError as exc:
                got.append((str(exc), exc.line))
        results.append(got)
    assert all(r == results[0] for r in results)
    # Both kinds of outcome are among the cases (the generator is not all errors).
    assert {type(r) for r in results[0]} == {list, tuple}


def test_plain_f_cards_are_read_whole_by_the_compiled_parser():
    names = [f"dir{i // 10}/file{i}.txt" for i in range(300)]
    body = C + D + b"".join(b"F %s %s\n" % (n.encode(), H1.encode()) for n in sorted(names)) + U
    m = parse_manifest(with_z(body), "m")
    assert [c.name for c in m.files] == sorted(names) and {c.uuid for c in m.files} == {H1}
