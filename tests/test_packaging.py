"""A newcomer's first minutes (issue 13, first defect): build a wheel, install it in a fresh
venv, and use it from the repository root."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["herofossil", "herofossil.store", "herofossil.delta", "herofossil.cext",
           "herofossil.cext._delta", "herofossil.cext._gittree", "herofossil.cext._manifest",
           "herofossil.parsers",
           "herofossil.gitimport", "herofossil.webdav", "herofossil.sync", "herofossil.errors",
           "herofossil.cli"]
FOLDERS = ["toplevel", "store", "delta", "cext", "parsers", "gitimport", "webdav", "sync"]
# Runs in the venv's interpreter: where each module comes from, or why it failed.
PROBE = """
import importlib, importlib.machinery, json, sys, sysconfig
out = {"site": [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]],
       "ext": importlib.machinery.EXTENSION_SUFFIXES, "modules": {}}
for name in sys.argv[1:]:
    try:
        out["modules"][name] = {"file": importlib.import_module(name).__file__}
    except Exception as exc:
        out["modules"][name] = {"error": f"{type(exc).__name__}: {exc}"}
out["codecs"] = sorted(getattr(sys.modules.get("herofossil.delta"), "IMPLEMENTATIONS", {}))
print(json.dumps(out))
"""


def _run(cmd, cwd, input=None, timeout=600):
    # PYTHONSAFEPATH would drop the working directory from sys.path and hide the shadowing.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP",
                        "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, input=input,
                          capture_output=True, timeout=timeout)


def _checked(cmd, cwd, **kw):
    proc = _run(cmd, cwd, **kw)
    assert proc.returncode == 0, (f"{cmd} failed ({proc.returncode}):\n"
                                  f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc


def _copy_of_repository(dest: Path) -> Path:
    """The working tree as a fresh clone plus uncommitted edits would hold it."""
    listed = _checked(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                      ROOT).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # tracked but deleted in the working tree: skip
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _dependencies() -> list[md.Distribution]:
    """The installed distributions herofossil needs at run time (transitively)."""
    seen, todo, found = {"herofossil"}, list(md.requires("herofossil") or []), []
    while todo:
        req = Requirement(todo.pop())
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        dist = md.distribution(req.name)
        found.append(dist)
        todo += dist.requires or []
    return found


def _overlay_of_dependencies(overlay: Path) -> Path:
    """Link the current environment's installed dependencies into ``overlay``, so that pip
    can install the wheel offline, without the editable herofossil of this environment."""
    overlay.mkdir()
    for dist in _dependencies():
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            if not (overlay / top).exists():
                (overlay / top).symlink_to(base / top)
    return overlay


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel of the repository, installed in a fresh venv that sees no repository."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = _copy_of_repository(tmp / "src")
    wheels = tmp / "wheels"
    # Build isolation as for `pip install .`: setuptools>=77 and Cython come from the index.
    _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, "."], src)
    (wheel,) = wheels.glob("herofossil-*.whl")
    venv = tmp / "venv"
    _checked([sys.executable, "-m", "venv", venv], tmp)
    py = venv / "bin" / "python"
    site = json.loads(_checked([py, "-c", PROBE], tmp).stdout)["site"]
    (Path(site[0]) / "_herofossil_deps.pth").write_text(
        f"{_overlay_of_dependencies(tmp / 'deps')}\n")
    _checked([py, "-m", "pip", "install", "--no-index", "--no-cache-dir", wheel], tmp)
    return SimpleNamespace(tmp=tmp, src=src, wheel=wheel, venv=venv, python=py,
                           script=venv / "bin" / "herofossil", site=[Path(p) for p in site])


def _problems(inst, cwd: Path) -> list[str]:
    """What goes wrong for a newcomer who uses the installed package from ``cwd``."""
    # DESIGN.md's rule; only a folder holding __init__.py shadows, an empty one does not.
    problems = [f"{cwd / 'herofossil'} exists"] if (cwd / "herofossil").exists() else []
    proc = _run([inst.python, "-c", PROBE, *MODULES], cwd)
    if proc.returncode != 0:
        return [*problems, f"probe failed: {proc.stderr.decode()}"]
    probe = json.loads(proc.stdout)
    for name, where in probe["modules"].items():
        if "error" in where:
            problems.append(f"import {name}: {where['error']}")
        elif not any(Path(where["file"]).is_relative_to(s) for s in inst.site):
            problems.append(f"import {name}: from {where['file']}, not the venv")
    for kernel in ("herofossil.cext._delta", "herofossil.cext._gittree",
                   "herofossil.cext._manifest"):
        kernel_file = probe["modules"][kernel].get("file", "")
        if not any(kernel_file.endswith(suffix) for suffix in probe["ext"]):
            problems.append(f"{kernel} is not compiled: {kernel_file!r}")
    if "cython" not in probe["codecs"]:
        problems.append(f"herofossil.delta does not use the compiled codec: {probe['codecs']}")
    for cmd in ([inst.script, "--help"], [inst.python, "-m", "herofossil", "--help"]):
        proc = _run(cmd, cwd)
        if proc.returncode != 0 or b"usage: herofossil" not in proc.stdout:
            problems.append(f"{cmd[1:]}: exit {proc.returncode}: {proc.stderr.decode()}")
    store = Path(tempfile.mkdtemp(dir=inst.tmp)) / "store"
    steps = [(["init"], None), (["put", "a.txt"], b"first minutes\n"), (["cat", "a.txt"], None)]
    for args, data in steps:
        proc = _run([inst.script, "-R", store, *args], cwd, input=data)
        if proc.returncode != 0:
            problems.append(f"herofossil {' '.join(args)}: {proc.stderr.decode()}")
            break
    else:
        if proc.stdout != b"first minutes\n":
            problems.append(f"cat a.txt gave {proc.stdout!r}")
    return problems


def test_the_wheel_holds_herofossil_alone_with_its_compiled_kernel(installed):
    dist_info = "-".join(installed.wheel.name.split("-")[:2]) + ".dist-info"
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        top_level = whl.read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["herofossil"]
    assert {n.split("/")[0] for n in names} == {"herofossil", dist_info}
    for module in MODULES:
        if not module.startswith("herofossil.cext._"):
            stem = module.replace(".", "/")
            assert f"{stem}/__init__.py" in names or f"{stem}.py" in names, module
    for kernel in ("_delta", "_gittree", "_manifest"):
        kernels = {f"herofossil/cext/{kernel}{suffix}" for suffix in EXTENSION_SUFFIXES}
        assert kernels & set(names), (kernel, names)
    entries = {p.name for s in installed.site for p in s.iterdir()}
    assert not entries & set(FOLDERS), sorted(entries & set(FOLDERS))
    # From a neutral folder none of the repository's folder names imports.
    probe = json.loads(_checked([installed.python, "-c", PROBE, *FOLDERS], installed.tmp).stdout)
    assert all("error" in where for where in probe["modules"].values()), probe["modules"]


def test_a_newcomer_imports_and_runs_it_from_the_repository_root(installed):
    assert _problems(installed, ROOT) == []


def test_a_root_folder_named_herofossil_would_shadow_the_installed_package(installed):
    # The layout before issue 13: the top-level package's folder at the root, named herofossil.
    old = installed.src
    shutil.copytree(old / "toplevel", old / "herofossil")
    try:
        problems = _problems(installed, old)
    finally:
        shutil.rmtree(old / "herofossil")
    assert f"{old / 'herofossil'} exists" in problems, problems
    assert any(p.startswith("import herofossil.store: ModuleNotFoundError") for p in problems), \
        problems
    assert any(p.startswith(f"import herofossil: from {old / 'herofossil'}") for p in problems), \
        problems
