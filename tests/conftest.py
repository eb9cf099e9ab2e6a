"""Shared fixtures: a fresh store on disk, the real fossil binary, a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import procs
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


class SyncServer:
    """``python -m herofossil.sync.server STORE ARGS`` on a free loopback port."""

    def __init__(self, store, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "herofossil.sync.server", str(store), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("sync: "):
            self.stop()
            raise AssertionError(f"the server did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split()[1]

    def with_user(self, name: str, password: str) -> str:
        return self.url.replace("http://", f"http://{name}:{password}@")

    def stop(self):
        procs.stop(self.proc)


@pytest.fixture
def serve():
    """Start sync servers (``serve(store, *args)``); every one is stopped at the end."""
    started = []

    def start(store, *args):
        s = SyncServer(store, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
