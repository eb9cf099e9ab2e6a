"""Artifacts as files named by their hash: the layout of ``fossil deconstruct``.

``fossil deconstruct DIR`` writes each artifact (its raw, undeltified bytes)
to ``DIR/AA/BBBB...`` where ``AABBBB...`` is the full 40- or 64-hex artifact
name and ``AA`` its first *prefix-length* characters (``-L N``, 0..9,
default 2; 0 puts every file directly in ``DIR``). ``fossil reconstruct
REPO DIR`` reads every file below ``DIR`` recursively, skipping any file or
directory whose name starts with ``.`` (``.rid1``, ``.private``), and
hashes the content itself: the file name is not trusted by Fossil.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from herofossil.errors import IntegrityError, ParseError
from herofossil.store.blobs import artifact_hex

__all__ = ["artifact_path", "write_artifact", "iter_artifacts", "hash_for"]

_HEX = frozenset("0123456789abcdef")


def _check_uuid(uuid: str) -> None:
    if len(uuid) not in (40, 64) or not _HEX.issuperset(uuid):
        raise ValueError(f"{uuid!r} is not a lowercase 40- or 64-hex artifact name")


def hash_for(uuid: str, data: bytes) -> str:
    """Hash ``data`` with the algorithm ``uuid``'s length implies (40: SHA1, 64: SHA3-256)."""
    if len(uuid) == 40:
        return hashlib.sha1(data).hexdigest()
    return artifact_hex(data)


def artifact_path(root: str | os.PathLike[str], uuid: str, prefix_len: int = 2) -> Path:
    """Where ``fossil deconstruct -L prefix_len`` puts artifact ``uuid`` under ``root``."""
    _check_uuid(uuid)
    if not 0 <= prefix_len <= 9:
        raise ValueError(f"prefix length must be 0..9, not {prefix_len}")
    root = Path(root)
    if prefix_len == 0:
        return root / uuid
    return root / uuid[:prefix_len] / uuid[prefix_len:]


def write_artifact(
    root: str | os.PathLike[str],
    uuid: str,
    data: bytes,
    prefix_len: int = 2,
    *,
    verify: bool = False,
) -> Path:
    """Write ``data`` as artifact ``uuid`` under ``root``; return its path.

    The write is atomic (a ``.``-prefixed temporary file, which Fossil
    ignores, renamed into place). With ``verify``, raise IntegrityError if
    ``data`` does not hash to ``uuid``.
    """
    path = artifact_path(root, uuid, prefix_len)
    if verify and hash_for(uuid, data) != uuid:
        raise IntegrityError(f"artifact {uuid} does not match its content; nothing written")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def iter_artifacts(root: str | os.PathLike[str]) -> Iterator[tuple[str, Path]]:
    """Yield ``(uuid, path)`` for every artifact file below ``root``, sorted by uuid.

    Works for any prefix length (the name is the concatenation of the path
    components below ``root``). Files and directories starting with ``.``
    are skipped, as Fossil does. A file whose name is not a 40- or 64-hex
    hash raises ParseError. Contents are not read or verified here.
    """
    root = Path(root)
    if not root.is_dir():
        raise ParseError("not a directory of artifacts", str(root))
    found: list[tuple[str, Path]] = []
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        d, prefix = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    stack.append((Path(e.path), prefix + e.name))
                    continue
                uuid = prefix + e.name
                if len(uuid) not in (40, 64) or not _HEX.issuperset(uuid):
                    raise ParseError(
                        "not an artifact: the name is not a lowercase 40- or 64-hex hash",
                        e.path,
                    )
                found.append((uuid, Path(e.path)))
    found.sort()
    yield from found
