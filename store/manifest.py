"""Fossil's artifact card format: manifests (check-ins) and control artifacts.

A structural artifact is ASCII text made of *cards*, one per line, each a
card-type letter followed by arguments separated by single spaces, with no
other whitespace. Cards appear in (non-strictly) increasing order of their
letter. The last card is ``Z <md5>``: the lowercase hex MD5 of every byte
before the ``Z``. The artifact may be PGP clear-signed; the signature
wrapper is kept verbatim and is not part of the Z checksum.

A manifest (check-in) allows, in this order::

    B baseline-manifest            (delta-manifest only)
    C comment                      (required)
    D YYYY-MM-DDTHH:MM:SS.SSS      (required, UTC)
    F name ?hash? ?perm? ?old-name?  (strictly sorted by name bytes)
    N mimetype
    P parent-hash ...
    Q (+|-)hash ?baseline-hash?    (cherry-picks / back-outs)
    R md5-of-all-files
    T (+|-|*)tag-name * ?value?    (sorted by name, then target)
    U user                         (required)
    Z md5                          (required)

A control artifact allows only ``D``, ``T`` (target = a full hash), ``U``
and ``Z``, all required. Arguments that are free text (comments, file
names, user, tag names and values, mimetype) are *fossilized*: backslash,
NUL and whitespace are escaped as ``\\\\ \\0 \\s \\t \\n \\r \\v \\f``.

F-card ``perm`` is ``x`` (executable), ``l`` (symlink), or empty; Fossil
writes ``w`` as a placeholder when a renamed file has neither. An F card
without a hash deletes the file; it is legal only in a delta-manifest.

Artifact names are the lowercase hex SHA3-256 of the bytes (:func:`sha3_hex`);
cards may reference 40-hex (SHA1) names from older Fossil repositories.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from herofossil.errors import InvalidPathError, ParseError
from herofossil.store.blobs import artifact_hex

__all__ = [
    "FileCard",
    "TagCard",
    "Manifest",
    "ControlArtifact",
    "fossilize",
    "defossilize",
    "parse_artifact",
    "parse_manifest",
    "resolve_files",
    "overlay_cards",
    "repo_checksum",
    "date_now",
    "date_to_datetime",
    "datetime_to_date",
    "sha3_hex",
    "is_hash",
]

# --------------------------------------------------------------------------
# Escaping

_FOSSILIZE_MAP = {
    "\\": "\\\\",
    "\x00": "\\0",
    " ": "\\s",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\v": "\\v",
    "\f": "\\f",
}
_FOSSILIZE_RE = re.compile(r"[\\\x00 \t\n\r\v\f]")
_DEFOSSILIZE_MAP = {"n": "\n", "s": " ", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "0": "\x00"}
_DEFOSSILIZE_RE = re.compile(r"\\(.)", re.DOTALL)
_DEFOSSILIZE_BMAP = {ord(k): v.encode() for k, v in _DEFOSSILIZE_MAP.items()}
_DEFOSSILIZE_BRE = re.compile(rb"\\(.)", re.DOTALL)


def fossilize(s: str) -> str:
    """Escape ``s`` as a card argument, exactly like Fossil's ``fossilize()``."""
    if _FOSSILIZE_RE.search(s) is None:
        return s
    return _FOSSILIZE_RE.sub(lambda m: _FOSSILIZE_MAP[m.group()], s)


def defossilize(s: str) -> str:
    """Undo :func:`fossilize`, exactly like Fossil's ``defossilize()``.

    An unknown escape ``\\c`` yields ``c``; a trailing lone backslash is kept.
    """
    if "\\" not in s:
        return s
    return _DEFOSSILIZE_RE.sub(lambda m: _DEFOSSILIZE_MAP.get(m.group(1), m.group(1)), s)


def _defossilize_b(b: bytes) -> bytes:
    if b"\\" not in b:
        return b
    return _DEFOSSILIZE_BRE.sub(lambda m: _DEFOSSILIZE_BMAP.get(m.group(1)[0], m.group(1)), b)


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Hashes and dates


def sha3_hex(data: bytes) -> str:
    """The artifact ID of ``data``: lowercase hex SHA3-256 (Fossil's default hash)."""
    return artifact_hex(data)


_HEX_DEL = b"0123456789abcdefABCDEF"
_PERMS = frozenset(("", "x", "l"))


def _is_hex(b: bytes) -> bool:
    return not b.translate(None, _HEX_DEL)


def is_hash(s: str | bytes) -> bool:
    """True if ``s`` is a full artifact name: 40 (SHA1) or 64 (SHA3-256) hex digits."""
    if isinstance(s, str):
        if not s.isascii():
            return False
        s = s.encode()
    return len(s) in (40, 64) and _is_hex(s)


_DATE_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?\Z")


def datetime_to_date(dt: datetime) -> str:
    """Format ``dt`` as Fossil does: UTC ``YYYY-MM-DDTHH:MM:SS.SSS``; naive means UTC."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond // 1000:03d}")


def date_now() -> str:
    """The current time as a Fossil date string (UTC, milliseconds)."""
    return datetime_to_date(datetime.now(UTC))


def date_to_datetime(s: str) -> datetime:
    """Parse a Fossil date string (``T`` or space, optional seconds/fraction) to aware UTC."""
    m = _DATE_RE.match(s)
    if m is None:
        raise ParseError(f"bad date {s!r}: expected YYYY-MM-DDTHH:MM:SS.SSS")
    y, mo, d, h, mi, sec, frac = m.groups()
    us = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0), us, tzinfo=UTC)
    except ValueError as e:
        raise ParseError(f"bad date {s!r}: {e}") from None


# --------------------------------------------------------------------------
# Data model


@dataclass(slots=True)
class FileCard:
    """One F card: a file of a check-in.

    ``uuid`` None means "removed" (delta-manifest only). ``perm`` is ``""``,
    ``"x"`` or ``"l"``; Fossil's ``w`` placeholder on a renamed file reads as
    ``""`` and is written back. ``oldname`` is the name in the parent
    check-in when the file was renamed.
    """

    name: str
    uuid: str | None
    perm: str = ""
    oldname: str | None = None
    # (sort key, F line) once serialised: cards carry over from manifest to
    # manifest, so each is formatted and checked once. Cards are not mutated.
    _line: tuple[bytes, str] | None = field(default=None, init=False, repr=False,
                                            compare=False)


@dataclass(slots=True)
class TagCard:
    """One T card. ``kind`` is ``+`` (add), ``-`` (cancel) or ``*`` (propagating).

    ``target`` is ``*`` (this check-in; manifests only) or a full artifact hash.
    ``value`` None means no value; ``""`` is an explicit empty value.
    """

    kind: str
    name: str
    target: str
    value: str | None = None


def _tag_line(t: TagCard) -> str:
    if t.kind not in ("+", "-", "*"):
        raise ValueError(f"tag kind must be '+', '-' or '*', not {t.kind!r}")
    if _is_hex(_enc(t.name)):
        raise ValueError(f"tag name {t.name!r} is empty or looks like a hash; Fossil rejects it")
    s = f"T {fossilize(t.kind + t.name)} {t.target}"
    if t.value is not None:
        s += " " + fossilize(t.value)
    return s + "\n"


def _sorted_tags(tags: Iterable[TagCard]) -> list[TagCard]:
    out = sorted(tags, key=lambda t: (_enc(t.kind + t.name), t.target))
    for a, b in zip(out, out[1:], strict=False):
        if a.kind + a.name == b.kind + b.name and a.target == b.target:
            raise ValueError(f"duplicate T card {a.kind}{a.name} {a.target}")
    return out


def _finish(lines: list[str], pgp_header: bytes, pgp_signature: bytes) -> bytes:
    body = _enc("".join(lines))
    z = b"Z " + hashlib.md5(body).hexdigest().encode() + b"\n"
    return pgp_header + body + z + pgp_signature


def _check_hash(h: str, what: str) -> None:
    if not is_hash(h):
        raise ValueError(f"{what}: {h!r} is not a 40- or 64-hex artifact hash")


@dataclass
class Manifest:
    """A check-in. ``to_bytes()`` gives the artifact; its :func:`sha3_hex` is the check-in ID.

    ``date`` is the Fossil date string kept verbatim. ``baseline`` (B card)
    makes this a delta-manifest whose ``files`` list only changes.
    ``cherrypicks`` are Q cards as ``("+hash" | "-hash", base-hash | None)``.
    ``repo_checksum`` is the R card (see :func:`repo_checksum`).
    ``empty_p_card`` reproduces the argument-less ``P`` card of old Fossil.
    ``pgp_header``/``pgp_signature`` hold a clear-signature wrapper verbatim.
    """

    comment: str
    date: str
    user: str
    files: list[FileCard] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    tags: list[TagCard] = field(default_factory=list)
    baseline: str | None = None
    mimetype: str | None = None
    cherrypicks: list[tuple[str, str | None]] = field(default_factory=list)
    repo_checksum: str | None = None
    empty_p_card: bool = False
    pgp_header: bytes = b""
    pgp_signature: bytes = b""

    @property
    def is_delta(self) -> bool:
        """True for a delta-manifest (one with a B card)."""
        return self.baseline is not None

    def to_bytes(self) -> bytes:
        """Serialise, sorting F and T cards as Fossil requires, and append the Z card.

        Raises InvalidPathError for a bad or duplicate file name, ValueError for
        other content Fossil would reject.
        """
        lines: list[str] = []
        ap = lines.append
        if self.baseline is not None:
            _check_hash(self.baseline, "B card")
            ap(f"B {self.baseline}\n")
        ap(f"C {fossilize(self.comment)}\n")
        if _DATE_RE.match(self.date) is None:
            raise ValueError(f"D card: bad date {self.date!r}")
        ap(f"D {self.date}\n")
        lines.extend(self._file_lines())
        if self.mimetype is not None:
            ap(f"N {fossilize(self.mimetype)}\n")
        if self.parents:
            for p in self.parents:
                _check_hash(p, "P card")
            if len(set(self.parents)) != len(self.parents):
                raise ValueError("P card: duplicate parent")
            ap("P " + " ".join(self.parents) + "\n")
        elif self.empty_p_card:
            ap("P\n")
        for target, base in self.cherrypicks:
            if target[:1] not in ("+", "-"):
                raise ValueError(f"Q card: {target!r} must start with '+' or '-'")
            _check_hash(target[1:], "Q card")
            if base is None:
                ap(f"Q {target}\n")
            else:
                _check_hash(base, "Q card")
                ap(f"Q {target} {base}\n")
        if self.repo_checksum is not None:
            if len(self.repo_checksum) != 32 or not _is_hex(self.repo_checksum.encode()):
                raise ValueError(f"R card: bad checksum {self.repo_checksum!r}")
            ap(f"R {self.repo_checksum}\n")
        for t in _sorted_tags(self.tags):
            if t.target != "*":
                _check_hash(t.target, "T card")
            lines.append(_tag_line(t))
        ap(f"U {fossilize(self.user)}\n")
        return _finish(lines, self.pgp_header, self.pgp_signature)

    def _file_lines(self) -> list[str]:
        delta = self.baseline is not None
        keyed = []
        for f in self.files:
            kl = f._line
            if kl is None:
                kl = f._line = _card_line(f)
            if f.uuid is None and not delta:
                raise ValueError(f"F card {f.name!r}: a removed file needs a delta-manifest")
            keyed.append(kl)
        keyed.sort()  # by key: equal keys (a duplicate) are refused just below
        for a, b in zip(keyed, keyed[1:], strict=False):
            if a[0] == b[0]:
                raise InvalidPathError(f"duplicate file name in manifest: {_dec(a[0])!r}")
        return [line for _, line in keyed]


def _card_line(f: FileCard) -> tuple[bytes, str]:
    """(sort key, F line) of one card, checked as Fossil would."""
    key, name = _file_name(f.name)
    uuid = f.uuid
    if uuid is None:
        return key, f"F {name}\n"
    if not is_hash(uuid):
        _check_hash(uuid, f"F card {f.name!r}")
    perm = f.perm
    if perm not in _PERMS and (not perm or _FOSSILIZE_RE.search(perm)):
        raise ValueError(f"F card {f.name!r}: bad permission {perm!r}")
    if f.oldname is not None:
        if not _simple_path(_enc(f.oldname)):
            raise InvalidPathError(f"not a valid file name for Fossil: {f.oldname!r}")
        return key, f"F {name} {uuid} {perm or 'w'} {fossilize(f.oldname)}\n"
    if perm:
        return key, f"F {name} {uuid} {perm}\n"
    return key, f"F {name} {uuid}\n"


@dataclass
class ControlArtifact:
    """A control artifact: tag changes on other artifacts (T targets are hashes)."""

    date: str
    user: str
    tags: list[TagCard] = field(default_factory=list)
    pgp_header: bytes = b""
    pgp_signature: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise (T cards sorted as Fossil requires) and append the Z card."""
        if not self.tags:
            raise ValueError("a control artifact needs at least one T card")
        if _DATE_RE.match(self.date) is None:
            raise ValueError(f"D card: bad date {self.date!r}")
        lines = [f"D {self.date}\n"]
        for t in _sorted_tags(self.tags):
            _check_hash(t.target, "T card target")
            lines.append(_tag_line(t))
        lines.append(f"U {fossilize(self.user)}\n")
        return _finish(lines, self.pgp_header, self.pgp_signature)


# --------------------------------------------------------------------------
# Helpers on check-ins


def resolve_files(manifest: Manifest, baseline: Manifest | None) -> dict[str, FileCard]:
    """The full file list of ``manifest`` as name -> FileCard, applying a delta to its baseline.

    Same semantics as Fossil's ``manifest_file_next``: a delta F card with a
    hash replaces or adds, one without a hash removes; a rename only removes
    the old name if the delta says so with its own F card.
    """
    if manifest.baseline is None:
        return {f.name: f for f in manifest.files}
    if baseline is None:
        raise ValueError(f"delta-manifest needs its baseline {manifest.baseline}")
    if baseline.baseline is not None:
        raise ParseError(f"baseline {manifest.baseline} is itself a delta-manifest")
    out = overlay_cards({f.name: f for f in baseline.files}, manifest.files)
    return dict(sorted(out.items(), key=lambda kv: _enc(kv[0])))


def overlay_cards(files: dict[str, FileCard], cards: Iterable[FileCard]) -> dict[str, FileCard]:
    """Apply delta ``cards`` to the name -> card dict ``files`` in place (a card without a
    hash removes its file) and return it."""
    for f in cards:
        if f.uuid is None:
            files.pop(f.name, None)
        else:
            files[f.name] = f
    return files


def repo_checksum(files: Iterable[tuple[str, bytes]]) -> str:
    """The R-card value: MD5 over ``name SP size LF content`` for each file, sorted by name.

    ``files`` is (name, content) of every file of the check-in; for a symlink
    the content is the link target.
    """
    h = hashlib.md5()
    for name, content in sorted(((_enc(n), c) for n, c in files), key=lambda nc: nc[0]):
        h.update(name)
        h.update(b" %d\n" % len(content))
        h.update(content)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Parsing

_PGP_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
# Card letters of the structural kinds this module does not model (wiki, ticket,
# attachment, technote, cluster, forum): seeing one means "return None".
_FOREIGN = frozenset(b"AEGHIJKLMW")
_MANIFEST_ONLY = frozenset(b"BFQR")
_MANIFEST_ALLOWED = frozenset(b"BCDFNPQRTUZ")
_CONTROL_ALLOWED = frozenset(b"DTUZ")


_NAMES: dict[str, tuple[bytes, str]] = {}


def _file_name(name: str) -> tuple[bytes, str]:
    """(sort key, fossilized form) of a valid F-card name; names repeat, so they are cached."""
    got = _NAMES.get(name)
    if got is None:
        key = _enc(name)
        if not _simple_path(key):
            raise InvalidPathError(f"not a valid file name for Fossil: {name!r}")
        if len(_NAMES) > 200_000:
            _NAMES.clear()
        got = _NAMES[name] = (key, fossilize(name))
    return got


def _simple_path(b: bytes) -> bool:
    """Fossil's file_is_simple_pathname (non-strict) on the raw name bytes."""
    if not b or b[0] == 0x2F or b"//" in b or b[-1] == 0x2F or b"\x00" in b:
        return False
    if b[0] == 0x2E or b"/." in b:
        for seg in b.split(b"/"):
            if seg == b"." or seg == b"..":
                return False
    return True


def _strip_pgp(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Split a clear-signed artifact into (header, body, signature) as Fossil does."""
    if not data.startswith(_PGP_BEGIN):
        return b"", data, b""
    i = data.find(b"\n\n", len(_PGP_BEGIN) - 1)
    j = data.find(b"\n\r\n", len(_PGP_BEGIN) - 1)
    cands = [x + 2 for x in (i,) if x >= 0] + [x + 3 for x in (j,) if x >= 0]
    if not cands:
        return b"", data, b""
    start = min(cands)
    end = data.rfind(b"\n-----BEGIN PGP SIGNATURE-", start - 1)
    end = len(data) if end < 0 else end + 1
    return data[:start], data[start:end], data[end:]


def _zcard_ok(body: bytes) -> bool:
    n = len(body)
    return (
        n >= 35
        and body[n - 35 : n - 33] == b"Z "
        and hashlib.md5(memoryview(body)[: n - 35]).hexdigest().encode() == body[n - 33 : n - 1]
    )


def parse_artifact(data: bytes, name: str | None = None) -> Manifest | ControlArtifact | None:
    """Parse a check-in or control artifact; None for anything else.

    Ordinary file content (no trailing ``Z <md5>`` card matching the bytes)
    is rejected cheaply. Other structural kinds (wiki, ticket, technote,
    attachment, cluster, forum) also give None. A malformed card in
    something with a valid Z card raises ParseError naming card and line.
    """
    n = len(data)
    if n < 10 or data[n - 1] != 0x0A:
        return None
    if data[n - 35 : n - 33] != b"Z " and not data.startswith(_PGP_BEGIN):
        return None
    header, body, sig = _strip_pgp(data)
    if len(body) < 10 or not (0x41 <= body[0] <= 0x5A) or body[1] != 0x20:
        return None
    if not _zcard_ok(body):
        return None
    return _parse_cards(body, header, sig, name)


def parse_manifest(data: bytes, name: str | None = None) -> Manifest:
    """Parse a check-in manifest; ParseError if ``data`` is anything else."""
    n = len(data)
    if n == 0 or data[n - 1] != 0x0A:
        raise ParseError("not a manifest: does not end with a newline", name)
    header, body, sig = _strip_pgp(data)
    if len(body) < 35 or body[len(body) - 35 : len(body) - 33] != b"Z ":
        raise ParseError("not a manifest: no Z card at the end", name)
    if not _zcard_ok(body):
        line = body.count(b"\n") + header.count(b"\n")
        raise ParseError("Z card checksum does not match the content", name, line)
    art = _parse_cards(body, header, sig, name)
    if not isinstance(art, Manifest):
        kind = "control artifact" if art is not None else "structural artifact of another kind"
        raise ParseError(f"not a check-in manifest but a {kind}", name)
    return art


def _parse_cards(
    body: bytes, header: bytes, sig: bytes, name: str | None
) -> Manifest | ControlArtifact | None:
    """The artifact whose Z card checks out in ``body``: a Manifest, a ControlArtifact, or
    None for a structural artifact of another kind (Fossil's manifest_parse)."""
    lines = body[: len(body) - 35].split(b"\n")
    if lines[-1] != b"":
        raise ParseError(
            "Z card is not on a line of its own", name, len(lines) + header.count(b"\n")
        )
    lines.pop()
    cards = _CardReader(name, header.count(b"\n"))
    seen = cards.read(lines)
    if seen is None:
        return None
    cards.check_file_hashes(lines)
    return _artifact_of(cards, seen, cards.line0 + len(lines) + 1, header, sig)


class _CardReader:
    """The cards of one artifact read in order: each checked, its value kept; errors name
    the file and line."""

    __slots__ = ("name", "line0", "baseline", "comment", "date", "user", "mimetype", "rcksum",
                 "empty_p", "p_seen", "parents", "cherry", "tags", "files", "fnames_prev",
                 "uuids", "ni", "nfile")

    def __init__(self, name: str | None, line0: int):
        self.name = name
        self.line0 = line0
        self.baseline = self.comment = self.date = self.user = None
        self.mimetype = self.rcksum = None
        self.empty_p = self.p_seen = False
        self.parents: list[str] = []
        self.cherry: list[tuple[str, str | None]] = []
        self.tags: list[TagCard] = []
        self.files: list[FileCard] = []
        self.fnames_prev = b""
        self.uuids: list[bytes] = []  # F-card hashes, checked as hex all at once
        self.ni = -1  # index of the first line with an F-card hash
        self.nfile = 0

    def err(self, msg: str, idx: int) -> ParseError:
        return ParseError(msg, self.name, self.line0 + idx + 1)

    def read(self, lines: list[bytes]) -> set[int] | None:
        """Read every card; the set of card letters seen, None for a foreign kind."""
        seen: set[int] = set()
        prev = 0
        idx, nlines = 0, len(lines)
        while idx < nlines:
            line = lines[idx]
            if line[:2] == b"F " and prev <= 0x46 and FILE_CARDS is not None:
                # The plain F cards at once (compiled); the twin reads the next other one.
                taken = FILE_CARDS(lines, idx, self, FileCard)
                if taken > idx:
                    prev = 0x46
                    seen.add(prev)
                    idx = taken
                    continue
            if not line:
                raise self.err("empty line", idx)
            c = line[0]
            if len(line) > 1 and line[1] != 0x20:
                raise self.err(f"bad card {_dec(line[:20])!r}", idx)
            if c in _FOREIGN:
                return None
            if c < prev:
                raise self.err(f"{chr(c)} card out of order (after {chr(prev)} card)", idx)
            prev = c
            seen.add(c)
            args = line[2:].split(b" ") if len(line) > 1 else []
            if c == 0x46:  # F
                self.file_card(args, idx)
            elif c == 0x54:  # T
                self.tag_card(args, idx)
            elif c == 0x50:  # P
                self.parent_card(args, idx)
            elif c == 0x51:  # Q
                self.cherrypick_card(args, idx)
            else:
                self.single_card(c, args, idx)
            idx += 1
        return seen

    def file_card(self, args: list[bytes], idx: int) -> None:
        """F NAME [HASH [PERM [OLDNAME]]] (the readable twin of ``FILE_CARDS``, which
        reads the plain ones)"""
        err = self.err
        if len(args) > 4:
            raise err("F card: extra arguments", idx)
        nm = _defossilize_b(args[0]) if args else b""
        if not _simple_path(nm):
            raise err(f"F card: file name {_dec(nm)!r} is not a simple path", idx)
        if self.nfile and nm <= self.fnames_prev:
            raise err(f"F card: {_dec(nm)!r} is out of sort order", idx)
        self.fnames_prev = nm
        self.nfile += 1
        files = self.files
        if len(args) == 1:
            if self.baseline is None:
                raise err(f"F card {_dec(nm)!r}: missing hash", idx)
            files.append(FileCard(_dec(nm), None))
            return
        u = args[1]
        if len(u) != 40 and len(u) != 64:
            raise err(f"F card {_dec(nm)!r}: hash has wrong length {len(u)}", idx)
        self.uuids.append(u)
        if self.ni < 0:
            self.ni = idx
        if len(args) == 2:
            files.append(FileCard(_dec(nm), u.decode("ascii", "replace")))
        elif len(args) == 3:
            files.append(FileCard(_dec(nm), u.decode("ascii", "replace"), _dec(args[2])))
        else:
            old = _defossilize_b(args[3])
            if not _simple_path(old):
                raise err(f"F card: old name {_dec(old)!r} is not a simple path", idx)
            perm = _dec(args[2])
            if perm == "w":  # Fossil's placeholder when a renamed file has no flag
                perm = ""
            files.append(FileCard(_dec(nm), u.decode("ascii", "replace"), perm, _dec(old)))

    def tag_card(self, args: list[bytes], idx: int) -> None:
        """T (+|-|*)NAME TARGET [VALUE]"""
        err = self.err
        if len(args) < 2 or len(args) > 3:
            raise err("T card: expected a name, a target and an optional value", idx)
        tn, tgt = _dec(_defossilize_b(args[0])), args[1]
        if tgt != b"*" and not is_hash(tgt):
            raise err(f"T card: bad target {_dec(tgt)!r}", idx)
        if not tn or tn[0] not in "+-*":
            raise err(f"T card: name {tn!r} does not start with '+', '-' or '*'", idx)
        if _is_hex(_enc(tn[1:])):
            raise err(f"T card: name {tn!r} looks like a hash", idx)
        val = _dec(_defossilize_b(args[2])) if len(args) == 3 else None
        t = TagCard(tn[0], tn[1:], tgt.decode(), val)
        tags = self.tags
        if tags:
            pt = tags[-1]
            a, b = _enc(pt.kind + pt.name), _enc(tn)
            if a > b or (a == b and pt.target >= t.target):
                raise err(f"T card {tn!r} is out of sort order", idx)
        tags.append(t)

    def parent_card(self, args: list[bytes], idx: int) -> None:
        """P [HASH ...]"""
        for p in args:
            if not is_hash(p):
                raise self.err(f"P card: bad hash {_dec(p)!r}", idx)
        if self.p_seen:
            raise self.err("more than one P card", idx)
        self.p_seen = True
        self.parents = [p.decode() for p in args]
        self.empty_p = not self.parents

    def cherrypick_card(self, args: list[bytes], idx: int) -> None:
        """Q (+|-)HASH [BASELINE]"""
        err = self.err
        if not 1 <= len(args) <= 2:
            raise err("Q card: expected one or two hashes", idx)
        tq = args[0]
        if tq[:1] not in (b"+", b"-") or not is_hash(tq[1:]):
            raise err(f"Q card: bad target {_dec(tq)!r}", idx)
        if len(args) == 2 and not is_hash(args[1]):
            raise err(f"Q card: bad baseline {_dec(args[1])!r}", idx)
        self.cherry.append((tq.decode(), args[1].decode() if len(args) == 2 else None))

    def single_card(self, c: int, args: list[bytes], idx: int) -> None:
        """The cards that occur at most once, with one argument: B, C, D, N, R, U."""
        err = self.err
        card = chr(c)
        if c == 0x55 and not args:  # bare "U": Fossil reads it as anonymous
            args = [b""]
        if len(args) != 1:
            raise err(f"{card} card: expected exactly one argument", idx)
        a0 = args[0]
        if c == 0x42:  # B
            if self.baseline is not None:
                raise err("more than one B card", idx)
            if not is_hash(a0):
                raise err(f"B card: bad hash {_dec(a0)!r}", idx)
            self.baseline = a0.decode()
        elif c == 0x43:  # C
            if self.comment is not None:
                raise err("more than one C card", idx)
            self.comment = _dec(_defossilize_b(a0))
        elif c == 0x44:  # D
            if self.date is not None:
                raise err("more than one D card", idx)
            self.date = _dec(a0)
            if _DATE_RE.match(self.date) is None:
                raise err(f"D card: cannot parse date {self.date!r}", idx)
        elif c == 0x4E:  # N
            if self.mimetype is not None:
                raise err("more than one N card", idx)
            self.mimetype = _dec(_defossilize_b(a0))
        elif c == 0x52:  # R
            if self.rcksum is not None:
                raise err("more than one R card", idx)
            if len(a0) != 32 or not _is_hex(a0):
                raise err(f"R card: bad checksum {_dec(a0)!r}", idx)
            self.rcksum = a0.decode()
        elif c == 0x55:  # U
            if self.user is not None:
                raise err("more than one U card", idx)
            self.user = _dec(_defossilize_b(a0))
        else:
            raise err(f"unknown card {card!r}", idx)

    def check_file_hashes(self, lines: list[bytes]) -> None:
        """Name the first F card whose hash is not hex (all are checked at once first)."""
        if self.uuids and not _is_hex(b"".join(self.uuids)):
            for idx in range(self.ni, len(lines)):
                parts = lines[idx].split(b" ")
                if parts[0] == b"F" and len(parts) > 2 and not _is_hex(parts[2]):
                    raise self.err(f"F card: bad hash {_dec(parts[2])!r}", idx)


try:  # the compiled F cards: their parse was 45% of a clone's crosslink (config-L)
    from herofossil.cext._manifest import file_cards as FILE_CARDS
except ImportError:  # not built: the twin reads every card
    FILE_CARDS = None


def _artifact_of(cards: _CardReader, seen: set[int], end: int, header: bytes,
                 sig: bytes) -> Manifest | ControlArtifact:
    """The manifest or control artifact that ``cards`` make, once their set is checked;
    ``end``: the line number that errors about missing cards name."""
    name = cards.name
    if cards.comment is not None or bool(seen & _MANIFEST_ONLY):
        bad = seen - _MANIFEST_ALLOWED
        if bad:
            raise ParseError(f"{chr(min(bad))} card not allowed in a manifest", name, end)
        for need, what in ((cards.comment, "C"), (cards.date, "D"), (cards.user, "U")):
            if need is None:
                raise ParseError(f"{what} card missing in manifest", name, end)
        return Manifest(
            comment=cards.comment,
            date=cards.date,
            user=cards.user,
            files=cards.files,
            parents=cards.parents,
            tags=cards.tags,
            baseline=cards.baseline,
            mimetype=cards.mimetype,
            cherrypicks=cards.cherry,
            repo_checksum=cards.rcksum,
            empty_p_card=cards.empty_p,
            pgp_header=header,
            pgp_signature=sig,
        )
    bad = seen - _CONTROL_ALLOWED
    if bad:
        raise ParseError(f"{chr(min(bad))} card not allowed in a control artifact", name, end)
    for need, what in ((cards.date, "D"), (cards.user, "U"), (cards.tags or None, "T")):
        if need is None:
            raise ParseError(f"{what} card missing in control artifact", name, end)
    for t in cards.tags:
        if t.target == "*":
            raise ParseError("T card in a control artifact must name a hash, not '*'", name, end)
    return ControlArtifact(date=cards.date, user=cards.user, tags=cards.tags, pgp_header=header,
                           pgp_signature=sig)
