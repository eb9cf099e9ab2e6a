"""``LRU``: the one bounded cache of the project (parsed manifests, records, contents).

Every cache here holds immutable things (content-addressed bytes, parsed
artifacts, records checked against their stored bytes), so an entry is never
stale: the only question is which to drop, and the answer is the least
recently stored one once a count or byte budget is passed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRU:
    """A dict bounded by ``max_items`` entries and/or ``max_bytes`` (``size_of`` each value).

    ``put`` makes an entry the newest; ``get`` does too with ``refresh``. Safe to
    share between threads: a plain ``get`` takes no lock, every change takes one.
    """

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None,
                 size_of: Callable[[Any], int] = len):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None, *, refresh: bool = False) -> Any:
        """The value kept for ``key``, or ``default``; ``refresh`` makes it the newest."""
        value = self._items.get(key, default)
        if refresh and value is not default:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
        return value

    def __getitem__(self, key: Hashable) -> Any:
        return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` for ``key`` as the newest entry, dropping the oldest past the budget."""
        with self._lock:
            items = self._items
            if self.max_bytes is not None:
                old = items.pop(key, None)
                if old is not None:
                    self._bytes -= self._size_of(old)
                self._bytes += self._size_of(value)
            items[key] = value
            items.move_to_end(key)
            while self.max_items is not None and len(items) > self.max_items:
                self._drop_oldest()
            while self.max_bytes is not None and self._bytes > self.max_bytes and items:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, dropped = self._items.popitem(last=False)
        if self.max_bytes is not None:
            self._bytes -= self._size_of(dropped)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
