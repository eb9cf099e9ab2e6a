"""Artifacts as files named by their hash: Fossil's ``deconstruct``/``reconstruct`` layout."""

from __future__ import annotations

import os

from herofossil.errors import HeroFossilError, IntegrityError, UsageError
from herofossil.store import artifactdir
from herofossil.store import manifest as mf
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader, hashes_to
from herofossil.store.crosslink import crosslink, topological
from herofossil.store.keys import id_key, id_name
from herofossil.store.reports import Report, quiet

# A transaction's worth of imported artifacts: what an import holds in memory at most.
BATCH_BYTES = 64 << 20


def export_artifacts(env, dest: str, progress: Report = quiet, prefix_len: int = 2) -> int:
    """Write every artifact to ``dest/AA/BBBB…``; returns how many."""
    os.makedirs(dest, exist_ok=True)
    n = 0
    with env.read() as txn:
        total = txn.stat(env.db["blob"])["entries"]
        reader = BlobReader(txn, env.db)
        for aid in txn.cursor(db=env.db["blob"]).iternext(values=False):
            artifactdir.write_artifact(dest, id_name(aid), reader.content(aid), prefix_len)
            n += 1
            if n % 256 == 0:
                progress("export artifacts", n, total)
    progress("export artifacts", n, total)
    return n


def import_artifacts(env, src: str, progress: Report = quiet, *,
                     batch_bytes: int = BATCH_BYTES) -> int:
    """Add every artifact file under ``src`` (hash-verified) and index what is new.

    Every file is read and hashed first: on a bad one nothing is added. Then
    they are stored in transactions of about ``batch_bytes`` each (memory
    stays bounded by a batch): file contents first, then manifests parents
    first, then control artifacts, each batch indexed by ``crosslink`` and
    stored as local writes are (older versions become reverse deltas on
    newer ones). An import cut short leaves whole batches; running it again
    adds the rest. Returns how many artifacts were new.
    """
    if not os.path.isdir(src):
        raise UsageError(f"{src} is not a directory")
    files = list(artifactdir.iter_artifacts(src))
    plain: list[tuple[bytes, str, int]] = []
    manifests: dict[bytes, tuple[str, int, mf.Manifest]] = {}
    controls: list[tuple[str, bytes, str, int]] = []
    for n, (name, path) in enumerate(files, 1):
        with open(path, "rb") as f:
            data = f.read()
        aid = id_key(name)  # a SHA1 name of an older Fossil repository is checked with SHA1
        if not hashes_to(aid, data):
            raise IntegrityError(f"{path}: its content does not hash to its name {name}")
        art = _card_artifact(data)
        if isinstance(art, mf.Manifest):
            manifests[aid] = (str(path), len(data), art)
        elif isinstance(art, mf.ControlArtifact):
            controls.append((art.date, aid, str(path), len(data)))
        else:
            plain.append((aid, str(path), len(data)))
        if n % 256 == 0:
            progress("import artifacts: check", n, len(files))
    order = plain + [(cid, *manifests[cid][:2]) for cid in topological(
        {cid: m for cid, (_, _, m) in manifests.items()})]
    order += [(aid, path, size) for _date, aid, path, size in sorted(controls)]
    parsed = {cid: m for cid, (_, _, m) in manifests.items()}
    added = done = 0
    batch: list[tuple[bytes, str, int]] = []
    size = 0
    for item in order:
        batch.append(item)
        size += item[2]
        if size >= batch_bytes:
            added += _import_batch(env, batch, parsed)
            done += len(batch)
            progress("import artifacts", done, len(order))
            batch, size = [], 0
    if batch:
        added += _import_batch(env, batch, parsed)
    progress("import artifacts", len(order), len(order))
    return added


def _card_artifact(data: bytes):
    """The manifest or control artifact ``data`` is, else None (file content)."""
    if not data.endswith(b"\n"):
        return None
    try:
        return mf.parse_artifact(data)
    except HeroFossilError:
        return None


def _import_batch(env, batch: list[tuple[bytes, str, int]], parsed: dict) -> int:
    """Store one batch (read from disk again) and index it; returns how many were new."""

    def txn_fn(txn):
        aw = ArtifactWriter(txn, env.db)
        new = []
        for aid, path, _size in batch:
            if aw.has(aid):
                continue
            with open(path, "rb") as f:
                data = f.read()
            if not hashes_to(aid, data):  # changed on disk since it was checked
                raise IntegrityError(f"{path}: changed while it was imported")
            aw.add(data, aid, cards=aid in parsed)
            new.append(aid)
        crosslink(txn, env.db, new, aw=aw, deltify=True,
                  parsed={aid: parsed[aid] for aid in new if aid in parsed})
        return len(new)

    return env.write(txn_fn)
