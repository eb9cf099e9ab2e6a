"""Network namespaces on one bridge, for tests of peers on real, non-loopback addresses.

Needs root (CAP_NET_ADMIN) and iproute2's ``ip``. The layout: a "switch"
namespace holds a bridge; peer namespace ``i`` has ``eth0`` at
``10.77.0.(i+1)/24`` and ``lo`` up, the other end of its veth pair enslaved
to the bridge. Nothing is added to the caller's own namespace, so deleting
the namespaces deletes every link. Names carry the creating process's pid;
namespaces left by a run that was killed (its pid gone) are deleted on the
next start.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

PREFIX = "hfnet"
SUBNET = "10.77.0"
_OURS = re.compile(rf"{PREFIX}(\d+)[sp]")


class Unavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, no permission)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def existing() -> list[str]:
    """Names of the network namespaces that exist now."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete(name: str) -> None:
    """Kill what still runs inside namespace ``name`` (only what a run of ours started
    there), then delete it."""
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "delete", name, check=False)


def remove_stale() -> list[str]:
    """Delete our namespaces whose creating process is gone (a killed run); returns them."""
    gone = []
    for name in existing():
        m = _OURS.match(name)
        if m and not _alive(int(m.group(1))):
            delete(name)
            gone.append(name)
    return gone


class Network:
    """``n`` peer namespaces on one bridge; ``close()`` deletes them all."""

    def __init__(self, n: int, tag: str = ""):
        if shutil.which("ip") is None:
            raise Unavailable("iproute2's 'ip' is not installed")
        base = f"{PREFIX}{os.getpid()}"
        self.switch = f"{base}s{tag}"
        self.names = [f"{base}p{tag}-{i}" for i in range(n)]
        self.addrs = [f"{SUBNET}.{i + 1}" for i in range(n)]
        self._made: list[str] = []
        for name in [self.switch, *self.names]:  # the same names from an earlier run
            if name in existing():
                delete(name)
        probe = _ip("netns", "add", self.switch, check=False)
        if probe.returncode != 0:
            raise Unavailable(f"'ip netns add' failed: {probe.stderr.strip()}")
        self._made.append(self.switch)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        sw = self.switch
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for i, (name, addr) in enumerate(zip(self.names, self.addrs, strict=True)):
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("link", "add", "eth0", "netns", name, "type", "veth",
                "peer", "name", f"port{i}", "netns", sw)
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", sw, "link", "set", f"port{i}", "master", "br0")
            _ip("-n", sw, "link", "set", f"port{i}", "up")

    def exec_args(self, i: int, cmd: list[str]) -> list[str]:
        """``cmd`` run inside peer namespace ``i``."""
        return ["ip", "netns", "exec", self.names[i], *cmd]

    def netem(self, spec: list[str]) -> str | None:
        """Shape every peer's link with ``tc qdisc ... netem SPEC`` (e.g. delay 5ms loss 1%);
        None when done, else why it cannot be (no tc, no sch_netem in the kernel)."""
        if shutil.which("tc") is None:
            return "tc is not installed"
        for name in self.names:
            proc = subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev",
                                   "eth0", "root", "netem", *spec],
                                  capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                return f"tc netem: {proc.stderr.strip()}"
        return None

    def close(self) -> None:
        """Delete every namespace made (their links go with them), killing what still runs
        in them."""
        for name in reversed(self._made):
            delete(name)
        self._made.clear()
