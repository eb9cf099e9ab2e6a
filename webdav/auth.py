"""WebDAV basic auth over the store's users (``herofossil.store.users``)."""

from __future__ import annotations

from wsgidav.dc.base_dc import BaseDomainController

from herofossil.store.users import (  # noqa: F401 - the names WebDAV's callers use
    NAMESPACE,
    REALM,
    User,
    UserDB,
    check_password,
    hash_password,
    list_users,
    parse_new_user,
    parse_user_spec,
    remove_user,
    store_user,
)


class RepoDomainController(BaseDomainController):
    """wsgidav domain controller over a ``UserDB`` (basic auth only; HTTPS is the proxy's job)."""

    def __init__(self, wsgidav_app, config):
        super().__init__(wsgidav_app, config)
        self.users: UserDB = config["herofossil"]["users"]

    def __str__(self) -> str:
        return "RepoDomainController"

    def get_domain_realm(self, path_info, environ):
        return REALM

    def require_authentication(self, realm, environ):
        return bool(self.users)

    def basic_auth_user(self, realm, user_name, password, environ):
        # Behind the guard, which authenticates first, wsgidav never calls this.
        return self.users.verify(user_name, password)

    def supports_http_digest_auth(self):
        return False
