"""The aiohttp application around a store and a job queue it is handed: middlewares, routes, the services handlers
reach, and serving it.

The server never chooses or builds its store and queue: ``grenier.wiring`` does (embedded or Redis), and hands
them over as an async context manager that this app enters at start-up and leaves at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web

from core.eventloop import loop_name
from core.logs import backends
from core.queue import JobQueue
from core.settings import Settings
from core.store import Store
from core.upstream import Upstream

from . import metrics
from .access import AccessRules
from .access_log import access_logger
from .cache_status import cache_status
from .client_address import ProxyTrust
from .dispatch import Dispatcher
from .lean import LEAN, LeanHits
from .miss_rate import MissRateLimiter
from .refusals import problems_middleware
from .routing import add_routes, proxy_middleware
from .services import SERVICES, Services
from .stats import Counters
from .wire import ProblemRunner, close_after_http10_framing, runner_kwargs

log = logging.getLogger("grenier")

Backends = Callable[[], AbstractAsyncContextManager[tuple[Store, JobQueue]]]
"""Opens the store and the job queue for the app's lifetime (and whatever runs behind them, such as workers)."""


def server_app(settings: Settings, backends: Backends) -> web.Application:
    app = web.Application(middlewares=[metrics.metrics_middleware, problems_middleware, proxy_middleware])
    app[metrics.METRICS] = metrics.Metrics()
    name = settings.server.pseudonym

    async def default_cache_status(request: web.Request, response: web.StreamResponse) -> None:
        """RFC 9211 on every response: what the handlers did not explain was not a cache matter at all."""
        if "Cache-Status" not in response.headers:
            response.headers["Cache-Status"] = cache_status(name, fwd="bypass")

    own_field = settings.cache.targeted_field

    async def strip_own_targeted_field(request: web.Request, response: web.StreamResponse) -> None:
        """RFC 9213 §2.1: grenier's own targeted field is addressed to grenier alone, so no response (a hit, a
        job's outcome, a relay) passes it on; ``CDN-Cache-Control`` is left for the caches downstream."""
        if own_field:
            response.headers.popall(own_field, None)

    app.on_response_prepare.append(default_cache_status)
    app.on_response_prepare.append(strip_own_targeted_field)
    app.on_response_prepare.append(close_after_http10_framing)
    add_routes(app, reverse=bool(settings.upstream.origin))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with backends() as (store, queue):
            counters = Counters(store)
            counters.start()
            upstream = Upstream(settings)
            server = settings.server
            app[SERVICES] = Services(
                settings,
                store,
                queue,
                upstream,
                Dispatcher(settings, store, queue),
                counters,
                access=AccessRules.build(
                    server.allow_clients,
                    server.proxy_users,
                    settings.admin.token,
                    server.trusted_proxies,
                    server.client_address_field,
                ),
                miss_rate=MissRateLimiter(server.miss_rate, server.miss_burst),
            )
            if server.lean_hits:
                app[LEAN] = LeanHits(settings, store, upstream, counters, app[metrics.METRICS])
            try:
                yield
            finally:
                await upstream.close()
                await counters.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def shutdown_grace(settings: Settings) -> float:
    """How long a stopping server lets its requests finish: the longest is one waiting for its job
    (``cache.max_wait``) or one relayed upstream (``upstream.total_timeout``)."""
    return max(settings.cache.max_wait, settings.upstream.total_timeout)


async def serve(app: web.Application, settings: Settings, *, reuse_port: bool) -> None:
    """Run ``app`` until cancelled (SIGINT/SIGTERM), logging one start-up line with the mode, the address, the event
    loop and the process.

    ``reuse_port``: bind with SO_REUSEPORT, so that several server processes share the address and the kernel
    spreads new connections among them; off for a lone process, so that a second one started by mistake fails to
    bind instead of quietly taking half the connections.
    """
    server = settings.server
    trust = ProxyTrust.build(server.trusted_proxies, server.client_address_field)
    runner = ProblemRunner(
        app,
        **{
            **runner_kwargs(server.max_line_bytes, server.max_field_bytes, server.keepalive_timeout),
            **access_logger(settings, trust),
        },
        shutdown_timeout=shutdown_grace(settings),
    )
    await runner.setup()
    if LEAN in app:
        runner.answer_lean_hits(app[LEAN])
    # From here the app has started (its store and queue are open): a cancellation at any later point, even while
    # binding, must still close them.
    try:
        site = web.TCPSite(runner, server.host, server.port, reuse_port=reuse_port)
        await site.start()
        mode = backends(settings)
        role = f"reverse proxy for {settings.upstream.origin}" if settings.upstream.origin else "forward proxy"
        log.info(
            "grenier serving on http://%s:%d · mode: %s · %s · loop: %s · pid %d",
            server.host,
            server.port,
            mode,
            role,
            loop_name(asyncio.get_running_loop()),
            os.getpid(),
        )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
