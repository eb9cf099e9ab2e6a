"""The common PUT, answered without wsgidav's generic request machinery.

wsgidav's ``do_PUT`` builds resource objects for the target and its parent,
asks the lock manager about both, spools the body and renders a status page:
about a sixth of a small PUT's time here. A PUT with no conditions and a
known length, of an ordinary file on a branch tip this user may write, needs
two lookups and one check-in; this module answers it so, with the same
status, ETag and lock semantics. Everything else (conditional or ranged
requests, noise files, folders, missing parents, large bodies) goes the
generic way, decided before the body is read.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from email.utils import formatdate
from urllib.parse import quote

from wsgidav.dav_error import HTTP_BAD_REQUEST, DAVError

from herofossil import errors
from herofossil.webdav import routes

# Headers whose meaning only the generic handler implements.
GENERIC_HEADERS = (
    "HTTP_IF",
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
    "HTTP_CONTENT_ENCODING",
    "HTTP_CONTENT_RANGE",
    "HTTP_TRANSFER_ENCODING",
    "HTTP_X_OC_MTIME",
)
MAX_BODY = 1 << 20  # larger uploads are streamed into a spool by the generic handler


class LockGate:
    """Keeps a LOCK from being granted between a fast PUT's lock check and its commit.

    Fast PUTs share the gate; a LOCK request holds it alone (wsgidav's own
    guard, which the fast path skips, does the same for its PUTs). A waiting
    LOCK goes before PUTs that arrive after it, so a stream of PUTs cannot
    starve it.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._puts = 0
        self._locks_waiting = 0
        self._locking = False

    @contextmanager
    def put(self):
        with self._cond:
            while self._locking or self._locks_waiting:
                self._cond.wait()
            self._puts += 1
        try:
            yield
        finally:
            with self._cond:
                self._puts -= 1
                self._cond.notify_all()

    @contextmanager
    def lock(self):
        with self._cond:
            self._locks_waiting += 1
            try:
                while self._locking or self._puts:
                    self._cond.wait()
            finally:
                self._locks_waiting -= 1
            self._locking = True
        try:
            yield
        finally:
            with self._cond:
                self._locking = False
                self._cond.notify_all()


_date = (0, "")


def http_date() -> str:
    """Now as an HTTP date (formatted once per second: it is not cheap)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


def _target(fs, loc: routes.Location) -> bool | None:
    """True when a file is at ``loc``, False when its folder exists and nothing is
    there; None when the generic handler must answer (a folder, no folder, a bad path)."""
    parent = loc.path.rpartition("/")[0]
    try:
        folder, entry = fs.repo.plumbing.stat_each([parent, loc.path], at=loc.at)
    except errors.HeroFossilError:
        return None
    if folder is None or not folder.is_dir or (entry is not None and entry.is_dir):
        return None
    return entry is not None


def read_body(environ: dict, length: int) -> bytes:
    """Exactly ``length`` bytes of the request body (400 when it ends short)."""
    stream, parts, left = environ["wsgi.input"], [], length
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise DAVError(HTTP_BAD_REQUEST, f"the body ended {left} bytes short")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def put(provider, environ: dict, start_response):
    """Answer the PUT in ``environ``, or return None (body unread) for wsgidav to."""
    if any(h in environ for h in GENERIC_HEADERS):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH", ""))
    except ValueError:
        return None
    url = environ["PATH_INFO"]
    fs = provider.fs
    loc = fs.locate(url)
    if (
        not 0 <= length <= MAX_BODY
        or loc is None
        or url.endswith("/")
        or loc.is_root
        or not fs.may_write(loc, environ)
        or fs.is_noise(loc)
    ):
        return None
    existed = _target(fs, loc)
    if existed is None:
        return None
    data = read_body(environ, length)
    with provider.lock_gate.put():
        lock_manager = provider.lock_manager
        if lock_manager is not None and lock_manager.storage.has_locks():
            # What wsgidav checks: the file, or the folder a new file goes into,
            # keyed as the resources key them (one key per branch and path).
            checked = loc.key if existed else loc.key.rpartition("/")[0] + "/"
            lock_manager.check_write_permission(
                url=quote(provider.share_path + checked), depth="0", token_list=[],
                principal=environ.get("wsgidav.user_name", "anonymous"),
            )
        etag = fs.write(environ, loc, data)  # the id the write computed: no second SHA3
    # No status page for 201 (wsgidav renders one): the headers say it all.
    start_response(
        "204 No Content" if existed else "201 Created",
        [("Content-Length", "0"), ("Date", http_date()), ("ETag", f'"{etag}"')],
    )
    return [b""]
