"""Workload 8: peer sync on loopback, herofossil against fossil in the same run.

Per corpus: the herofossil store (served by ``python -m herofossil.sync.server``) and
a Fossil repository of the same artifacts (``herofossil export artifacts`` then
``fossil reconstruct``, served by ``fossil server``). Bytes on the wire are counted
by a TCP relay on loopback that this workload runs in front of each server: request
and response, HTTP headers included, for both systems alike. Timed runs bypass the
relay.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.util import TOOL_ENV, Row, have, missing, progress, run_measured
from bench.util import run as tool

NAME = "sync"
REAL_BUNDLE = Path(__file__).resolve().parents[3] / "shared/corpora/toml-lang-toml.bundle"
FOSSIL_USER, FOSSIL_PASSWORD = "benchsync", "benchsync-pw"


class Relay:
    """A loopback TCP relay to ``port`` that counts the bytes each way; with ``cut_after``
    set, it drops every connection once that many bytes came back from the server."""

    def __init__(self, port: int):
        self.target = port
        self.up = self.down = 0
        self.cut_after: int | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self.unreachable: list[str] = []  # why connecting to the target failed
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, user: str = "") -> str:
        return f"http://{user}127.0.0.1:{self.port}/"

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = 0

    @property
    def total(self) -> int:
        return self.up + self.down

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError as exc:  # the client sees a reset; the bench says why
                self.unreachable.append(repr(exc))
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                cut = False
                with self._lock:
                    if down and self.cut_after is not None:
                        kept = data[:max(0, self.cut_after - self.down)]
                        cut, data = len(kept) < len(data), kept
                    if down:
                        self.down += len(data)
                    else:
                        self.up += len(data)
                if data:
                    dst.sendall(data)
                if cut or not data:
                    # Cut now: waiting for the server's next bytes would wait for ever
                    # when it has sent all of this answer (the client waits for the rest).
                    break
        except OSError:
            pass
        finally:  # whatever ended the pump, both ends see the connection close
            self._shut(src, dst)

    @staticmethod
    def _shut(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._conns:
                s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on port {port}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_ours(store: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """``python -m herofossil.sync.server STORE``: the process and its port."""
    proc = subprocess.Popen([sys.executable, "-m", "herofossil.sync.server", str(store),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=TOOL_ENV)
    line = proc.stdout.readline()
    if not line.startswith("sync: "):
        stop(proc)
        raise RuntimeError(f"the sync server printed {line!r}")
    port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
    try:
        wait_listening(port, proc, "herofossil sync server")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def serve_fossil(repo: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(["fossil", "server", str(repo), "--port", str(port), "--localhost"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=TOOL_ENV)
    try:
        wait_listening(port, proc, "fossil server")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def fossil_out(*args, cwd: Path | None = None) -> str:
    """Run fossil; its output, or an error that shows it."""
    p = subprocess.run(["fossil", *map(str, args)], capture_output=True, text=True,
                       env=TOOL_ENV, cwd=cwd)
    if p.returncode:
        raise RuntimeError(f"fossil {' '.join(map(str, args))}: {(p.stdout + p.stderr)[-600:]}")
    return p.stdout + p.stderr


def fossil_trips(text: str) -> int:
    """Round trips of a ``fossil sync`` (its last progress line)."""
    trips = [int(part.split()[0]) for part in text.split("Round-trips:")[1:]]
    return max(trips) if trips else 0


# ---------------------------------------------------------------- corpora
def real_store(ctx) -> tuple[str, Path] | None:
    """The real history of ``../shared/corpora/`` as a herofossil store (made once)."""
    if not REAL_BUNDLE.exists():
        return None
    git_dir, dest = ctx.workdir / "real-toml.git", ctx.workdir / "hf-real-toml"
    if not git_dir.exists():
        tool(["git", "clone", "-q", "--mirror", str(REAL_BUNDLE), str(git_dir)])
    if not dest.exists():
        progress("herofossil import git (real history: toml-lang/toml)")
        try:
            run_measured([sys.executable, "-m", "herofossil", "-q", "-R", str(dest), "import",
                          "git", str(git_dir)])
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # not a half-imported store next time
            raise
    return "toml-lang/toml (real)", dest


def fossil_of(store: Path, dest: Path) -> Path:
    """A Fossil repository of the store's artifacts, with a read-write user."""
    art = dest.with_suffix(".artifacts")
    shutil.rmtree(art, ignore_errors=True)
    dest.unlink(missing_ok=True)
    tool([sys.executable, "-m", "herofossil", "-q", "-R", str(store), "export", "artifacts",
          str(art)])
    tool(["fossil", "reconstruct", str(dest), str(art)])
    shutil.rmtree(art, ignore_errors=True)
    tool(["fossil", "user", "new", FOSSIL_USER, "bench", FOSSIL_PASSWORD, "-R", str(dest)])
    tool(["fossil", "user", "capabilities", FOSSIL_USER, "s", "-R", str(dest)])
    return dest


# ---------------------------------------------------------------- changes
def content(side: str, i: int) -> bytes:
    """The ``i``-th small change a side writes (the same bytes in both systems)."""
    lines = "".join(f"key_{k} = \"{side} value {i * 7919 + k} of the sync benchmark\"\n"
                    for k in range(8))
    return f"# {side} change {i}\n[section_{i}]\n{lines}".encode()


def change_path(side: str, i: int) -> str:
    return f"sync-bench/{side}-{i % 10}.toml"


def hf_write(repo, side: str, first: int, n: int) -> dict[bytes, bytes]:
    """``n`` check-ins of one small file each; returns the new artifacts (id: bytes)."""
    from herofossil.store import exchange

    before = exchange.last_seq(repo._env)
    for i in range(first, first + n):
        repo.write(change_path(side, i), content(side, i), message=f"{side} change {i}")
    return received(repo, before)


def received(repo, before: int) -> dict[bytes, bytes]:
    """The artifacts the store numbered after sequence ``before`` (id: bytes)."""
    from herofossil.store import exchange

    arts, _ = exchange.artifacts_after(repo._env, before, max_bytes=1 << 40)
    return {aid: repo.artifact(aid.hex()) for aid, _ in arts}


def zstd_size(artifacts: dict[bytes, bytes]) -> int:
    """What is new, compressed: each new artifact alone, zstd level 3."""
    import zstandard

    z = zstandard.ZstdCompressor(level=3)
    return sum(len(z.compress(a)) for a in artifacts.values())


def zstd_joined(artifacts: dict[bytes, bytes]) -> int:
    """What is new, compressed as one stream (similar artifacts share their bytes)."""
    import zstandard

    return len(zstandard.ZstdCompressor(level=3).compress(b"".join(artifacts.values())))


def fossil_write(checkout: Path, side: str, first: int, n: int) -> None:
    fossil_out("update", cwd=checkout)  # to the tip the last sync brought
    for i in range(first, first + n):
        path = checkout / change_path(side, i)
        new = not path.exists()
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content(side, i))
        stamp = time.time() + 10 + i  # so that fossil's mtime check cannot miss the edit
        os.utime(path, (stamp, stamp))
        if new:
            fossil_out("add", path, cwd=checkout)
        fossil_out("commit", "-m", f"{side} change {i}", "--no-warnings", "--allow-fork",
                   cwd=checkout)


def fossil_checkout(repo: Path, where: Path) -> Path:
    where.mkdir()
    tool(["fossil", "open", str(repo), "trunk", "--workdir", str(where)], cwd=where)
    return where


# ---------------------------------------------------------------- one corpus
def corpus_rows(ctx, label: str, store: Path, tmp: Path, real: bool) -> list[Row]:
    import herofossil
    from herofossil.store import exchange
    from herofossil.sync.backend import CHUNK, FIRST_CHUNK, MIN_CHUNK, STREAM_CHUNKS
    from herofossil.sync.client import clone, sync

    rows: list[Row] = []
    repeats = 1 if ctx.size == "S" else 2
    fossil_ok = have("fossil")
    progress(f"sync {label}: fossil reconstruct of our artifacts")
    frepo = fossil_of(store, tmp / "server.fossil") if fossil_ok else None
    procs: list[subprocess.Popen] = []
    relays: list[Relay] = []
    opened = []
    try:
        proc, port = serve_ours(store)
        procs.append(proc)
        relay = Relay(port)
        relays.append(relay)
        fport = frelay = None
        if frepo:
            fproc, fport = serve_fossil(frepo)
            procs.append(fproc)
            frelay = Relay(fport)
            relays.append(frelay)
        cred = f"{FOSSIL_USER}:{FOSSIL_PASSWORD}@"

        # ---- clone: time (direct) and bytes (through the relay)
        progress(f"sync {label}: clone x{repeats} each")
        hf_t = fo_t = float("inf")
        for k in range(repeats):
            dest = tmp / f"timed-{k}"
            m = run_measured([sys.executable, "-m", "herofossil", "-q", "clone",
                              f"http://127.0.0.1:{port}/", str(dest)])
            hf_t = min(hf_t, m.seconds)
            shutil.rmtree(dest, ignore_errors=True)
            if frepo:
                fdest = tmp / f"timed-{k}.fossil"
                m = run_measured(["fossil", "clone", f"http://{cred}127.0.0.1:{fport}/",
                                  str(fdest)])
                fo_t = min(fo_t, m.seconds)
                fdest.unlink()
        relay.reset()
        c, rep = clone(relay.url(), tmp / "clone")
        opened.append(c)
        hf_b, full_msg = relay.total, rep.bytes_sent + rep.bytes_received
        w = f"8 sync: clone ({label})"
        fo_b = None
        if frepo:
            frelay.reset()
            fossil_out("clone", frelay.url(cred), tmp / "clone.fossil")
            fo_b = frelay.total
            tool(["fossil", "settings", "autosync", "off", "-R", str(tmp / "clone.fossil")])
            rows.append(Row(w, "time", hf_t, "s", "fossil clone", fo_t, budget=("<=", 0.5),
                            note=f"best of {repeats}, each a process (herofossil clone CLI)"))
            rows.append(Row(w, "bytes on the wire", hf_b, "B", "fossil clone", fo_b,
                            budget=("<=", 1.0), note=f"counted by a TCP relay, HTTP included; "
                            f"our messages alone: {full_msg} B"))
        else:
            rows.append(missing(w, "vs fossil clone", "fossil not installed"))

        # ---- resumed clone after an interruption at 50%
        progress(f"sync {label}: clone interrupted at 50%, then resumed")
        relay.reset()
        relay.cut_after = hf_b // 2
        try:
            clone(relay.url(), tmp / "resumed")[0].close()
            cut = "the clone ended before the cut"
        except Exception as exc:  # the relay dropped the connection
            cut = f"interrupted: {type(exc).__name__}"
        relay.cut_after = None
        relay.reset()
        try:
            r2, rep = clone(relay.url(), tmp / "resumed")
        except Exception as exc:
            code = proc.poll()
            state = "runs" if code is None else f"exited with {code}"
            raise RuntimeError(f"the resumed clone failed ({exc}); the server {state}; "
                               f"the relay could not reach it: {relay.unreachable[-3:]}") from exc
        r2.close()
        w = f"8 sync: resumed clone ({label})"
        rows.append(Row(w, "bytes after an interruption at 50%", relay.total, "B",
                        "uninterrupted clone", hf_b,
                        note=f"{cut}; the relay cut the stream after {hf_b // 2} B came back; "
                        f"{rep.round_trips} round trip(s) to finish; a clone commits chunks "
                        f"({FIRST_CHUNK >> 10} KiB first, then 1/{STREAM_CHUNKS} of what is "
                        f"left, {MIN_CHUNK >> 10} KiB-{CHUNK >> 10} KiB)"))
        # ---- no-op sync
        progress(f"sync {label}: no-op sync")
        relay.reset()
        rep = sync(c, relay.url())
        noop = relay.total
        fo_trips = fo_noop = None
        if frepo:
            frelay.reset()
            out = fossil_out("sync", frelay.url(cred), "-R", tmp / "clone.fossil")
            fo_trips, fo_noop = fossil_trips(out), frelay.total
        w = f"8 sync: no-op ({label})"
        rows.append(Row(w, "round trips", rep.round_trips, "", "goal", 1, budget=("<=", 1.0),
                        note=f"fossil sync: {fo_trips} round trip(s)"))
        rows.append(Row(w, "bytes on the wire", noop, "B", "goal (600 B)", 600,
                        budget=("<=", 1.0),
                        note=f"HTTP included (TCP relay); our messages alone: "
                        f"{rep.bytes_sent + rep.bytes_received} B"))
        if frepo:
            rows.append(Row(w, "bytes on the wire", noop, "B", "fossil sync", fo_noop,
                            note="both counted by the TCP relay"))

        # ---- N new check-ins on one side (the server's) and on both
        server = herofossil.open(store)
        opened.append(server)
        fco_server = fco_client = None
        if frepo:
            fco_server = fossil_checkout(frepo, tmp / "fco-server")
            fco_client = fossil_checkout(tmp / "clone.fossil", tmp / "fco-client")
        first = 0
        for n in (1, 100):
            for both in (False, True):
                side = "both sides" if both else "the server's side"
                progress(f"sync {label}: {n} new check-in(s) on {side}")
                new = hf_write(server, "server", first, n)
                if both:
                    new |= hf_write(c, "client", first, n)
                before = exchange.last_seq(c._env)
                relay.reset()
                rep = sync(c, relay.url())
                wire = relay.total
                new |= received(c, before)  # a merge the server made comes back too
                fo_w = fo_tr = None
                with_fossil = frepo and (n == 1 or (real and ctx.size != "S"))
                if with_fossil:
                    fossil_write(fco_server, "server", first, n)
                    if both:
                        fossil_write(fco_client, "client", first, n)
                    frelay.reset()
                    out = fossil_out("sync", frelay.url(cred), "-R", tmp / "clone.fossil")
                    fo_tr, fo_w = fossil_trips(out), frelay.total
                first += n
                w = f"8 sync: {n} new check-in(s) on {side} ({label})"
                rows.append(Row(w, "round trips", rep.round_trips, "", "goal", 1,
                                budget=("<=", 1.0), note="" if fo_tr is None else
                                f"fossil sync: {fo_tr} round trip(s)"))
                rows.append(Row(w, "bytes on the wire - no-op's", wire - noop, "B",
                                "zstd size of what is new", zstd_size(new), budget=("<=", 1.2),
                                note=f"{len(new)} new artifacts"
                                + (" (the merge the server made included)" if both else "")
                                + f", each zstd-compressed alone ({zstd_joined(new)} B as "
                                f"one stream); the constant is the no-op sync's {noop} B"))
                if with_fossil:
                    rows.append(Row(w, "bytes on the wire", wire, "B", "fossil sync", fo_w,
                                    note="both counted by the TCP relay"))
                elif frepo:
                    rows.append(Row(w, "bytes on the wire", wire, "B", "fossil sync", None,
                                    note="fossil's 100 commits are measured on the real "
                                    "history only, not at size S (they cost most of this "
                                    "workload's time)"))

        if real:  # propagation does not depend on the history: one corpus is enough
            progress(f"sync {label}: --follow propagation")
            rows += follow_rows(ctx, label, server, tmp, port)
    finally:
        for repo in opened:
            repo.close()
        for r in relays:
            r.close()
        for p in procs:
            stop(p)
    return rows


def follow_rows(ctx, label: str, server, tmp: Path, port: int) -> list[Row]:
    """Write on the server; time until a follower (``--follow``) shows it."""
    import herofossil
    from herofossil.sync.client import clone

    n = 5 if ctx.size == "S" else 20
    c, _ = clone(f"http://127.0.0.1:{port}/", tmp / "follower")
    c.close()
    proc, _ = serve_ours(tmp / "follower", "--follow", f"http://127.0.0.1:{port}/")
    try:
        reader = herofossil.open(tmp / "follower", readonly=True)
        try:
            delays = []
            for i in range(n):
                data = b"follow %d\n" % i
                server.write("sync-bench/follow.txt", data, message=f"follow {i}")
                t0 = time.perf_counter()
                deadline = t0 + 30
                while time.perf_counter() < deadline:
                    try:
                        if reader.read("sync-bench/follow.txt") == data:
                            break
                    except Exception:  # not there yet
                        pass
                    time.sleep(0.002)
                else:
                    raise RuntimeError(f"write {i} not visible on the follower after 30 s")
                delays.append(time.perf_counter() - t0)
        finally:
            reader.close()
    finally:
        stop(proc)
    delays.sort()
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    w = f"8 sync: --follow propagation ({label})"
    note = "write on the server to visible on the follower; fossil has no continuous replica"
    return [Row(w, f"median delay ({n} writes)", statistics.median(delays), "s", note=note),
            Row(w, f"p99 delay ({n} writes)", p99, "s", note=note)]


def run(ctx) -> list[Row]:
    """Rows per corpus (the generated ones at this size, then the real history)."""
    import tempfile

    targets = [(ctx.corpus(k).label, ctx.store(k).path, False) for k in ("config", "code")]
    rows: list[Row] = []
    try:
        real = real_store(ctx)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        real = None
        rows.append(missing("8 sync (real history)", "(corpus)",
                            f"importing {REAL_BUNDLE.name} failed: {exc!r}"[:300]))
    if real:
        targets.append((*real, True))
    elif not rows:
        rows.append(missing("8 sync (real history)", "(corpus)",
                            f"{REAL_BUNDLE.name} not found beside the project"))
    for label, store, is_real in targets:
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as t:
            work = Path(t)
            # The server store gets new check-ins: serve a copy, keep the shared one intact.
            shutil.copytree(store, work / "store")
            rows += corpus_rows(ctx, label, work / "store", work, is_real)
    return rows
