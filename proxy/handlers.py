"""Request handlers for cached targets and job polling: they read the store, ask :mod:`proxy.policy`, act."""

from __future__ import annotations

import logging
import re
import time
from typing import assert_never

from aiohttp import web

from . import forwarding, lookup, passthrough, policy, prefer, responses
from .cache_status import cache_status
from .dispatch import Started
from .policy import Headers
from .problems import MethodNotAllowed, NotFound, problem_response
from .records import JobRecord
from .services import SERVICES, Services
from .targets import normalize

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{32}")
CACHEABLE_METHODS = ("GET", "HEAD")


async def serve_target(request: web.Request, url: str, *, api: bool = False) -> web.StreamResponse:
    """Answer for ``url`` from the cache, or start (or join) its fetch job and wait or answer 202.

    ``api`` marks ``/fetch?url=``, which only reads; in forward and reverse mode other methods are relayed.
    """
    svc = request.app[SERVICES]
    if request.method not in CACHEABLE_METHODS:
        if api:
            problem = MethodNotAllowed(f"{request.method} is not supported on /fetch: it serves GET and HEAD")
            problem.headers["Allow"] = ", ".join(CACHEABLE_METHODS)
            raise problem
        return await passthrough.relay(request, url, fwd="method")
    req_headers: Headers = tuple(request.headers.items())
    since = time.time()
    found = await lookup.find(svc.store, url, req_headers)
    decision = policy.decide(req_headers, found.entry.times if found.entry else None, since, svc.limits)
    match decision:
        case policy.Hit(ttl=ttl):
            assert found.entry is not None
            svc.counters.add("hits")
            detail = "stale (max-stale)" if ttl < 0 else None
            return responses.from_entry(req_headers, found.entry, cache_status(hit=True, ttl=ttl, detail=detail))
        case policy.ServeStale(ttl=ttl):
            assert found.entry is not None
            svc.counters.add("hits")
            await _start(svc, url, found, req_headers, since=since)
            field = cache_status(hit=True, ttl=ttl, detail="stale-while-revalidate")
            return responses.from_entry(req_headers, found.entry, field)
        case policy.Forward(fwd=fwd, detail=detail):
            if fwd == "uri-miss" and found.vary_miss:
                fwd = "vary-miss"
        case _:
            assert_never(decision)

    if policy.CacheControl.of(req_headers).only_if_cached:
        return problem_response(
            504,
            "Not Cached",
            "only-if-cached was requested and no usable response is stored",
            headers={"Cache-Status": cache_status(fwd=fwd, detail="only-if-cached")},
        )
    started = await _start(svc, url, found, req_headers, since=since)
    svc.counters.add("refreshes" if fwd == "request" else "misses")
    if policy.first(req_headers, "range") is not None:
        # No stored response answers this range: relay it now (never store a part as the whole); the job just
        # started stores the whole response for the next request.
        return await passthrough.relay(request, url, fwd="bypass", detail="range request not answerable from cache")
    record = await _wait(svc, request, started.record)
    if record.response is not None and not record.pending and not _same_variant(record, req_headers):
        # Collapsed onto a fetch for another variant of this URL: fetch ours.
        started = await _start(svc, url, found, req_headers, since=since, variant_of=record)
        record = await _wait(svc, request, started.record)
    if not record.pending:
        return responses.outcome(req_headers, record, fwd=fwd, collapsed=started.joined, detail=detail)
    return responses.accepted(record, fwd=fwd, collapsed=started.joined, detail=detail)


async def _start(
    svc: Services,
    url: str,
    found: lookup.Found,
    req_headers: Headers,
    *,
    since: float,
    variant_of: JobRecord | None = None,
) -> Started:
    flight = lookup.flight_key(found, req_headers)
    if variant_of is not None and variant_of.response is not None:
        fields = policy.vary_fields(variant_of.response.headers)
        flight = f"{flight}:v:{policy.variant_key(fields, req_headers)}"
    started = await svc.dispatcher.start(url, flight=flight, since=since, headers=forwarding.for_job(req_headers))
    if started.joined:
        svc.counters.add("collapsed")
    return started


async def _wait(svc: Services, request: web.Request, record: JobRecord) -> JobRecord:
    wait = prefer.wait_seconds(request.headers.getall("Prefer", []), svc.wait_default, svc.settings.cache.max_wait)
    if wait > 0 and record.pending:
        return await svc.store.wait_job(record.id, wait) or record
    return record


def _same_variant(record: JobRecord, req_headers: Headers) -> bool:
    """Was the job's response selected by request fields that match ours (§4.1)?"""
    assert record.response is not None
    fields = policy.vary_fields(record.response.headers)
    if not fields or record.variant is None:
        return True
    return fields != ("*",) and policy.variant_key(fields, req_headers) == record.variant


async def fetch(request: web.Request) -> web.StreamResponse:
    """``GET /fetch?url=U``."""
    return await serve_target(request, normalize(request.query.get("url")), api=True)


async def job(request: web.Request) -> web.StreamResponse:
    """``GET /_grenier/jobs/<id>``: 202 while pending, then the fetched response (or why there is none)."""
    job_id = request.match_info["job_id"]
    record = await request.app[SERVICES].store.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise NotFound(f"no job {job_id!r}: it never existed or its record has expired")
    if record.pending:
        return responses.accepted(record, fwd="uri-miss")
    return responses.outcome(tuple(request.headers.items()), record, fwd="uri-miss")
