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
