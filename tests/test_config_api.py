"""Configuration straight from the store: repo.config, repo.playbook, repo.watch, check."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
import time

import pytest

import herofossil
from herofossil.cli import main
from herofossil.store.changes import Put

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "service_module.py"


def _example_module():
    spec = importlib.util.spec_from_file_location("service_module", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_parses_by_extension_at_tip_and_past_versions(repo):
    old = repo.write("app.toml", b"port = 80\n")
    repo.write("app.toml", b"port = 81\n")
    repo.write("play.hero", b"!!web.site name:main port:8080\n")
    repo.write("doc.md", b"+++\ntitle = 'T'\n+++\n# Head\n\n!!web.site name:doc\n")
    assert repo.config("app.toml") == {"port": 81}
    assert repo.config("app.toml", at=old.id) == {"port": 80}
    book = repo.config("play.hero")
    assert book.actions[0].params.get("port") == "8080"
    doc = repo.config("doc.md")
    assert doc.front_matter == {"title": "T"} and doc.actions.actions[0].name == "site"


def test_config_of_unknown_extension_is_a_usage_error(repo):
    repo.write("x.bin", b"\0")
    with pytest.raises(herofossil.UsageError):
        repo.config("x.bin")


def test_bad_toml_is_a_parse_error_with_file_and_line(repo):
    repo.write("bad.toml", b"a = 1\nb = = 2\n")
    with pytest.raises(herofossil.ParseError) as err:
        repo.config("bad.toml")
    assert err.value.file == "bad.toml" and err.value.line == 2


def test_playbook_collects_actions_of_matching_files_in_path_order(repo):
    repo.commit([
        Put("services/b/web.hero", b"!!zinit.service name:web cmd:run\n"),
        Put("services/a.hero", b"// first\n!!zinit.service name:db cmd:db\n"),
        Put("services/notes.md", b"# Notes\n```heroscript\n!!zinit.service name:md cmd:x\n```\n"),
        Put("other/x.hero", b"!!zinit.service name:elsewhere cmd:x\n"),
    ])
    book = repo.playbook("services/**")
    assert [(a.params.get("name"), a.file, a.line) for a in book.actions] == [
        ("db", "services/a.hero", 2), ("web", "services/b/web.hero", 1),
        ("md", "services/notes.md", 3)]
    assert [a.params.get("name") for a in repo.playbook("services/*.hero").actions] == ["db"]


def test_watch_reports_checkins_from_another_process_within_a_second(repo, store_path):
    watcher = repo.watch("services")
    code = ("import sys, herofossil; r = herofossil.open(sys.argv[1]);"
            "r.write('elsewhere.txt', b'x'); r.write('services/new.hero', b'!!a.b c:1')")
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code, str(store_path)], check=True)
    events = watcher.wait(timeout=10)
    assert time.monotonic() - start < 10
    assert [e.paths for e in events] == [["services/new.hero"]]
    assert watcher.poll() == []


def test_example_module_loads_validates_and_reloads(repo, store_path):
    mod = _example_module()
    repo.write("services/web.hero",
               b"!!zinit.service name:web cmd:'python -m http.server' port:8080\n")
    module = mod.ServiceModule(herofossil.open(store_path))
    assert module.services["web"]["port"] == 8080
    assert module.services["web"]["autostart"] is True
    assert module.services["web"]["declared_in"] == "services/web.hero:1"
    subprocess.run([sys.executable, "-c",
                    "import sys, herofossil; herofossil.open(sys.argv[1]).write("
                    "'services/worker.hero', b'!!zinit.service name:worker cmd:w "
                    "autostart:false')", str(store_path)], check=True)
    assert module.follow(timeout=10)
    assert set(module.services) == {"web", "worker"}
    assert module.services["worker"]["autostart"] is False
    repo.write("services/web.hero",
               b"!!zinit.service name:web\n    cmd:'x'\n    port:eighty\n")
    with pytest.raises(herofossil.ParseError) as err:
        module.follow(timeout=10)
    assert err.value.file == "services/web.hero" and err.value.line == 3
    assert "port" in str(err.value)


def test_check_command_prints_every_error_and_exits_nonzero(repo, store_path, capsys):
    repo.commit([Put("ok.toml", b"a = 1\n"), Put("bad.toml", b"a = \n"),
                 Put("bad.hero", b"!!!!!x.y a:1\n"), Put("data.bin", b"\xff")])
    code = main(["-R", str(store_path), "check"])
    out = capsys.readouterr().out
    assert code == 7
    assert "bad.toml:1:" in out and "bad.hero:1:" in out and "ok.toml" not in out
    repo.commit([Put("bad.toml", b"a = 2\n"), Put("bad.hero", b"!!x.y a:1\n")])
    assert main(["-R", str(store_path), "check"]) == 0
