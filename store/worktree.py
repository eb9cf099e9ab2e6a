"""Between a version and a directory on disk: ``checkout`` and ``snapshot`` (commit DIR)."""

from __future__ import annotations

import os
import stat

from herofossil.errors import UsageError
from herofossil.store.blobs import artifact_hex
from herofossil.store.changes import Delete, MakeDir, Put
from herofossil.store.paths import DIR_MARKER

# Version-control metadata of other tools never becomes content.
SKIP_NAMES = frozenset({".git", ".hg", ".svn", ".fslckout", "_FOSSIL_"})


def checkout(repo, ref: str | None, dest: str, *, force: bool = False) -> int:
    """Write version ``ref`` into ``dest`` (created; must be empty unless ``force``)."""
    if os.path.exists(dest) and os.listdir(dest) and not force:
        raise UsageError(f"{dest} is not empty: choose an empty directory or pass --force")
    os.makedirs(dest, exist_ok=True)
    n = 0
    for path, (aid, perm) in sorted(repo._files(ref).items()):
        target = os.path.join(dest, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if path.rpartition("/")[2] == DIR_MARKER:
            continue
        data = repo.artifact(aid)
        if os.path.lexists(target):
            os.remove(target)
        if perm == "l":
            os.symlink(data.decode("utf-8", "surrogateescape"), target)
        else:
            with open(target, "wb") as f:
                f.write(data)
            if perm == "x":
                os.chmod(target, 0o755)
        n += 1
    return n


def scan(root: str) -> tuple[dict[str, tuple[bytes, str]], list[str]]:
    """Files under ``root`` as path -> (content, perm), and the empty folders."""
    files: dict[str, tuple[bytes, str]] = {}
    empty: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        entries = [d for d in dirnames] + [f for f in filenames if f not in SKIP_NAMES]
        if rel and not entries:
            empty.append(rel)
        for name in filenames:
            if name in SKIP_NAMES or name == DIR_MARKER:
                continue
            full = os.path.join(dirpath, name)
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                files[path] = (os.readlink(full).encode("utf-8", "surrogateescape"), "l")
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
                files[path] = (data, "x" if st.st_mode & 0o111 else "")
    return files, empty


def snapshot_changes(repo, root: str, branch: str | None = None) -> list:
    """The changes that make ``branch``'s tip equal to the tree at ``root``."""
    if not os.path.isdir(root):
        raise UsageError(f"{root} is not a directory")
    files, empty = scan(root)
    current = repo._files(branch)
    on_disk = set(empty)  # every folder that exists under root
    for path in list(files) + empty:
        parts = path.split("/")
        on_disk.update("/".join(parts[:i]) for i in range(1, len(parts)))
    changes: list = []
    for path in sorted(current):
        folder, _, name = path.rpartition("/")
        if name == DIR_MARKER:
            # A kept folder goes with its marker only when it is gone from disk;
            # one that gained files keeps it (it stays when they go again).
            if folder not in on_disk:
                changes.append(Delete(path))
        elif path not in files:
            changes.append(Delete(path))
    for path, (data, perm) in sorted(files.items()):
        have = current.get(path)
        if have is None or have[1] != perm or have[0] != artifact_hex(data):
            changes.append(Put(path, data, perm))
    for folder in empty:
        if folder + "/" + DIR_MARKER not in current:
            changes.append(MakeDir(folder))
    return changes
