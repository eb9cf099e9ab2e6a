"""A streamed walk of new commits: ``git diff-tree`` finds the changes, ``cat-file`` the bytes.

Three stages run at once with bounded buffers: a feeder thread writes commit
ids into ``git diff-tree --stdin``; a reader thread parses its output, queues
one work item per commit and asks ``git cat-file --batch`` for the commit,
its root tree and every new tree and blob; the caller's thread reads the
objects back in the same order. No per-object round trips, and memory stays
bounded whatever the length of the history.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from dataclasses import dataclass, field

from herofossil.gitimport.errors import GitError, GitObjectError
from herofossil.gitimport.objects import ZERO, file_perm, is_tree_mode

_DONE = object()


@dataclass(slots=True)
class Change:
    """One raw diff record: old/new mode and id, status, path (bytes)."""

    old_mode: bytes
    new_mode: bytes
    old: str
    new: str
    status: str
    path: bytes


@dataclass(slots=True)
class CommitItem:
    """A commit with its changes against its first parent and the objects it brought."""

    sha: str
    raw: bytes = b""
    root: bytes = b""
    changes: list[Change] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)


def _tokens(stream, chunk: int = 1 << 16):
    buf = b""
    while True:
        data = stream.read1(chunk) if hasattr(stream, "read1") else stream.read(chunk)
        if not data:
            break
        buf += data
        parts = buf.split(b"\0")
        buf = parts.pop()
        yield from parts
    if buf:
        yield buf


class CommitStream:
    """Iterate ``CommitItem`` for ``commits`` (ids, parents first) of the repository."""

    def __init__(self, gitdir: str, commits: list[str], seen_blobs=None, depth: int = 64):
        self.gitdir = gitdir
        self.commits = commits
        self.seen = seen_blobs if seen_blobs is not None else set()
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        git = ["git", f"--git-dir={gitdir}"]
        self.diff = subprocess.Popen(
            [*git, "diff-tree", "--stdin", "-r", "-t", "-z", "--raw", "--root",
             "--diff-merges=first-parent", "--no-renames"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.cat = subprocess.Popen([*git, "cat-file", "--batch"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._threads = [threading.Thread(target=self._feed, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for t in self._threads:
            t.start()

    def _feed(self) -> None:
        try:
            w = self.diff.stdin
            for c in self.commits:
                w.write(c.encode() + b"\n")
            w.close()
        except (BrokenPipeError, OSError):
            pass

    def _request(self, item: CommitItem, names: list[str]) -> None:
        self.queue.put((item, names))
        self.cat.stdin.write("".join(n + "\n" for n in names).encode())
        self.cat.stdin.flush()

    def _wanted(self, ch: Change, names: list[str]) -> None:
        if ch.status == "D" or ch.new == ZERO:
            return
        if is_tree_mode(ch.new_mode):
            names.append(ch.new)
        elif file_perm(ch.new_mode) is not None and ch.new not in self.seen:
            self.seen.add(ch.new)
            names.append(ch.new)

    def _read(self) -> None:
        try:
            order = iter(self.commits)
            item = None
            names: list[str] = []
            toks = _tokens(self.diff.stdout)
            for tok in toks:
                if tok[:1] != b":":
                    sha = tok.decode()
                    if item is not None:
                        self._request(item, names)
                    for c in order:
                        if c == sha:
                            break
                        self._request(CommitItem(c), [c, c + "^{tree}"])
                    else:
                        raise GitError(f"git diff-tree reported unknown commit {sha}")
                    item, names = CommitItem(sha), [sha, sha + "^{tree}"]
                    continue
                om, nm, o, n, st = tok[1:].split(b" ")
                ch = Change(om, nm, o.decode(), n.decode(), st.decode()[:1], next(toks))
                item.changes.append(ch)
                self._wanted(ch, names)
                if len(self.seen) > 2_000_000:
                    self.seen.clear()
            if item is not None:
                self._request(item, names)
            for c in order:
                self._request(CommitItem(c), [c, c + "^{tree}"])
            self.diff.wait()
            if self.diff.returncode:
                err = self.diff.stderr.read().decode("utf-8", "replace").strip()
                raise GitError(f"git diff-tree failed: {err.splitlines()[-1] if err else ''}")
        except BaseException as exc:  # handed to the consumer thread
            self.error = exc
        finally:
            self.queue.put(_DONE)
            try:
                self.cat.stdin.close()
            except OSError:
                pass

    def _object(self, name: str, commit: str) -> bytes:
        line = self.cat.stdout.readline()
        if not line:
            err = self.cat.stderr.read().decode("utf-8", "replace").strip()
            raise GitObjectError(f"cannot read object {name} of commit {commit}: "
                                 f"{err.splitlines()[-1] if err else 'git cat-file stopped'}")
        parts = line.split()
        if len(parts) != 3:
            raise GitObjectError(f"object {name} of commit {commit} is missing")
        size = int(parts[2])
        data = self.cat.stdout.read(size + 1)
        if len(data) != size + 1:
            raise GitObjectError(f"object {name} of commit {commit} is truncated")
        return data[:size]

    def __iter__(self):
        while True:
            got = self.queue.get()
            if got is _DONE:
                break
            item, names = got
            item.raw = self._object(names[0], item.sha)
            item.root = self._object(names[1], item.sha)
            for name in names[2:]:
                item.objects[name] = self._object(name, item.sha)
            yield item
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the helper processes (also after an error)."""
        for proc in (self.diff, self.cat):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        for t in self._threads:
            while t.is_alive():
                try:
                    self.queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            t.join()
