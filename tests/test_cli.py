"""The herofossil command line: commands, one-line errors, exit codes."""

from __future__ import annotations

import re

import pytest

from herofossil.cli import main


@pytest.fixture
def hf(store_path, capsysbinary):
    """Run ``main`` in-process; returns (exit code, stdout bytes, stderr text)."""

    def run(*args):
        code = main(["-R", str(store_path), *map(str, args)])
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    run("init")
    return run


def test_put_cat_ls_rm_mv_roundtrip(hf, tmp_path):
    src = tmp_path / "in.toml"
    src.write_bytes(b"name = 'x'\n")
    assert hf("put", "cfg/app.toml", src, "-m", "add config")[0] == 0
    code, out, _ = hf("cat", "cfg/app.toml")
    assert code == 0 and out == b"name = 'x'\n"
    assert hf("ls")[1] == b"cfg/\n"
    assert hf("ls", "-r")[1] == b"cfg/app.toml\n"
    assert hf("mv", "cfg", "conf")[0] == 0
    assert hf("ls", "conf")[1] == b"app.toml\n"
    assert hf("rm", "conf/app.toml")[0] == 0
    assert hf("ls")[1] == b""
    log = hf("log", "--oneline")[1].decode().splitlines()
    assert len(log) == 4 and "add config" in log[-2]


def test_put_reads_stdin(store_path, cli):
    cli("init")
    cli("put", "notes.md", input=b"# from stdin\n")
    assert cli("cat", "notes.md").stdout == b"# from stdin\n"


def test_errors_are_one_line_with_documented_exit_codes(hf):
    cases = [
        (("cat", "missing.txt"), 3),
        (("put", "../escape", "/dev/null"), 9),
        (("cat", "x", "--at", "nope"), 3),
        (("bogus-command",), 2),
        (("log", "-n", "notanumber"), 2),
    ]
    for args, want in cases:
        code, _, err = hf(*args)
        assert code == want, (args, err)
        assert err.startswith("herofossil: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_missing_store_is_a_clear_error_without_traceback(tmp_path, cli):
    proc = cli("-R", tmp_path / "nowhere", "ls", store=False, check=False)
    assert proc.returncode == 10
    assert b"herofossil init" in proc.stderr and b"Traceback" not in proc.stderr


def test_conflicting_expect_exits_4_and_keeps_content(hf, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"v1")
    hf("put", "f", f)
    f.write_bytes(b"v2")
    code, _, err = hf("put", "f", f, "--expect", "0" * 64)
    assert code == 4 and "nothing was written" in err
    assert hf("cat", "f")[1] == b"v1"


def test_commit_checkout_diff_and_history(hf, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "x.hero").write_text("!!x.y a:1\n")
    assert hf("commit", tree, "-m", "snap")[0] == 0
    first = hf("log", "-n", "1", "--oneline")[1].split()[0].decode()
    (tree / "a" / "x.hero").write_text("!!x.y a:2\n")
    hf("commit", tree, "-m", "snap 2")
    code, out, _ = hf("diff", first, "trunk")
    assert code == 0 and b"-!!x.y a:1" in out and b"+!!x.y a:2" in out
    assert hf("diff", first, "trunk", "--stat")[1] == b"M a/x.hero\n"
    dest = tmp_path / "out"
    assert hf("checkout", first, dest)[0] == 0
    assert (dest / "a" / "x.hero").read_text() == "!!x.y a:1\n"
    assert hf("cat", "a/x.hero", "--at", first)[1] == b"!!x.y a:1\n"


def test_branch_tag_merge_commands(hf, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"1")
    hf("put", "f", f)
    assert hf("branch", "new", "feat")[0] == 0
    f.write_bytes(b"feat")
    hf("put", "g", f, "--branch", "feat")
    assert b"feat" in hf("branch")[1]
    assert hf("tag", "add", "v1", "feat")[0] == 0
    assert b"v1" in hf("tag")[1].split()
    assert hf("merge", "feat")[0] == 0
    assert hf("cat", "g")[1] == b"feat"


def test_verify_rebuild_stats_export_import(hf, tmp_path, store_path):
    f = tmp_path / "f"
    f.write_bytes(b"data" * 100)
    hf("put", "f", f)
    assert hf("verify")[1].startswith(b"ok:")
    assert hf("rebuild")[0] == 0
    assert b"checkins" in hf("stats")[1]
    tables = hf("stats", "--tables")[1].decode()
    assert re.search(r"^blob\s+\d+\s+\d+$", tables, re.M)
    out = tmp_path / "arts"
    assert hf("export", "artifacts", out)[0] == 0
    other = tmp_path / "other"
    assert main(["-R", str(other), "init"]) == 0
    assert main(["-R", str(other), "import", "artifacts", str(out)]) == 0
    assert main(["-R", str(other), "verify"]) == 0


def test_default_store_is_created_on_first_use(cli, tmp_path):
    proc = cli("put", "hello.txt", input=b"hi", store=False)
    assert proc.returncode == 0
    assert cli("cat", "hello.txt", store=False).stdout == b"hi"


def test_help_lists_commands_and_exit_codes(cli):
    out = cli("--help", store=False).stdout.decode()
    for word in ("put", "cat", "verify", "exit codes"):
        assert word in out
