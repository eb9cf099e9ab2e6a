"""SIGKILL campaign helpers: writer processes with fsynced ledgers, and the checker.

Run as a script, this module is a writer (``api`` or ``cli``, see ``main``);
imported, it offers the ledger parser, the checker and process helpers used by
``test_store_crash_kill.py``.

Each writer slot (one thread of an ``api`` writer, or a ``cli`` writer) appends
to its own ledger ``LOGDIR/SLOT.log``: a ``start`` line per process, an
``intent`` line before each call and, only after the call returned, an ``ack``
(fsynced), ``conflict`` or ``error`` line. A slot owns the paths
``own/SLOT/...`` (no other slot writes them); the paths ``shared/...`` are
written by every slot, always with ``expect=`` the id it last read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

OWN_FILES = 6
SHARED = tuple(f"shared/s{k}.txt" for k in range(3))
SETUP = "setup"


def sha3(data: bytes) -> str:
    """The artifact id of ``data`` (hex SHA3-256, as the store names artifacts)."""
    return hashlib.sha3_256(data).hexdigest()


def own_path(slot: str, k: int) -> str:
    """The ``k``-th file owned by ``slot``."""
    return f"own/{slot}/f{k}.txt"


# ---- the ledger a writer keeps
class Ledger:
    """One slot's append-only ledger file; acknowledgements are fsynced."""

    def __init__(self, logdir: str, slot: str):
        self.path = os.path.join(logdir, slot + ".log")
        self.instance = _count_starts(self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.n = 0
        self._line({"k": "start", "inst": self.instance, "pid": os.getpid()})

    def _line(self, rec: dict, sync: bool = False) -> None:
        os.write(self.fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
        if sync:
            os.fsync(self.fd)

    def intent(self, **op) -> int:
        """Record the operation about to be called; returns its number."""
        self.n += 1
        self._line({"k": "intent", "n": self.n, **op})
        return self.n

    def ack(self, n: int, cid: str | None) -> None:
        """The call ``n`` returned: made durable in this ledger before anything else."""
        self._line({"k": "ack", "n": n, "cid": cid}, sync=True)

    def conflict(self, n: int) -> None:
        self._line({"k": "conflict", "n": n}, sync=True)

    def error(self, n: int, msg: str) -> None:
        self._line({"k": "error", "n": n, "msg": msg}, sync=True)


def _count_starts(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.startswith(b'{"k":"start"'))
    except FileNotFoundError:
        return 0


def seed_shared(store: str, logdir: str) -> None:
    """Create the shared paths (acknowledged in the ``setup`` ledger)."""
    import herofossil

    led = Ledger(logdir, SETUP)
    with herofossil.open(store, create=True) as repo:
        for path in SHARED:
            data = f"{path} initial\n".encode()
            n = led.intent(op="put", path=path, sha=sha3(data), expect=None)
            led.ack(n, repo.write(path, data, message=f"seed {path}").id)


def seed_history(store: str, logdir: str, seed: int, versions: int = 300) -> None:
    """Small text files edited many times (acknowledged in the ``history`` ledger): enough
    small artifacts that ``compact`` trains a dictionary and packs them (``packing``); and
    a few documents rewritten whole, whose old versions it puts into segments."""
    import herofossil

    rng = random.Random(f"{seed}:history")
    led = Ledger(logdir, "history")
    old: dict[str, bytes] = {}
    with herofossil.open(store) as repo:
        for n in range(versions):
            path = f"history/{rng.randrange(12)}.toml"
            data = _text_content(rng, path, old.get(path))
            if n % 25 == 0:  # about 8 KB, 3 KB compressed: too large for a leaf page
                path = f"history/doc{n % 2}.md"
                data = b" ".join(b"w%d" % rng.randrange(3000) for _ in range(1300))
            old[path] = data
            n = led.intent(op="put", path=path, sha=sha3(data), expect=None)
            led.ack(n, repo.write(path, data).id)


# ---- writers (subprocesses)
def _text_content(rng: random.Random, head: str, old: bytes | None) -> bytes:
    if old is not None and rng.random() < 0.6:  # a small edit: the old version becomes a delta
        lines = old.split(b"\n")[1:]
        if lines and rng.random() < 0.5:
            lines[rng.randrange(len(lines))] = b"edited %d" % rng.getrandbits(32)
        else:
            lines.insert(rng.randrange(len(lines) + 1), b"added %d" % rng.getrandbits(32))
        body = b"\n".join(lines)
    else:
        body = b"".join(b"line %d of %d\n" % (i, rng.getrandbits(24))
                        for i in range(rng.randint(1, 200)))
    return head.encode() + b"\n" + body


def _big_content(rng: random.Random, head: str, old: bytes | None) -> bytes:
    if old is not None and len(old) > 8192 and rng.random() < 0.4:
        body = bytearray(old[old.index(b"\n") + 1:])
        at = rng.randrange(len(body) - 4096)
        body[at:at + 4096] = rng.randbytes(4096)
        body = bytes(body)
    else:
        body = rng.randbytes(rng.randint(64 << 10, 768 << 10))  # incompressible
    return head.encode() + b"\n" + body


def _api_slot(repo, logdir: str, slot: str, seed: int, big: bool, pause: float) -> None:
    from herofossil.errors import ConflictError

    led = Ledger(logdir, slot)
    rng = random.Random(f"{seed}:{slot}:{led.instance}")
    content = _big_content if big else _text_content
    own = [own_path(slot, k) for k in range(OWN_FILES)]
    while True:
        if pause:
            time.sleep(rng.expovariate(1 / pause))
        head = f"{slot} inst {led.instance} op {led.n + 1} pid {os.getpid()}"
        entries = dict(zip(own, repo.plumbing.stat_each(own), strict=True))
        present = [p for p, e in entries.items() if e is not None]
        absent = [p for p, e in entries.items() if e is None]
        roll = rng.random()
        try:
            if roll < (0.15 if big else 0.2):
                path = rng.choice(SHARED)
                cur = repo.stat(path)
                data = content(rng, head, repo.read(path) if rng.random() < 0.5 else None)
                time.sleep(rng.uniform(0, 0.01))  # think time: other writers may win the race
                n = led.intent(op="put", path=path, sha=sha3(data), expect=cur.id)
                try:
                    ci = repo.write(path, data, expect=cur.id, message=head)
                except ConflictError:
                    led.conflict(n)
                    continue
            elif roll < 0.3 and present:
                path = rng.choice(present)
                n = led.intent(op="delete", path=path)
                ci = repo.delete(path, message=head)
            elif roll < 0.4 and present and absent:
                src, dst = rng.choice(present), rng.choice(absent)
                n = led.intent(op="rename", src=src, dst=dst, sha=entries[src].id)
                ci = repo.rename(src, dst, message=head)
            else:
                path = rng.choice(own)
                e = entries[path]
                data = content(rng, head, repo.read(path) if e is not None else None)
                expect = e.id if e is not None and rng.random() < 0.3 else None
                n = led.intent(op="put", path=path, sha=sha3(data), expect=expect)
                ci = repo.write(path, data, expect=expect, message=head)
            led.ack(n, ci.id if ci is not None else None)
        except Exception as exc:  # any other failure is a finding: record it
            led.error(led.n, f"{type(exc).__name__}: {exc}")
            raise


def run_api(store: str, logdir: str, seed: int, slots: list[str], map_size: int | None,
            big: bool, pause: float) -> None:
    """One process, one thread per slot, all on one Repo (group commit)."""
    import herofossil

    kw = {"map_size": map_size} if map_size else {}
    repo = herofossil.open(store, **kw)
    threads = [threading.Thread(target=_api_slot, args=(repo, logdir, s, seed, big, pause),
                                daemon=True) for s in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.exit(1)  # a slot stopped on an error (it is in its ledger); writers run until killed


def _cli(store: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "herofossil", "-R", store, *args],
                          capture_output=True)


_CHECKIN = re.compile(rb"check-in ([0-9a-f]{12,64}) ")


def run_cli(store: str, logdir: str, seed: int, slot: str, pause: float) -> None:
    """A loop of ``herofossil put`` processes (own paths, and shared ones with ``--expect``)."""
    led = Ledger(logdir, slot)
    rng = random.Random(f"{seed}:{slot}:{led.instance}")
    tmp = os.path.join(logdir, f"{slot}.data")
    while True:
        if pause:
            time.sleep(rng.expovariate(1 / pause))
        head = f"{slot} inst {led.instance} op {led.n + 1} pid {os.getpid()}"
        expect = None
        if rng.random() < 0.25:
            path = rng.choice(SHARED)
            cur = _cli(store, "cat", path)
            if cur.returncode != 0:
                led.error(led.n, f"cat {path}: {cur.stderr.decode().strip()}")
                sys.exit(1)
            expect = sha3(cur.stdout)
        else:
            path = own_path(slot, rng.randrange(OWN_FILES))
        data = _text_content(rng, head, None)
        with open(tmp, "wb") as f:
            f.write(data)
        n = led.intent(op="put", path=path, sha=sha3(data), expect=expect)
        args = ["put", path, tmp, "-m", head] + (["--expect", expect] if expect else [])
        out = _cli(store, *args)
        if out.returncode == 0:
            m = _CHECKIN.search(out.stdout)
            led.ack(n, m.group(1).decode() if m else None)
        elif out.returncode == 4 and expect:
            led.conflict(n)
        else:
            led.error(n, f"put exited {out.returncode}: {out.stderr.decode().strip()}")
            sys.exit(1)


def main(argv: list[str]) -> None:
    """``KIND STORE LOGDIR SEED SLOT[,SLOT...] MAP_SIZE PAUSE [big]``.

    KIND: ``api`` (a thread per slot) or ``cli`` (one slot); MAP_SIZE 0: the
    default map; PAUSE: mean seconds between two calls of a slot (a ``cli``
    slot pauses five times as long: each of its calls starts a process).
    """
    kind, store, logdir, seed, slots, map_size, pause = argv[:7]
    if kind == "api":
        run_api(store, logdir, int(seed), slots.split(","), int(map_size) or None,
                "big" in argv[7:], float(pause))
    else:
        run_cli(store, logdir, int(seed), slots, 5 * float(pause))


# ---- processes
@dataclass
class Writer:
    """A writer process (a session of its own, so a kill takes its children too)."""

    kind: str
    slots: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0


def spawn(w: Writer, store: str, logdir: str, seed: int, map_size: int = 0,
          big: bool = False, pause: float = 0.0) -> Writer:
    """Start ``w``'s process (see ``main`` for the arguments)."""
    args = [sys.executable, os.path.abspath(__file__), w.kind, store, logdir, str(seed),
            ",".join(w.slots)]
    args += [str(map_size), str(pause)] + (["big"] if big else [])
    with open(os.path.join(logdir, w.slots[0] + ".stderr"), "ab") as err:
        w.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True, cwd=logdir)
    w.started = time.monotonic()
    return w


def kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc`` and every process of its session; wait until all are gone.

    Returns True when ``proc`` was still running (a real kill), False when it
    had already exited.
    """
    alive = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    _wait_group_gone(proc.pid)
    return alive


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no live (non-zombie) process is left in process group ``pgid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_in_group(pid, pgid) for pid in os.listdir("/proc") if pid.isdigit()):
            return
        time.sleep(0.002)
    raise AssertionError(f"process group {pgid} still alive after SIGKILL")


def _in_group(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(b")") + 2:].split()
    return fields[0] != b"Z" and int(fields[2]) == pgid


# ---- reading the ledgers back
@dataclass
class Op:
    """One call a writer made, and what it learnt of its outcome."""

    slot: str
    inst: int
    n: int
    op: str
    path: str | None = None
    src: str | None = None
    dst: str | None = None
    sha: str | None = None
    expect: str | None = None
    status: str = "pending"  # ack, conflict, error; pending: no outcome logged
    cid: str | None = None
    msg: str = ""

    def touches(self) -> list[str]:
        return [self.src, self.dst] if self.op == "rename" else [self.path]

    def effect(self, path: str) -> str | None:
        """The content id ``path`` has after this op (None: absent)."""
        if self.op == "put":
            return self.sha
        if self.op == "rename" and path == self.dst:
            return self.sha
        return None


class Ledgers:
    """Every slot's ledger, read incrementally."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self.ops: dict[str, list[Op]] = {}
        self._offsets: dict[str, int] = {}
        self._inst: dict[str, int] = {}
        self.errors: list[str] = []  # failures outside any call (a writer's own reads)

    def refresh(self) -> None:
        for name in sorted(os.listdir(self.logdir)):
            if not name.endswith(".log"):
                continue
            slot = name[:-4]
            with open(os.path.join(self.logdir, name), "rb") as f:
                f.seek(self._offsets.get(slot, 0))
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # a torn last line has no outcome yet
            self._offsets[slot] = self._offsets.get(slot, 0) + end
            ops = self.ops.setdefault(slot, [])
            for line in chunk[:end].splitlines():
                rec = json.loads(line)
                kind = rec.pop("k")
                if kind == "start":
                    self._inst[slot] = rec["inst"]
                elif kind == "intent":
                    ops.append(Op(slot, self._inst[slot], **rec))
                else:
                    op = ops[-1] if ops else None
                    if (op is None or op.n != rec["n"] or op.inst != self._inst[slot]
                            or op.status != "pending"):
                        if kind != "error":
                            raise AssertionError(f"{slot}: outcome without its intent: {rec}")
                        self.errors.append(f"{slot}#{self._inst[slot]}: {rec['msg']}")
                        continue
                    op.status = kind
                    op.cid = rec.get("cid")
                    op.msg = rec.get("msg", "")

    def all_ops(self):
        for ops in self.ops.values():
            yield from ops


# ---- the checker
@dataclass
class Counts:
    """What the checks found; ``lost`` and ``problems`` must stay empty."""

    checks: int = 0
    verifies: int = 0
    acked: int = 0
    acked_checked: int = 0
    conflicts: int = 0
    uncertain: int = 0
    tip_paths_checked: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str, lost: bool = False) -> None:
        self.problems.append(text)
        if lost:
            self.lost += 1


class Checker:
    """Checks a store against the writers' ledgers after each kill."""

    def __init__(self, store: str, logdir: str, counts: Counts | None = None):
        self.store = store
        self.ledgers = Ledgers(logdir)
        self.counts = counts or Counts()
        self._deep_done: set[tuple[str, int, int]] = set()
        self._full: dict[str, str] = {}
        self._uncertain: set[tuple[str, int, int]] = set()

    def verify(self) -> None:
        """Open the store and run its ``verify``; a failure is a problem."""
        import herofossil

        with herofossil.open(self.store) as repo:
            report = repo.verify()
        self.counts.verifies += 1
        if not report.ok:
            self.counts.problem(f"verify: {report.problems[:5]}")

    def verify_in_background(self) -> threading.Thread:
        """``verify`` in a thread (it runs while the writers go on); join it."""
        t = threading.Thread(target=self.verify)
        t.start()
        return t

    def check(self, stopped: set[str] | None = None, final: bool = False,
              verify: bool = True) -> Counts:
        """Open the store, verify it (unless not ``verify``), check every acknowledged op;
        ``stopped``: slots whose processes are dead (their files' tip state is checked
        too; None: all)."""
        import herofossil

        c = self.counts
        c.checks += 1
        self.ledgers.refresh()
        if verify:
            self.verify()
        with herofossil.open(self.store) as repo:
            leaves = repo.leaves()
            if len(leaves) != 1:
                c.problem(f"trunk has {len(leaves)} leaves")
            ancestry = {ci.id for ci in repo.log()}
            acked = [op for op in self.ledgers.all_ops() if op.status == "ack"]
            c.acked = len(acked)
            for op in acked:
                self._check_acked(repo, op, ancestry, deep=final)
            for op in self.ledgers.all_ops():
                if op.status == "error":
                    c.problem(f"{op.slot}#{op.inst}.{op.n} {op.op} failed: {op.msg}")
            for msg in self.ledgers.errors:
                c.problem(f"a writer failed: {msg}")
            slots = set(self.ledgers.ops) if stopped is None else stopped
            self._check_tips(repo, slots - {SETUP})
            self._check_shared(repo, history=final)
        return c

    def _full_id(self, repo, cid: str) -> str:
        if len(cid) == 64:
            return cid
        if cid not in self._full:
            self._full[cid] = repo.resolve(cid)
        return self._full[cid]

    def _check_acked(self, repo, op: Op, ancestry: set[str], deep: bool) -> None:
        c = self.counts
        where = f"{op.slot}#{op.inst}.{op.n} {op.op} {op.path or op.src}"
        if op.cid is None:
            c.problem(f"{where}: returned without a check-in", lost=True)
            return
        cid = self._full_id(repo, op.cid)
        if cid not in ancestry:
            c.problem(f"{where}: acknowledged check-in {cid[:12]} is not in trunk's history",
                      lost=True)
            return
        key = (op.slot, op.inst, op.n)
        if key in self._deep_done and not deep:
            return
        if op.op == "rename":
            src, dst = repo.plumbing.stat_each([op.src, op.dst], at=cid)
            ok = src is None and dst is not None and dst.id == op.sha
        else:
            (entry,) = repo.plumbing.stat_each([op.path], at=cid)
            if op.op == "delete":
                ok = entry is None
            else:
                ok = entry is not None and entry.id == op.sha
                ok = ok and sha3(repo.read(op.path, at=cid)) == op.sha
        if not ok:
            c.problem(f"{where}: check-in {cid[:12]} does not hold what was acknowledged",
                      lost=True)
        if op.op == "put" and op.expect:
            parent = repo.checkin(cid).parents[0]
            (before,) = repo.plumbing.stat_each([op.path], at=parent)
            if before is None or before.id != op.expect:
                c.problem(f"{where}: written over {before and before.id}, not over the "
                          f"expected {op.expect} (a lost update)", lost=True)
        if key not in self._deep_done:
            self._deep_done.add(key)
            c.acked_checked += 1

    def _check_tips(self, repo, slots: set[str]) -> None:
        c = self.counts
        files = repo.files()
        for slot in sorted(slots):
            ops = [op for op in self.ledgers.ops.get(slot, [])
                   if op.status not in ("conflict", "error")]
            self._uncertain.update((op.slot, op.inst, op.n) for op in ops
                                   if op.status == "pending")
            c.uncertain = len(self._uncertain)
            for path in {p for op in ops for p in op.touches() if p.startswith("own/")}:
                allowed = _allowed(ops, path)
                have = files.get(path, (None,))[0]
                c.tip_paths_checked += 1
                if have not in allowed:
                    c.problem(f"{slot}: {path} at the tip is {have}, expected one of "
                              f"{sorted(map(str, allowed))}", lost=True)

    def _check_shared(self, repo, history: bool) -> None:
        c = self.counts
        files = repo.files()
        # Writers still running may have logged an intent and committed it since the
        # ledgers were read: read them again, after the snapshot, to know every attempt.
        self.ledgers.refresh()
        ops = list(self.ledgers.all_ops())
        c.conflicts = sum(op.status == "conflict" for op in ops)
        for path in SHARED:
            writes = [op for op in ops if op.op == "put" and op.path == path]
            attempted = {op.sha for op in writes if op.status in ("ack", "pending")}
            have = files.get(path, (None,))[0]
            if have not in attempted:
                c.problem(f"{path} at the tip is {have}: no writer wrote it", lost=True)
            won: dict[str, Op] = {}
            for op in writes:
                if op.status == "ack" and op.expect:
                    if op.expect in won:
                        c.problem(f"{path}: two acknowledged writes over {op.expect}: "
                                  f"{won[op.expect].slot} and {op.slot}", lost=True)
                    won[op.expect] = op
            if not history:
                continue
            versions = [ci.id for ci in repo.log(path)]
            acked = {self._full_id(repo, op.cid) for op in writes if op.status == "ack"}
            for cid in acked - set(versions):
                c.problem(f"{path}: acknowledged version {cid[:12]} missing from its log",
                          lost=True)
            for cid in versions:
                (e,) = repo.plumbing.stat_each([path], at=cid)
                if e is not None and e.id not in attempted:
                    c.problem(f"{path}: version {e.id} at {cid[:12]} was never written")


def _allowed(ops: list[Op], path: str) -> set[str | None]:
    """What ``path`` may hold now: the effect of the last op that touched it, or, while
    that op's outcome is unknown (its writer was killed in the call), what came before."""
    allowed: set[str | None] = set()
    for op in reversed(ops):
        if path not in op.touches():
            continue
        allowed.add(op.effect(path))
        if op.status == "ack":
            return allowed
    allowed.add(None)
    return allowed


def artifact_names(folder: str) -> list[str]:
    """The artifact ids in a ``fossil deconstruct`` folder (``export artifacts``)."""
    from herofossil.store.artifactdir import iter_artifacts

    return [name for name, _ in iter_artifacts(folder)]


# ---- Git histories
def build_git_history(path: str, commits: int, seed: int) -> None:
    """A Git repository of ``commits`` commits (branches, merges, tags) by ``git fast-import``."""
    rng = random.Random(seed)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "HOME": os.devnull}
    subprocess.run(["git", "init", "-q", "-b", "master", path], check=True, env=env,
                   capture_output=True)
    out: list[bytes] = []
    files = {f"d{k % 4}/f{k}.txt": [f"line {i} of f{k}" for i in range(30)] for k in range(24)}
    heads = {"master": None}
    mark = 0
    t = 1_600_000_000

    def data(b: bytes) -> None:
        out.append(b"data %d\n" % len(b) + b + b"\n")

    for i in range(commits):
        t += 600
        branch = "master"
        if i > 20 and rng.random() < 0.25:
            branch = rng.choice(["feature", "topic"])
        mods = []
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(sorted(files))
            lines = files[name]
            lines[rng.randrange(len(lines))] = f"commit {i} changed {rng.getrandbits(32)}"
            mods.append(name)
        if rng.random() < 0.05:
            name = f"new/n{i}.txt"
            files[name] = [f"new in {i}"]
            mods.append(name)
        mark += 1
        out.append(b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), mark))
        out.append(b"author Ann <ann@example.com> %d +0000\n" % t)
        out.append(b"committer Cy <cy@example.com> %d +0000\n" % t)
        data(f"commit {i} on {branch}\n".encode())
        parent = heads.get(branch) or heads["master"]
        if parent is not None:
            out.append(b"from :%d\n" % parent)
        if branch == "master" and rng.random() < 0.1:
            other = heads.get(rng.choice(["feature", "topic"]))
            if other is not None:
                out.append(b"merge :%d\n" % other)
        for name in mods:
            body = ("\n".join(files[name]) + "\n").encode()
            out.append(b"M 100644 inline %s\n" % name.encode())
            data(body)
        out.append(b"\n")
        heads[branch] = mark
        if i % 50 == 49:
            out.append(b"tag v%d\nfrom :%d\n" % (i, mark))
            out.append(b"tagger Cy <cy@example.com> %d +0000\n" % t)
            data(b"release %d\n" % i)
        elif i % 50 == 24:
            out.append(b"reset refs/tags/light%d\nfrom :%d\n\n" % (i, mark))
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=b"".join(out),
                   check=True, env=env, capture_output=True)


if __name__ == "__main__":
    main(sys.argv[1:])
