"""Users given Fossil access: the login secrets Fossil's xfer login needs.

Fossil's login card proves knowledge of ``SHA1(PROJECTCODE/USER/PASSWORD)``
(the *secret*), so a server must keep that secret, which is
password-equivalent: whoever reads it can log in as the user over Fossil's
protocol. It is therefore kept only for users explicitly given Fossil access
(``grant``), in the store's local metadata (namespace ``fossil-users``,
never synced); every other user keeps only the scrypt record of
``herofossil.store.users``. A user's secret names the Fossil project code, so
it is granted after the store has its project.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from herofossil.errors import UsageError

NAMESPACE = "fossil-users"


def secret(project_code: str, name: str, password: str) -> str:
    """Fossil's shared secret for ``name`` (the password as is when it is 40 hex digits,
    as Fossil's client sends it)."""
    if len(password) == 40 and all(c in "0123456789abcdef" for c in password):
        return password
    return hashlib.sha1(f"{project_code}/{name}/{password}".encode()).hexdigest()


def grant(repo, name: str, password: str, can_write: bool = True) -> None:
    """Give ``name`` Fossil access with ``password`` (read-write, or read-only): keeps its
    password-equivalent secret in the store's metadata."""
    from herofossil.sync.backend import SyncBackend

    if not name or any(c.isspace() for c in name) or ":" in name:
        raise UsageError(f"bad user name {name!r}")
    if not password:
        raise UsageError("the password is empty")
    backend = SyncBackend(repo)
    backend.ensure_project()
    code, _ = backend.fossil_codes()
    rec = {"secret": secret(code, name, password), "access": "rw" if can_write else "ro",
           "project": code}
    repo.plumbing.meta_put(NAMESPACE, name, json.dumps(rec).encode())


def revoke(repo, name: str) -> bool:
    """Remove ``name``'s Fossil access (its secret); True when it had it."""
    return repo.plumbing.meta_delete(NAMESPACE, name)


def granted(repo) -> list[tuple[str, str]]:
    """(name, 'ro' or 'rw') of the users with Fossil access."""
    return [(k, json.loads(v).get("access", "rw"))
            for k, v in repo.plumbing.meta_items(NAMESPACE)]


def check_login(repo, project_code: str, name: str, nonce: str, signature: str,
                rest: bytes) -> bool | None:
    """Check a login card: None when it fails, else whether the user may write.

    ``rest`` is the message after the login line: ``nonce`` must be its SHA1 and
    ``signature`` the SHA1 of ``nonce`` + the user's secret.
    """
    raw = repo.plumbing.meta_get(NAMESPACE, name)
    if not hmac.compare_digest(hashlib.sha1(rest).hexdigest(), nonce.lower()):
        return None
    if raw is None:
        return None
    rec = json.loads(raw)
    if rec.get("project") != project_code:  # granted under another project code
        return None
    want = hashlib.sha1((nonce + rec["secret"]).encode()).hexdigest()
    if not hmac.compare_digest(want, signature.lower()):
        return None
    return rec.get("access", "rw") == "rw"
