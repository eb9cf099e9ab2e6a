"""The folders are the architecture: imports point down DESIGN.md's layer table, and
one module (store/crosslink.py) derives local state from artifacts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# folder -> (import name, what it may import besides itself and herofossil.errors)
LAYERS = {
    "cext": ("herofossil.cext", set()),
    "delta": ("herofossil.delta", {"herofossil.cext"}),
    "store": ("herofossil.store", {"herofossil.delta", "herofossil.cext"}),
    "parsers": ("herofossil.parsers", {"herofossil.store", "herofossil.delta",
                                       "herofossil.cext"}),
    "gitimport": ("herofossil.gitimport", {"herofossil.store", "herofossil.delta",
                                           "herofossil.cext"}),
    "webdav": ("herofossil.webdav", {"herofossil.store", "herofossil.parsers",
                                     "herofossil.delta", "herofossil.cext"}),
    "sync": ("herofossil.sync", {"herofossil.store", "herofossil.delta", "herofossil.cext"}),
}
LEAF = "herofossil.errors"


def _modules(folder: str):
    yield from sorted((ROOT / folder).rglob("*.py"))


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the project in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("herofossil")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("herofossil"):
                if node.module == "herofossil":  # from herofossil import delta, ...
                    out += [(node.lineno, f"herofossil.{a.name}") for a in node.names]
                else:
                    out.append((node.lineno, node.module))
    return out


def _allowed(module: str, own: str, allowed: set[str]) -> bool:
    if module == LEAF or module.startswith(own + ".") or module == own:
        return True
    return any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_no_module_imports_upward_in_the_layer_table(folder):
    own, allowed = LAYERS[folder]
    if not (ROOT / folder).is_dir():
        pytest.skip(f"{folder}/ does not exist yet")
    wrong = [f"{path.relative_to(ROOT)}:{line}: {module}"
             for path in _modules(folder)
             for line, module in _project_imports(path)
             if not _allowed(module, own, allowed)]
    assert not wrong, "imports against DESIGN.md's layer table:\n" + "\n".join(wrong)


def _calls(path: Path, names: set[str]) -> set[str]:
    """Which of ``names`` are called (as functions or methods) in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in names:
                found.add(name)
    return found


DERIVING = {"index_checkin", "index_control", "set_tip"}


def test_only_crosslink_derives_check_in_state():
    offenders = {}
    for folder in ("store", "gitimport", "webdav", "parsers", "toplevel", "sync"):
        if not (ROOT / folder).is_dir():
            continue
        for path in _modules(folder):
            if path.name == "crosslink.py":
                continue
            used = _calls(path, DERIVING)
            if used:
                offenders[str(path.relative_to(ROOT))] = sorted(used)
    assert not offenders, f"local state derived outside store/crosslink.py: {offenders}"


@pytest.mark.parametrize("module", ["store/writer.py", "store/bulk.py", "store/artifactio.py",
                                    "store/repo.py", "store/maintenance.py"])
def test_every_writer_importer_rebuild_and_tagging_call_the_one_builder(module):
    assert "crosslink" in _calls(ROOT / module, {"crosslink"}), module
