"""A worked example of an infrastructure module reading its configuration from the store.

The module runs services declared as HeroScript anywhere under ``services/``::

    !!zinit.service name:web cmd:'python -m http.server' port:8080
    !!zinit.service name:worker cmd:'./work.sh' autostart:false

It declares the actions it reads, loads and validates them from the store
(a bad value is a ParseError naming file and line), and reloads when a
check-in touches ``services/`` — from this process or any other.
"""

from __future__ import annotations

from herofossil.parsers.spec import ActionSpec, Field, load_all

SERVICE = ActionSpec("zinit.service", {
    "name": Field("str", required=True),
    "cmd": Field("str", required=True),
    "port": Field("u32"),
    "autostart": Field("bool", default=True),
    "restart": Field("str", default="always", choices=("always", "never", "on-failure")),
})


class ServiceModule:
    """Keeps ``services`` (name -> settings) equal to what the store declares."""

    PATTERN = "services/**/*.hero"

    def __init__(self, repo):
        self.repo = repo
        self.services: dict[str, dict] = {}
        self.watcher = repo.watch("services")
        self.reload()

    def reload(self) -> dict[str, dict]:
        """Load and validate every declared service; a bad file raises ParseError."""
        loaded = load_all(self.repo.playbook(self.PATTERN), [SERVICE], actor="zinit")
        services = {}
        for action, values in loaded:
            values["declared_in"] = f"{action.file}:{action.line}"
            services[values["name"]] = values
        self.services = services
        return services

    def follow(self, timeout: float | None = None) -> bool:
        """Wait for a change under services/ and reload; False when ``timeout`` passed."""
        if not self.watcher.wait(timeout):
            return False
        self.reload()
        return True
