"""The one bounded cache (store/lru.py) that every cache of the store and the importer uses."""

from herofossil.store.lru import LRU


def test_an_item_budget_drops_the_least_recently_stored():
    cache = LRU(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # storing again makes "a" the newest
    cache.put("c", 4)
    assert "b" not in cache and cache.get("a") == 3 and cache["c"] == 4 and len(cache) == 2


def test_a_byte_budget_counts_each_value_once():
    cache = LRU(max_bytes=10)
    cache.put("a", b"12345")
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert len(cache) == 2
    cache.put("c", b"1")
    assert "a" not in cache and cache.get("b") == b"12345" and cache.get("c") == b"1"


def test_get_with_refresh_keeps_an_entry_in_use():
    cache = LRU(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a", refresh=True) == 1
    cache.put("c", 3)
    assert "a" in cache and "b" not in cache
    assert cache.get("b", "none") == "none"


def test_clear_forgets_entries_and_their_bytes():
    cache = LRU(max_bytes=4, size_of=len)
    cache.put("a", b"1234")
    cache.clear()
    cache.put("b", b"1234")
    assert len(cache) == 1 and cache.get("b") == b"1234"
