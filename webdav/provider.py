"""``RepoProvider``: the wsgidav DAVProvider that serves a ``Repo``."""

from __future__ import annotations

from wsgidav.dav_provider import DAVProvider

from herofossil.webdav import fastput
from herofossil.webdav.auth import UserDB
from herofossil.webdav.fs import RepoFS, status_fix
from herofossil.webdav.noise import DEFAULT_PATTERNS, NoiseStore


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

    def get_resource_inst(self, path: str, environ: dict):
        return self.fs.resource(path, environ)

    def custom_request_handler(self, environ, start_response, default_handler):
        method = environ.get("REQUEST_METHOD")
        if method == "PUT":
            answer = fastput.put(self, environ, start_response)
            if answer is not None:
                return answer
        elif method == "LOCK":
            with self.lock_gate.lock():
                return default_handler(environ, start_response)
        elif method in ("COPY", "MOVE"):
            start_response = status_fix(environ, start_response)
        return default_handler(environ, start_response)
