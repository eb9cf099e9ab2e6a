"""The drive mounted with ``rclone mount``: plain file operations become check-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from webdav_child import ServeProcess  # tests/webdav_child.py

import herofossil

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is not installed"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is absent"),
    pytest.mark.skipif(shutil.which("fusermount3") is None, reason="fusermount3 is absent"),
]


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_rclone_mount_file_operations_become_checkins(tmp_path):
    store = str(tmp_path / "store")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    herofossil.open(store, create=True).close()
    with ServeProcess(store) as srv:
        rclone = subprocess.Popen(
            [
                "rclone",
                "mount",
                ":webdav:",
                str(mnt),
                "--webdav-url",
                srv.url,
                "--vfs-cache-mode",
                "writes",
                "--dir-cache-time",
                "0",
                "--vfs-write-back",
                "0s",
                "--config",
                "/dev/null",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for(lambda: os.path.ismount(mnt)), "rclone did not mount"
            (mnt / "notes").mkdir()
            (mnt / "notes" / "a.md").write_bytes(b"# first\n")
            assert wait_for(lambda: _exists(store, "notes/a.md"))
            (mnt / "notes" / "a.md").write_bytes(b"# second\n")
            assert wait_for(lambda: _read(store, "notes/a.md") == b"# second\n")
            os.rename(mnt / "notes" / "a.md", mnt / "notes" / "b.md")
            assert wait_for(
                lambda: _exists(store, "notes/b.md") and not _exists(store, "notes/a.md")
            )
            (mnt / "gone.txt").write_bytes(b"bye")
            assert wait_for(lambda: _exists(store, "gone.txt"))
            os.remove(mnt / "gone.txt")
            assert wait_for(lambda: not _exists(store, "gone.txt"))
            assert (mnt / "notes" / "b.md").read_bytes() == b"# second\n"
            assert sorted(os.listdir(mnt / "notes")) == ["b.md"]

            with herofossil.open(store) as repo:
                comments = [c.comment for c in repo.log()]
                first = next(
                    c.id
                    for c in repo.log()
                    if c.comment == "WebDAV PUT /notes/a.md"
                    and repo.read("notes/a.md", at=c.id) == b"# first\n"
                )
            assert "WebDAV MKCOL /notes/" in comments
            assert "WebDAV MOVE /notes/a.md -> /notes/b.md" in comments
            assert "WebDAV DELETE /gone.txt" in comments
            old = mnt / ".history" / first[:12] / "notes" / "a.md"
            assert old.read_bytes() == b"# first\n"
            assert "trunk" in os.listdir(mnt / ".history")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            rclone.terminate()
            try:
                rclone.wait(10)
            except subprocess.TimeoutExpired:
                rclone.kill()
                rclone.wait()
            rclone.stderr.close()


def _exists(store, path):
    with herofossil.open(store) as repo:
        return repo.exists(path)


def _read(store, path):
    with herofossil.open(store) as repo:
        try:
            return repo.read(path)
        except herofossil.NotFoundError:
            return None
