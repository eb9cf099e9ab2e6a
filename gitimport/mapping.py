"""The mapping between Git commit ids and check-in ids, for people and scripts."""

from __future__ import annotations

from herofossil.gitimport.metadata import GitIndex


def git_map(repo, ref: str | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """(Git commit id, check-in id) of the check-ins reachable from ``ref``, newest first.

    ``ref`` may also be a Git commit id (or unique 7+ hex prefix known to the map).
    Check-ins not (yet) exported to Git are listed with an empty Git id.
    """
    index = GitIndex(repo)
    index.sync()
    if ref and len(ref) == 40:
        cid = index.checkin_of(ref.lower())
        if cid is not None:
            return [(ref.lower(), cid)]
    return [(index.sha_of(c.id) or "", c.id) for c in repo.log(at=ref, limit=limit)]
