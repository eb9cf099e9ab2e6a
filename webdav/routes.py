"""Where a WebDAV URL points: the live tree, a branch, a past version, or a listing.

/                       the default branch's tip (read-write)
/.branches/NAME/...     branch NAME's tip: read-write where NAME is an existing branch
                        (or an alias of one); any other version name is read-only there
/.history/REF/...       version REF: check-in id or prefix, branch, tag or date (read-only)
/.history/, /.branches/ listings of branches (and tags), not of every check-in

A tree location names the tree it belongs to by ``branch`` (None: a read-only
version), so that ``/x`` and ``/.branches/trunk/x`` are one resource: ``key``
is the URL that locks and dead properties are kept under.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

HISTORY = ".history"
BRANCHES = ".branches"
VIRTUAL = (HISTORY, BRANCHES)


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed URL: ``kind`` is 'tree' or a listing (HISTORY, BRANCHES).

    ``ref`` is the version name the URL gives (the default branch for '/');
    ``at`` the version read; ``branch`` the existing branch written, or None.
    """

    kind: str
    url: str
    path: str = ""
    at: str | None = None
    branch: str | None = None
    prefix: str = ""
    ref: str | None = None
    default: str = ""

    @property
    def writable(self) -> bool:
        """True for the tip of an existing branch; False for history, tags and listings."""
        return self.kind == "tree" and self.branch is not None

    @property
    def is_root(self) -> bool:
        """The root of a tree ('/', '/.branches/NAME/', '/.history/REF/')."""
        return self.kind == "tree" and self.path == ""

    @property
    def key(self) -> str:
        """The one URL of this resource whatever URL reached it (no trailing '/').

        The default branch's files are keyed as served at '/', other branches'
        under '/.branches/NAME/', read-only versions by their own URL.
        """
        if self.kind != "tree" or self.branch is None:
            return self.url
        if self.branch == self.default:
            return "/" + self.path
        return f"/{BRANCHES}/{self.branch}" + ("/" + self.path if self.path else "")

    def child(self, name: str) -> Location:
        """The location of member ``name`` of this tree folder."""
        return replace(self, url=join(self.url, name),
                       path=f"{self.path}/{name}" if self.path else name)

    def on_branch(self, branch: str | None) -> Location:
        """This location with the branch it writes resolved (None: read-only)."""
        return replace(self, branch=branch, at=branch or self.at)


def parse(url: str, default_branch: str) -> Location | None:
    """The location of URL path ``url`` (unquoted, starting with '/'), or None if malformed.

    Under ``/.branches/`` no branch is set: ``RepoFS.locate`` sets it where
    the name is an existing branch, so a location is read-only until proven writable.
    """
    url = "/" + url.strip("/")
    segs = url[1:].split("/") if url != "/" else []
    if "" in segs:
        return None
    d = default_branch
    if not segs or segs[0] not in VIRTUAL:
        return Location("tree", url, "/".join(segs), d, d, ref=d, default=d)
    if len(segs) == 1:
        return Location(segs[0], url, default=d)
    ref, rest = segs[1], "/".join(segs[2:])
    prefix = f"/{segs[0]}/{ref}"
    if segs[0] == HISTORY:
        return Location("tree", url, rest, ref, None, prefix, ref=ref, default=d)
    return Location("tree", url, rest, ref, None, prefix, ref=ref, default=d)


def join(url: str, name: str) -> str:
    """The URL of member ``name`` of collection ``url``."""
    return url.rstrip("/") + "/" + name
