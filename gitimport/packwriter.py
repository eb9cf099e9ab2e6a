"""Writing Git objects as one pack file, indexed by ``git index-pack``."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
import zlib

from herofossil.gitimport.errors import GitError
from herofossil.gitimport.objects import object_id

TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


class PackWriter:
    """Append whole objects to a temporary pack; ``close`` moves it into the repository."""

    def __init__(self, gitdir: str):
        self.gitdir = gitdir
        self.dir = os.path.join(gitdir, "objects", "pack")
        os.makedirs(self.dir, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix="tmp-herofossil-", suffix=".pack", dir=self.dir)
        self.f = os.fdopen(fd, "w+b")
        self.f.write(b"PACK" + struct.pack(">II", 2, 0))
        self.count = 0
        self.written: set[str] = set()

    def add(self, kind: str, data: bytes, sha: str | None = None) -> str:
        """Add an object (once); returns its Git id."""
        sha = sha or object_id(kind, data)
        if sha in self.written:
            return sha
        self.written.add(sha)
        size = len(data)
        byte = (TYPES[kind] << 4) | (size & 15)
        size >>= 4
        head = bytearray()
        while size:
            head.append(byte | 0x80)
            byte = size & 0x7F
            size >>= 7
        head.append(byte)
        self.f.write(head)
        self.f.write(zlib.compress(data, 1))
        self.count += 1
        return sha

    def close(self) -> None:
        """Finish the pack and index it; an empty pack is dropped."""
        try:
            if not self.count:
                return
            self.f.seek(8)
            self.f.write(struct.pack(">I", self.count))
            self.f.flush()
            self.f.seek(0)
            h = hashlib.sha1()
            while chunk := self.f.read(1 << 20):
                h.update(chunk)
            self.f.seek(0, 2)
            self.f.write(h.digest())
            self.f.close()
            proc = subprocess.run(["git", f"--git-dir={self.gitdir}", "index-pack", self.path],
                                  capture_output=True)
            if proc.returncode:
                raise GitError("git index-pack failed: "
                               + proc.stderr.decode("utf-8", "replace").strip())
            name = proc.stdout.decode().split()[-1]
            base = os.path.join(self.dir, f"pack-{name}")
            os.replace(self.path[:-5] + ".idx", base + ".idx")
            os.replace(self.path, base + ".pack")
        finally:
            if not self.f.closed:
                self.f.close()
            for p in (self.path, self.path[:-5] + ".idx"):
                if os.path.exists(p):
                    os.unlink(p)
