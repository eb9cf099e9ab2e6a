"""Running ``git``: repository checks, refs, and a ``cat-file --batch`` object reader."""

from __future__ import annotations

import os
import shutil
import subprocess

from herofossil.gitimport.errors import (
    GitError,
    GitObjectError,
    NotAGitRepositoryError,
    ShallowRepositoryError,
)


def git(gitdir: str, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    """Run ``git --git-dir=GITDIR ARGS``; returns stdout; GitError on failure."""
    proc = subprocess.run(["git", f"--git-dir={gitdir}", *args], input=input,
                          capture_output=True)
    if check and proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed in {gitdir}: {err[-1] if err else proc.returncode}")
    return proc.stdout


def require_git() -> None:
    """Fail clearly when the ``git`` command, which reads and writes objects here, is missing."""
    if shutil.which("git") is None:
        raise GitError("the git command is not installed: Git import and export need it "
                       "(apt-get install git)")


def find_gitdir(path: str) -> str:
    """The Git directory of the repository at ``path`` (bare or with a work tree)."""
    require_git()
    if not os.path.isdir(path):
        raise NotAGitRepositoryError(f"{path} is not a Git repository: no such directory")
    proc = subprocess.run(["git", "-C", path, "rev-parse", "--absolute-git-dir"],
                          capture_output=True)
    out = proc.stdout.decode().strip()
    if proc.returncode or not out:
        raise NotAGitRepositoryError(f"{path} is not a Git repository (bare or not)")
    return out


def check_importable(gitdir: str) -> None:
    """Refuse shallow clones: their history is cut, so commits cannot be reproduced."""
    if os.path.exists(os.path.join(gitdir, "shallow")):
        raise ShallowRepositoryError(
            f"{gitdir} is a shallow clone: its history is incomplete; "
            "run 'git fetch --unshallow' first")


def refs(gitdir: str) -> list[tuple[str, str, str]]:
    """(refname, object id, object type) of every branch and tag."""
    out = git(gitdir, "for-each-ref", "--format=%(refname) %(objectname) %(objecttype)",
              "refs/heads", "refs/tags")
    rows = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        name, sha, kind = line.rsplit(" ", 2)
        rows.append((name, sha, kind))
    return rows


def head_ref(gitdir: str) -> str | None:
    """The branch HEAD names (``refs/heads/...``), if HEAD is symbolic."""
    out = git(gitdir, "symbolic-ref", "-q", "HEAD", check=False).decode().strip()
    return out or None


class CatFile:
    """Random access to objects through one ``git cat-file --batch`` process."""

    def __init__(self, gitdir: str, check_only: bool = False):
        mode = "--batch-check" if check_only else "--batch"
        self.proc = subprocess.Popen(["git", f"--git-dir={gitdir}", "cat-file", mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.check_only = check_only

    def header(self) -> tuple[str, str, int] | None:
        line = self.proc.stdout.readline()
        if not line:
            raise GitError("git cat-file stopped unexpectedly")
        parts = line.split()
        if len(parts) == 2 and parts[1] == b"missing":
            return None
        if len(parts) != 3:
            raise GitObjectError(f"git cat-file: unexpected reply {line[:80]!r}")
        return parts[0].decode(), parts[1].decode(), int(parts[2])

    def read_body(self, size: int) -> bytes:
        data = self.proc.stdout.read(size + 1)
        if len(data) != size + 1:
            raise GitObjectError("git cat-file: truncated object")
        return data[:size]

    def get(self, name: str, kind: str | None = None) -> tuple[str, str, bytes]:
        """(id, type, bytes) of object ``name``; GitObjectError when missing."""
        self.proc.stdin.write(name.encode() + b"\n")
        self.proc.stdin.flush()
        head = self.header()
        if head is None:
            raise GitObjectError(f"object {name} is missing from the Git repository")
        sha, typ, size = head
        data = b"" if self.check_only else self.read_body(size)
        if kind is not None and typ != kind:
            raise GitObjectError(f"object {name} is a {typ}, expected a {kind}")
        return sha, typ, data

    def exists(self, name: str) -> bool:
        self.proc.stdin.write(name.encode() + b"\n")
        self.proc.stdin.flush()
        head = self.header()
        if head is not None and not self.check_only:
            self.read_body(head[2])
        return head is not None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
