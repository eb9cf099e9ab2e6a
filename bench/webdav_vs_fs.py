"""WebDAV throughput: ``herofossil serve`` vs wsgidav's own FilesystemProvider.

The servers run the same way (wsgidav on cheroot, 10 threads, each in a child
process, on this machine) and see the same client: keep-alive ``http.client``
connections, one at a time or four in parallel (as rclone's default
``--transfers 4``). Measured: PUT and GET of small files (files/s) and
PROPFIND Depth:1 on a folder of ``folder_entries`` files. The goal is a
ratio (herofossil / filesystem) of at least 0.8.

Every herofossil PUT is a durable check-in (fdatasync before the answer);
the FilesystemProvider writes into the page cache and never syncs. For
reference, PUT figures are also given against a FilesystemProvider that
syncs each uploaded file and its folder before answering.

    python -m bench.webdav_vs_fs [--files N] [--entries N] [--rounds N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

import herofossil
from herofossil.store.changes import Put
from tests.webdav_child import ServeProcess

PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
)


class _SyncedFile:
    """A file opened for a PUT that is made durable on close, as a careful program does:
    fdatasync of the file, then fsync of its folder (a new name must survive too)."""

    def __init__(self, path: str):
        self._path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def writelines(self, chunks) -> None:
        self._f.writelines(chunks)

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fdatasync(self._f.fileno())
        self._f.close()
        fd = os.open(os.path.dirname(self._path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def serve_fs(root: str, durable: bool = False) -> None:
    """Serve ``root`` with wsgidav's FilesystemProvider on a free port; print its URL.

    ``durable``: every PUT is synced to disk before the answer (wsgidav's own
    provider never syncs); a reference for what durability costs a filesystem.
    """
    from cheroot import wsgi
    from wsgidav.fs_dav_provider import FileResource, FilesystemProvider
    from wsgidav.wsgidav_app import WsgiDAVApp

    if durable:
        plain = FileResource.begin_write

        def begin_write(self, *, content_type=None):
            plain(self, content_type=content_type).close()  # wsgidav's checks, then ours
            return _SyncedFile(self._file_path)

        FileResource.begin_write = begin_write

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

    def __init__(self, store: str, *args: str, durable: bool = False, **kw):
        super().__init__(store, *args, **kw)
        self.durable = durable

    def start(self) -> FSProcess:
        import re

        cmd = [sys.executable, "-m", "bench.webdav_vs_fs", "--serve-fs", self.store]
        if self.durable:
            cmd.append("--durable")
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


def _put_get(url: str, folder: str, bodies: list[bytes], clients: int) -> tuple[float, float]:
    """Seconds to PUT every body into ``folder``, then to GET each back, over ``clients``
    keep-alive connections in parallel (each sends its share one request at a time)."""
    conns = [_conn(url) for _ in range(clients)]
    _call(conns[0], "MKCOL", folder)
    errors: list[str] = []

    def phase(method: str) -> float:
        def work(k: int) -> None:
            try:
                for i in range(k, len(bodies), clients):
                    path = f"{folder}/f{i:05d}.txt"
                    if method == "PUT":
                        status, _ = _call(conns[k], "PUT", path, bodies[i])
                        ok = status in (201, 204)
                    else:
                        status, data = _call(conns[k], "GET", path)
                        ok = status == 200 and data == bodies[i]
                    if not ok:
                        errors.append(f"{method} {path}: {status}")
                        return
            except OSError as exc:
                errors.append(f"{method}: {exc}")

        threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    t_put = phase("PUT")
    t_get = phase("GET")
    for c in conns:
        c.close()
    if errors:
        raise RuntimeError(f"{url}: {errors[0]}")
    return t_put, t_get


def _propfind(url: str, folder: str, repeats: int) -> float:
    conn = _conn(url)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        status, _ = _call(
            conn,
            "PROPFIND",
            f"/{folder}/",
            PROPFIND_BODY,
            {"Depth": "1", "Content-Type": "application/xml"},
        )
        times.append(time.perf_counter() - t0)
        if status != 207:
            raise RuntimeError(f"{url}: PROPFIND answered {status}")
    conn.close()
    return statistics.median(times)


FS = "wsgidav FilesystemProvider"
FS_DURABLE = "FilesystemProvider, each PUT synced (reference)"
MEASURES = (
    # key, label, higher is better
    ("put_1", "PUT small files, 1 connection (files/s)", True),
    ("get_1", "GET small files, 1 connection (files/s)", True),
    ("putget_1", "PUT+GET small files, 1 connection (files/s)", True),
    ("put_4", "PUT small files, 4 connections (files/s)", True),
    ("get_4", "GET small files, 4 connections (files/s)", True),
    ("putget_4", "PUT+GET small files, 4 connections (files/s)", True),
)


def run(n_files: int = 300, folder_entries: int = 5000, rounds: int = 3) -> list[dict]:
    """One row per measure: herofossil, filesystem and their ratio (higher is better).

    The three servers (herofossil, the FilesystemProvider, the synced one) run
    at once and the rounds alternate between them, so a slow spell of this
    shared machine hits all; each figure is the median of its rounds. Every
    round writes new files.
    """
    bodies = [os.urandom(512) + b"%d" % i for i in range(n_files)]
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
        samples: dict[str, dict[str, list[float]]] = {"hf": {}, "fs": {}, "fsd": {}}
        fsdroot = os.path.join(tmp, "fs-durable")
        os.makedirs(fsdroot)
        with (
            ServeProcess(store) as hf_srv,
            FSProcess(fsroot) as fs_srv,
            FSProcess(fsdroot, durable=True) as fsd_srv,
        ):
            servers = (("hf", hf_srv), ("fs", fs_srv), ("fsd", fsd_srv))
            for r in range(rounds):
                for who, srv in servers:
                    got = samples[who]
                    for clients in (1, 4):
                        t_put, t_get = _put_get(srv.url, f"/r{r}c{clients}", bodies, clients)
                        got.setdefault(f"put_{clients}", []).append(n_files / t_put)
                        got.setdefault(f"get_{clients}", []).append(n_files / t_get)
                        got.setdefault(f"putget_{clients}", []).append(n_files / (t_put + t_get))
            for who, srv in servers[:2]:
                samples[who]["propfind"] = [_propfind(srv.url, "big", 5)]
    hf, fs, fsd = ({k: statistics.median(v) for k, v in samples[w].items()}
                   for w in ("hf", "fs", "fsd"))
    rows = []
    for key, label, higher in MEASURES + (
        ("propfind", f"PROPFIND Depth:1, {folder_entries} entries (s)", False),
    ):
        ratio = hf[key] / fs[key] if higher else fs[key] / hf[key]
        rows.append({"measure": label, "herofossil": hf[key], "filesystem": fs[key],
                     "ratio": ratio, "other": FS})
    for key, label, _ in MEASURES:
        if key.startswith("put"):
            rows.append({"measure": label, "herofossil": hf[key], "filesystem": fsd[key],
                         "ratio": hf[key] / fsd[key], "other": FS_DURABLE})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of ``run``'s rows (ratio: herofossil's throughput / the other's)."""
    out = [
        "| measure | herofossil | against | its figure | ratio (goal >= 0.8 vs the plain one) |",
        "|---|---:|---|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['measure']} | {r['herofossil']:.3g} | {r['other']} | {r['filesystem']:.3g} "
            f"| {r['ratio']:.2f}x |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--entries", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    p.add_argument("--serve-fs", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--durable", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_fs:
        serve_fs(args.serve_fs, args.durable)
        return 0
    print(table(run(args.files, args.entries, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
