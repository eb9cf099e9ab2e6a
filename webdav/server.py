"""Serve a ``Repo`` over WebDAV with cheroot: the app, the listening server, a clean stop.

No single client may stall the server, so cheroot's worker threads only ever
see requests that are ready. The connection manager's selector thread
gathers each request head (and a body of up to ``PREREAD_MAX`` bytes) into
the connection's buffer without blocking; a connection that has not sent a
whole head within ``TIMEOUT`` seconds of starting it is closed there.
Idle, trickled-header ("slowloris") and small never-finishing bodies thus
cost a socket and their bytes, never a worker. Two kinds of request run in
lanes of bounded width, the rest waiting (unread, in order) for a place:
a larger or chunked body is read by a worker, at most ``THREADS - RESERVED``
at once, with a deadline that grows with what arrived (``BODY_RATE`` bytes
a second after ``TIMEOUT`` seconds of grace); a PROPFIND, whose listing is
built in memory, runs at most ``LISTINGS`` at once. So a flood of either
leaves workers, and a share of the CPU, to a GET or a small PUT. Every
request also runs in its client address's lane, ``THREADS - OTHERS`` wide:
one address (clients that never read their responses hold a worker until a
write times out, ``TIMEOUT``) never takes the last workers from the others. The
request parser is strict where cheroot is lenient: duplicate or malformed
``Content-Length``, both ``Content-Length`` and ``Transfer-Encoding``, and
malformed chunk sizes are a 400 before the application runs.
"""

from __future__ import annotations

import _pyio
import ipaddress
import os
import re
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from cheroot import makefile, wsgi
from cheroot import server as cheroot_server
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from herofossil.errors import UsageError
from herofossil.webdav.auth import RepoDomainController, UserDB
from herofossil.webdav.guard import AUTH_USER_KEY, PREREAD_MAX, Guard
from herofossil.webdav.locks import MetaLockStorage
from herofossil.webdav.noise import DEFAULT_PATTERNS
from herofossil.webdav.props import MetaPropertyManager
from herofossil.webdav.provider import DirBrowser, RepoProvider

DEFAULT_PORT = 8023
THREADS = 32  # worker threads; each costs ~8 MiB of address space, ~64 KiB resident
RESERVED = 8  # workers a streamed body never takes: ready requests always find one
OTHERS = 4  # workers the requests of one client address never take: other addresses' own
LISTINGS = 4  # PROPFINDs at once: more only share 2 cores and hold more listings
TIMEOUT = 10  # seconds: one socket read or write; a whole head; a body's grace
BODY_RATE = 16 * 1024  # bytes/s a streamed body must average after its grace
HEAD_MAX = 64 * 1024  # request line and headers
MAX_CONNECTIONS = 1024  # open connections in all (an idle one costs a socket, ~10 KiB)
MAX_PER_ADDRESS = 256  # open connections from one client address


def make_app(
    repo,
    *,
    users: UserDB | None = None,
    readonly: bool = False,
    noise_patterns=DEFAULT_PATTERNS,
    verbose: int = 1,
) -> Guard:
    """The WSGI app serving ``repo`` (wsgidav behind the ``Guard``): locks and dead
    properties persist in its metadata."""
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
            # The guard checks credentials before any body is read and names the
            # user in this environ key, which no request header can set.
            "trusted_auth_header": AUTH_USER_KEY,
        },
        "lock_storage": MetaLockStorage(repo),
        "property_manager": MetaPropertyManager(repo),
        # wsgidav's stack without CORS (this server never configures it), with its folder pages
        # (``DirBrowser``: no lookup for requests it does not answer)
        "middleware_stack": [ErrorPrinter, HTTPAuthenticator, DirBrowser, RequestResolver],
        "dir_browser": {"enable": True, "response_trailer": "herofossil"},
        "verbose": verbose,
        "logging": {"enable": False},
    }
    return Guard(WsgiDAVApp(config), users=users, readonly=readonly)


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
            f"serve: refusing anonymous access on {host}: save a user with "
            "'herofossil serve --add-user NAME' (the password is asked for), "
            "or bind to 127.0.0.1"
        )


class _OnceHeaders(dict):
    """Request headers where a repeated Content-Length or Host is an error (400)."""

    ONCE = (b"Content-Length", b"Host")

    def __setitem__(self, key, value):
        if key in self.ONCE and key in self:
            raise ValueError(f"more than one {key.decode()} header")
        super().__setitem__(key, value)


class _BodyDeadline:
    """How long a body may take: ``TIMEOUT`` of grace plus one second per ``BODY_RATE`` bytes."""

    __slots__ = ("start", "got")

    def __init__(self):
        self.start = time.monotonic()
        self.got = 0

    def budget(self) -> float:
        return self.start + TIMEOUT + self.got / BODY_RATE - time.monotonic()


class _SocketIO(socket.SocketIO):
    """A socket's raw reader that honours the current body's ``_BodyDeadline``."""

    deadline: _BodyDeadline | None = None

    def readinto(self, b):
        deadline = self.deadline
        if deadline is None:
            return super().readinto(b)
        budget = deadline.budget()
        if budget <= 0:
            raise TimeoutError("the request body arrives too slowly")
        short = budget < TIMEOUT
        if short:
            self._sock.settimeout(budget)
        try:
            n = super().readinto(b)
        finally:
            if short:
                self._sock.settimeout(TIMEOUT)
        if n:
            deadline.got += n
        return n


class _Reader(makefile.StreamReader):
    """cheroot's socket reader over ``_SocketIO``."""

    def __init__(self, sock, mode="rb", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
        _pyio.BufferedReader.__init__(self, _SocketIO(sock, mode), bufsize)
        self.bytes_read = 0

    # cheroot reads through the pure-Python ``_pyio``, whose ``readline`` goes by ``peek``
    # and ``read`` under a lock per call. The request head and a small body are already in
    # the buffer (gathered by the selector thread), so both answer from it when they can
    # (a 4-line head and its 512-byte body: 17 us -> 2 us); the rest takes the general path.
    def readline(self, size=-1):
        buf, pos = self._read_buf, self._read_pos
        end = buf.find(b"\n", pos)
        if end >= 0 and (size is None or size < 0 or end - pos < size):
            end += 1
            self._read_pos = end
            self.bytes_read += end - pos
            return buf[pos:end]
        return super().readline(size)

    def read(self, size=-1):
        pos = self._read_pos
        if size is not None and 0 <= size <= len(self._read_buf) - pos:
            self._read_pos = pos + size
            self.bytes_read += size
            return self._read_buf[pos:pos + size]
        return super().read(size)

    def take(self) -> bytes:
        """The buffered bytes not read yet, removed from the buffer."""
        with self._read_lock:
            data = self._read_buf[self._read_pos:]
            self._read_buf, self._read_pos = b"", 0
        return data

    def give(self, data: bytes) -> None:
        """Put ``data`` (read from the socket elsewhere) in front of the buffer."""
        with self._read_lock:
            self._read_buf = data + self._read_buf[self._read_pos:]
            self._read_pos = 0


class _Writer(makefile.StreamWriter):
    """cheroot's socket writer, holding a response's head (``holding``, while cheroot
    writes it) until the first body bytes or the end of the response: a small answer
    goes out in one send, not two (a GET's head and body were two segments and two
    system calls on each side)."""

    holding = False
    held = b""

    def write(self, val):
        if self.holding:
            self.held += bytes(val)
            return len(val)
        if self.held:
            val, self.held = self.held + bytes(val), b""
        return super().write(val)

    def release(self) -> None:
        """Send what is held (the head of an answer without body bytes)."""
        if self.held:
            self.write(b"")


def _make_file(sock, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
    if "r" in mode:
        return _Reader(sock, mode, bufsize)
    return _Writer(sock, mode, bufsize)


_HEX = frozenset(b"0123456789abcdefABCDEF")


class _StrictChunkedRFile(cheroot_server.ChunkedRFile):
    """cheroot's chunked body reader, refusing what it lets through: signed, prefixed or
    over-long chunk sizes, a body cut short, a chunk line without CRLF."""

    def _fetch(self):
        if self.closed:
            return
        line = self.rfile.readline(1024)
        self.bytes_read += len(line)
        if not line:
            raise ValueError("the chunked body ended before its last chunk")
        if not line.endswith(b"\r\n"):
            raise ValueError(f"bad chunk-size line {line[:40]!r}")
        size = line[:-2].split(b";", 1)[0].strip()
        if not 0 < len(size) <= 15 or not _HEX.issuperset(size):
            raise ValueError(f"bad chunk size {size[:40]!r}")
        chunk_size = int(size, 16)
        if chunk_size == 0:
            for _ in range(100):  # trailer fields, then the final CRLF
                trailer = self.rfile.readline(HEAD_MAX)
                if not trailer.endswith(b"\r\n"):
                    raise ValueError("the chunked body ended in its trailer")
                if trailer == b"\r\n":
                    break
            else:
                raise ValueError("too many trailer fields")
            self.closed = True
            return
        if self.maxlen and self.bytes_read + chunk_size > self.maxlen:
            raise OSError("Request Entity Too Large")
        chunk = self.rfile.read(chunk_size)
        self.bytes_read += len(chunk)
        if len(chunk) < chunk_size:
            raise ValueError("the chunked body ended inside a chunk")
        self.buffer += chunk
        if self.rfile.read(2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")


class _Request(cheroot_server.HTTPRequest):
    """cheroot's request with strict framing, a body deadline and ``Connection: close``
    honoured when the application sends it."""

    def read_request_headers(self):
        self.inheaders = _OnceHeaders()
        if not super().read_request_headers():
            return False
        length = self.inheaders.get(b"Content-Length")
        problem = None
        if length is not None and not (length.isdigit() and len(length) <= 18):
            problem = f"malformed Content-Length {length[:40]!r}"
        elif length is not None and b"Transfer-Encoding" in self.inheaders:
            problem = "both Content-Length and Transfer-Encoding"
        if problem:
            self.simple_response("400 Bad Request", problem)
            self.close_connection = True
            return False
        return True

    def respond(self):
        if self.chunked_read:
            self.rfile = _StrictChunkedRFile(self.conn.rfile, 0)
        else:
            self.rfile = cheroot_server.KnownLengthRFile(
                self.conn.rfile, int(self.inheaders.get(b"Content-Length", 0)))
        raw = self.conn.rfile.raw
        raw.deadline = _BodyDeadline()
        try:
            self.server.gateway(self).respond()
            self.ready and self.ensure_headers_sent()
            if self.chunked_write:
                self.conn.wfile.write(b"0\r\n\r\n")
            self.conn.wfile.release()
        finally:
            raw.deadline = None
            self.conn.wfile.held = b""  # the head of an answer that failed is not sent

    def send_headers(self):
        if (b"Connection", b"close") in self.outheaders:  # as the guard writes it
            self.close_connection = True
        self.conn.wfile.holding = True
        try:
            super().send_headers()
        finally:
            self.conn.wfile.holding = False


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_STREAMED = re.compile(rb"\r\n(?:transfer-encoding|expect)[ \t]*:", re.IGNORECASE)


def _body_to_gather(data: bytearray, head_end: int) -> int | None:
    """Body bytes to gather before a worker takes the request whose head is
    ``data[:head_end]``; None: a worker streams the body (large, chunked, or the client
    awaits 100-continue)."""
    if _STREAMED.search(data, 0, head_end):
        return None
    found = _CONTENT_LENGTH.findall(data, 0, head_end)
    if len(found) != 1 or not found[0].strip().isdigit():
        return 0  # no body, or a framing error the parser answers
    length = int(found[0].strip())
    return length if length <= PREREAD_MAX else None


class _Lane:
    """Requests of one kind, or of one client address: how many may run at once, how
    many do, who waits."""

    __slots__ = ("width", "running", "waiting", "address")

    def __init__(self, width: int, address: str | None = None):
        self.width = width
        self.running = 0
        self.waiting: deque[_Connection] = deque()
        self.address = address  # an address's lane (dropped when nothing runs in it)


class _Connection(cheroot_server.HTTPConnection):
    """A connection that gathers its next request before a worker sees it (see module doc)."""

    RequestHandlerClass = _Request

    def __init__(self, server, sock, makefile=None):
        super().__init__(server, sock, _make_file)
        self.pending = bytearray()
        self.needs: int | None = -1  # -1: head not complete; None: stream the body
        self.started: float | None = None
        self.address: str | None = None
        self.lanes: list[_Lane] = []  # the lanes this request holds a place in
        self.todo: list = []  # the lanes (or its address, for its lane) still to enter

    def gather(self) -> bool | None:
        """Read what the socket holds; True when the request is ready, False when more
        must come, None when the peer has gone."""
        if self.rfile.has_data():
            self.pending += self.rfile.take()
        fd = self.socket.fileno()
        while not self.ready_to_serve():
            try:
                # A socket with a timeout is non-blocking underneath; os.read skips the
                # poll socket.recv makes first (no TLS here: HTTPS is a proxy's job).
                data = os.read(fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                return None
            if not data:
                return True if self.pending else None  # the parser answers a partial head
            self.pending += data
        return True

    def ready_to_serve(self) -> bool:
        if self.needs == -1:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                body = _body_to_gather(self.pending, end + 2)
                self.needs = None if body is None else end + 4 + body
            elif len(self.pending) > HEAD_MAX or b"\n\n" in self.pending:
                self.needs = 0  # too long, or bare LF: the parser answers it
            else:
                return False
        return self.needs is None or len(self.pending) >= self.needs

    def hand_over(self) -> str | None:
        """Give the gathered bytes to the reader; the kind lane the request runs in, if
        any (every request runs in its address's lane too)."""
        lane = None
        if self.needs is None:
            lane = "stream"
        elif self.pending.startswith(b"PROPFIND ") or (
                self.pending[:1] == b"\r" and self.pending.lstrip().startswith(b"PROPFIND ")):
            lane = "listing"
        self.rfile.give(bytes(self.pending))
        self.pending, self.needs, self.started = bytearray(), -1, None
        return lane

    def communicate(self):
        try:
            return super().communicate()
        finally:
            held, self.lanes = self.lanes, []
            for lane in reversed(held):
                self.server.lane_done(lane)

    def close(self):
        if self.address is not None:
            self.server.forget(self.address)
            self.address = None
        super().close()


class HardenedServer(wsgi.Server):
    """cheroot's WSGI server where workers only see ready requests (see module doc)."""

    ConnectionClass = _Connection

    def __init__(self, bind_addr, app, threads: int = THREADS):
        super().__init__(bind_addr, app, numthreads=threads, server_name="herofossil",
                         timeout=TIMEOUT, request_queue_size=128)
        self.max_request_header_size = HEAD_MAX
        self.keep_alive_conn_limit = MAX_CONNECTIONS
        self._lanes = {"stream": _Lane(max(1, threads - RESERVED)),
                       "listing": _Lane(min(LISTINGS, threads))}
        self._address_width = max(1, threads - OTHERS)
        self._address_lanes: dict[str, _Lane] = {}  # only while one of its requests runs
        self._per_address: dict[str, int] = {}
        self._open = 0
        self._guard = threading.Lock()

    def process_conn(self, conn: _Connection) -> None:
        """Queue ``conn`` for a worker once its request is ready; until then the
        connection manager's selector watches it."""
        if conn.address is None and not self._admit(conn):
            conn.close()
            return
        state = conn.gather()
        if state is None or not self.ready:
            conn.close()
            return
        if not state:
            if conn.started is None:
                conn.started = conn.last_used or time.time()
            conn.last_used = conn.started  # the manager closes it TIMEOUT after that
            try:
                self._connections._selector.register(
                    conn.socket.fileno(), selectors.EVENT_READ, data=conn)
            except (KeyError, ValueError, OSError):
                conn.close()
            return
        name = conn.hand_over()
        with self._guard:
            # The kind lane first: a request waiting there holds no place of its address.
            # The address's lane is looked up on entry (it exists only while in use).
            conn.todo = [conn.address] if name is None else [self._lanes[name], conn.address]
            ready = self._enter(conn)
        if ready:
            super().process_conn(conn)

    def _enter(self, conn: _Connection) -> bool:
        """Take ``conn`` through the lanes it must still enter (the guard held); False
        when it waits in one (it goes on when a place there is given back)."""
        while conn.todo:
            lane = conn.todo[0]
            if not isinstance(lane, _Lane):  # a client address
                lane = self._address_lanes.get(lane)
                if lane is None:
                    lane = self._address_lanes[conn.todo[0]] = _Lane(self._address_width,
                                                                     conn.todo[0])
                conn.todo[0] = lane
            if lane.running >= lane.width:
                lane.waiting.append(conn)
                return False
            lane.running += 1
            conn.lanes.append(conn.todo.pop(0))
        return True

    def _admit(self, conn: _Connection) -> bool:
        address = conn.remote_addr or ""
        with self._guard:
            n = self._per_address.get(address, 0)
            if n >= MAX_PER_ADDRESS or self._open >= MAX_CONNECTIONS:
                return False
            self._per_address[address] = n + 1
            self._open += 1
        conn.address = address
        return True

    def forget(self, address: str) -> None:
        """A connection from ``address`` closed."""
        with self._guard:
            self._open -= 1
            n = self._per_address.get(address, 0) - 1
            if n > 0:
                self._per_address[address] = n
            else:
                self._per_address.pop(address, None)

    def lane_done(self, lane: _Lane) -> None:
        """A request in ``lane`` ended: its place goes to the oldest one waiting, which
        a worker runs once it is through every lane it needs."""
        with self._guard:
            if not lane.waiting:
                lane.running -= 1
                if not lane.running and self._address_lanes.get(lane.address) is lane:
                    del self._address_lanes[lane.address]
                return
            conn = lane.waiting.popleft()
            conn.lanes.append(conn.todo.pop(0))  # the place passes on: running unchanged
            ready = self._enter(conn)
        if ready:
            cheroot_server.HTTPServer.process_conn(self, conn)

    def stop(self):
        super().stop()
        waiting = []
        with self._guard:
            for lane in [*self._lanes.values(), *self._address_lanes.values()]:
                waiting += lane.waiting
                lane.waiting.clear()
        for conn in waiting:
            conn.close()


def make_server(app, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                threads: int = THREADS) -> HardenedServer:
    """A bound server (port 0 picks a free port; see ``server.bind_addr``); a ``Guard``
    app learns the address, to check ``Host`` headers against it."""
    server = HardenedServer((host, port), app, threads=threads)
    server.prepare()
    if isinstance(app, Guard):
        app.listening_on(*server.bind_addr[:2])
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
