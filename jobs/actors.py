"""The Dramatiq actor: a thin shell that resolves its resources and calls :func:`jobs.fetch_job.run`.

Actors are declared per broker (``declare``) rather than at import time, so the proxy, the worker processes and
the tests each bind them to the broker they built, never to Dramatiq's implicit global one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq import Actor, Broker
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from core.settings import Settings
from core.store import Store
from core.upstream import new_session

from . import fetch_job

log = logging.getLogger(__name__)

ACTOR_NAME = "fetch"


class JobRuntime:
    """Resources the actor needs, created lazily on the worker's event loop (where they must live)."""

    def __init__(self, settings: Settings, make_store: Callable[[], Store], owns_store: bool = True) -> None:
        self.settings = settings
        self._make_store = make_store
        self._owns_store = owns_store
        self._env: fetch_job.JobEnv | None = None
        self._lock = asyncio.Lock()

    async def env(self) -> fetch_job.JobEnv:
        if self._env is None:
            async with self._lock:
                if self._env is None:
                    limits = fetch_job.fetch_limits(self.settings)
                    self._env = fetch_job.JobEnv(
                        self.settings,
                        self._make_store(),
                        guarded_session=new_session(limits, self.settings.guard),
                        origin_session=new_session(limits, None),
                    )
        return self._env

    async def close(self) -> None:
        env, self._env = self._env, None
        if env is None:
            return
        await env.guarded_session.close()
        await env.origin_session.close()
        if self._owns_store:
            await env.store.close()


class _CloseRuntime(Middleware):
    """Closes the runtime's client sessions and store once the worker threads are done, on the event loop."""

    def __init__(self, runtime: JobRuntime) -> None:
        self.runtime = runtime

    def after_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        # After the worker threads have finished their jobs; middleware "after" hooks run in reverse order, so
        # this runs before AsyncIO's, while the event loop is still up.
        thread = get_event_loop_thread()
        if thread is not None:
            try:
                thread.run_coroutine(self.runtime.close())
            except Exception as exc:  # shutting down anyway; say what leaked
                log.warning("closing job resources failed: %s", exc)


def declare(broker: Broker, runtime: JobRuntime) -> Actor:  # type: ignore[type-arg]
    async def fetch(job_id: str, url: str, options: dict[str, Any] | None = None) -> None:
        await fetch_job.run(await runtime.env(), job_id, url, options)

    broker.add_middleware(_CloseRuntime(runtime))
    decorate = dramatiq.actor(actor_name=ACTOR_NAME, broker=broker, queue_name=runtime.settings.jobs.queue)
    actor: Actor = decorate(fetch)  # type: ignore[type-arg]
    return actor
