"""Several processes on one store: no lost writes, and SIGKILL never damages it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import herofossil

WRITER = """
import sys, herofossil
repo = herofossil.open(sys.argv[1])
prefix, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    repo.write(f"{prefix}/{i}.txt", f"{prefix} file {i}\\n" * 20, message=f"{prefix} {i}")
    print(f"{prefix}/{i}.txt", flush=True)
"""


def _writer(store, prefix, count):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(store), prefix, str(count)],
                            stdout=subprocess.PIPE, text=True)


def test_two_processes_writing_different_files_lose_nothing(repo, store_path):
    procs = [_writer(store_path, p, 200) for p in ("left", "right")]
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    assert all(len(o.split()) == 200 for o in outs)
    log = repo.log()
    assert len(log) == 401  # 400 check-ins + the initial empty one
    for prefix in ("left", "right"):
        for i in range(200):
            assert repo.read(f"{prefix}/{i}.txt") == f"{prefix} file {i}\n".encode() * 20
    assert len(repo.leaves()) == 1
    assert repo.verify().ok


def test_sigkill_during_burst_keeps_every_returned_write(repo, store_path):
    proc = _writer(store_path, "burst", 100000)
    done = []
    try:
        deadline = time.monotonic() + 60
        while len(done) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            done.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
    done += rest.split()
    assert len(done) >= 150
    fresh = subprocess.run(
        [sys.executable, "-c",
         "import sys, herofossil; r = herofossil.open(sys.argv[1]); rep = r.verify();"
         "print(rep.ok, len(r.walk('burst')), rep.problems)", str(store_path)],
        capture_output=True, text=True, check=True)
    ok, count, _ = fresh.stdout.split(" ", 2)
    assert ok == "True" and int(count) >= len(done)
    for path in done:
        i = int(path.split("/")[1].split(".")[0])
        assert repo.read(path) == f"burst file {i}\n".encode() * 20
    assert herofossil.open(store_path).verify().ok


CLAIMER = """
import sys, herofossil
from herofossil.errors import ConflictError
repo = herofossil.open(sys.argv[1])
me = sys.argv[2].encode()

def claim(current):
    if current is not None:
        raise ConflictError("taken", path="k", expected=None, found=current.decode())
    return me

won = 0
for i in range(int(sys.argv[3])):
    try:
        repo.plumbing.meta_change("race", f"k{i}", claim)
        won += 1
    except ConflictError:
        pass
print(won, flush=True)
"""


def test_a_metadata_precondition_holds_against_another_process(repo, store_path):
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(store_path), who, str(n)],
                              stdout=subprocess.PIPE, text=True) for who in ("a", "b")]
    try:
        wins = [int(p.communicate(timeout=240)[0]) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert sum(wins) == n  # every key claimed once: never by both, never by neither
    owners = dict(repo.plumbing.meta_items("race"))
    assert len(owners) == n and set(owners.values()) <= {b"a", b"b"}
