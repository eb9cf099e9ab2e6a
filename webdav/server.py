"""Serve a ``Repo`` over WebDAV with cheroot: the app, the listening server, a clean stop."""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

from herofossil.errors import UsageError
from herofossil.webdav.auth import RepoDomainController, UserDB
from herofossil.webdav.locks import MetaLockStorage
from herofossil.webdav.noise import DEFAULT_PATTERNS
from herofossil.webdav.props import MetaPropertyManager
from herofossil.webdav.provider import RepoProvider

DEFAULT_PORT = 8023


def make_app(
    repo,
    *,
    users: UserDB | None = None,
    readonly: bool = False,
    noise_patterns=DEFAULT_PATTERNS,
    verbose: int = 1,
) -> WsgiDAVApp:
    """The WSGI app serving ``repo``: locks and dead properties persist in its metadata."""
    users = users or UserDB()
    provider = RepoProvider(repo, users=users, readonly=readonly, noise_patterns=noise_patterns)
    config = {
        "provider_mapping": {"/": provider},
        "herofossil": {"users": users},
        "http_authenticator": {
            "domain_controller": RepoDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "lock_storage": MetaLockStorage(repo),
        "property_manager": MetaPropertyManager(repo),
        "dir_browser": {"enable": True, "response_trailer": "herofossil"},
        "verbose": verbose,
        "logging": {"enable": False},
    }
    return WsgiDAVApp(config)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, users: UserDB) -> None:
    """Refuse to serve anonymously on anything but loopback."""
    if not users and not is_loopback(host):
        raise UsageError(
            f"serve: refusing anonymous access on {host}: add --user "
            "NAME:PASSWORD (or persistent users), or bind to 127.0.0.1"
        )


def make_server(
    app, host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = 10
) -> wsgi.Server:
    """A bound cheroot server (port 0 picks a free port; see ``server.bind_addr``)."""
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="herofossil")
    server.prepare()
    return server


def url_of(server: wsgi.Server) -> str:
    """``http://HOST:PORT/`` of a bound server."""
    host, port = server.bind_addr[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve_forever(server: wsgi.Server | None,
                  announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (requests in flight finish).

    The server runs in a thread; the signal handlers only set an event, so a
    signal never lands in the middle of cheroot's own bookkeeping. ``server``
    None: only wait for the signal (another server runs in its own thread).
    """
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = None
    if server is not None:
        thread = threading.Thread(target=server.serve, name="webdav-server", daemon=True)
        thread.start()
    try:
        if announce and server is not None:
            announce(f"webdav: {url_of(server)}")
        while (thread is None or thread.is_alive()) and not stop.wait(0.5):
            pass
    finally:
        if server is not None:
            server.stop()
            thread.join(10)
        for sig, handler in old.items():
            signal.signal(sig, handler)
