"""Helpers for the Git import tests: build Git histories with the real ``git``."""

from __future__ import annotations

import os
import subprocess

ENV = {
    "GIT_AUTHOR_NAME": "Ann Author", "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Cy Committer", "GIT_COMMITTER_EMAIL": "cy@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": "/dev/null",
}


class GitRepo:
    """A Git repository driven by the ``git`` command line, with a fake clock."""

    def __init__(self, path):
        self.path = str(path)
        self.t = 1_600_000_000
        os.makedirs(self.path, exist_ok=True)
        self.git("init", "-q", "-b", "master")

    def git(self, *args, input=None, env=None, text=True) -> str:
        e = {**os.environ, **ENV, **(env or {})}
        out = subprocess.run(["git", "-C", self.path, *args], input=input, env=e,
                             capture_output=True, check=False, text=text)
        if out.returncode:
            raise RuntimeError(f"git {args}: {out.stderr}")
        return out.stdout.strip() if text else out.stdout

    def write(self, name, data, mode=None):
        p = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        if mode:
            os.chmod(p, mode)

    def commit(self, msg, *extra, tz="+0000", env=None):
        self.t += 3600
        date = f"{self.t} {tz}"
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", msg, *extra,
                 env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, **(env or {})})
        return self.git("rev-parse", "HEAD")

    def hash_object(self, kind, data: bytes) -> str:
        return self.git("hash-object", "--literally", "-t", kind, "-w", "--stdin",
                        input=data, text=False).decode().strip()

    def refs(self) -> str:
        return self.git("for-each-ref", "--format=%(refname) %(objectname)")


def mktree(entries) -> bytes:
    """Raw tree bytes from (mode, name, hex id), in the order given."""
    return b"".join(m + b" " + n + b"\0" + bytes.fromhex(h) for m, n, h in entries)


def build_rich(path) -> GitRepo:
    """A history with most of what Git can hold (see the issue's acceptance list)."""
    g = GitRepo(path)
    g.write("a.txt", "alpha\n" * 50)
    g.write("bin.dat", bytes(range(256)) * 8)
    g.write("dir with space/ünïcode.txt", "unicode\n")
    g.write("run.sh", "#!/bin/sh\necho hi\n", 0o755)
    os.symlink("a.txt", os.path.join(g.path, "link"))
    g.commit("first")
    g.write("a.txt", "alpha\n" * 50 + "beta\n")
    g.commit("odd zone", tz="+0545")
    g.git("checkout", "-q", "-b", "feature")
    g.git("mv", "a.txt", "renamed.txt")
    g.write("renamed.txt", "alpha\n" * 50 + "beta\nfeature\n")
    g.commit("rename on feature", tz="-0930")
    g.git("tag", "light")
    g.git("checkout", "-q", "master")
    g.write("bin.dat", bytes(range(256)) * 9)
    os.chmod(os.path.join(g.path, "run.sh"), 0o644)
    g.commit("exec bit off")
    g.t += 60
    g.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature",
          env={"GIT_AUTHOR_DATE": f"{g.t} +0100", "GIT_COMMITTER_DATE": f"{g.t} +0100"})
    for b in ("o1", "o2", "o3"):
        g.git("checkout", "-q", "-b", b, "master")
        g.write(f"{b}.txt", b)
        g.commit(f"on {b}")
    g.git("checkout", "-q", "master")
    g.t += 60
    g.git("merge", "-q", "-m", "octopus", "o1", "o2", "o3",
          env={"GIT_AUTHOR_DATE": f"{g.t} +0000", "GIT_COMMITTER_DATE": f"{g.t} +0000"})
    g.git("branch", "-D", "o2")
    g.git("update-index", "--add", "--cacheinfo",
          "160000,1234567890123456789012345678901234567890,vendor/sub")
    g.t += 60
    g.git("commit", "-q", "-m", "gitlink", env={"GIT_AUTHOR_DATE": f"{g.t} +0000",
                                                 "GIT_COMMITTER_DATE": f"{g.t} +0000"})
    g.commit("nothing changed")
    g.write("latin.txt", "x")
    g.git("add", "latin.txt")
    g.t += 60
    g.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "-F", "-",
          input="caf\xe9 cr\xe8me\n".encode("latin-1"), text=False,
          env={"GIT_AUTHOR_DATE": f"{g.t} +0200", "GIT_COMMITTER_DATE": f"{g.t} +0200"})
    os.unlink(os.path.join(g.path, "o1.txt"))
    g.write("o1.txt/inside", "now a folder\n")
    g.commit("file becomes folder")
    g.git("tag", "-a", "-m", "release one", "v1.0")
    g.git("tag", "-a", "-m", "tag of a tag", "v1.0-outer", "v1.0")
    _crafted(g)
    return g


def _crafted(g: GitRepo) -> None:
    head = g.git("rev-parse", "HEAD")
    blob = g.hash_object("blob", b"odd mode\n")
    empty = g.hash_object("tree", b"")
    sub = g.hash_object("tree", mktree([(b"100644", b"f", blob)]))
    root = g.hash_object("tree", mktree([
        (b"100664", b"group.txt", blob), (b"040000", b"old", sub), (b"40000", b"void", empty),
    ]))
    raw = (f"tree {root}\nparent {head}\n"
           "author Odd One <odd@example.com> 1600000000 -0000\n"
           "committer Odd One <odd@example.com> 1600000001 +1400\n"
           "gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n"
           "x-custom value\n\nno trailing newline").encode()
    c = g.hash_object("commit", raw)
    g.git("update-ref", "refs/heads/crafted", c)
