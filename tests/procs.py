"""Stopping a child process a test started (a test helper)."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, wait: float = 10) -> int:
    """Send ``sig`` unless it has ended, SIGKILL it after ``wait`` seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
