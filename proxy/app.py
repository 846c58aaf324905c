"""The aiohttp application: routes, the two middlewares, and the lifecycle of the store, broker and workers.

``create_app(settings)`` is the only wiring: embedded and Redis mode differ here (which store, which broker,
whether workers run in-process) and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from dramatiq import Worker

from core.logs import redact
from core.problems import Problem, from_problem, problem_response
from core.settings import Settings
from core.store import MemoryStore, RedisStore, Store
from core.targets import join_origin, normalize
from core.upstream import new_session
from jobs.actors import JobRuntime, declare
from jobs.broker import make_broker, pending, ping
from jobs.fetch_job import fetch_limits

from . import control, handlers, metrics, ui
from .access import AccessRules
from .cache_status import cache_status
from .dispatch import Dispatcher
from .limits import MissRateLimiter
from .services import SERVICES, Services
from .stats import Counters
from .wire import ProblemRunner, check_host_field, runner_kwargs

log = logging.getLogger("grenier")

CONTROL_PREFIX = "/_grenier"


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal leaves as ``application/problem+json``; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except Problem as exc:
        response = from_problem(exc)
        if exc.status == 413:  # the unread body makes the connection useless: close it after the answer
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            detail = f"nothing here: {request.path!r} is not a grenier endpoint"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path!r}"
        else:
            detail = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(exc.status, exc.reason, detail, headers=headers or None)
    except asyncio.CancelledError:
        raise
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return problem_response(500, "Internal Server Error", f"an internal error occurred (incident {incident})")


@web.middleware
async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Forward-proxy (absolute-form) and reverse-proxy requests, told apart before routing.

    aiohttp routes on the path alone, so ``GET http://any/fetch`` would otherwise hit ``/fetch``: the raw target
    is checked first. Control endpoints stay under ``/_grenier/`` in every mode.
    """
    check_host_field(request)
    raw = request.raw_path
    svc = request.app[SERVICES]
    if request.method == "CONNECT":
        return problem_response(
            405,
            "Method Not Allowed",
            "CONNECT tunnelling is refused: grenier caches plain http:// requests; send https:// URLs to /fetch?url=",
            headers={"Allow": "GET, HEAD"},
        )
    if not raw.startswith("/"):
        url = normalize(raw)
        if request.method == "PURGE":
            return await handlers.purge(request, url)
        svc.access.check_client(request)
        return await handlers.serve_target(request, url)
    origin = svc.settings.upstream.origin
    if origin and not (request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/")):
        url = join_origin(origin, raw)
        if request.method == "PURGE":
            return await handlers.purge(request, url)
        return await handlers.serve_target(request, url)
    return await handler(request)


def _routes(app: web.Application, reverse: bool) -> None:
    r = app.router
    if not reverse:
        r.add_get("/", ui.index)
        r.add_get("/fetch", handlers.fetch)
    r.add_get(f"{CONTROL_PREFIX}", ui.index)
    r.add_get(f"{CONTROL_PREFIX}/", ui.index)
    r.add_get(f"{CONTROL_PREFIX}/fetch", handlers.fetch)
    r.add_get(f"{CONTROL_PREFIX}/ui/fetch", ui.submit)
    r.add_get(f"{CONTROL_PREFIX}/ui/jobs/{{job_id}}", ui.job_page)
    r.add_get(f"{CONTROL_PREFIX}/jobs/{{job_id}}", handlers.job)
    r.add_get(f"{CONTROL_PREFIX}/stats", control.stats)
    r.add_get(f"{CONTROL_PREFIX}/metrics", metrics.endpoint)
    r.add_delete(f"{CONTROL_PREFIX}/cache", handlers.purge_endpoint)
    r.add_get(f"{CONTROL_PREFIX}/health", control.health)
    r.add_get(f"{CONTROL_PREFIX}/ready", control.ready)


async def _default_cache_status(request: web.Request, response: web.StreamResponse) -> None:
    """RFC 9211 on every response: what the handlers did not explain was not a cache matter at all."""
    if "Cache-Status" not in response.headers:
        response.headers["Cache-Status"] = cache_status(fwd="bypass")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[metrics.metrics_middleware, problems_middleware, proxy_middleware])
    app[metrics.METRICS] = metrics.Metrics()
    app.on_response_prepare.append(_default_cache_status)
    _routes(app, reverse=bool(settings.upstream.origin))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store: Store = MemoryStore() if settings.embedded else RedisStore.from_url(settings.redis.url)
        broker = make_broker(settings)
        actor = declare(broker, JobRuntime(settings, lambda: store, owns_store=False))
        worker: Worker | None = None
        if settings.embedded:
            worker = Worker(
                broker, worker_threads=settings.jobs.threads, worker_timeout=int(settings.jobs.poll_interval * 1000)
            )
            worker.start()

        async def send(job_id: str, url: str, options: dict[str, Any]) -> None:
            # actor.send is a blocking broker call (a Redis round trip in Redis mode): keep it off the loop.
            await asyncio.to_thread(actor.send, job_id, url, options)

        counters = Counters(store)
        counters.start()
        limits = fetch_limits(settings)
        app[SERVICES] = Services(
            settings,
            store,
            Dispatcher(settings, store, send),
            counters,
            broker_ping=lambda: ping(broker),
            pending_jobs=lambda: pending(broker, settings.jobs.queue),
            guarded_session=new_session(limits, settings.guard),
            origin_session=new_session(limits, None),
            access=AccessRules.build(settings.server.allow_clients, settings.server.proxy_users, settings.admin.token),
            limiter=MissRateLimiter(settings.server.miss_rate, settings.server.miss_burst),
        )
        try:
            yield
        finally:
            svc = app[SERVICES]
            await svc.guarded_session.close()
            await svc.origin_session.close()
            await counters.stop()
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            await asyncio.to_thread(broker.close)
            await store.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    """Run until cancelled (SIGINT/SIGTERM), logging one start-up line with the mode and address."""
    server = settings.server
    runner = ProblemRunner(
        create_app(settings),
        **runner_kwargs(server.max_line_bytes, server.max_field_bytes, server.keepalive_timeout),
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    mode = "embedded (in-process store and workers)" if settings.embedded else f"redis {redact(settings.redis.url)}"
    role = f"reverse proxy for {settings.upstream.origin}" if settings.upstream.origin else "forward proxy"
    log.info("grenier serving on http://%s:%d · mode: %s · %s", host, port, mode, role)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
