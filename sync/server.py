"""The sync server: our protocol as ``POST /sync`` over aiohttp, on the backend.

Who may do what (the same users as WebDAV, ``herofossil.store.users``):
- no users: anonymous pull and push from loopback addresses only;
- users: HTTP basic auth; read-only users pull, read-write users push too;
- ``public_read``: anonymous pull from anywhere (push still needs a user, or
  loopback when there are no users).
A wrong password is 401; a right one without the right is 403, as is a push
to a read-only server. Credentials are checked before the body is read.
Store work runs in a thread (LMDB calls block).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os

from aiohttp import web

from herofossil.errors import HeroFossilError, IntegrityError, SyncError
from herofossil.store.users import HostCheck, UserDB, parse_user_spec
from herofossil.sync import wire, xferserver
from herofossil.sync.backend import SyncBackend

log = logging.getLogger("herofossil.sync")


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def _who(request: web.Request, users) -> tuple[str | None, bool]:
    """(user name or None for anonymous, True when the credentials were wrong). A
    failure is counted and logged (``UserDB.login``); scrypt runs off the event loop."""
    header = request.headers.get("Authorization", "")
    if not header or not users:  # no users: everyone is anonymous
        return None, False
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        name, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        if not sep:
            raise ValueError("no password")
    except (ValueError, UnicodeDecodeError):
        return None, True
    if not await asyncio.to_thread(users.login, name, password, request.remote or "?"):
        return None, True
    return name, False


def _throttled(request: web.Request, users) -> web.Response | None:
    """429 for an address with too many failed logins lately (WebDAV's rule too)."""
    wait = users.throttle.retry_after(request.remote or "?") if users else 0
    if not wait:
        return None
    resp = _refuse(429, f"too many failed logins from this address: retry in {wait} s")
    resp.headers["Retry-After"] = str(wait)
    return resp


def make_app(repo, *, readonly: bool = False, users=None,
             public_read: bool = False) -> web.Application:
    """An aiohttp application serving ``repo`` over our sync protocol (``users``: a
    ``UserDB``; empty or None: anonymous from loopback)."""
    backend = SyncBackend(repo, readonly=readonly)
    if not readonly and not repo._env.readonly:
        backend.ensure_project()
    app = web.Application(client_max_size=wire.MAX_MESSAGE)
    app.on_response_prepare.append(_lean_headers)

    async def sync(request: web.Request) -> web.Response:
        refusal = _throttled(request, users) or _misdirected(request)
        if refusal is not None:
            return refusal
        if request.content_type.startswith(xferserver.CONTENT_PREFIX):  # Fossil's protocol
            local = _loopback(request.remote)
            failed = None if not users else (
                lambda name: users.failed_login(name, request.remote or "?"))
            return await xferserver.respond(request, backend, anon_write=local and not users,
                                            anon_read=public_read or (local and not users),
                                            failed_login=failed)
        user, wrong = await _who(request, users)
        if wrong:
            return _refuse(401, "wrong user name or password", auth=True)
        local = _loopback(request.remote)
        may_read = bool(user) or public_read or (local and not users)
        may_write = (users.can_write(user) if user else local and not users)
        if not may_read:
            if users:
                return _refuse(401, "this server needs a user name and password", auth=True)
            return _refuse(403, "anonymous sync is served to loopback addresses only (or "
                                "with --public-read, pulls from anywhere)")
        if request.content_type != wire.CONTENT_TYPE:
            return _refuse(415, f"expected {wire.CONTENT_TYPE}")
        body = await request.read()
        try:
            msg = wire.decode(body)
            if "push" in msg.header and not may_write:
                who = f"user {user!r} may only read" if user else "a push needs a user"
                return _refuse(403, f"{who}: nothing was stored")
            answer = await asyncio.get_running_loop().run_in_executor(
                None, backend.answer, msg)
        except PermissionError as exc:
            return _refuse(403, str(exc))
        except (SyncError, IntegrityError) as exc:
            return _refuse(400, str(exc))
        except HeroFossilError as exc:
            log.warning("sync request failed: %s", exc)
            return _refuse(500, str(exc))
        except Exception:  # a bug: the traceback goes to this server's log, not the peer
            log.exception("sync request failed")
            return _refuse(500, "internal error of the serving peer: its log has the details")
        return web.Response(body=wire.encode(answer), content_type=wire.CONTENT_TYPE)

    async def events(request: web.Request) -> web.Response:
        """Long poll: answers once the store has changed after ``after`` (its last insert
        sequence as the caller saw it), or after ``wait`` seconds (at most 60)."""
        refusal = _throttled(request, users) or _misdirected(request)
        if refusal is not None:
            return refusal
        user, wrong = await _who(request, users)
        local = _loopback(request.remote)
        if wrong or not (user or public_read or (local and not users)):
            return web.json_response({"error": "not allowed"}, status=401 if users else 403)
        try:
            after = int(request.query.get("after", "0"))
            wait = min(float(request.query.get("wait", "25")), 60.0)
        except ValueError:
            return web.json_response({"error": "after and wait are numbers"}, status=400)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            # The mark before the look: a commit in between wakes the wait at once.
            mark = data_mark(repo)
            ident = await asyncio.to_thread(backend.identity)
            if ident["last"] != after or asyncio.get_running_loop().time() >= deadline:
                return web.json_response({"last": ident["last"], "epoch": ident["epoch"]})
            await changed(repo, deadline, mark)

    hosts: list[HostCheck] = []  # made on the first request, from the bound address

    def _misdirected(request: web.Request) -> web.Response | None:
        """421 when an anonymous server is reached by a name that is not its own (a web
        page in a local browser, by DNS rebinding)."""
        if users:
            return None
        if not hosts:
            sock = request.transport.get_extra_info("sockname") if request.transport else None
            if not sock:
                return None
            hosts.append(HostCheck(sock[0], sock[1]))
        host = request.headers.get("Host")
        return None if hosts[0].allows(host) else _refuse(421, hosts[0].refusal(host))

    app.router.add_post("/sync", sync)
    app.router.add_post("/{path:.*}", sync)  # fossil posts to the path of the URL it was given
    app.router.add_get("/events", events)
    return app


async def _lean_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server`` header: a peer learns nothing from it, and a no-op sync is a few
    hundred bytes, HTTP included."""
    response.headers.popall("Server", None)


def data_mark(repo):
    """What changes when a commit writes the store's data file: its time stamp and size."""
    try:
        st = os.stat(os.path.join(repo.path, "data.mdb"))
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


async def changed(repo, deadline: float | None = None, since=None) -> None:
    """Return when the store's data file differs from ``since`` (a ``data_mark``; default:
    now), or at ``deadline`` (event loop time). Checks every 50 ms: a local system call,
    no network."""
    loop = asyncio.get_running_loop()
    first = data_mark(repo) if since is None else since
    while deadline is None or loop.time() < deadline:
        if data_mark(repo) != first:
            return
        await asyncio.sleep(0.05)


def _refuse(status: int, why: str, auth: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="herofossil"'} if auth else None
    return web.Response(status=status, body=wire.encode(wire.Message({"error": why})),
                        content_type=wire.CONTENT_TYPE, headers=headers)


async def start(repo, host: str = "127.0.0.1", port: int = 0, *, readonly: bool = False,
                users=None, public_read: bool = False):
    """Start serving; returns (runner, the port bound). Stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(make_app(repo, readonly=readonly, users=users,
                                    public_read=public_read), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    return runner, bound


def serve_forever(repo, host: str = "127.0.0.1", port: int = 0, *, readonly: bool = False,
                  users=None, public_read: bool = False, follow=(), ready=None) -> None:
    """Serve until interrupted, following the peers ``follow`` (URLs); ``ready(port)`` is
    called once listening."""
    from herofossil.sync.follow import follow as follow_peer

    async def main():
        runner, bound = await start(repo, host, port, readonly=readonly, users=users,
                                    public_read=public_read)
        if ready is not None:
            ready(bound)
        tasks = [asyncio.ensure_future(follow_peer(repo, url)) for url in follow]
        try:
            await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()

    asyncio.run(main())


def main(argv=None) -> int:
    """``python -m herofossil.sync.server STORE [--port N] [--readonly]``: serve one store
    (``herofossil serve`` serves it beside WebDAV); prints ``sync: URL`` when listening."""
    import argparse

    from herofossil.store.repo import Repo

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--readonly", action="store_true")
    p.add_argument("--public-read", action="store_true")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD[:ro|rw]")
    p.add_argument("--follow", action="append", default=[], metavar="URL",
                   help="keep in sync with this peer continuously (repeatable)")
    args = p.parse_args(argv)
    repo = Repo.open(args.store, readonly=args.readonly)
    users = UserDB()
    users.load(repo)
    for spec in args.user:
        users.add(*parse_user_spec(spec))

    def ready(port: int) -> None:
        print(f"sync: http://{args.host}:{port}/", flush=True)

    try:
        serve_forever(repo, args.host, args.port, readonly=args.readonly, users=users,
                      public_read=args.public_read, follow=args.follow, ready=ready)
    except KeyboardInterrupt:
        pass
    finally:
        repo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


class Background:
    """The sync server (and its followers) on an event loop in a thread of its own, beside
    another server (WebDAV's) in the same process."""

    def __init__(self, repo, host: str = "127.0.0.1", port: int = 0, *,
                 readonly: bool = False, users=None, public_read: bool = False, follow=()):
        import threading

        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0
        self.host = host

        async def main():
            from herofossil.sync.follow import follow as follow_peer

            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                runner, self.port = await start(repo, host, port, readonly=readonly,
                                                users=users, public_read=public_read)
            except BaseException as exc:  # e.g. the port is taken
                self._failed = exc
                self._ready.set()
                return
            self._ready.set()
            tasks = [asyncio.ensure_future(follow_peer(repo, url, self._stop))
                     for url in follow]
            try:
                await self._stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await runner.cleanup()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()),
                                        name="sync-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            self._thread.join()
            raise self._failed

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        """Stop serving and following (requests in flight finish)."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
