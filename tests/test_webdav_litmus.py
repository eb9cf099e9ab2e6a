"""litmus, the WebDAV conformance suite, against ``herofossil serve``: all five suites 100%."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from webdav_child import ServeProcess  # tests/webdav_child.py

import herofossil

SUITES = ("basic", "copymove", "props", "locks", "http")
SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")

pytestmark = pytest.mark.skipif(shutil.which("litmus") is None, reason="litmus is not installed")


def run_litmus(url: str, *auth: str) -> tuple[int, dict[str, tuple[int, int, int]]]:
    proc = subprocess.run(
        ["litmus", url, *auth], capture_output=True, text=True, timeout=600, cwd="/tmp"
    )
    found = {m[0]: (int(m[1]), int(m[2]), int(m[3])) for m in SUMMARY.findall(proc.stdout)}
    return proc.returncode, found, proc.stdout


@pytest.mark.parametrize("auth", [(), ("litmus", "li:tmus")], ids=["anonymous", "basic-auth"])
def test_litmus_passes_every_suite(tmp_path, auth):
    store = str(tmp_path / "store")
    herofossil.open(store, create=True).close()
    args = ("--user", f"{auth[0]}:{auth[1]}") if auth else ()
    with ServeProcess(store, *args) as srv:
        code, summary, out = run_litmus(srv.url, *auth)
    assert set(summary) == set(SUITES), out[-2000:]
    for suite, (run, passed, failed) in summary.items():
        assert failed == 0 and passed == run, f"{suite}: {out[-3000:]}"
    assert code == 0
    with herofossil.open(store) as repo:
        assert repo.verify().ok
        user = auth[0] if auth else "anonymous"
        assert any(c.user == user and c.comment.startswith("WebDAV ") for c in repo.log())
