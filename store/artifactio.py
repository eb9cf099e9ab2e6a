"""Artifacts as files named by their hash: Fossil's ``deconstruct``/``reconstruct`` layout."""

from __future__ import annotations

import os

from herofossil.errors import IntegrityError, UsageError
from herofossil.store import artifactdir
from herofossil.store.artifacts import ArtifactWriter
from herofossil.store.blobs import BlobReader, artifact_id
from herofossil.store.crosslink import Progress, _quiet, crosslink


def export_artifacts(env, dest: str, progress: Progress = _quiet, prefix_len: int = 2) -> int:
    """Write every artifact to ``dest/AA/BBBB…``; returns how many."""
    os.makedirs(dest, exist_ok=True)
    n = 0
    with env.read() as txn:
        total = txn.stat(env.db["blob"])["entries"]
        reader = BlobReader(txn, env.db["blob"])
        for aid in txn.cursor(db=env.db["blob"]).iternext(values=False):
            artifactdir.write_artifact(dest, aid.hex(), reader.content(aid), prefix_len)
            n += 1
            if n % 256 == 0:
                progress("export artifacts", n, total)
    progress("export artifacts", n, total)
    return n


def import_artifacts(env, src: str, progress: Progress = _quiet) -> int:
    """Add every artifact file under ``src`` (hash-verified) and index what is new.

    What arrives is stored as local writes are: older versions become reverse
    deltas on newer ones (``crosslink`` with ``deltify``). Returns how many
    artifacts were new. One transaction: on any bad file, nothing is added.
    """
    if not os.path.isdir(src):
        raise UsageError(f"{src} is not a directory")
    files = list(artifactdir.iter_artifacts(src))

    def txn_fn(txn):
        aw = ArtifactWriter(txn, env.db)
        new: list[bytes] = []
        for n, (name, path) in enumerate(files, 1):
            if len(name) != 64:
                raise UsageError(
                    f"{path}: SHA1-named artifact; herofossil stores SHA3-256 only "
                    "(run 'fossil hash-policy sha3' and 'fossil rebuild' on the source first)"
                )
            with open(path, "rb") as f:
                data = f.read()
            aid = artifact_id(data)
            if aid.hex() != name:
                raise IntegrityError(f"{path}: content hashes to {aid.hex()}, not its name")
            if aw.add(data, aid)[1]:
                new.append(aid)
            if n % 256 == 0:
                progress("import artifacts", n, len(files))
        crosslink(txn, env.db, new, aw=aw, deltify=True, progress=progress)
        return len(new)

    return env.write(txn_fn)
