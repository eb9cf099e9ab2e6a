"""HeroScript parse throughput against ``tomllib.loads`` on equivalent data.

``python -m bench.heroscript_vs_tomllib`` prints a Markdown table; ``run()`` returns the
rows. Both texts describe the same records: one action per record in HeroScript, one
``[[table]]`` per record in TOML. Ratios are measured in the same run (best of N).
"""

from __future__ import annotations

import sys
import tomllib

from bench.util import best_of
from herofossil.parsers import heroscript


def _records(n: int) -> list[dict[str, object]]:
    return [{"name": f"srv{i}", "port": 8000 + i, "enabled": i % 2 == 0,
             "description": f"server number {i} in rack {i % 7}", "ratio": i / 7,
             "tags": ["web", "db", f"zone{i % 3}"]} for i in range(n)]


def hero_text(n: int, one_line: bool) -> str:
    """``n`` actions, all params on the action line or one param per line."""
    out = []
    for r in _records(n):
        items = [f"name:{r['name']}", f"port:{r['port']}",
                 f"enabled:{'true' if r['enabled'] else 'false'}",
                 f"description:'{r['description']}'", f"ratio:{r['ratio']}",
                 "tags:" + ",".join(r["tags"])]  # type: ignore[arg-type]
        sep = " " if one_line else "\n    "
        out.append("!!server.define" + sep + sep.join(items) + "\n")
    return "\n".join(out)


def toml_text(n: int) -> str:
    """The same records as an array of TOML tables."""
    out = []
    for r in _records(n):
        tags = ", ".join(f'"{t}"' for t in r["tags"])  # type: ignore[attr-defined]
        out.append(f'[[server_define]]\nname = "{r["name"]}"\nport = {r["port"]}\n'
                   f'enabled = {"true" if r["enabled"] else "false"}\n'
                   f'description = "{r["description"]}"\nratio = {r["ratio"]}\n'
                   f"tags = [{tags}]\n")
    return "\n".join(out)


def run(n_actions: int = 2000, repeat: int = 5) -> list[dict[str, object]]:
    """Time ``heroscript.parse`` and ``tomllib.loads`` on equivalent texts; one row per layout."""
    toml = toml_text(n_actions)
    t_toml = best_of(lambda: tomllib.loads(toml), repeat)
    rows = []
    for layout, one_line in (("one line per action", True), ("one param per line", False)):
        hero = hero_text(n_actions, one_line)
        assert len(heroscript.parse(hero).actions) == n_actions
        t_hero = best_of(lambda h=hero: heroscript.parse(h), repeat)
        rows.append({"layout": layout, "actions": n_actions, "hero_bytes": len(hero),
                     "toml_bytes": len(toml), "heroscript_ms": round(t_hero * 1000, 2),
                     "tomllib_ms": round(t_toml * 1000, 2),
                     "speedup": round(t_toml / t_hero, 2)})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the table; optional argument: number of actions."""
    argv = sys.argv[1:] if argv is None else argv
    rows = run(int(argv[0]) if argv else 2000)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print("\nspeedup = tomllib time / heroscript time (higher is better; goal >= 1)")


if __name__ == "__main__":
    main()
