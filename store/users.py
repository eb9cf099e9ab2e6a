"""The users of a store's servers (WebDAV and sync): scrypt-hashed passwords, read or
read-write access.

Passwords are never kept in plain text: each user holds an scrypt hash with
its own salt (in memory, and in the store's metadata, namespace
``webdav-users``, named when only WebDAV had users, for persistent users).
scrypt costs ~40 ms by design, so a successful login is remembered as an
HMAC of the password under a key made at start-up and never written
anywhere; later requests compare that HMAC in constant time instead of
re-running scrypt. A failure always costs one scrypt: a wrong password for
a user seen before, and an unknown user (checked against a dummy record),
cost what a first login does, so timing tells nothing. Each scrypt holds
16 MiB (128 * r * N bytes), so at most ``SCRYPT_AT_ONCE`` run at once.
Failed logins are logged (one line on stderr) and counted per client
address; an address with ``LoginThrottle.allowed`` failures in its window
waits until the oldest leaves it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from herofossil.errors import UsageError

NAMESPACE = "webdav-users"
REALM = "herofossil"
_N, _R, _P = 2**14, 8, 1
SCRYPT_AT_ONCE = 2
_scrypt_slots = threading.BoundedSemaphore(SCRYPT_AT_ONCE)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    with _scrypt_slots:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password``."""
    salt = salt or os.urandom(16)
    digest = _scrypt(password, salt, _N, _R, _P, 32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, record: str) -> bool:
    """True when ``password`` matches a ``hash_password`` record (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = record.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(slots=True)
class User:
    """A user: name, password hash and whether it may write."""

    name: str
    record: str
    can_write: bool = True


def parse_user_spec(spec: str) -> tuple[str, str, bool]:
    """``NAME:PASSWORD[:ro|rw]`` -> (name, password, can_write)."""
    name, sep, rest = spec.partition(":")
    if not sep or not name or not rest:
        raise UsageError(f"bad user {spec!r}: write NAME:PASSWORD[:ro|rw]")
    password, access = rest, "rw"
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("ro", "rw"):
        password, access = head, tail
    if not password:
        raise UsageError(f"bad user {spec!r}: the password is empty")
    return name, password, access == "rw"


def parse_new_user(spec: str) -> tuple[str, str | None, bool]:
    """``NAME[:ro|rw]`` -> (name, None, can_write): the password is asked for. The old
    ``NAME:PASSWORD[:ro|rw]`` form still parses (password given)."""
    name, sep, rest = spec.partition(":")
    if not name:
        raise UsageError(f"bad user {spec!r}: write NAME[:ro|rw]")
    if not sep or rest in ("ro", "rw"):
        return name, None, rest != "ro"
    return parse_user_spec(spec)


class LoginThrottle:
    """Failed logins per client address, each remembered for ``window`` seconds; an
    address with ``allowed`` of them waits (``retry_after``) until the oldest expires."""

    def __init__(self, allowed: int = 5, window: float = 60.0, addresses: int = 4096):
        self.allowed = allowed
        self.window = window
        self.addresses = addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds ``address`` must wait before its next login attempt (0: none)."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[address]
                return 0
            if len(times) < self.allowed:
                return 0
            return max(1, int(times[0] + self.window - now + 0.999))

    def failed(self, address: str) -> None:
        """Count a failed login from ``address``."""
        with self._lock:
            if address not in self._failures and len(self._failures) >= self.addresses:
                self._failures.pop(next(iter(self._failures)))  # the longest-known address
            times = self._failures.setdefault(address, deque(maxlen=self.allowed))
            times.append(time.monotonic())

    def succeeded(self, address: str) -> None:
        """A login from ``address`` worked: forget its failures."""
        with self._lock:
            self._failures.pop(address, None)


class UserDB:
    """The users a server accepts; empty means anonymous access."""

    def __init__(self):
        self._users: dict[str, User] = {}
        self._key = os.urandom(32)
        self._seen: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._dummy: str | None = None
        self.throttle = LoginThrottle()

    def __bool__(self) -> bool:
        return bool(self._users)

    def __contains__(self, name: str) -> bool:
        return name in self._users

    def add(self, name: str, password: str, can_write: bool = True) -> User:
        """Add (or replace) a user given a plain password, which is hashed at once."""
        return self.add_hashed(name, hash_password(password), can_write)

    def add_hashed(self, name: str, record: str, can_write: bool = True) -> User:
        """Add (or replace) a user from a stored hash record."""
        user = User(name, record, can_write)
        with self._lock:
            self._users[name] = user
            self._seen.pop(name, None)
        return user

    def load(self, repo) -> int:
        """Add the persistent users kept in ``repo``'s metadata; returns how many."""
        n = 0
        for name, raw in repo.plumbing.meta_items(NAMESPACE):
            rec = json.loads(raw)
            self.add_hashed(name, rec["hash"], rec.get("access", "rw") == "rw")
            n += 1
        return n

    def can_write(self, name: str | None) -> bool:
        """True when ``name`` may change content (anonymous may when there are no users)."""
        if not self._users:
            return True
        user = self._users.get(name or "")
        return bool(user and user.can_write)

    def verify(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s: scrypt, or the keyed HMAC of a login that
        worked before; every failure costs one scrypt (see the module doc)."""
        user = self._users.get(name)
        if user is None:
            if self._dummy is None:
                self._dummy = hash_password(os.urandom(16).hex())
            check_password(password, self._dummy)  # what a known name costs
            return False
        mac = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        seen = self._seen.get(name)
        if seen is not None and hmac.compare_digest(seen, mac):
            return True
        if not check_password(password, user.record):
            return False
        with self._lock:
            self._seen[name] = mac
        return True

    def login(self, name: str, password: str, address: str) -> bool:
        """``verify``, counting and logging a failure (one line on stderr: time, address,
        user); the caller asks ``throttle.retry_after(address)`` first."""
        if self.verify(name, password):
            self.throttle.succeeded(address)
            return True
        self.failed_login(name, address)
        return False

    def failed_login(self, name: str, address: str) -> None:
        """Count a failed login (by any scheme, Fossil's too) and log it: one line on
        stderr with the time, the address and the user."""
        self.throttle.failed(address)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sys.stderr.write(f"{stamp} herofossil: failed login from {address} "
                         f"as {name[:64]!r}\n")
        sys.stderr.flush()


def store_user(repo, name: str, password: str, can_write: bool = True) -> None:
    """Keep a user (hashed) in the store's metadata, for every later ``serve``."""
    if not name or ":" in name or not name.isprintable():
        raise UsageError(f"bad user name {name!r}: no ':' and no control characters")
    rec = {"hash": hash_password(password), "access": "rw" if can_write else "ro"}
    repo.plumbing.meta_put(NAMESPACE, name, json.dumps(rec).encode())


def remove_user(repo, name: str) -> bool:
    """Forget a persistent user; True when it existed."""
    return repo.plumbing.meta_delete(NAMESPACE, name)


def list_users(repo) -> list[tuple[str, str]]:
    """(name, 'ro' or 'rw') of the persistent users."""
    return [(k, json.loads(v).get("access", "rw")) for k, v in repo.plumbing.meta_items(NAMESPACE)]


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class HostCheck:
    """The DNS-rebinding rule of an anonymous server (WebDAV and sync alike): a ``Host``
    header that names this server's port must name it by a loopback name or the address
    it listens on. Another port, or none, is what no web page sends to this port."""

    def __init__(self, host: str, port: int):
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        self.names = frozenset({*LOOPBACK_NAMES, host.lower()})
        self.port = port
        self._accepted: set[str] = set()  # Host values seen and accepted (at most 64)

    def allows(self, host: str | None) -> bool:
        """False for a Host header naming another site on this server's port."""
        if host is None or host in self._accepted:
            return True
        name, port = host.strip().lower(), 80
        if name.rpartition(":")[2].isdigit() and not name.endswith("]"):
            name, _, digits = name.rpartition(":")
            port = int(digits)
        if port != self.port or name in self.names:
            if len(self._accepted) < 64:
                self._accepted.add(host)
            return True
        return False

    def refusal(self, host: str) -> str:
        """Why a Host header was refused (421 Misdirected Request)."""
        return (f"this anonymous server answers to 127.0.0.1:{self.port}, localhost:"
                f"{self.port} or [::1]:{self.port}, not to Host {host[:100]!r}")

