"""``Guard``: the WSGI middleware in front of wsgidav that answers hostile requests itself.

In order, before the provider sees a request and before any body is read:
the ``Host`` check (anonymous servers only, against DNS rebinding: a page in
a browser that reaches this port sends ``Host: NAME:PORT``, or ``NAME``
alone on port 80; such a Host must name loopback or the bound address, else
421), basic auth (a
malformed header is a 401, a throttled address a 429, a failure is logged;
see ``herofossil.store.users``), ``PROPFIND`` without a finite ``Depth``
(403 ``DAV:propfind-finite-depth``, RFC 4918 9.1: it would walk every
version under /.history/ and /.branches/), writes by a read-only user or on
a read-only server (403), and ``Range`` headers that are not ranges
(ignored, as RFC 9110 14.2 says). The body is read through a wrapper that
turns a short, malformed or too slow body into a 400 or 408 and closes the
connection. (A LOCK's body is read before its lock gate is taken by the
provider; the server gathers small bodies before a worker sees them.)
"""

from __future__ import annotations

import base64
import binascii

from wsgidav.dav_error import DAVError

from herofossil.store.users import REALM, HostCheck, UserDB

AUTH_USER_KEY = "herofossil.auth.user"  # an environ key no request header can set
CLOSE_KEY = "herofossil.close"  # set when the connection must close after the answer
PREREAD_MAX = 64 * 1024  # bodies up to this size arrive with their head (server.py)
WRITE_METHODS = frozenset(
    {"PUT", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK", "POST", "PATCH"})
FINITE_DEPTH = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')


def _answer(environ, start_response, status: str, body: bytes | str = b"",
            headers: tuple = (), content_type: str = "text/plain; charset=utf-8"):
    """A small answer; the connection closes when a body this request has is left unread."""
    if isinstance(body, str):
        body = (body + "\n").encode()
    hdrs = [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers]
    if environ.get(CLOSE_KEY) or _unread_body(environ):
        hdrs.append(("Connection", "close"))
    start_response(status, hdrs)
    return [body]


def _unread_body(environ) -> bool:
    """True when the request's body may not have arrived with its head."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > PREREAD_MAX
    except ValueError:
        return True


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(name, password) of a ``Basic`` Authorization header; None when malformed."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    name, sep, password = raw.partition(":")
    if not sep or not name or not name.isprintable():
        return None
    return name, password


def byte_ranges(value: str) -> list[tuple[int | None, int | None]] | None:
    """The (first, last) / (None, suffix) specs of a ``Range`` value; None when it is not a
    valid bytes range set (RFC 9110 14.1.1: ``bytes=5-2`` is not)."""
    unit, sep, specs = value.partition("=")
    if unit.strip().lower() != "bytes" or not sep:
        return None
    out: list[tuple[int | None, int | None]] = []

    def number(text: str) -> int | None:
        return int(text) if text.isascii() and text.isdigit() else None

    for spec in specs.split(","):
        spec = spec.strip()
        if not spec:
            continue
        first, dash, last = (part.strip() for part in spec.partition("-"))
        if not dash:
            return None
        if first:
            a = number(first)
            b = number(last) if last else None
            if a is None or (last and (b is None or b < a)):
                return None
            out.append((a, b))
        else:
            b = number(last)
            if b is None:
                return None
            out.append((None, b))
    return out or None


class _Input:
    """``wsgi.input`` that fails loudly: a body cut short, malformed (chunk sizes) or too
    slow is a ``DAVError`` (400 or 408) and the connection closes after the answer."""

    def __init__(self, environ):
        self._environ = environ
        self._stream = environ["wsgi.input"]
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        self._left = None if chunked else int(environ.get("CONTENT_LENGTH") or 0)

    def _fail(self, status: int, why: str):
        self._environ[CLOSE_KEY] = True
        return DAVError(status, why)

    def _call(self, fn, size, whole: bool):
        left = self._left
        try:
            data = fn(size) if size is not None and size >= 0 else fn()
        except TimeoutError as exc:
            raise self._fail(408, f"the request body stopped: {exc}") from exc
        except (ValueError, OSError) as exc:
            raise self._fail(400, f"bad request body: {exc}") from exc
        if left is not None:
            self._left = left - len(data)
            want = left if size is None or size < 0 else min(size, left)
            if whole and len(data) < want:  # a sized read comes back short only at the end
                raise self._fail(400, f"the request body ended {want - len(data)} bytes short")
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.read, size, True)

    def readline(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.readline, size, False)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line

    def close(self) -> None:
        self._stream.close()


class Guard:
    """WSGI middleware over wsgidav (see the module doc); ``listening_on`` gives it the
    bound address for the ``Host`` check."""

    def __init__(self, app, *, users: UserDB, readonly: bool = False):
        self.app = app
        self.users = users
        self.readonly = readonly
        self.hosts: HostCheck | None = None

    def listening_on(self, host: str, port: int) -> None:
        """Check ``Host`` headers against the loopback names, ``host`` and ``port``."""
        self.hosts = HostCheck(host, port)

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        if self.users:
            refusal = self._authenticate(environ, start_response)
        else:
            refusal = self._check_host(environ, start_response)
        if refusal is not None:
            return refusal
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() \
                not in ("0", "1"):
            return _answer(environ, start_response, "403 Forbidden", FINITE_DEPTH,
                           content_type='application/xml; charset="utf-8"')
        if method in WRITE_METHODS and (
                self.readonly or not self.users.can_write(environ.get(AUTH_USER_KEY))):
            who = "this server" if self.readonly else f"user {environ.get(AUTH_USER_KEY)!r}"
            return _answer(environ, start_response, "403 Forbidden", f"{who} is read-only")
        if method in ("GET", "HEAD") and "HTTP_RANGE" in environ:
            refusal = self._check_range(environ, start_response)
            if refusal is not None:
                return refusal
        environ["wsgi.input"] = _Input(environ)

        def closing_start_response(status, headers, exc_info=None):
            if environ.get(CLOSE_KEY):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        return self.app(environ, closing_start_response)

    def _authenticate(self, environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION")
        challenge = (("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),)
        if header is None:
            return _answer(environ, start_response, "401 Unauthorized",
                           "log in (basic auth)", challenge)
        address = environ.get("REMOTE_ADDR", "")
        wait = self.users.throttle.retry_after(address)
        if wait:
            return _answer(environ, start_response, "429 Too Many Requests",
                           f"too many failed logins from {address}: retry in {wait} s",
                           (("Retry-After", str(wait)),))
        creds = basic_credentials(header)
        if creds is None:
            return _answer(environ, start_response, "401 Unauthorized",
                           "malformed Authorization header: send Basic base64(NAME:PASSWORD)",
                           challenge)
        if not self.users.login(creds[0], creds[1], address):
            return _answer(environ, start_response, "401 Unauthorized",
                           "wrong user name or password", challenge)
        environ[AUTH_USER_KEY] = creds[0]
        return None

    def _check_host(self, environ, start_response):
        host = environ.get("HTTP_HOST")
        if self.hosts is None or self.hosts.allows(host):
            return None
        return _answer(environ, start_response, "421 Misdirected Request",
                       self.hosts.refusal(host))

    def _check_range(self, environ, start_response):
        specs = byte_ranges(environ["HTTP_RANGE"])
        if specs is None:
            del environ["HTTP_RANGE"]  # not a range: the whole body, 200
            return None
        kept = [s for s in specs if s != (None, 0)]
        if not kept:
            return _answer(environ, start_response, "416 Range Not Satisfiable",
                           "an empty suffix range selects nothing")
        if len(kept) != len(specs):
            environ["HTTP_RANGE"] = "bytes=" + ",".join(
                f"{'' if a is None else a}-{'' if b is None else b}" for a, b in kept)
        return None
