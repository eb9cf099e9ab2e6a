"""The ``Repo`` that ``herofossil.open`` returns: the store plus configuration reads.

The parsers load on first use, so plain reads and writes (and the command
line) do not pay for importing them.
"""

from __future__ import annotations

from typing import Any

from herofossil.store.repo import Repo as StoreRepo


class Repo(StoreRepo):
    """A versioned store with typed configuration reads and change watching."""

    def config(self, path: str, at: str | None = None) -> Any:
        """``path`` parsed by extension: Playbook (.hero), dict (.toml), Document (.md)."""
        from herofossil import config

        return config.load_config(self, path, at)

    def playbook(self, pattern: str, at: str | None = None):
        """One Playbook of the actions of every HeroScript/Markdown file matching ``pattern``."""
        from herofossil import config

        return config.load_playbook(self, pattern, at)

    def watch(self, prefix: str = "", *, interval: float = 0.2, branch: str | None = None):
        """A Watcher reporting new check-ins (from any process) that touch ``prefix``."""
        from herofossil.store.watch import Watcher

        return Watcher(self, prefix, interval=interval, branch=branch)

    def check(self, at: str | None = None) -> tuple[int, list]:
        """Parse every structured file at ``at``: (files checked, ParseErrors)."""
        from herofossil import config

        return config.check_version(self, at)

    # ---- peer sync (``herofossil.sync``)
    def pull(self, peer: str, *, progress=None):
        """Fetch what the peer (a saved name or a URL; ``fossil+http://`` for a Fossil
        server) has and this store lacks; returns the ``Report`` (round trips, bytes,
        artifacts each way, new check-ins). Raises ``SyncError``."""
        return self._exchange(peer, pull=True, push=False, progress=progress)

    def push(self, peer: str, *, progress=None):
        """Send what this store has and the peer lacks; returns the ``Report``."""
        return self._exchange(peer, pull=False, push=True, progress=progress)

    def sync(self, peer: str, *, progress=None):
        """Pull and push with the peer in one exchange; returns the ``Report``."""
        return self._exchange(peer, pull=True, push=True, progress=progress)

    def _exchange(self, peer: str, *, pull: bool, push: bool, progress):
        from herofossil.sync import peers

        ((_, result),) = peers.sync_each(self, [peer], pull=pull, push=push,
                                         progress=progress)
        if isinstance(result, BaseException):
            raise result
        return result
