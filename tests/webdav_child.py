"""Run ``herofossil serve`` in a child process and learn its URL (a test and benchmark helper)."""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

try:
    import procs  # tests/ is on sys.path (pytest)
except ImportError:  # imported as tests.webdav_child (the benchmarks)
    from tests import procs

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
        procs.stop(self.proc, sig)
        self.proc.stdout.close()
        self._err.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Client:
    """A tiny WebDAV client on http.client (for tests): one connection per call, optional
    basic auth; ``source`` binds the client address."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None,
                 source: str | None = None):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.source = (source, 0) if source else None
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def call(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                          source_address=self.source)
        hdrs = dict(headers or {})
        if self.auth and "Authorization" not in hdrs:
            hdrs["Authorization"] = self.auth
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def timed(self, method, path, body=None, headers=None) -> tuple[int, float]:
        t0 = time.monotonic()
        status = self.call(method, path, body, headers, timeout=30)[0]
        return status, time.monotonic() - t0
