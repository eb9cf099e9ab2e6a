"""Process-crash campaign: writers and maintenance killed by SIGKILL at random points.

Modelled on SQLite's and LMDB's crash tests: several writer processes (Python
API with threads, and the command line) on one store are killed at random
moments, again and again on the same store; after every kill the store opens,
``verify`` passes and every write whose call returned (each writer logs it,
fsynced, in its own ledger; see ``killcampaign``) is there with its bytes.
Maintenance and bulk work (map growth, compact, rebuild, ``import git``,
``import artifacts``) is killed too, then re-run to the same result.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

import herofossil

sys.path.insert(0, os.path.dirname(__file__))
import killcampaign as kc  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

SEED = 20261201
# The text writers: one API process, one API process with three threads (group
# commit), one process running ``herofossil put`` again and again.
WRITERS = (("api", ["a0"]), ("api", ["t0", "t1", "t2"]), ("cli", ["c0"]))
# Mean pause between two calls of one API writer thread: the store stays small
# enough for a verify after every kill, and kills still land inside calls.
PAUSE = 0.04


def _herofossil(store, *args) -> list[str]:
    return [sys.executable, "-m", "herofossil", "-R", str(store), *map(str, args)]


def _delay(rng: random.Random, low: float = 0.005, high: float = 1.0) -> float:
    """Log-uniform: as many kills 5-50 ms after the start as 0.1-1 s after it."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _tail(logdir, slots) -> str:
    out = []
    for slot in slots:
        p = os.path.join(logdir, slot + ".stderr")
        if os.path.exists(p):
            with open(p, "rb") as f:
                out.append(f.read()[-2000:].decode(errors="replace"))
    return "\n".join(out)


def _new_store(base, map_size: int = 0) -> tuple[str, str]:
    store, logdir = str(base / "store"), str(base / "logs")
    os.makedirs(logdir)
    kw = {"map_size": map_size} if map_size else {}
    herofossil.open(store, create=True, **kw).close()
    kc.seed_shared(store, logdir)
    return store, logdir


class Campaign:
    """Writers on a series of stores, killed one or all at a time, checked after each kill."""

    def __init__(self, tmp_path, seed: int, writers=WRITERS, map_size: int = 0,
                 big: bool = False, pause: float = PAUSE):
        self.tmp_path = tmp_path
        self.rng = random.Random(seed)
        self.seed = seed
        self.writers = writers
        self.map_size = map_size
        self.big = big
        self.pause = pause
        self.iterations = self.kills = self.stores = 0
        self.checkers: list[kc.Checker] = []
        self.problems: list[str] = []

    def _spawn(self, w: kc.Writer, store: str, logdir: str) -> kc.Writer:
        return kc.spawn(w, store, logdir, self.seed, self.map_size, self.big, self.pause)

    def _kill(self, w: kc.Writer, logdir: str) -> None:
        if kc.kill_group(w.proc):
            self.kills += 1
        else:
            self.problems.append(f"writer {w.slots} exited by itself ({w.proc.returncode}) "
                                 f"in iteration {self.iterations}:\n{_tail(logdir, w.slots)}")

    def run(self, iterations: int, budget: float, series: int) -> Campaign:
        """Up to ``iterations`` kills (or ``budget`` seconds), ``series`` kills per store."""
        start = time.monotonic()
        while self.iterations < iterations and time.monotonic() - start < budget:
            self.stores += 1
            store, logdir = _new_store(self.tmp_path / f"s{self.stores}", self.map_size)
            checker = kc.Checker(store, logdir)
            self.checkers.append(checker)
            writers = [self._spawn(kc.Writer(kind, list(slots)), store, logdir)
                       for kind, slots in self.writers]
            verifying = None
            try:
                for i in range(series):
                    if self.iterations >= iterations or time.monotonic() - start >= budget:
                        break
                    self.iterations += 1
                    kill_all = i == series - 1 or self.rng.random() < 0.3
                    victims = writers if kill_all else [self.rng.choice(writers)]
                    due = max(w.started for w in victims) + _delay(self.rng)
                    time.sleep(max(0.0, due - time.monotonic()))
                    for w in victims:
                        self._kill(w, logdir)
                    checker.check({s for w in victims for s in w.slots}, verify=False)
                    if checker.counts.problems:
                        break
                    if not kill_all:
                        self._spawn(victims[0], store, logdir)
                    elif i < series - 1:
                        for w in writers:
                            self._spawn(w, store, logdir)
                    # This kill's verify runs while the next round's writers go on (one
                    # verify at a time: the previous one must be done).
                    if verifying is not None:
                        verifying.join()
                    verifying = checker.verify_in_background()
            finally:
                if verifying is not None:
                    verifying.join()
                for w in writers:
                    if w.proc.poll() is None:
                        self._kill(w, logdir)
            checker.check(final=True)
            if checker.counts.problems:
                self.problems += [f"store {self.stores} (seed {self.seed}, iteration "
                                  f"{self.iterations}): {p}" for p in checker.counts.problems]
                break
        return self

    def total(self, name: str) -> int:
        return sum(getattr(c.counts, name) for c in self.checkers)

    def report(self, label: str) -> str:
        line = (f"{label}: seed {self.seed}, {self.iterations} iterations, {self.kills} kills, "
                f"{self.stores} stores, {self.total('verifies')} verifies, "
                f"{self.total('acked')} acknowledged writes checked "
                f"({self.total('acked_checked')} at their check-in, "
                f"{self.total('tip_paths_checked')} tip states), {self.total('conflicts')} "
                f"expect= conflicts, {self.total('uncertain')} calls cut by a kill, "
                f"lost {self.total('lost')}")
        print(line)
        return line


def _assert_clean(c: Campaign) -> None:
    assert not c.problems, "\n".join(c.problems[:20])
    assert c.total("lost") == 0
    assert c.iterations > 0 and c.kills > 0 and c.total("acked") > 0
    assert c.total("acked_checked") == c.total("acked")
    assert c.total("verifies") >= c.iterations


def test_checker_counts_acknowledged_writes_the_store_lacks_as_lost(tmp_path):
    store, logdir = _new_store(tmp_path)
    led = kc.Ledger(logdir, "x")
    with herofossil.open(store) as repo:
        n = led.intent(op="put", path=kc.own_path("x", 0), sha=kc.sha3(b"kept"), expect=None)
        led.ack(n, repo.write(kc.own_path("x", 0), b"kept").id)
        # acknowledged with bytes the store never got
        n = led.intent(op="put", path=kc.own_path("x", 1), sha=kc.sha3(b"lost"), expect=None)
        led.ack(n, repo.write(kc.own_path("x", 1), b"other").id)
        # acknowledged in a check-in the store does not have
        n = led.intent(op="delete", path=kc.own_path("x", 0))
        led.ack(n, "ab" * 32)
        # two acknowledged writes over the same expected version (the second lost an update)
        seed = repo.stat(kc.SHARED[0]).id
        for data in (b"first", b"second"):
            n = led.intent(op="put", path=kc.SHARED[0], sha=kc.sha3(data), expect=seed)
            led.ack(n, repo.write(kc.SHARED[0], data).id)
    c = kc.Checker(store, logdir).check(final=True)
    assert c.acked == 8  # the 3 seeds and the 5 above
    expected = [
        "put own/x/f1.txt: check-in",
        "delete own/x/f0.txt: acknowledged check-in abababababab is not in trunk's history",
        f"put shared/s0.txt: written over {kc.sha3(b'first')}, not over the expected {seed}",
        f"own/x/f1.txt at the tip is {kc.sha3(b'other')}, expected one of "
        f"['{kc.sha3(b'lost')}']",
        f"own/x/f0.txt at the tip is {kc.sha3(b'kept')}, expected one of ['None']",
        f"shared/s0.txt: two acknowledged writes over {seed}",
    ]
    assert len(c.problems) == len(expected), c.problems
    for text in expected:
        assert sum(text in p for p in c.problems) == 1, (text, c.problems)
    assert c.lost == len(expected)


def test_an_op_cut_by_a_kill_allows_either_outcome():
    put = kc.Op("s", 0, 1, "put", path="p", sha="a", status="ack")
    cut = kc.Op("s", 0, 2, "put", path="p", sha="b")
    assert kc._allowed([put], "p") == {"a"}
    assert kc._allowed([put, cut], "p") == {"a", "b"}
    gone = kc.Op("s", 1, 1, "delete", path="p")
    assert kc._allowed([put, cut, gone], "p") == {"a", "b", None}
    moved = kc.Op("s", 1, 2, "rename", src="p", dst="q", sha="b", status="ack")
    assert kc._allowed([put, cut, gone, moved], "p") == {None}
    assert kc._allowed([put, cut, gone, moved], "q") == {"b"}
    assert kc._allowed([cut], "p") == {"b", None}


def test_writers_killed_a_few_times_lose_no_acknowledged_write(tmp_path):
    c = Campaign(tmp_path, SEED, writers=(("api", ["a0", "t0"]), ("cli", ["c0"])))
    c.run(iterations=4, budget=120, series=4)
    c.report("kill (fast)")
    _assert_clean(c)
    assert c.iterations == 4


@pytest.mark.slow
def test_hundreds_of_sigkills_of_api_and_cli_writers_lose_nothing(tmp_path):
    c = Campaign(tmp_path, SEED + 1)
    c.run(iterations=400, budget=55, series=15)
    c.report("kill campaign")
    _assert_clean(c)
    assert c.iterations >= 50  # about 120 in 55 s on a busy 2-core machine
    assert c.total("conflicts") > 0  # the expect= races really happened
    assert c.total("uncertain") > 0  # and kills landed inside calls


@pytest.mark.slow
def test_sigkills_during_map_growth_lose_nothing(tmp_path):
    map_size = 1 << 20
    c = Campaign(tmp_path, SEED + 2, writers=(("api", ["g0"]), ("api", ["g1", "g2"])),
                 map_size=map_size, big=True)
    c.run(iterations=200, budget=20, series=10)
    c.report("kill during map growth")
    _assert_clean(c)
    assert c.iterations >= 10
    biggest = max(os.path.getsize(os.path.join(ch.store, "data.mdb")) for ch in c.checkers)
    assert biggest >= 16 * map_size  # that store's map doubled at least four times


# ---- maintenance
def _maintenance_campaign(tmp_path, seed: int, command: str, budget: float) -> dict:
    """Rounds of: big writes and deletes (killed), then ``command`` run three times, each
    killed at a random point (every fourth round's last run left to finish); the store
    is checked after every kill."""
    rng = random.Random(seed)
    store, logdir = _new_store(tmp_path / "m")
    if command == "compact":  # history compact packs: killed too while it trains and packs
        kc.seed_history(store, logdir, seed)
    checker = kc.Checker(store, logdir)
    counts = {"rounds": 0, "kills": 0, "completed": 0, "leftovers": 0}
    took = None
    start = time.monotonic()
    while time.monotonic() - start < budget:
        counts["rounds"] += 1
        w = kc.spawn(kc.Writer("api", ["m0", "m1"]), store, logdir, seed, big=True)
        time.sleep(rng.uniform(0.3, 0.7))
        assert kc.kill_group(w.proc), _tail(logdir, w.slots)
        checker.check(verify=False)
        for run in range(3):
            t0 = time.monotonic()
            proc = subprocess.Popen(_herofossil(store, command), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
            if took is None or (run == 2 and counts["rounds"] % 4 == 0):
                err = proc.communicate()[1]
                assert proc.returncode == 0, err.decode()
                took = time.monotonic() - t0
                counts["completed"] += 1
            else:
                time.sleep(rng.uniform(0.005, 1.3 * took))
                if kc.kill_group(proc):
                    counts["kills"] += 1
                    # what a kill inside the work leaves (today: compact's half-made copy)
                    counts["leftovers"] += len(set(os.listdir(store)) - {
                        "data.mdb", "lock.mdb", "herofossil-store"})
                else:
                    assert proc.returncode == 0, proc.stderr.read().decode()
                    counts["completed"] += 1
                proc.stderr.close()
            checker.check()
            assert not checker.counts.problems, (
                f"seed {seed}, round {counts['rounds']}, run {run}: "
                + "\n".join(checker.counts.problems[:20]))
    c = checker.check(final=True)
    assert not c.problems, "\n".join(c.problems[:20])
    counts.update(acked=c.acked, verifies=c.verifies, lost=c.lost)
    print(f"kill during {command}: {counts}")
    return counts


@pytest.mark.slow
def test_sigkill_during_compact_keeps_every_acknowledged_write(tmp_path):
    counts = _maintenance_campaign(tmp_path, SEED + 3, "compact", budget=15)
    assert counts["kills"] >= 6 and counts["completed"] >= 1
    assert counts["acked"] > 0 and counts["lost"] == 0
    store = str(tmp_path / "m" / "store")
    with herofossil.open(store, readonly=True) as repo:  # the compacts packed the history
        assert repo.stats()["dictionaries"] == 1 and repo.stats()["segmented"] > 0


@pytest.mark.slow
def test_sigkill_during_rebuild_keeps_every_acknowledged_write(tmp_path):
    counts = _maintenance_campaign(tmp_path, SEED + 4, "rebuild", budget=15)
    assert counts["kills"] >= 6 and counts["completed"] >= 1
    assert counts["acked"] > 0 and counts["lost"] == 0


# ---- bulk imports
def _refs(gitdir) -> str:
    return subprocess.run(["git", "-C", str(gitdir), "for-each-ref",
                           "--format=%(refname) %(objectname)"],
                          capture_output=True, text=True, check=True).stdout


def _checkins(store) -> set[str]:
    with herofossil.open(store) as repo:
        report = repo.verify()
        assert report.ok, report.problems[:5]
        return {ci.id for _, ci in repo.plumbing.checkins_after(0)}


def _git_maps(store) -> dict[str, list[tuple[str, str]]]:
    from herofossil.gitimport import git_map

    with herofossil.open(store) as repo:
        return {b: git_map(repo, b) for b in sorted(repo.branches())}


# ``import git`` checkpoints every FLUSH_EVERY commits; this run of the real
# command line checkpoints every 25, so that kills also land between checkpoints.
_SMALL_FLUSH = ("import sys\nfrom herofossil.gitimport import importer\n"
                "importer.FLUSH_EVERY = 25\nfrom herofossil.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    base = tmp_path_factory.mktemp("history")
    gitdir = str(base / "src")
    kc.build_git_history(gitdir, 300, SEED)
    ref = str(base / "ref")
    herofossil.open(ref, create=True).close()
    own = _checkins(ref)
    t0 = time.monotonic()
    subprocess.run(_herofossil(ref, "-q", "import", "git", gitdir), check=True,
                   capture_output=True)
    took = time.monotonic() - t0
    return {"git": gitdir, "ref": ref, "took": took, "imported": _checkins(ref) - own}


def _until_done(rng, cmd, took: list[float], check, counts: dict, kills: int = 4) -> None:
    """Run ``cmd`` until a run finishes: each of the first ``kills`` runs is killed at a
    random point (unless it finished first), then one is left to finish; ``check``
    after every run. ``took``: how long whole runs took (kills land within the shortest)."""
    for attempt in range(kills + 1):
        counts["runs"] += 1
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        if attempt < kills:
            time.sleep(rng.uniform(0.005, 1.2 * min(took)))
            killed = kc.kill_group(proc)
        else:
            proc.wait()
            killed = False
        err = proc.stderr.read().decode()
        proc.stderr.close()
        check()
        if not killed:
            assert proc.returncode == 0, err
            took.append(time.monotonic() - t0)
            return
        counts["kills"] += 1


@pytest.mark.slow
def test_sigkilled_import_git_resumes_to_the_same_result(history, tmp_path):
    rng = random.Random(SEED + 5)
    gitdir = history["git"]
    ref_ids = history["imported"]
    ref_maps = _git_maps(history["ref"])
    commits = int(subprocess.run(["git", "-C", gitdir, "rev-list", "--all", "--count"],
                                 capture_output=True, text=True, check=True).stdout)
    assert commits == 300
    counts = {"stores": 0, "kills": 0, "partial": 0, "runs": 0}
    took = [history["took"]]
    start = time.monotonic()
    while time.monotonic() - start < 25 or counts["stores"] < 2:
        counts["stores"] += 1
        store = str(tmp_path / f"s{counts['stores']}")
        herofossil.open(store, create=True).close()
        own = _checkins(store)  # the store's initial check-in

        def cmd(store=store):
            small = rng.random() < 0.5
            return ([sys.executable, "-c", _SMALL_FLUSH, "-R", store, "-q"] if small
                    else _herofossil(store, "-q")) + ["import", "git", gitdir]

        def check(store=store, own=own):
            ids = _checkins(store) - own  # opens and verifies after every kill
            assert ids <= ref_ids, f"check-ins no uninterrupted import makes: {ids - ref_ids}"
            counts["partial"] += 0 < len(ids) < len(ref_ids)

        _until_done(rng, cmd, took, check, counts)
        assert _checkins(store) - own == ref_ids
        assert _git_maps(store) == ref_maps
    out = tmp_path / "out.git"
    subprocess.run(_herofossil(store, "-q", "export", "git", out), check=True,
                   capture_output=True)
    assert _refs(out) == _refs(gitdir)
    print(f"kill during import git: {counts}")
    assert counts["kills"] >= 5 and counts["partial"] >= 1


@pytest.mark.slow
def test_sigkilled_import_artifacts_reruns_to_the_same_store(history, tmp_path):
    rng = random.Random(SEED + 6)
    dump = str(tmp_path / "dump")
    subprocess.run(_herofossil(history["ref"], "-q", "export", "artifacts", dump), check=True,
                   capture_output=True)
    names = set(kc.artifact_names(dump))
    with herofossil.open(history["ref"]) as repo:
        ref_tips = repo.branches()
        ref_files = {b: repo.files(at=cid) for b, cid in ref_tips.items()}
    counts = {"stores": 0, "kills": 0, "runs": 0}
    took = None
    start = time.monotonic()
    while time.monotonic() - start < 12 or counts["stores"] < 2:
        counts["stores"] += 1
        store = str(tmp_path / f"s{counts['stores']}")
        herofossil.open(store, create=True).close()
        mine = str(tmp_path / f"own{counts['stores']}")
        subprocess.run(_herofossil(store, "-q", "export", "artifacts", mine), check=True,
                       capture_output=True)
        own = set(kc.artifact_names(mine))
        cmd = _herofossil(store, "-q", "import", "artifacts", dump)
        if took is None:  # the first store is imported uninterrupted: how long it takes
            t0 = time.monotonic()
            subprocess.run(cmd, check=True, capture_output=True)
            took = [time.monotonic() - t0]
        else:
            _until_done(rng, lambda cmd=cmd: cmd, took, lambda store=store: _checkins(store),
                        counts)
        again = str(tmp_path / f"again{counts['stores']}")
        subprocess.run(_herofossil(store, "-q", "export", "artifacts", again), check=True,
                       capture_output=True)
        assert set(kc.artifact_names(again)) == names | own
        with herofossil.open(store) as repo:
            assert repo.verify().ok
            for branch, cid in ref_tips.items():
                assert cid in repo.leaves(branch)
                assert repo.files(at=cid) == ref_files[branch]
    print(f"kill during import artifacts: {counts}")
    assert counts["kills"] >= 3
