"""The workloads and the context they share (corpora, imported stores, measured imports).

Each workload module has ``NAME`` and ``run(ctx) -> list[Row]``. Things several
workloads need (a corpus, its herofossil store, its Fossil repository) are made
once, on first use, by ``Context``, so ``--only`` any subset still works.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import corpus as corpusmod
from bench.util import Measured, have, herofossil_cli_has, progress, run, run_measured

# workload name -> module in this package, in the order they run
MODULES = {"import": "import_git", "size": "store_size", "read": "read_tip",
           "write": "write", "scale": "scale", "delta": "delta", "maint": "maint",
           "extra": "extra", "sync": "sync", "fossil": "fossil_xfer"}
ORDER = list(MODULES)


def load(name: str):
    """The workload module called ``name``."""
    return importlib.import_module(f"bench.workloads.{MODULES[name]}")


@dataclass
class Made:
    """A herofossil store made from a corpus, and how."""

    path: Path
    how: str  # "import git" or "replay"
    measured: Measured | None = None  # the import, when done with the CLI
    error: str = ""


@dataclass
class Context:
    """Settings of the run plus everything made so far."""

    size: str
    workdir: Path
    quick: bool = False
    corpora: dict[str, corpusmod.Corpus] = field(default_factory=dict)
    stores: dict[str, Made] = field(default_factory=dict)
    fossils: dict[str, tuple[Path, Measured]] = field(default_factory=dict)
    gits: dict[str, tuple[Path, Measured]] = field(default_factory=dict)
    _import_git: bool | None = None

    @property
    def full(self) -> bool:
        """True for the full (L) run."""
        return self.size == "L"

    def kinds(self) -> tuple[str, ...]:
        """The corpora measured by import and size: the generated ones, and the real
        history of ``../shared/corpora/`` when it is there."""
        real = (corpusmod.REAL,) if corpusmod.REAL_BUNDLE.exists() else ()
        return corpusmod.KINDS + real

    def corpus(self, kind: str) -> corpusmod.Corpus:
        """Corpus ``kind`` at this run's size (built, or reused from the work dir); the
        real history whatever the size."""
        if kind not in self.corpora:
            t0 = time.perf_counter()
            if kind == corpusmod.REAL:
                c = corpusmod.real_corpus(self.workdir / "corpus-real-toml.git")
                if c is None:
                    raise FileNotFoundError(corpusmod.REAL_BUNDLE)
            else:
                c = corpusmod.build(kind, self.size,
                                    self.workdir / f"corpus-{kind}-{self.size}.git")
            progress(f"corpus {c.describe()} ({time.perf_counter() - t0:.1f} s)")
            self.corpora[kind] = c
        return self.corpora[kind]

    @property
    def has_import_git(self) -> bool:
        """True when ``herofossil import git`` exists."""
        if self._import_git is None:
            self._import_git = herofossil_cli_has("import", "git")
        return self._import_git

    def store(self, kind: str) -> Made:
        """The herofossil store of corpus ``kind``: imported with the CLI, else replayed."""
        if kind in self.stores:
            return self.stores[kind]
        c = self.corpus(kind)
        dest = self.workdir / f"hf-{c.label}"
        shutil.rmtree(dest, ignore_errors=True)
        made = None
        if self.has_import_git:
            progress(f"herofossil import git {c.label}")
            cmd = [sys.executable, "-m", "herofossil", "-q", "-R", str(dest), "import", "git",
                   str(c.git_dir)]
            m = run_measured(cmd, check=False)
            if m.returncode == 0:
                made = Made(dest, "import git", m)
            else:
                err = m.stderr.strip().splitlines()[-1:] or ["?"]
                progress(f"herofossil import git failed: {err[0]}; replaying instead")
                shutil.rmtree(dest, ignore_errors=True)
                made = Made(dest, "replay", error=f"import git failed: {err[0][:200]}")
        if made is None or made.how == "replay":
            import herofossil

            if c.kind == corpusmod.REAL:
                raise RuntimeError(f"herofossil import git of {c.title} failed: {made.error}")

            progress(f"replaying {c.label} through repo.commit (no herofossil import git)")
            t0 = time.perf_counter()
            repo = herofossil.open(dest, create=True)
            try:
                corpusmod.replay(c, repo)
            finally:
                repo.close()
            secs = time.perf_counter() - t0
            made = made or Made(dest, "replay", error="herofossil import git not available")
            made.measured = Measured(secs, 0, 0, "")
        self.stores[kind] = made
        return made

    def fossil(self, kind: str) -> tuple[Path, Measured] | None:
        """``git fast-export --all | fossil import --git``: the repository and its import run."""
        if not have("fossil"):
            return None
        if kind not in self.fossils:
            c = self.corpus(kind)
            dest = self.workdir / f"{c.label}.fossil"
            dest.unlink(missing_ok=True)
            progress(f"fossil import --git {c.label}")
            m = run_measured(f"git --git-dir='{c.git_dir}' fast-export --all "
                             f"| fossil import --git '{dest}'")
            self.fossils[kind] = (dest, m)
        return self.fossils[kind]

    def git_copy(self, kind: str) -> tuple[Path, Measured]:
        """``git fast-export --all | git fast-import`` into a fresh bare repository."""
        if kind not in self.gits:
            c = self.corpus(kind)
            dest = self.workdir / f"{c.label}-copy.git"
            shutil.rmtree(dest, ignore_errors=True)
            run(["git", "init", "-q", "--bare", str(dest)])
            progress(f"git fast-export | git fast-import {c.label}")
            m = run_measured(f"git --git-dir='{c.git_dir}' fast-export --all "
                             f"| git --git-dir='{dest}' fast-import --quiet")
            self.gits[kind] = (dest, m)
        return self.gits[kind]
