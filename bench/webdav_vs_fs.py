"""WebDAV throughput: ``herofossil serve`` vs wsgidav's own FilesystemProvider.

Both servers run the same way (wsgidav on cheroot, 10 threads, in a child
process, on this machine) and see the same client: one keep-alive
``http.client`` connection. Measured: PUT and GET of small files (files/s)
and PROPFIND Depth:1 on a folder of ``folder_entries`` files. The goal is a
ratio (herofossil / filesystem) of at least 0.8.

    python -m bench.webdav_vs_fs [--files N] [--entries N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

import herofossil
from herofossil.store.changes import Put
from herofossil.webdav.child import ServeProcess

PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
)


def serve_fs(root: str) -> None:
    """Serve ``root`` with wsgidav's FilesystemProvider on a free port; print its URL."""
    from cheroot import wsgi
    from wsgidav.fs_dav_provider import FilesystemProvider
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp(
        {
            "provider_mapping": {"/": FilesystemProvider(root)},
            "simple_dc": {"user_mapping": {"*": True}},
            "lock_storage": True,
            "property_manager": True,
            "verbose": 1,
            "logging": {"enable": False},
        }
    )
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=10, server_name="fs")
    server.prepare()
    host, port = server.bind_addr[:2]
    print(f"webdav: http://{host}:{port}/", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


class FSProcess(ServeProcess):
    """The FilesystemProvider server in a child process (same protocol as ``ServeProcess``)."""

    def start(self) -> FSProcess:
        import re

        cmd = [sys.executable, "-m", "bench.webdav_vs_fs", "--serve-fs", self.store]
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        line = self.proc.stdout.readline()
        m = re.match(r"webdav: (\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError("filesystem server did not start")
        self.url = m.group(1)
        return self


def _conn(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)


def _call(conn, method, path, body=None, headers=None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def measure(url: str, n_files: int, folder: str, repeats: int = 5) -> dict:
    """PUT and GET ``n_files`` small files, then PROPFIND ``folder`` ``repeats`` times."""
    conn = _conn(url)
    _call(conn, "MKCOL", "/small")
    bodies = [os.urandom(512) + b"%d" % i for i in range(n_files)]
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        status, _ = _call(conn, "PUT", f"/small/f{i:05d}.txt", body)
        assert status in (201, 204), status
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        status, data = _call(conn, "GET", f"/small/f{i:05d}.txt")
        assert status == 200 and data == body
    t_get = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        status, data = _call(
            conn,
            "PROPFIND",
            f"/{folder}/",
            PROPFIND_BODY,
            {"Depth": "1", "Content-Type": "application/xml"},
        )
        times.append(time.perf_counter() - t0)
        assert status == 207
    conn.close()
    return {
        "put_files_s": n_files / t_put,
        "get_files_s": n_files / t_get,
        "putget_files_s": n_files / (t_put + t_get),
        "propfind_s": statistics.median(times),
        "propfind_bytes": len(data),
    }


def run(n_files: int = 300, folder_entries: int = 5000) -> list[dict]:
    """One row per measure: herofossil, filesystem and their ratio (higher is better)."""
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        store = os.path.join(tmp, "store")
        fsroot = os.path.join(tmp, "fs")
        os.makedirs(os.path.join(fsroot, "big"))
        names = [f"big/e{i:05d}.txt" for i in range(folder_entries)]
        with herofossil.open(store, create=True) as repo:
            repo.commit(
                [Put(n, b"entry %d\n" % i) for i, n in enumerate(names)], message="bench folder"
            )
        for i, n in enumerate(names):
            with open(os.path.join(fsroot, n), "wb") as f:
                f.write(b"entry %d\n" % i)
        with ServeProcess(store) as srv:
            hf = measure(srv.url, n_files, "big")
        with FSProcess(fsroot) as srv:
            fs = measure(srv.url, n_files, "big")
    rows = []
    for key, label, higher in (
        ("put_files_s", "PUT small files (files/s)", True),
        ("get_files_s", "GET small files (files/s)", True),
        ("putget_files_s", "PUT+GET small files (files/s)", True),
        ("propfind_s", f"PROPFIND Depth:1, {folder_entries} entries (s)", False),
    ):
        ratio = hf[key] / fs[key] if higher else fs[key] / hf[key]
        rows.append(
            {"measure": label, "herofossil": hf[key], "filesystem": fs[key], "ratio": ratio}
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of ``run``'s rows (ratio: herofossil's throughput / filesystem's)."""
    out = [
        "| measure | herofossil | wsgidav FilesystemProvider | ratio (goal >= 0.8) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['measure']} | {r['herofossil']:.3g} | {r['filesystem']:.3g} "
            f"| {r['ratio']:.2f}x |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--entries", type=int, default=5000)
    p.add_argument("--serve-fs", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_fs:
        serve_fs(args.serve_fs)
        return 0
    print(table(run(args.files, args.entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
