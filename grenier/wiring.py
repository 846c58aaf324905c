"""The wiring: the one place that knows both the server (``proxy``) and the workers (``jobs``).

It chooses the store and the job queue from the settings and, in embedded mode, runs the workers inside the server
process on the same store. Everything else sees only :class:`~core.store.Store` and :class:`~core.queue.JobQueue`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from aiohttp import web

from core.hot_tier import HotTier
from core.memory_store import MemoryStore
from core.queue import JobQueue
from core.settings import Settings
from core.store import RedisStore, Store
from jobs.queues import open_queue
from jobs.runtime import JobRuntime
from proxy.app import server_app


def create_app(settings: Settings) -> web.Application:
    """The aiohttp app for ``grenier serve``: embedded (in-process store and workers) or on Redis."""
    return server_app(settings, partial(backends, settings))


@asynccontextmanager
async def backends(settings: Settings) -> AsyncIterator[tuple[Store, JobQueue]]:
    """The store and the queue for the settings' mode, with the in-process workers when embedded."""
    store: Store
    cache = settings.cache
    if settings.embedded:
        store = MemoryStore(cache.memory_bytes)
    else:
        hot = HotTier[Any](cache.hot_bytes, cache.hot_entry_bytes, cache.hot_seconds) if cache.hot_bytes else None
        store = RedisStore.open(settings.redis, hot)
    queue = open_queue(settings)
    workers = None
    if settings.embedded:
        runtime = JobRuntime(settings, lambda: store, owns_store=False)
        workers = queue.start_workers(runtime.run, threads=settings.jobs.threads, on_stop=runtime.close)
    try:
        yield store, queue
    finally:
        if workers is not None:
            await asyncio.to_thread(workers.stop, settings.jobs.time_limit)
        await queue.close()
        await store.close()
