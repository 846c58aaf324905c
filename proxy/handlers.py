"""Request handlers for cached targets, job polling and purges: read the store, ask :mod:`proxy.policy`, act."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import assert_never

from aiohttp import web

from core import forwarding, lookup, netguard, policy
from core.policy import Headers
from core.problems import MethodNotAllowed, NotFound, Problem, problem_response
from core.records import JobRecord
from core.targets import host_port, normalize

from . import passthrough, prefer, responses
from .access import peer_address
from .cache_status import cache_status
from .dispatch import Started
from .services import SERVICES, Services

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{32}")
CACHEABLE_METHODS = ("GET", "HEAD")
CREDENTIALS = ("authorization", "cookie")


class LoopDetected(Problem):
    status = 508
    title = "Loop Detected"


async def serve_target(request: web.Request, url: str, *, api: bool = False) -> web.StreamResponse:
    """Answer for ``url`` from the cache, or start (or join) its fetch job and wait or answer 202.

    ``api`` marks ``/fetch?url=``: it only reads, and the request's own credentials are meant for grenier, never
    for the target. In forward and reverse mode other methods, and requests that carry credentials, are relayed
    straight upstream: they are never answered from nor stored into a shared entry (RFC 9111 §3.5).
    """
    svc = request.app[SERVICES]
    req_headers: Headers = tuple(request.headers.items())
    if forwarding.is_loop(req_headers, svc.pseudonym):
        raise LoopDetected(f"this request already went through {svc.pseudonym}: refusing to fetch it again")
    guarded = not svc.trusted(url)
    if guarded:
        netguard.check_host(*host_port(url), svc.guard)
    if request.method not in CACHEABLE_METHODS:
        if api:
            problem = MethodNotAllowed(f"{request.method} is not supported on /fetch: it serves GET and HEAD")
            problem.headers["Allow"] = ", ".join(CACHEABLE_METHODS)
            raise problem
        return await passthrough.relay(request, url, fwd="method")
    if not api and any(policy.values(req_headers, name) for name in CREDENTIALS):
        return await passthrough.relay(request, url, fwd="bypass", detail="request carries credentials")

    since = time.time()
    # Variants are selected by what the origin is sent (§4.1): the forwarded fields, not whatever the client wrote.
    sent = forwarding.for_job(req_headers, svc.settings.upstream.forward_headers)
    found = await lookup.find(svc.store, url, sent)
    decision = policy.decide(req_headers, found.entry.times if found.entry else None, since, svc.limits)
    match decision:
        case policy.Hit(ttl=ttl):
            assert found.entry is not None
            svc.counters.add("hits")
            field = cache_status(hit=True, ttl=ttl, detail="stale (max-stale)" if ttl < 0 else None)
            return responses.from_entry(req_headers, found.entry, field, pseudonym=svc.pseudonym)
        case policy.ServeStale(ttl=ttl):
            assert found.entry is not None
            svc.counters.add("hits")
            try:
                await start_fetch(svc, request, url, found, sent, since=since)
            except Problem as exc:  # the stale answer stands; the refresh waits for the next request
                log.info("background refresh of %s not started: %s", url, exc.detail)
            field = cache_status(hit=True, ttl=ttl, detail="stale-while-revalidate")
            return responses.from_entry(req_headers, found.entry, field, pseudonym=svc.pseudonym)
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
    if guarded:
        await netguard.resolve_and_check(*host_port(url), svc.guard)
    started = await start_fetch(svc, request, url, found, sent, since=since)
    svc.counters.add("refreshes" if fwd == "request" else "misses")
    if not api and policy.first(req_headers, "range") is not None:
        # No stored response answers this range: relay it now (never store a part as the whole); the job just
        # started stores the whole response for the next request. (/fetch never relays: its request's fields are
        # meant for grenier, not the target; its range is cut from the job's whole response instead.)
        return await passthrough.relay(request, url, fwd="bypass", detail="range request not answerable from cache")
    record = await _wait(svc, request, started.record)
    if started.joined and not record.pending and not _shareable(record, sent):
        # Collapsed onto a fetch whose response is not ours to use (another variant, or not shareable): fetch ours.
        started = await start_fetch(svc, request, url, found, sent, since=since, own=True)
        record = await _wait(svc, request, started.record)
    if not record.pending:
        return responses.outcome(
            req_headers, record, pseudonym=svc.pseudonym, fwd=fwd, collapsed=started.joined, detail=detail
        )
    return responses.accepted(record, fwd=fwd, collapsed=started.joined, detail=detail)


async def start_fetch(
    svc: Services,
    request: web.Request,
    url: str,
    found: lookup.Found,
    sent: Headers,
    *,
    since: float,
    own: bool = False,
) -> Started:
    """Start or join the fetch of ``url`` with the forwarded fields ``sent`` (``own``: a fetch no other request
    joins); a new fetch first passes the client's miss rate and the queue's backlog."""
    flight = f"{found.key}:own:{uuid.uuid4().hex}" if own else found.key
    svc.limiter.take(str(peer_address(request)))
    await svc.check_backlog()
    started = await svc.dispatcher.start(url, flight=flight, since=since, headers=sent)
    if started.joined:
        svc.counters.add("collapsed")
    return started


async def _wait(svc: Services, request: web.Request, record: JobRecord) -> JobRecord:
    wait = prefer.wait_seconds(request.headers.getall("Prefer", []), svc.wait_default, svc.settings.cache.max_wait)
    if wait > 0 and record.pending:
        return await svc.store.wait_job(record.id, wait) or record
    return record


def _shareable(record: JobRecord, sent: Headers) -> bool:
    """May a request that joined this job use its outcome? Failures and stored responses are shared; an unstored
    response belongs to the request that fetched it, and a variant to the requests it matches (§4.1)."""
    if record.state == "failed" or record.response is None:
        return True
    if not (record.stored or record.detail == "stale-if-error"):
        return False
    fields = policy.vary_fields(record.response.headers)
    if not fields or record.variant is None:
        return True
    return fields != ("*",) and policy.variant_key(fields, sent) == record.variant


#: Pages fetched for a client are served from grenier's own origin by /fetch and the job endpoint: sandbox them,
#: so that their scripts can never act as that origin (on grenier's control endpoints, say).
FOREIGN_CONTENT = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


async def fetch(request: web.Request) -> web.StreamResponse:
    """``GET /fetch?url=U``."""
    svc = request.app[SERVICES]
    svc.access.check_client(request)
    response = await serve_target(request, normalize(request.query.get("url")), api=True)
    response.headers.update(FOREIGN_CONTENT)
    return response


async def job(request: web.Request) -> web.StreamResponse:
    """``GET /_grenier/jobs/<id>``: 202 while pending, then the fetched response (or why there is none)."""
    svc = request.app[SERVICES]
    job_id = request.match_info["job_id"]
    record = await svc.store.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise NotFound(f"no job {job_id!r}: it never existed or its record has expired")
    if record.pending:
        return responses.accepted(record, fwd="uri-miss")
    response = responses.outcome(tuple(request.headers.items()), record, pseudonym=svc.pseudonym, fwd="uri-miss")
    response.headers.update(FOREIGN_CONTENT)
    return response


async def purge(request: web.Request, url: str) -> web.Response:
    """Admin: forget every stored variant of ``url``."""
    svc = request.app[SERVICES]
    svc.access.check_admin(request)
    await lookup.invalidate(svc.store, url)
    log.info("purged %s (admin request from %s)", url, peer_address(request))
    return web.json_response({"purged": url}, headers={"Cache-Control": "no-store"})


async def purge_endpoint(request: web.Request) -> web.Response:
    """``DELETE /_grenier/cache?url=U``."""
    return await purge(request, normalize(request.query.get("url")))
