"""Where a WebDAV URL points: the live tree, a branch, a past version, or a listing.

/                       the default branch's tip (read-write)
/.branches/NAME/...     branch NAME's tip (read-write)
/.history/REF/...       version REF: check-in id or prefix, branch, tag or date (read-only)
/.history/, /.branches/ listings of branches (and tags), not of every check-in
"""

from __future__ import annotations

from dataclasses import dataclass

HISTORY = ".history"
BRANCHES = ".branches"
VIRTUAL = (HISTORY, BRANCHES)


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed URL: ``kind`` is 'tree' or a listing (HISTORY, BRANCHES)."""

    kind: str
    url: str
    path: str = ""
    at: str | None = None
    branch: str | None = None
    prefix: str = ""

    @property
    def writable(self) -> bool:
        """True for a branch tip; False for history and listings."""
        return self.kind == "tree" and self.branch is not None

    @property
    def is_root(self) -> bool:
        return self.kind == "tree" and self.path == ""


def parse(url: str, default_branch: str) -> Location | None:
    """The location of URL path ``url`` (unquoted, starting with '/'), or None if malformed."""
    url = "/" + url.strip("/")
    segs = url[1:].split("/") if url != "/" else []
    if "" in segs:
        return None
    if not segs or segs[0] not in VIRTUAL:
        return Location("tree", url, "/".join(segs), default_branch, default_branch)
    if len(segs) == 1:
        return Location(segs[0], url)
    ref, rest = segs[1], "/".join(segs[2:])
    prefix = f"/{segs[0]}/{ref}"
    if segs[0] == HISTORY:
        return Location("tree", url, rest, ref, None, prefix)
    return Location("tree", url, rest, ref, ref, prefix)


def join(url: str, name: str) -> str:
    """The URL of member ``name`` of collection ``url``."""
    return url.rstrip("/") + "/" + name
