"""Three-way merge of two check-ins at the file level.

A file changed on one side only takes that side; a file changed on both
sides to different contents is a conflict. Conflicts are resolved only on
request (``strategy`` 'ours' or 'theirs'); otherwise nothing is written and
``ConflictError`` lists them, so nothing is ever lost.
"""

from __future__ import annotations

from herofossil.errors import ConflictError, UsageError
from herofossil.store.changes import Delete, PutArtifact
from herofossil.store.checkins import CheckinIndex
from herofossil.store.keys import id_key


def common_ancestor(ci: CheckinIndex, a: bytes, b: bytes) -> bytes | None:
    """The newest check-in that is an ancestor of both ``a`` and ``b`` (or either itself)."""

    def ancestors(start: bytes) -> set[bytes]:
        seen, todo = {start}, [start]
        while todo:
            rec = ci.get(todo.pop())
            for p in rec.parents if rec else ():
                pid = id_key(p)
                if pid not in seen:
                    seen.add(pid)
                    todo.append(pid)
        return seen

    common = ancestors(a) & ancestors(b)
    found = [ci.get(c) for c in common]
    found = [r for r in found if r is not None]
    if not found:
        return None
    return id_key(max(found, key=lambda r: (r.time, r.seq)).id)


def plan(base: dict, ours: dict, theirs: dict, strategy: str | None):
    """The changes that bring ``theirs`` into ``ours``, and the conflicting paths.

    Each dict maps path -> (artifact id, perm).
    """
    if strategy not in (None, "ours", "theirs"):
        raise UsageError(f"merge strategy must be 'ours' or 'theirs', not {strategy!r}")
    changes, conflicts = [], []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            continue
        if o != b:
            conflicts.append(path)
            if strategy != "theirs":
                continue
        if t is None:
            changes.append(Delete(path))
        else:
            changes.append(PutArtifact(path, t[0], t[1]))
    if conflicts and strategy is None:
        raise ConflictError(
            "both sides changed: "
            + ", ".join(conflicts[:10])
            + (f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
            + "; nothing was merged: resolve with --strategy ours|theirs, or edit one side first"
        )
    return changes, conflicts
