"""Workload 9: Fossil's sync protocol, herofossil against ``fossil server`` in the same run.

Per corpus: the herofossil store (served by ``python -m herofossil.sync.server``,
which answers Fossil's xfer protocol on its sync port) and a Fossil repository of
the same artifacts (``fossil_of``: ``herofossil export artifacts`` then ``fossil
reconstruct``, served by ``fossil server``). The real ``fossil`` client clones
from and syncs with each; herofossil clones from ``fossil server`` with
``xferclient``. Every client logs in anonymously (both servers allow a
loopback clone without login). Bytes are counted by the TCP relay of the sync
workload, HTTP included; timed runs bypass it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.util import Row, have, missing, progress, run_measured
from bench.workloads.sync import (
    REAL_BUNDLE,
    Relay,
    fossil_of,
    fossil_out,
    fossil_trips,
    real_store,
    serve_fossil,
    serve_ours,
    stop,
)

NAME = "fossil"
# herofossil as a Fossil client when the ``herofossil clone`` CLI does not take the URL.
PY_CLONE = ("import sys; from herofossil.sync.xferclient import clone; "
            "clone(sys.argv[1], sys.argv[2])[0].close()")


def repeats_of(size: str) -> int:
    """Timed clones per client and server (each a process)."""
    return 2 if size == "L" else 3


def fossil_checkins(repo: Path) -> int:
    """Check-ins in a Fossil repository."""
    out = fossil_out("sql", "-R", repo, "SELECT count(*) FROM event WHERE type='ci'")
    return int(out.strip().strip("'").splitlines()[-1])


def hf_checkins(store: Path) -> int:
    """Check-ins in a herofossil store."""
    import herofossil

    repo = herofossil.open(store, readonly=True)
    try:
        return repo.stats()["checkins"]
    finally:
        repo.close()


class HfClone:
    """``herofossil clone fossil+http://...`` as a process: the CLI when it takes such a
    URL, else ``xferclient.clone`` in a small Python subprocess (``how`` says which)."""

    def __init__(self):
        self.cli: bool | None = None
        self.how = ""

    def __call__(self, url: str, dest: Path) -> float:
        """Clone ``url`` into ``dest``; the seconds the process took."""
        if self.cli is not False:
            m = run_measured([sys.executable, "-m", "herofossil", "-q", "clone", url,
                              str(dest)], check=False)
            if m.returncode == 0:
                self.cli, self.how = True, "herofossil clone CLI"
                return m.seconds
            if self.cli:
                raise RuntimeError(f"herofossil clone {url} failed: {m.stderr.strip()[-300:]}")
            self.cli = False
            why = (m.stderr.strip().splitlines() or ["?"])[-1].removeprefix("herofossil: ")
            self.how = (f"xferclient.clone in a Python subprocess (the herofossil clone CLI "
                        f"exited {m.returncode}: {why.replace(repr(url), 'URL')[:120]})")
            shutil.rmtree(dest, ignore_errors=True)
        return run_measured([sys.executable, "-c", PY_CLONE, url, str(dest)]).seconds


def timed(clone, url: str, tmp: Path, name: str, n: int) -> list[float]:
    """Seconds of ``n`` clones of ``url`` (each into a new place, removed after)."""
    out = []
    for k in range(n):
        dest = tmp / f"{name}-{k}"
        out.append(clone(url, dest))
        if dest.is_dir():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    return out


def fossil_clone(url: str, dest: Path) -> float:
    """``fossil clone url dest`` as a process: its seconds."""
    return run_measured(["fossil", "clone", url, str(dest)]).seconds


def best_note(times: list[float], cold_what: str) -> str:
    return (f"best of {len(times)}, each a process; the first ({cold_what}): "
            f"{times[0]:.3g} s")


def corpus_rows(ctx, label: str, store: Path, tmp: Path) -> list[Row]:
    """The rows of one corpus: ``store`` is a copy this workload may serve (and so write)."""
    rows: list[Row] = []
    n = repeats_of(ctx.size)
    progress(f"fossil xfer {label}: fossil reconstruct of our artifacts")
    frepo = fossil_of(store, tmp / "server.fossil")
    checkins, fossil_has = hf_checkins(store), fossil_checkins(frepo)
    procs: list[subprocess.Popen] = []
    relays: list[Relay] = []
    try:
        proc, port = serve_ours(store)
        procs.append(proc)
        fproc, fport = serve_fossil(frepo)
        procs.append(fproc)
        relay, frelay = Relay(port), Relay(fport)
        relays += [relay, frelay]
        ours, theirs = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{fport}/"

        # ---- fossil clone from herofossil vs from fossil server
        progress(f"fossil xfer {label}: fossil clone x{n} from each server")
        hf_t = timed(fossil_clone, ours, tmp, "from-hf.fossil", n)
        fo_t = timed(fossil_clone, theirs, tmp, "from-fossil.fossil", n)
        relay.reset()
        fossil_clone(relay.url(), tmp / "hf.fossil")
        hf_b = relay.total
        frelay.reset()
        fossil_clone(frelay.url(), tmp / "fo.fossil")
        fo_b = frelay.total
        got = fossil_checkins(tmp / "hf.fossil")
        same = (f"the clone has the store's {fossil_has} check-ins" if got == fossil_has else
                f"WRONG: the clone has {got} check-ins, the store {fossil_has}")
        w = f"9 fossil xfer: fossil clone ({label})"
        rows.append(Row(w, "time", min(hf_t), "s", "from fossil server", min(fo_t),
                        budget=("<=", 1.0),
                        note=f"{best_note(hf_t, 'cold server cache')}; fossil server's "
                        f"first: {fo_t[0]:.3g} s; goal: at least as fast as from Fossil's "
                        "own server"))
        rows.append(Row(w, "bytes on the wire", hf_b, "B", "from fossil server", fo_b,
                        budget=("<=", 1.0),
                        note=f"counted by a TCP relay, HTTP included; {same}"))

        # ---- fossil sync no-op, from a clone of each
        progress(f"fossil xfer {label}: fossil sync no-op against each server")
        relay.reset()
        hf_out = fossil_out("sync", relay.url(), "-R", tmp / "hf.fossil")
        hf_s = relay.total
        frelay.reset()
        fo_out = fossil_out("sync", frelay.url(), "-R", tmp / "fo.fossil")
        fo_s = frelay.total
        w = f"9 fossil xfer: fossil sync no-op ({label})"
        rows.append(Row(w, "round trips", fossil_trips(hf_out), "", "fossil server",
                        fossil_trips(fo_out),
                        note="the first sync after the clone, as fossil reports it"))
        rows.append(Row(w, "bytes on the wire", hf_s, "B", "fossil server", fo_s,
                        note="counted by a TCP relay, HTTP included"))

        # ---- herofossil as a Fossil client vs fossil clone, from the same fossil server
        progress(f"fossil xfer {label}: herofossil clone x{n} from fossil server")
        hf_clone = HfClone()
        ours_t = timed(hf_clone, "fossil+" + theirs, tmp, "hf-from-fossil", n)
        frelay.reset()
        hf_clone("fossil+" + frelay.url(), tmp / "hf-clone")
        ours_b = frelay.total
        got = hf_checkins(tmp / "hf-clone")
        same = (f"the clone has the store's {checkins} check-ins" if got == checkins else
                f"WRONG: the clone has {got} check-ins, the store {checkins}")
        w = f"9 fossil xfer: herofossil clone from fossil server ({label})"
        rows.append(Row(w, "time", min(ours_t), "s", "fossil clone", min(fo_t),
                        note=f"{best_note(ours_t, 'cold')}; {hf_clone.how}; fossil clone's "
                        "figure is the row above's"))
        rows.append(Row(w, "bytes on the wire", ours_b, "B", "fossil clone", fo_b,
                        note=f"counted by a TCP relay, HTTP included; {same}"))
    finally:
        for r in relays:
            r.close()
        for p in procs:
            stop(p)
    return rows


def run(ctx) -> list[Row]:
    """Rows per corpus: config at this run's size, then the real history."""
    if not have("fossil"):
        return [missing("9 fossil xfer", "(workload)", "fossil not installed")]
    made = ctx.store("config")
    targets = [(ctx.corpus("config").label, made.path)]
    rows: list[Row] = []
    try:
        real = real_store(ctx)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        real = None
        rows.append(missing("9 fossil xfer (real history)", "(corpus)",
                            f"importing {REAL_BUNDLE.name} failed: {exc!r}"[:300]))
    if real:
        targets.append(real)
    elif not rows:
        rows.append(missing("9 fossil xfer (real history)", "(corpus)",
                            f"{REAL_BUNDLE.name} not found beside the project"))
    for label, store in targets:
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as t:
            work = Path(t)
            # The server makes clusters in the store it serves: serve a copy.
            shutil.copytree(store, work / "store")
            rows += corpus_rows(ctx, label, work / "store", work)
    return rows
