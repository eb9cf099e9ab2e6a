"""A dict-like view of one namespace of the store's unversioned metadata.

wsgidav's lock storage and property manager keep their state in a mapping
whose values are re-assigned on every change (the ``shelve`` contract); this
mapping honours that contract over ``Repo.meta_*``, so every assignment is one
durable LMDB write and the state survives restarts without a side file.

Keys are URLs, and a quoted URL of a long path outgrows what LMDB can key:
such a key is stored under its hash, with the key itself kept in the value.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

from herofossil.errors import InvalidPathError
from herofossil.store.plumbing import meta_key

_BYTES = "$bytes"
_HASHED = "\x01"  # prefix of a hashed key (no URL holds a control character)


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return {_BYTES: base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(f"cannot store {type(obj).__name__} in webdav metadata")


def _hook(obj: dict) -> Any:
    if len(obj) == 1 and _BYTES in obj:
        return base64.b64decode(obj[_BYTES])
    return obj


def encode(value: Any) -> bytes:
    """JSON bytes of ``value`` (bytes kept as base64)."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode("utf-8")


def decode(raw: bytes) -> Any:
    """The value ``encode`` wrote."""
    return json.loads(raw, object_hook=_hook)


class MetaMapping(MutableMapping):
    """``str -> JSON value`` kept in ``repo.meta`` under ``namespace``."""

    def __init__(self, repo, namespace: str):
        self.repo = repo
        self.namespace = namespace

    def _stored(self, key: str) -> tuple[str, bool]:
        """(the key stored, True when it is the hash of ``key``)."""
        try:
            meta_key(self.namespace, key)
            return key, False
        except InvalidPathError:
            return _HASHED + hashlib.sha256(key.encode("utf-8")).hexdigest(), True

    def _unwrap(self, raw: bytes, hashed: bool) -> tuple[str | None, Any]:
        value = decode(raw)
        return (value["key"], value["value"]) if hashed else (None, value)

    def __getitem__(self, key: str) -> Any:
        stored, hashed = self._stored(key)
        raw = self.repo.plumbing.meta_get(self.namespace, stored)
        if raw is None:
            raise KeyError(key)
        return self._unwrap(raw, hashed)[1]

    def __setitem__(self, key: str, value: Any) -> None:
        stored, hashed = self._stored(key)
        self.repo.plumbing.meta_put(self.namespace, stored,
                                    encode({"key": key, "value": value} if hashed else value))

    def __delitem__(self, key: str) -> None:
        stored, _ = self._stored(key)
        if not self.repo.plumbing.meta_delete(self.namespace, stored):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return (isinstance(key, str)
                and self.repo.plumbing.meta_get(self.namespace, self._stored(key)[0]) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self.items()])

    def __len__(self) -> int:
        return sum(1 for _ in self.repo.plumbing.meta_items(self.namespace))

    def items(self):  # one scan instead of one lookup per key
        out = []
        for k, raw in self.repo.plumbing.meta_items(self.namespace):
            if k.startswith(_HASHED):
                out.append(self._unwrap(raw, True))
            else:
                out.append((k, decode(raw)))
        return out

    def sync(self) -> None:
        """Nothing to do: every assignment is already durable."""
