"""Per-client miss rate: a token bucket per peer address, in this process's memory.

It bounds how fast one client can make grenier fetch (each miss is upstream work); hits are never limited.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from core.problems import Problem


class TooManyMisses(Problem):
    status = 429
    title = "Too Many Requests"


class MissRateLimiter:
    #: Buckets kept at most (least recently used dropped first), so a scan of many addresses cannot grow memory.
    max_clients = 65536

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one miss for ``client`` or raise 429 with the seconds until one is available."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            wait = max(1, int((1 - tokens) / self.rate + 0.999))
            raise TooManyMisses(
                f"client {client} exceeded server.miss_rate ({self.rate:g} misses/s)",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[client] = (tokens - 1, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
