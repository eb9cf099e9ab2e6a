"""``RepoProvider``: the wsgidav DAVProvider that serves a ``Repo``."""

from __future__ import annotations

import io
import re
from urllib.parse import unquote, urlsplit

from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVProvider
from wsgidav.dir_browser import WsgiDavDirBrowser

from herofossil.webdav import fastput, props
from herofossil.webdav.auth import UserDB
from herofossil.webdav.fs import RepoFS, status_fix
from herofossil.webdav.noise import DEFAULT_PATTERNS, NoiseStore

# Methods whose XML body wsgidav reads whole and parses: read here first, bounded.
XML_METHODS = ("PROPFIND", "PROPPATCH", "LOCK")
# Of those, the ones that change something: permission is checked before the body is read.
XML_WRITES = ("PROPPATCH", "LOCK")
# The resource the directory browser looked up for this GET or HEAD: the handler's own
# lookup of the same path takes it (nothing is written between the two).
_LOOKED_UP = "herofossil.resource"
# urllib drops tabs and newlines from a URL: a Destination naming one would land elsewhere.
_CONTROL = re.compile("[\x00-\x1f\x7f]").search


class _ReadOnlyView:
    """The provider as one request sees it when it may not write there.

    wsgidav's directory browser asks ``environ["wsgidav.provider"].is_readonly()``
    to say "read-only" (and drop its edit links); this view answers for the
    request's user and location instead of for the whole server.
    """

    def __init__(self, provider: RepoProvider):
        self._provider = provider

    def __getattr__(self, name):
        return getattr(self._provider, name)

    def is_readonly(self) -> bool:
        return True


class RepoProvider(DAVProvider):
    """Serves the default branch at '/', other branches and all history beside it."""

    def __init__(
        self,
        repo,
        *,
        users: UserDB | None = None,
        readonly: bool = False,
        noise_patterns=DEFAULT_PATTERNS,
    ):
        super().__init__()
        self.repo = repo
        self.readonly = readonly
        self.fs = RepoFS(self, repo, users or UserDB(), NoiseStore(repo, noise_patterns), readonly)
        self.lock_gate = fastput.LockGate()

    def __repr__(self) -> str:
        return f"RepoProvider({self.repo.path!r})"

    def is_readonly(self) -> bool:
        return self.readonly

    def get_resource_inst(self, path: str | None, environ: dict):
        if path is None:  # the parent of '/' (wsgidav asks, on DELETE and MOVE of '/')
            return None
        looked_up = environ.pop(_LOOKED_UP, None)
        if looked_up is not None and looked_up[0] == path:
            return looked_up[1]
        res = self.fs.resource(path, environ)
        if (res is not None and res.is_collection and environ.get("REQUEST_METHOD") == "GET"
                and not self.fs.may_write(res.loc, environ)):
            environ["wsgidav.provider"] = _ReadOnlyView(self)  # the directory browser's page
        return res

    def custom_request_handler(self, environ, start_response, default_handler):
        method = environ.get("REQUEST_METHOD")
        if method == "PUT":
            answer = fastput.put(self, environ, start_response)
            if answer is not None:
                return answer
        elif method in XML_METHODS:
            if method in XML_WRITES:
                loc = self.fs.locate(environ["PATH_INFO"])
                if loc is None or not self.fs.may_write(loc, environ):
                    raise DAVError(HTTP_FORBIDDEN, "read-only here, or for this user")
            _read_xml_body(environ)
            if method == "LOCK":
                # The body is read already: the gate waits for no client.
                with self.lock_gate.lock():
                    return default_handler(environ, start_response)
        elif method in ("COPY", "MOVE"):
            dest = unquote(environ.get("HTTP_DESTINATION", ""))
            if _CONTROL(dest):
                raise DAVError(HTTP_BAD_REQUEST, "the Destination names a control character: "
                                                 "file names cannot hold them")
            dloc = self.fs.locate(urlsplit(dest).path or "/") if dest else None
            if dloc is not None and (dloc.kind != "tree" or dloc.is_root):
                raise DAVError(HTTP_FORBIDDEN, "a tree's root or a listing cannot be "
                                               "copied or moved onto")
            start_response = status_fix(environ, start_response)
        return default_handler(environ, start_response)


def _read_xml_body(environ: dict) -> None:
    """Read an XML request body within ``props``' limits, for wsgidav to parse from memory.

    No or a malformed Content-Length is left to wsgidav (it reads no body then,
    or answers 400).
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length <= 0:
        return
    if length > props.MAX_XML_BODY:
        raise DAVError(props.HTTP_REQUEST_ENTITY_TOO_LARGE,
                       f"an XML request body is at most {props.MAX_XML_BODY} bytes")
    body = fastput.read_body(environ, length)
    props.check_xml_body(body)
    environ["wsgi.input"] = io.BytesIO(body)


class DirBrowser(WsgiDavDirBrowser):
    """wsgidav's folder pages, which answer only a GET or HEAD of a folder.

    wsgidav's own middleware looks up the resource of every request, which the
    handler then looks up again (a PUT's fast path never needs it): here other
    methods pass straight on, and the resource of a GET or HEAD that is not a
    folder's page is handed to the handler's lookup.
    """

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD"):
            return self.next_app(environ, start_response)
        provider = environ["wsgidav.provider"]
        if provider is None:
            return super().__call__(environ, start_response)
        path = environ["PATH_INFO"]
        res = provider.get_resource_inst(path, environ)
        if res is not None and res.is_collection:
            return super().__call__(environ, start_response)  # its page (looked up again)
        environ[_LOOKED_UP] = (path, res)
        return self.next_app(environ, start_response)
