"""Which handler answers a request: the route table, and the middleware that tells forward-proxy (absolute-form)
and reverse-proxy requests apart before aiohttp routes on the path."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from core import forwarding
from core.targets import join_origin, normalize

from . import control, dashboard, handlers, metrics, purge, ui
from .locations import names_own_job
from .refusals import problem_response
from .services import SERVICES
from .wire import check_host_field, check_version

CONTROL_PREFIX = "/_grenier"


@web.middleware
async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Forward-proxy (absolute-form) and reverse-proxy requests, told apart before routing.

    aiohttp routes on the path alone, so ``GET http://any/fetch`` would otherwise hit ``/fetch``: the raw target
    is checked first. Control endpoints stay under ``/_grenier/`` in every mode.
    """
    check_version(request)
    check_host_field(request)
    raw = request.raw_path
    svc = request.app[SERVICES]
    if forwarding.is_loop(request.headers.items(), svc.pseudonym):
        # Whatever name or address brought it here, grenier sent this request itself: no endpoint (an admin one
        # above all, which would act with grenier's own loopback authority) may run it.
        raise handlers.LoopDetected(f"this request already went through {svc.pseudonym}: refusing it")
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
            return await purge.purge_url(request, url)
        svc.access.check_client(request)
        if request.method in {"GET", "HEAD"} and names_own_job(request, url, svc.settings.server):
            # A job location grenier handed out, asked for through the proxy: grenier answers it (routed on the
            # path, like the same request in origin-form), it never fetches it.
            return await handler(request)
        return await handlers.serve_target(request, url)
    origin = svc.settings.upstream.origin
    if origin and not (request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/")):
        url = join_origin(origin, raw)
        if request.method == "PURGE":
            return await purge.purge_url(request, url)
        return await handlers.serve_target(request, url)
    return await handler(request)


def add_routes(app: web.Application, *, reverse: bool) -> None:
    """The endpoints grenier itself answers; in reverse mode ``/`` and ``/fetch`` belong to the origin."""
    r = app.router
    if not reverse:
        r.add_get("/", ui.index)
        r.add_get("/fetch", handlers.fetch)
    r.add_get(f"{CONTROL_PREFIX}", dashboard.dashboard)
    r.add_get(f"{CONTROL_PREFIX}/", dashboard.dashboard)
    r.add_get(f"{CONTROL_PREFIX}/dashboard.json", dashboard.data)
    r.add_get(f"{CONTROL_PREFIX}/dashboard.js", dashboard.script)
    r.add_get(f"{CONTROL_PREFIX}/fetch", handlers.fetch)
    r.add_get(f"{CONTROL_PREFIX}/ui/fetch", ui.submit)
    r.add_get(f"{CONTROL_PREFIX}/ui/jobs/{{job_id}}", ui.job_page)
    r.add_get(f"{CONTROL_PREFIX}/jobs/{{job_id}}", handlers.job)
    r.add_get(f"{CONTROL_PREFIX}/stats", control.stats)
    r.add_get(f"{CONTROL_PREFIX}/metrics", metrics.endpoint)
    r.add_delete(f"{CONTROL_PREFIX}/cache", purge.delete)
    r.add_get(f"{CONTROL_PREFIX}/cache", purge.inspect)
    r.add_get(f"{CONTROL_PREFIX}/health", control.health)
    r.add_get(f"{CONTROL_PREFIX}/ready", control.ready)
