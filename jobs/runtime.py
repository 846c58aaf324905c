"""What a worker process's jobs run with: the store and the :class:`~core.upstream.Upstream`, created lazily on the
workers' event loop (aiohttp sessions and redis-py clients belong to the loop that made them) and closed on it
after the worker threads are done; and the per-origin slots that keep one slow origin from taking every worker
thread (``jobs.max_per_origin``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.queue import Defer, JobMessage
from core.settings import Settings
from core.store import Store
from core.upstream import Upstream

from . import fetch_job

log = logging.getLogger(__name__)

#: How long a job whose origin is at its cap waits (on the queue, holding no thread) before it is taken again.
DEFER_SECONDS = 0.25
#: Times one job is run again in its process after the store came back from an outage that interrupted it.
OUTAGE_RERUNS = 3
#: Seconds between two pings of a store that is down, while a job waits for it.
OUTAGE_POLL = 0.5


def origin_of(url: str) -> str:
    """The origin a fetch goes to: scheme, host and port (RFC 6454), the unit ``jobs.max_per_origin`` counts."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class OriginSlots:
    """How many fetches run to each origin in this process, up to ``cap`` at once.

    Every job of a process runs on the one event loop of its worker threads, so taking and giving a slot (no
    ``await`` in between) needs no lock.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.running: Counter[str] = Counter()

    def take(self, origin: str) -> bool:
        if self.running[origin] >= self.cap:
            return False
        self.running[origin] += 1
        return True

    def give(self, origin: str) -> None:
        self.running[origin] -= 1
        if self.running[origin] <= 0:
            del self.running[origin]


class JobRuntime:
    def __init__(self, settings: Settings, make_store: Callable[[], Store], *, owns_store: bool = True) -> None:
        """``make_store`` builds (or hands over) the store; ``owns_store``: close it with the runtime (the worker
        process's own store), or leave it to its owner (the embedded server's store, shared with its workers)."""
        self.settings = settings
        self._make_store = make_store
        self._owns_store = owns_store
        self._env: fetch_job.JobEnv | None = None
        self._lock = asyncio.Lock()
        self.slots = OriginSlots(settings.jobs.max_per_origin)

    async def env(self) -> fetch_job.JobEnv:
        if self._env is None:
            async with self._lock:
                if self._env is None:
                    self._env = fetch_job.JobEnv(self.settings, self._make_store(), Upstream(self.settings))
        return self._env

    async def run(self, message: JobMessage) -> Defer | None:
        """The queue's job handler: the job, if its origin has a free slot in this process; else put it back."""
        origin = origin_of(message.url)
        if not self.slots.take(origin):
            return Defer(DEFER_SECONDS)
        try:
            env = await self.env()
            for rerun in range(OUTAGE_RERUNS + 1):
                try:
                    await fetch_job.run(env, message)
                    break
                except (RedisConnectionError, RedisTimeoutError):
                    if rerun == OUTAGE_RERUNS or not await self._store_back(env.store):
                        raise
                    log.info("job %s: the store is back; running the job again", message.job_id)
        finally:
            self.slots.give(origin)
        return None

    async def _store_back(self, store: Store) -> bool:
        """Wait (up to ``jobs.time_limit``) for a store that is down to answer again: whether it did.

        A job the store's outage interrupted is run again here, in the same process, once the store is back (it is
        idempotent: a record that ended or vanished meanwhile is left alone). Left to the broker's retries instead,
        its re-enqueue would go to the same unreachable Redis and fail, and the message would be acknowledged
        without ever running again: the job lost, its record pending for its pollers until it expired."""
        deadline = time.monotonic() + self.settings.jobs.time_limit
        while time.monotonic() < deadline:
            try:
                await store.ping()
            except (RedisConnectionError, RedisTimeoutError):
                await asyncio.sleep(OUTAGE_POLL)
                continue
            return True
        return False

    async def close(self) -> None:
        env, self._env = self._env, None
        if env is None:
            return
        await env.upstream.close()
        if self._owns_store:
            await env.store.close()
