"""Deterministic Git corpora for the benchmarks, written through ``git fast-import``.

Two kinds, each in sizes S (tests), M (``--quick``) and L (full run):

- ``config``: many small HeroScript (``.hero``), TOML and Markdown files; frequent
  small edits, renames, deletions, feature branches merged back, tags.
- ``code``: larger text files seeded from this machine's Python standard library
  sources, edited with locality (a few lines inserted, deleted or changed near
  one another, now and then a big rewrite), plus some binary files.

and one real history, ``real``: the Git bundle of ``../shared/corpora/``
(toml-lang/toml, 873 commits), cloned as it is (``real_corpus``).

``commits(kind, size, seed)`` yields the abstract history (the same one every
time for the same arguments on the same machine); ``build`` turns it into a
real Git repository, and ``replay`` into a herofossil store when
``herofossil import git`` is not available.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

KINDS = ("config", "code")
# commits per kind, initial files per kind
SIZES = {
    "S": {"config": (60, 40), "code": (40, 15)},
    "M": {"config": (600, 200), "code": (500, 60)},
    "L": {"config": (2600, 800), "code": (3000, 250)},
}
FORMAT_VERSION = 1  # bump when the generated history changes
REAL = "real"
REAL_BUNDLE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "toml-lang-toml.bundle"
REAL_NAME = "toml-lang/toml"

AUTHORS = [
    ("Ada Lovelace", "ada@example.org"), ("Grace Hopper", "grace@example.org"),
    ("Linus Torvalds", "linus@example.org"), ("Margaret Hamilton", "mh@example.org"),
    ("Ken Thompson", "ken@example.org"), ("Barbara Liskov", "liskov@example.org"),
    ("Dennis Ritchie", "dmr@example.org"), ("Frances Allen", "fran@example.org"),
]
TZ = ["+0000", "+0100", "+0200", "-0500", "+0530", "-0800"]
WORDS = ("server port host enabled timeout retry bucket region replica cache node "
         "agent deploy cluster volume secret token mirror backup gateway route").split()


@dataclass(slots=True)
class Commit:
    """One commit: ``changes`` are ('M', path, bytes, mode), ('D', path) or ('R', src, dst)."""

    branch: str
    mark: int
    parent: int | None
    merge: int | None
    author: tuple[str, str]
    when: int
    tz: str
    message: str
    changes: list[tuple] = field(default_factory=list)
    tag: str | None = None


@dataclass
class Corpus:
    """A generated Git repository and what went into it."""

    kind: str
    size: str
    seed: int
    git_dir: Path
    commits: int = 0
    raw_bytes: int = 0
    blobs: int = 0
    branches: int = 0
    tags: int = 0

    @property
    def label(self) -> str:
        """Short name used in table rows and file names, e.g. ``code-L``, ``real-toml``."""
        return "real-toml" if self.kind == REAL else f"{self.kind}-{self.size}"

    @property
    def title(self) -> str:
        """The name rows show: the label, or the real history's name."""
        return f"{REAL_NAME}, real" if self.kind == REAL else self.label

    def describe(self) -> str:
        """One line: commits, content size, branches."""
        return (f"{self.label}: {self.commits} commits, {self.raw_bytes / 1e6:.1f} MB raw content "
                f"in {self.blobs} file versions, {self.branches} branches, {self.tags} tags")


# ---------------------------------------------------------------- content
@lru_cache(maxsize=1)
def stdlib_sources() -> tuple[Path, ...]:
    """The standard library's ``.py`` files between 2 KB and 120 KB, sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or "test" in p.parts:
            continue
        try:
            if 2_000 <= p.stat().st_size <= 120_000:
                out.append(p)
        except OSError:
            continue
    return tuple(out)


def _lines(p: Path) -> list[bytes]:
    return p.read_bytes().splitlines(keepends=True)


def _hero(rnd: random.Random, i: int) -> list[bytes]:
    out = []
    for k in range(rnd.randint(3, 25)):
        out.append(f"!!{rnd.choice(WORDS)}.define name:{rnd.choice(WORDS)}{i}_{k} "
                   f"port:{rnd.randint(1000, 9999)} enabled:{rnd.choice(['true', 'false'])}\n"
                   .encode())
        if rnd.random() < 0.5:
            out.append(f"    description:'{' '.join(rnd.choices(WORDS, k=6))}'\n".encode())
        out.append(b"\n")
    return out


def _toml(rnd: random.Random, i: int) -> list[bytes]:
    out = [f'title = "service {i}"\n'.encode()]
    for k in range(rnd.randint(2, 12)):
        out.append(f"\n[{rnd.choice(WORDS)}_{k}]\n".encode())
        for w in rnd.sample(WORDS, rnd.randint(2, 6)):
            val = rnd.choice([str(rnd.randint(0, 65535)), "true", f'"{rnd.choice(WORDS)}"'])
            out.append(f"{w} = {val}\n".encode())
    return out


def _markdown(rnd: random.Random, i: int) -> list[bytes]:
    out = [b"---\n", f"title: doc {i}\n".encode(), b"---\n\n", f"# Topic {i}\n\n".encode()]
    for k in range(rnd.randint(2, 10)):
        out.append(f"## {rnd.choice(WORDS).title()} {k}\n\n".encode())
        out.append((" ".join(rnd.choices(WORDS, k=rnd.randint(10, 60))) + ".\n\n").encode())
        if rnd.random() < 0.2:
            out += [b"```heroscript\n", f"!!{rnd.choice(WORDS)}.set value:{k}\n".encode(),
                    b"```\n\n"]
    return out


def _config_file(rnd: random.Random, i: int) -> tuple[str, list[bytes]]:
    kind = rnd.random()
    env = rnd.choice(["prod", "staging", "dev", "lab"])
    if kind < 0.45:
        return f"envs/{env}/{rnd.choice(WORDS)}{i}.hero", _hero(rnd, i)
    if kind < 0.8:
        return f"services/{rnd.choice(WORDS)}{i}/config.toml", _toml(rnd, i)
    return f"docs/{rnd.choice(WORDS)}/{rnd.choice(WORDS)}{i}.md", _markdown(rnd, i)


def _code_file(rnd: random.Random, i: int) -> tuple[str, list[bytes]]:
    src = rnd.choice(stdlib_sources())
    pkg = rnd.choice(["core", "net", "store", "util", "cli", "web", "sync"])
    return f"src/{pkg}{i % 9}/{src.stem}_{i}.py", _lines(src)


def _edit_text(rnd: random.Random, lines: list[bytes], kind: str) -> list[bytes]:
    """A few local edits: insert, delete or change lines near one spot; rarely a rewrite."""
    lines = list(lines)
    if kind == "code" and rnd.random() < 0.04 and len(lines) > 20:
        donor = _lines(rnd.choice(stdlib_sources()))
        a = rnd.randrange(len(lines) // 2)
        b = a + len(lines) * rnd.randint(3, 6) // 10
        return lines[:a] + donor[: b - a] + lines[b:]
    at = rnd.randrange(len(lines) + 1)
    for _ in range(rnd.randint(1, 4)):
        at = max(0, min(len(lines), at + rnd.randint(-15, 15)))
        op = rnd.random()
        if op < 0.4 or not lines:
            if kind == "code":
                donor = _lines(rnd.choice(stdlib_sources()))
                s = rnd.randrange(max(1, len(donor) - 8))
                new = donor[s : s + rnd.randint(1, 8)]
            else:
                new = [f"{rnd.choice(WORDS)} = {rnd.randint(0, 999)}\n".encode()]
            lines[at:at] = new
        elif op < 0.65:
            del lines[at : at + rnd.randint(1, 4)]
        else:
            k = min(at, len(lines) - 1)
            w = rnd.choice(WORDS).encode()
            lines[k] = lines[k].rstrip(b"\n") + b"  # " + w + b"\n"
    return lines


def _binary(rnd: random.Random) -> bytes:
    return rnd.randbytes(rnd.randint(8_000, 120_000))


def _edit_binary(rnd: random.Random, data: bytes) -> bytes:
    if rnd.random() < 0.3:
        return _binary(rnd)
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 5)):
        at = rnd.randrange(len(buf))
        buf[at : at + 64] = rnd.randbytes(64)
    return bytes(buf)


# ---------------------------------------------------------------- history
class _Gen:
    """Holds the per-branch trees while the history is produced."""

    def __init__(self, kind: str, size: str, seed: int):
        self.kind, self.rnd = kind, random.Random(f"{kind}-{size}-{seed}")
        self.n_commits, self.n_initial = SIZES[size][kind]
        self.mark = 0
        self.when = 1_600_000_000
        self.trees: dict[str, dict[str, list[bytes] | bytes]] = {"main": {}}
        self.tips: dict[str, int | None] = {"main": None}
        self.counter = 0

    def new_file(self) -> tuple[str, list[bytes] | bytes]:
        self.counter += 1
        if self.kind == "code" and self.rnd.random() < 0.06:
            return f"assets/img{self.counter}.bin", _binary(self.rnd)
        maker = _code_file if self.kind == "code" else _config_file
        return maker(self.rnd, self.counter)

    def commit(self, branch: str, changes: list[tuple], message: str,
               merge: int | None = None) -> Commit:
        self.mark += 1
        self.when += self.rnd.randint(60, 7200)
        c = Commit(branch, self.mark, self.tips[branch], merge, self.rnd.choice(AUTHORS),
                   self.when, self.rnd.choice(TZ), message, changes)
        self.tips[branch] = self.mark
        return c

    def apply(self, branch: str, changes: list[tuple]) -> None:
        tree = self.trees[branch]
        for ch in changes:
            if ch[0] == "M":
                tree[ch[1]] = ch[4]
            elif ch[0] == "D":
                del tree[ch[1]]
            else:
                tree[ch[2]] = tree.pop(ch[1])

    def put(self, path: str, content: list[bytes] | bytes) -> tuple:
        data = content if isinstance(content, bytes) else b"".join(content)
        mode = "100755" if path.endswith(".py") and self.rnd.random() < 0.05 else "100644"
        return ("M", path, data, mode, content)

    def edits(self, branch: str, avoid: set[str], owned: set[str] | None) -> tuple[list, str]:
        """Changes for one ordinary commit on ``branch`` and its message."""
        rnd, tree = self.rnd, self.trees[branch]
        pool = sorted(owned if owned is not None else set(tree) - avoid)
        pool = [p for p in pool if p in tree]
        changes: list[tuple] = []
        r = rnd.random()
        if r < 0.06 or not pool:
            path, content = self.new_file()
            if owned is not None:
                owned.add(path)
            if path not in tree:
                return [self.put(path, content)], f"Add {path}"
        if r < 0.09 and len(pool) > 5:
            path = rnd.choice(pool)
            return [("D", path)], f"Remove {path}"
        if r < 0.12 and owned is None and len(pool) > 5:
            src = rnd.choice(pool)
            head, _, base = src.rpartition("/")
            dst = f"{head}/moved/{base}" if "moved" not in head else f"{base}"
            if dst not in tree:
                return [("R", src, dst)], f"Move {src} to {dst}"
        # edits with a hot set: low indexes are touched far more often
        n = 1 + int(rnd.random() ** 3 * (4 if self.kind == "code" else 8))
        picks = {pool[min(len(pool) - 1, int(rnd.random() ** 2 * len(pool)))] for _ in range(n)}
        for path in sorted(picks):
            old = tree[path]
            new = _edit_binary(rnd, old) if isinstance(old, bytes) else _edit_text(
                rnd, old, self.kind)
            changes.append(self.put(path, new))
        what = ", ".join(sorted(picks)[:3])
        msg = rnd.choice(["Update", "Fix", "Tune", "Refactor", "Adjust"]) + f" {what}"
        if rnd.random() < 0.3:
            msg += "\n\n" + " ".join(rnd.choices(WORDS, k=rnd.randint(5, 30)))
        return changes, msg

    def run(self) -> Iterator[Commit]:
        rnd = self.rnd
        init = [self.put(*self.new_file()) for _ in range(self.n_initial)]
        init = list({c[1]: c for c in init}.values())
        self.apply("main", init)
        yield self.commit("main", init, "Initial import")
        feature: str | None = None
        owned: set[str] = set()
        left = 0
        nbranch = 0
        for i in range(1, self.n_commits - 1):
            if feature is None and rnd.random() < 0.04:
                nbranch += 1
                feature = f"feature-{nbranch}"
                self.trees[feature] = dict(self.trees["main"])
                self.tips[feature] = self.tips["main"]
                owned = set(rnd.sample(sorted(self.trees["main"]),
                                       min(6, len(self.trees["main"]))))
                left = rnd.randint(2, 10)
            on_feature = feature is not None and rnd.random() < 0.5
            branch = feature if on_feature else "main"
            changes, msg = self.edits(branch, owned if feature else set(),
                                      owned if on_feature else None)
            self.apply(branch, changes)
            c = self.commit(branch, changes, msg)
            if branch == "main" and i % 97 == 0:
                c.tag = f"v1.{i // 97}"
            yield c
            if on_feature:
                left -= 1
            if feature is not None and left <= 0:
                ftree, mtree = self.trees[feature], self.trees["main"]
                merged = [self.put(p, ftree[p]) for p in sorted(owned)
                          if p in ftree and ftree.get(p) is not mtree.get(p)]
                merged += [("D", p) for p in sorted(owned) if p in mtree and p not in ftree]
                self.apply("main", merged)
                yield self.commit("main", merged, f"Merge branch '{feature}'",
                                  merge=self.tips[feature])
                feature = None
        yield self.commit("main", [self.put(*self.new_file())], "Release notes")


def commits(kind: str, size: str, seed: int = 1) -> Iterator[Commit]:
    """The abstract history of corpus ``kind`` at ``size`` (deterministic for ``seed``)."""
    if kind not in KINDS or size not in SIZES:
        raise ValueError(f"unknown corpus {kind}-{size}")
    return _Gen(kind, size, seed).run()


# ---------------------------------------------------------------- git
def _data(b: bytes) -> bytes:
    return b"data %d\n" % len(b) + b + b"\n"


def fast_import_stream(history: Iterator[Commit], stats: Corpus) -> Iterator[bytes]:
    """The ``git fast-import`` stream of ``history``; counts into ``stats`` as it goes."""
    branches = set()
    for c in history:
        name, email = c.author
        ident = f"{name} <{email}> {c.when} {c.tz}".encode()
        out = [b"commit refs/heads/" + c.branch.encode() + b"\n", b"mark :%d\n" % c.mark,
               b"author " + ident + b"\n", b"committer " + ident + b"\n",
               _data(c.message.encode() + b"\n")]
        if c.parent is not None:
            out.append(b"from :%d\n" % c.parent)
        if c.merge is not None:
            out.append(b"merge :%d\n" % c.merge)
        for ch in c.changes:
            if ch[0] == "M":
                out.append(f"M {ch[3]} inline {ch[1]}\n".encode())
                out.append(_data(ch[2]))
                stats.raw_bytes += len(ch[2])
                stats.blobs += 1
            elif ch[0] == "D":
                out.append(f"D {ch[1]}\n".encode())
            else:
                out.append(f'R "{ch[1]}" "{ch[2]}"\n'.encode())
        out.append(b"\n")
        if c.tag:
            out.append(f"tag {c.tag}\nfrom :{c.mark}\n".encode() + b"tagger " + ident + b"\n"
                       + _data(f"Release {c.tag}\n".encode()))
            stats.tags += 1
        stats.commits += 1
        branches.add(c.branch)
        yield b"".join(out)
    stats.branches = len(branches)


def build(kind: str, size: str, dest: Path, seed: int = 1) -> Corpus:
    """Create bare Git repository ``dest`` holding the corpus (reused when already built)."""
    dest = Path(dest)
    meta = dest / "bench-corpus.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        if info.get("format") == FORMAT_VERSION:
            info.pop("format")
            info["git_dir"] = dest
            return Corpus(**info)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(dest)], check=True)
    stats = Corpus(kind, size, seed, dest)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
    p = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=dest,
                         stdin=subprocess.PIPE, env=env)
    assert p.stdin is not None
    for chunk in fast_import_stream(commits(kind, size, seed), stats):
        p.stdin.write(chunk)
    p.stdin.write(b"done\n")
    p.stdin.close()
    if p.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {stats.label}")
    info = {k: v for k, v in vars(stats).items() if k != "git_dir"}
    meta.write_text(json.dumps(dict(info, format=FORMAT_VERSION)))
    return stats


def real_corpus(dest: Path) -> Corpus | None:
    """The real history (``REAL_BUNDLE``) as bare repository ``dest``; None when absent."""
    dest = Path(dest)
    if not REAL_BUNDLE.exists():
        return None
    if not dest.exists():
        subprocess.run(["git", "clone", "-q", "--mirror", str(REAL_BUNDLE), str(dest)],
                       check=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={dest}", *args], check=True,
                              capture_output=True, text=True).stdout

    blobs = [line.split() for line in git("cat-file", "--batch-all-objects",
                                          "--batch-check").splitlines()]
    refs = git("for-each-ref", "--format=%(refname)").split()
    return Corpus(REAL, "", 0, dest, commits=int(git("rev-list", "--all", "--count")),
                  raw_bytes=sum(int(b[2]) for b in blobs if b[1] == "blob"),
                  blobs=sum(1 for b in blobs if b[1] == "blob"),
                  branches=sum(1 for r in refs if r.startswith("refs/heads/")),
                  tags=sum(1 for r in refs if r.startswith("refs/tags/")))


def checkout(corpus: Corpus, dest: Path) -> Path:
    """A work tree of ``main``'s tip at ``dest`` (for reading files from the filesystem)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", f"--git-dir={corpus.git_dir}", f"--work-tree={dest}", "checkout",
                    "-q", "-f", "main", "--", "."], check=True)
    return dest


# ---------------------------------------------------------------- herofossil
def replay(corpus: Corpus, repo) -> int:
    """Commit the corpus history into herofossil ``repo`` (branches, merges); returns commits.

    Used when ``herofossil import git`` is not available: same file versions and
    history shape, but check-in ids differ from a real import.
    """
    from herofossil.store.changes import Delete, Put, Rename

    ids: dict[int, str] = {}
    n = 0
    for c in commits(corpus.kind, corpus.size, corpus.seed):
        changes = []
        for ch in c.changes:
            if ch[0] == "M":
                changes.append(Put(ch[1], ch[2], "x" if ch[3] == "100755" else ""))
            elif ch[0] == "D":
                changes.append(Delete(ch[1]))
            else:
                changes.append(Rename(ch[1], ch[2]))
        branch = "trunk" if c.branch == "main" else c.branch
        parent = ids.get(c.parent) if c.parent is not None else None
        merges = [ids[c.merge]] if c.merge is not None else []
        ci = repo.commit(changes, message=c.message, user=c.author[0].split()[0].lower(),
                         branch=branch, parent=parent, merge_parents=merges, allow_empty=True)
        ids[c.mark] = ci.id
        if c.tag:
            repo.tag_add(c.tag, ci.id)
        n += 1
    return n


def main() -> None:
    """``python -m bench.corpus KIND SIZE DEST``: build one corpus and describe it."""
    import sys

    kind, size, dest = sys.argv[1:4]
    print(build(kind, size, Path(dest)).describe())


if __name__ == "__main__":
    main()
