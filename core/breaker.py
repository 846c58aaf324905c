"""A circuit breaker in front of Redis: once the store is known to be unreachable, fail at once instead of letting
every request pay a connection attempt or a command timeout, and find out in the background when it is back.

Without it, a paused Redis (``SIGSTOP``: connections accepted, nothing answered) holds every request for the command
timeout (2 s), and a stopped one costs a connection attempt per request and a logged error per request. With it:

* the first connection failure or command timeout *trips* the breaker (logged once: the store is down);
* while it is open, every command fails at once with :class:`StoreDown` (a redis-py ``ConnectionError``, so the
  one mapping of store errors to ``503`` + ``Retry-After`` in ``proxy/refusals.py`` covers it);
* a background task *probes* the server on a connection of its own (``PING``, bounded by ``PROBE_TIMEOUT``) every
  ``PROBE_INTERVAL``; the first answer *mends* the breaker (logged once: the store is back) and commands flow again.

:class:`GuardedRetry` is how redis-py consults it: every command, pipeline, connect, health check and pub/sub read
of a connection goes through the connection's ``Retry`` object. It also retries a command once, on a fresh
connection, when its pooled connection turns out to be dead (a Redis restarted since it was opened), so no request
fails on a stale connection; a timeout is not retried (a wedged server would double the wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds between two probes of a store that is down (so it is found back within about this much).
PROBE_INTERVAL = 0.25
#: How long one probe waits for its ``PING`` (connecting included).
PROBE_TIMEOUT = 0.5


class StoreDown(RedisConnectionError):
    """A command refused at once: the store is known to be unreachable (the breaker is open)."""


class Breaker:
    """Is the store reachable? One per client (its pool and its fast reads share it), used on one event loop.

    ``probe`` is a coroutine that raises unless the store answers; it runs on its own connection, never through
    the breaker."""

    def __init__(self, probe: Callable[[], Awaitable[None]], *, name: str = "Redis") -> None:
        self.probe = probe
        self.name = name
        self.down_since: float | None = None
        self._prober: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self.down_since is not None

    def check(self) -> None:
        """Raise :class:`StoreDown` while the store is known to be down."""
        if self.down_since is not None:
            raise StoreDown(f"{self.name} is unreachable (since {time.monotonic() - self.down_since:.1f} s)")

    def trip(self, exc: BaseException) -> None:
        """A connection failed or a command timed out: the store is down until a probe says otherwise."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        log.warning("%s unreachable (%s): answering 503 at once, probing every %g s", self.name, exc, PROBE_INTERVAL)
        self._prober = asyncio.get_running_loop().create_task(self._probe_until_back(), name="grenier-store-probe")

    def mend(self) -> None:
        if self.down_since is None:
            return
        log.warning("%s reachable again after %.1f s", self.name, time.monotonic() - self.down_since)
        self.down_since = None

    async def _probe_until_back(self) -> None:
        while self.down_since is not None:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self.probe()
            except Exception as exc:  # still down: say so only at debug level (the state did not change)
                log.debug("%s probe failed: %s", self.name, exc)
                continue
            self.mend()

    async def close(self) -> None:
        task, self._prober = self._prober, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def __deepcopy__(self, memo: dict[int, Any]) -> Breaker:
        """redis-py deep-copies a connection's ``Retry``; every connection must still share this one breaker."""
        return self


class GuardedRetry(Retry):
    """redis-py's ``Retry`` for a store connection: refuse at once while ``breaker`` is open, retry once (at once,
    on a fresh connection) after a ``ConnectionError``, and trip the breaker when that fails too, or on a
    timeout."""

    def __init__(self, breaker: Breaker) -> None:
        super().__init__(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        self.breaker = breaker

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[_T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> _T:
        self.breaker.check()
        try:
            return await super().call_with_retry(do, fail, is_retryable, with_failure_count)
        except StoreDown:
            raise
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.breaker.trip(exc)
            raise
