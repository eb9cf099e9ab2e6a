"""``python -m bench``: herofossil against fossil and git, side by side, in one run.

Prints a Markdown table (absolute figures, the ratio herofossil/other, which
direction is better, the DESIGN.md budget and whether it is met); progress
goes to stderr. ``--quick`` is size M, the default is the full run (L).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.util import Row, markdown, missing, progress
from bench.workloads import ORDER, Context, load


def machine() -> str:
    """CPU model, cores and RAM of this machine, one line."""
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def versions() -> str:
    """fossil and git versions, one line."""
    out = []
    for cmd in (["fossil", "version"], ["git", "--version"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True).stdout.strip())
        except OSError:
            out.append(f"{cmd[0]}: not installed")
    return "; ".join(out)


def compile_package() -> int:
    """Byte-compile every module of the installed herofossil (the packages pyproject.toml
    lists), as ``pip install .`` does; returns how many source files it holds.

    An editable install (``pip install -e``) leaves that to the first run, and with
    PYTHONDONTWRITEBYTECODE set every run compiles again: measured on the real history,
    0.16 s of each ``herofossil`` command (an import git of 0.76 s took 1.31 s). Users
    of an installed release never pay it, so neither do the timed runs here."""
    import compileall
    import importlib
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    packages = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"]
    n = 0
    for name in packages:
        for folder in importlib.import_module(name).__path__:
            n += sum(1 for _ in Path(folder).glob("*.py"))
            compileall.compile_dir(folder, maxlevels=0, quiet=1)
    return n


def run_suite(size: str, only: list[str] | None, workdir: Path) -> tuple[list[Row], Context]:
    """Run the chosen workloads; a workload that fails becomes a row stating why."""
    ctx = Context(size=size, workdir=workdir, quick=size == "M")
    rows: list[Row] = []
    for name in only or ORDER:
        t0 = time.perf_counter()
        progress(f"workload {name} ...")
        try:
            rows += load(name).run(ctx)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            rows.append(missing(name, "(workload)", f"failed: {e!r}"[:400]))
        progress(f"workload {name} done in {time.perf_counter() - t0:.1f} s")
    return rows, ctx


def report(rows: list[Row], ctx: Context, command: str, seconds: float) -> str:
    """The whole Markdown report: setup lines, corpora, the table."""
    lines = [f"Command: `{command}` (size {ctx.size}, {seconds:.0f} s in all)", "",
             f"Machine: {machine()}", "", f"Tools: {versions()}", ""]
    for c in ctx.corpora.values():
        lines.append(f"- corpus {c.describe()}")
    for kind, made in ctx.stores.items():
        lines.append(f"- herofossil store of {kind}: {made.how}"
                     + (f" ({made.error})" if made.error else ""))
    lines += ["", "Ratio = herofossil / other. `better` says which direction of the figures "
              "is better; a budget bounds the ratio.", "", markdown(rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="size M (about 3 minutes)")
    p.add_argument("--size", choices=["S", "M", "L"], help="corpus and tree sizes (default L)")
    p.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME",
                   help=f"run only these workloads: {', '.join(ORDER)}")
    p.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON to FILE")
    p.add_argument("--workdir", metavar="DIR",
                   help="keep corpora and stores here (corpora are reused); default: a temp dir")
    args = p.parse_args(argv)
    size = args.size or ("M" if args.quick else "L")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="hfbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    progress(f"byte-compiled {compile_package()} modules of herofossil (as an install does)")
    t0 = time.perf_counter()
    try:
        rows, ctx = run_suite(size, args.only, workdir.resolve())
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(rows, ctx, command.strip(), time.perf_counter() - t0)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
