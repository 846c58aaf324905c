"""Operator endpoints under ``/_grenier/``: stats, liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from .lean import LEAN
from .refusals import problem_response
from .services import SERVICES

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0


async def stats(request: web.Request) -> web.Response:
    """Admin: shared counters."""
    svc = request.app[SERVICES]
    svc.access.check_admin(request)
    totals = await svc.counters.totals()
    lean = request.app.get(LEAN)
    process = {"pid": os.getpid(), "lean_hits": lean.served if lean is not None else 0}
    return web.json_response(
        {
            "mode": "embedded" if svc.settings.embedded else "redis",
            **totals,
            "store": await svc.store.usage(),
            "process": process,
        },
        headers={"Cache-Control": "no-store"},
    )


async def health(request: web.Request) -> web.Response:
    """Liveness of the process that answers, named by its pid: with several server processes on one port
    (``server.processes``) the kernel picks one per connection, and the pid says which one a probe reached and
    matches the start-up line it logged."""
    return web.json_response({"status": "ok", "pid": os.getpid()}, headers={"Cache-Control": "no-store"})


async def ready(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, str] = {}
    for name, check in (
        ("store", svc.store.ping()),
        ("broker", svc.queue.ping()),
    ):
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await check
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness: %s unreachable: %r", name, exc)
            checks[name] = f"unreachable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return web.json_response({"status": "ready", **checks}, headers={"Cache-Control": "no-store"})
    failing = ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok")
    return problem_response(503, "Not Ready", f"not ready: {failing}", checks=checks)
