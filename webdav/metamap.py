"""A dict-like view of one namespace of the store's unversioned metadata.

wsgidav's lock storage and property manager keep their state in a mapping
whose values are re-assigned on every change (the ``shelve`` contract); this
mapping honours that contract over ``Repo.meta_*``, so every assignment is one
durable LMDB write and the state survives restarts without a side file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

_BYTES = "$bytes"


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

    def __getitem__(self, key: str) -> Any:
        raw = self.repo.plumbing.meta_get(self.namespace, key)
        if raw is None:
            raise KeyError(key)
        return decode(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.repo.plumbing.meta_put(self.namespace, key, encode(value))

    def __delitem__(self, key: str) -> None:
        if self.repo.plumbing.meta_get(self.namespace, key) is None:
            raise KeyError(key)
        self.repo.plumbing.meta_delete(self.namespace, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.repo.plumbing.meta_get(self.namespace, key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self.repo.plumbing.meta_items(self.namespace)])

    def __len__(self) -> int:
        return sum(1 for _ in self.repo.plumbing.meta_items(self.namespace))

    def items(self):  # one scan instead of one lookup per key
        return [(k, decode(v)) for k, v in self.repo.plumbing.meta_items(self.namespace)]

    def sync(self) -> None:
        """Nothing to do: every assignment is already durable."""
