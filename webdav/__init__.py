"""WebDAV drive: the store mounted as a folder, every change a check-in.

``make_app`` builds the wsgidav application over a ``Repo`` (provider in
``provider``, file-system view in ``fs``, resources in ``resources``, URL
layout in ``routes``); ``server`` runs it with cheroot. Locks, dead
properties, persistent users and OS noise files live in the store's
unversioned metadata (``locks``, ``props``, ``auth``, ``noise``).
"""

from __future__ import annotations

from herofossil.webdav.server import DEFAULT_PORT, make_app, make_server, serve_forever

__all__ = ["DEFAULT_PORT", "make_app", "make_server", "serve_forever"]
