"""Time our delta create/apply against ``fossil test-delta-create`` / ``test-delta-apply``.

Run from the repository root: ``python -m bench.delta_vs_fossil [--size-mb N]``.

The pair is a deterministic text file of about N MB and a copy with a few
hundred lines changed, inserted or deleted. Ours is timed in-process; Fossil
as a whole process, so its figures include start-up and reading the files.
The "fossil net" column subtracts the time of a no-op run of the same size
(``test-delta-apply`` of the empty delta ``0\\n0;`` to the same source: start-up
plus reading one N MB file), which is a lower bound on Fossil's overhead, so
the net figure slightly flatters Fossil. Every figure is the best of 3.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.util import best_of
from herofossil import delta

REPEATS = 3


def make_pair(size_mb: int, seed: int = 20) -> tuple[bytes, bytes]:
    """A deterministic ~``size_mb`` MB text file and a version with ~300 lines edited."""
    rnd = random.Random(seed)
    words = [rnd.randbytes(rnd.randint(2, 9)).hex() for _ in range(2000)]
    lines = []
    size = 0
    while size < size_mb * 1_000_000:
        line = " " * rnd.randint(0, 12) + " ".join(rnd.choices(words, k=rnd.randint(1, 8))) + "\n"
        lines.append(line.encode())
        size += len(lines[-1])
    source = b"".join(lines)
    for n in range(300):
        at = rnd.randrange(len(lines))
        if n % 3 == 0:
            lines.insert(at, f"inserted line {n}\n".encode())
        elif n % 3 == 1:
            lines[at] = f"changed line {n} {rnd.random()}\n".encode()
        else:
            del lines[at]
    return source, b"".join(lines)


def _fossil(*args: str, cwd: Path) -> Callable[[], object]:
    fossil = shutil.which("fossil")
    return lambda: subprocess.run([fossil, *args], cwd=cwd, check=True, capture_output=True)


def run(size_mb: int = 20) -> list[dict]:
    """Benchmark create and apply; one dict per operation with times in seconds."""
    source, target = make_pair(size_mb)
    ours_delta = delta.create(source, target)
    assert delta.apply(source, ours_delta) == target
    codec = "cython" if "cython" in delta.IMPLEMENTATIONS else "reference"
    rows = [
        {"op": "create", "ours": best_of(lambda: delta.create(source, target), REPEATS)},
        {"op": "apply", "ours": best_of(lambda: delta.apply(source, ours_delta), REPEATS)},
    ]
    for row in rows:
        row.update(size_mb=size_mb, codec=codec, delta_bytes=len(ours_delta))
    if shutil.which("fossil") is None:
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "src").write_bytes(source)
        (d / "tgt").write_bytes(target)
        (d / "noop").write_bytes(b"0\n0;")
        _fossil("test-delta-create", "src", "tgt", "delta", cwd=d)()
        fossil_delta = (d / "delta").read_bytes()
        assert fossil_delta == ours_delta, "our delta differs from Fossil's"
        noop = _fossil("test-delta-apply", "src", "noop", "noop.out", cwd=d)
        create = _fossil("test-delta-create", "src", "tgt", "delta", cwd=d)
        apply = _fossil("test-delta-apply", "src", "delta", "out", cwd=d)
        baseline = best_of(noop, REPEATS)
        rows[0]["fossil"] = best_of(create, REPEATS)
        rows[1]["fossil"] = best_of(apply, REPEATS)
    for row in rows:
        row["fossil_noop"] = baseline
        row["fossil_net"] = max(row["fossil"] - baseline, 1e-9)
        row["ratio"] = row["ours"] / row["fossil"]
        row["ratio_net"] = row["ours"] / row["fossil_net"]
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (milliseconds)."""
    out = [
        "| op | ours (ms) | fossil (ms) | fossil no-op (ms) | fossil net (ms) "
        "| ours/fossil | ours/fossil net |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "fossil" not in r:
            out.append(f"| {r['op']} | {r['ours'] * 1e3:.1f} | n/a | n/a | n/a | n/a | n/a |")
            continue
        out.append(
            f"| {r['op']} | {r['ours'] * 1e3:.1f} | {r['fossil'] * 1e3:.1f} "
            f"| {r['fossil_noop'] * 1e3:.1f} | {r['fossil_net'] * 1e3:.1f} "
            f"| {r['ratio']:.2f} | {r['ratio_net']:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Command line: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=20, help="size of the text file (MB)")
    args = parser.parse_args(argv)
    rows = run(args.size_mb)
    r = rows[0]
    print(
        f"{r['size_mb']} MB text, ~300 edited lines, codec={r['codec']}, "
        f"delta={r['delta_bytes']} bytes, best of {REPEATS}\n"
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
