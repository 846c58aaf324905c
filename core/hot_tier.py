"""The hot tier: a server process's own copy of the entries (and body chunks) it serves most, in front of Redis.

A hit on a hot entry costs no Redis round trip. It is kept coherent three ways:

* every entry write or deletion in any process publishes the entry's key (``grenier:entry-changed``), and each
  server process drops that key from its hot tier when the notification arrives;
* nothing stays hot longer than ``cache.hot_seconds``, so a lost notification (a dropped subscription, a Redis
  restart) is bounded: after that window the entry is read from Redis again;
* when a process's subscription is (re)established the whole tier is dropped, since notifications may have been
  missed while it was down.

Freshness is never cached here: the entry's times are, and ``policy.decide`` computes age and freshness at serve
time, so the hot tier never serves stale what the store would not. Body chunks are immutable (every body write takes
a new version), so they need no notification at all.

The tier lives on one event loop and takes no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from .telemetry import HOT_TIER_LOOKUPS

V = TypeVar("V")
_HIT = HOT_TIER_LOOKUPS.labels("hit")
_MISS = HOT_TIER_LOOKUPS.labels("miss")


class HotTier(Generic[V]):
    """A least-recently-used map bounded by bytes, whose values expire ``ttl`` seconds after they were read."""

    def __init__(
        self, max_bytes: int, max_item_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, tuple[V, int, float]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str, *, count_miss: bool = True) -> V | None:
        """The value held for ``key``; ``count_miss=False`` for a look that a counted read follows when it fails
        (the lean hit path's), so that one request is one hit or one miss."""
        item = self._items.get(key)
        if item is None:
            if count_miss:
                self.misses += 1
                _MISS.inc()
            return None
        value, _, expires = item
        if expires <= self._clock():
            self.drop(key)
            if count_miss:
                self.misses += 1
                _MISS.inc()
            return None
        self._items.move_to_end(key)
        self.hits += 1
        _HIT.inc()
        return value

    def put(self, key: str, value: V, size: int) -> None:
        """Hold ``value`` (``size`` bytes) unless it is larger than one item may be."""
        if size > self.max_item_bytes or size > self.max_bytes:
            return
        self.drop(key)
        self._items[key] = (value, size, self._clock() + self.ttl)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped, _) = self._items.popitem(last=False)
            self._bytes -= dropped

    def drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
