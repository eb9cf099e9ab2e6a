"""Run ``herofossil serve`` in a child process and learn its URL (a test and benchmark helper)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

_URL = re.compile(r"^webdav: (http://\S+)$")


class ServeProcess:
    """``herofossil -R STORE serve --webdav-port 0 ARGS`` as a context manager; ``.url`` is set."""

    def __init__(self, store: str, *args: str, timeout: float = 30.0):
        self.store = store
        self.args = args
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> ServeProcess:
        # stderr goes to a file: a pipe nobody reads would block a chatty server
        self._err = tempfile.TemporaryFile()
        cmd = [
            sys.executable,
            "-m",
            "herofossil",
            "-R",
            self.store,
            "serve",
            "--webdav-port",
            "0",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = _URL.match(line.strip())
            if m:
                self.url = m.group(1)
                return self
        self.stop()
        self._err.seek(0)
        err = self._err.read().decode("utf-8", "replace")
        raise RuntimeError(f"herofossil serve did not start: {err.strip()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._err.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
