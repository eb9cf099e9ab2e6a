"""Shared fixtures: a fresh store on disk, the real fossil binary, a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import herofossil


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test touches the user's default store or depends on the login name."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("HEROFOSSIL_REPO", raising=False)
    monkeypatch.setenv("HEROFOSSIL_USER", "tester")
    monkeypatch.setenv("USER", os.environ.get("USER") or "tester")


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def repo(store_path):
    r = herofossil.open(store_path, create=True)
    yield r
    r.close()


@pytest.fixture(scope="session")
def fossil():
    """Run the real fossil binary; skips when it is not installed."""
    exe = shutil.which("fossil")
    if exe is None:
        pytest.skip("fossil is not installed (apt-get install fossil)")

    def run(*args, cwd=None, check=True):
        env = dict(os.environ, USER=os.environ.get("USER") or "tester")
        proc = subprocess.run([exe, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                              text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"fossil {' '.join(map(str, args))} failed:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def cli(store_path):
    """Run the herofossil command line in a subprocess against ``store_path``."""

    def run(*args, input=None, check=True, store=True):
        cmd = [sys.executable, "-m", "herofossil"]
        if store:
            cmd += ["-R", str(store_path)]
        proc = subprocess.run(cmd + [str(a) for a in args], input=input, capture_output=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"herofossil {args} exited {proc.returncode}:\n"
                                 f"{proc.stderr.decode()}")
        return proc

    return run


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """The LD_PRELOAD I/O shim of tests/iofault, built once (power-loss and fault tests)."""
    import powerloss

    path = powerloss.build_shim(tmp_path_factory.mktemp("shim"))
    if path is None:
        pytest.skip("no C compiler (cc or gcc) to build the iofault shim")
    return path
