"""Request handlers for cached targets and job polling: they read the store, ask :mod:`proxy.policy`, act."""

from __future__ import annotations

import re
import time
from typing import assert_never

from aiohttp import web

from . import policy, prefer, responses
from .cache_status import cache_status
from .problems import MethodNotAllowed, NotFound, problem_response
from .services import SERVICES
from .targets import cache_key, normalize

JOB_ID = re.compile(r"[0-9a-f]{32}")
CACHEABLE_METHODS = ("GET", "HEAD")


async def serve_target(request: web.Request, url: str) -> web.StreamResponse:
    """Answer for ``url`` from the cache, or start (or join) its fetch job and wait or answer 202."""
    svc = request.app[SERVICES]
    if request.method not in CACHEABLE_METHODS:
        problem = MethodNotAllowed(f"{request.method} is not supported here; grenier serves GET and HEAD")
        problem.headers["Allow"] = ", ".join(CACHEABLE_METHODS)
        raise problem
    req_headers = tuple(request.headers.items())
    force = policy.forces_refresh(req_headers)
    entry = None if force else await svc.store.get_entry(cache_key(url))
    decision = policy.decide(req_headers, entry.times if entry else None, time.time())
    match decision:
        case policy.Hit(age=_, ttl=ttl):
            assert entry is not None
            svc.counters.add("hits")
            return responses.stored_response(entry, cache_status(hit=True, ttl=ttl))
        case policy.Forward(fwd=fwd, detail=detail):
            pass
        case _:
            assert_never(decision)

    if policy.CacheControl.of(req_headers).only_if_cached:
        return problem_response(
            504,
            "Not Cached",
            "only-if-cached was requested and no usable response is stored",
            headers={"Cache-Status": cache_status(fwd=fwd, detail="only-if-cached")},
        )
    started = await svc.dispatcher.start(url, force=force)
    svc.counters.add("refreshes" if force else "misses")
    if started.joined:
        svc.counters.add("collapsed")
    record = started.record
    wait = prefer.wait_seconds(request.headers.getall("Prefer", []), svc.wait_default, svc.settings.cache.max_wait)
    if wait > 0 and record.pending:
        record = await svc.store.wait_job(record.id, wait) or record
    if not record.pending:
        return responses.outcome(record, fwd=fwd, collapsed=started.joined, detail=detail)
    return responses.accepted(record, fwd=fwd, collapsed=started.joined, detail=detail)


async def fetch(request: web.Request) -> web.StreamResponse:
    """``GET /fetch?url=U``."""
    return await serve_target(request, normalize(request.query.get("url")))


async def job(request: web.Request) -> web.StreamResponse:
    """``GET /_grenier/jobs/<id>``: 202 while pending, then the fetched response (or why there is none)."""
    job_id = request.match_info["job_id"]
    record = await request.app[SERVICES].store.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise NotFound(f"no job {job_id!r}: it never existed or its record has expired")
    if record.pending:
        return responses.accepted(record, fwd="uri-miss")
    return responses.outcome(record, fwd="uri-miss")
