"""The users of a store's servers (WebDAV and sync): scrypt-hashed passwords, read or
read-write access.

Passwords are never kept in plain text: each user holds an scrypt hash with
its own salt (in memory, and in the store's metadata, namespace
``webdav-users``, named when only WebDAV had users, for persistent users).
scrypt costs ~40 ms by design, so a successful login is remembered as an
HMAC of the password under a key made at start-up and never written
anywhere; later requests compare that HMAC in constant time instead of
re-running scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass

from herofossil.errors import UsageError

NAMESPACE = "webdav-users"
REALM = "herofossil"
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password``."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, record: str) -> bool:
    """True when ``password`` matches a ``hash_password`` record (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = record.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
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


class UserDB:
    """The users a server accepts; empty means anonymous access."""

    def __init__(self):
        self._users: dict[str, User] = {}
        self._key = os.urandom(32)
        self._seen: dict[str, bytes] = {}
        self._lock = threading.Lock()

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
        """True when ``password`` is ``name``'s (scrypt once, then a keyed HMAC)."""
        user = self._users.get(name)
        if user is None:
            hash_password(password)  # same cost for unknown names: no user enumeration
            return False
        mac = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        seen = self._seen.get(name)
        if seen is not None:
            return hmac.compare_digest(seen, mac)
        if not check_password(password, user.record):
            return False
        with self._lock:
            self._seen[name] = mac
        return True


def store_user(repo, name: str, password: str, can_write: bool = True) -> None:
    """Keep a user (hashed) in the store's metadata, for every later ``serve``."""
    if not name or ":" in name:
        raise UsageError(f"bad user name {name!r}")
    rec = {"hash": hash_password(password), "access": "rw" if can_write else "ro"}
    repo.plumbing.meta_put(NAMESPACE, name, json.dumps(rec).encode())


def remove_user(repo, name: str) -> bool:
    """Forget a persistent user; True when it existed."""
    if repo.plumbing.meta_get(NAMESPACE, name) is None:
        return False
    repo.plumbing.meta_delete(NAMESPACE, name)
    return True


def list_users(repo) -> list[tuple[str, str]]:
    """(name, 'ro' or 'rw') of the persistent users."""
    return [(k, json.loads(v).get("access", "rw")) for k, v in repo.plumbing.meta_items(NAMESPACE)]
