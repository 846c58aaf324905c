"""What a worker process's jobs run with: the store and the :class:`~core.upstream.Upstream`, created lazily on the
workers' event loop (aiohttp sessions and redis-py clients belong to the loop that made them) and closed on it
after the worker threads are done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core.queue import JobMessage
from core.settings import Settings
from core.store import Store
from core.upstream import Upstream

from . import fetch_job


class JobRuntime:
    def __init__(self, settings: Settings, make_store: Callable[[], Store], *, owns_store: bool = True) -> None:
        """``make_store`` builds (or hands over) the store; ``owns_store``: close it with the runtime (the worker
        process's own store), or leave it to its owner (the embedded server's store, shared with its workers)."""
        self.settings = settings
        self._make_store = make_store
        self._owns_store = owns_store
        self._env: fetch_job.JobEnv | None = None
        self._lock = asyncio.Lock()

    async def env(self) -> fetch_job.JobEnv:
        if self._env is None:
            async with self._lock:
                if self._env is None:
                    self._env = fetch_job.JobEnv(self.settings, self._make_store(), Upstream(self.settings))
        return self._env

    async def run(self, message: JobMessage) -> None:
        """The queue's job handler."""
        await fetch_job.run(await self.env(), message)

    async def close(self) -> None:
        env, self._env = self._env, None
        if env is None:
            return
        await env.upstream.close()
        if self._owns_store:
            await env.store.close()
