"""Request handlers for cached targets and job polling: read the store, ask :mod:`core.policy`, act (purges and
inspection: :mod:`proxy.purge`).

``serve_target`` reads the clock once and routes: a request the cache must not answer is relayed
(:func:`_relay_reason`), a usable stored response is served (:func:`_hit`, :func:`_serve_stale`), anything else
goes down the miss path (:func:`_miss`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import assert_never

from aiohttp import web

from core import forwarding, lookup, policy
from core.counts import Count
from core.outcome import Fetched
from core.policy import Headers
from core.problems import MethodNotAllowed, NotFound, Problem
from core.records import JobRecord, StoredResponse
from core.targets import names_self, normalize

from . import passthrough, prefer, responses
from .access_log import JOB_ID_KEY
from .cache_status import cache_status
from .dispatch import Admit, Started
from .refusals import problem_response
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
    now = time.time()
    req_headers: Headers = tuple(request.headers.items())
    relay = _relay_reason(svc, request.method, url, req_headers, api=api)
    if relay is not None:
        return await passthrough.relay(request, url, *relay)
    # Variants are selected by what the origin is sent (§4.1): the forwarded fields, not whatever the client wrote.
    sent = forwarding.for_job(req_headers, svc.settings.upstream.forward_headers)
    found = await lookup.find(svc.store, url, sent)
    decision = policy.decide(req_headers, found.entry.times if found.entry else None, now, svc.settings.cache)
    try:
        match decision:
            case policy.Hit():
                assert found.entry is not None
                return await _hit(svc, req_headers, found.entry, decision, now)
            case policy.ServeStale():
                assert found.entry is not None
                return await _serve_stale(svc, request, url, found, sent, stale=decision, now=now)
            case policy.Forward(fwd=fwd, detail=detail):
                if fwd == "uri-miss" and found.vary_miss:
                    fwd = "vary-miss"
                return await _miss(svc, request, url, found, sent, now=now, fwd=fwd, detail=detail, api=api)
            case _:
                assert_never(decision)
    except responses.BodyGone:
        # The entry outlived its body's chunks (evicted first): forget it, and this request is a miss.
        log.warning("stored body of %s is gone; dropping its entry", url)
        await svc.store.delete_entry(found.key)
        gone = lookup.Found(None, found.key, found.index)
        return await _miss(svc, request, url, gone, sent, now=now, fwd="uri-miss", detail="stored body gone", api=api)


def refuse_loop(svc: Services, url: str, req_headers: Headers) -> None:
    """A loop (508): a request that already went through grenier, or a target that is grenier itself, by any of
    its addresses (``core.targets.names_self``). Every path that fetches for a client asks this first."""
    if forwarding.is_loop(req_headers, svc.pseudonym):
        raise LoopDetected(f"this request already went through {svc.pseudonym}: refusing to fetch it again")
    server = svc.settings.server
    if names_self(url, server.host, server.port):
        raise LoopDetected(
            f"{url} is grenier itself (listening on {server.host}:{server.port}): refusing to fetch from itself"
        )


def _relay_reason(
    svc: Services, method: str, url: str, req_headers: Headers, *, api: bool
) -> tuple[str, str | None] | None:
    """Refuse loops and targets the SSRF guard refuses by their spelling; say why a request goes straight upstream
    (its ``fwd`` and detail), or ``None`` when the cache may answer it."""
    refuse_loop(svc, url, req_headers)
    svc.upstream.check_spelling(url)
    if method not in CACHEABLE_METHODS:
        if api:
            raise MethodNotAllowed(
                f"{method} is not supported on /fetch: it serves GET and HEAD",
                headers={"Allow": ", ".join(CACHEABLE_METHODS)},
            )
        return "method", None
    if not api and any(policy.values(req_headers, name) for name in CREDENTIALS):
        return "bypass", "request carries credentials"
    return None


async def _hit(svc: Services, req_headers: Headers, entry: StoredResponse, hit: policy.Hit, now: float) -> web.Response:
    field = cache_status(svc.pseudonym, hit=True, ttl=hit.ttl, detail="stale (max-stale)" if hit.ttl < 0 else None)
    return await _serve_stored(svc, req_headers, entry, field, now)


async def _serve_stored(
    svc: Services, req_headers: Headers, entry: StoredResponse, field: str, now: float
) -> web.Response:
    """A stored response answers the request (counted as a hit once it is built)."""
    response = await responses.from_entry(req_headers, entry, field, pseudonym=svc.pseudonym, now=now, store=svc.store)
    svc.counters.add(Count.HITS)
    return response


async def _serve_stale(
    svc: Services,
    request: web.Request,
    url: str,
    found: lookup.Found,
    sent: Headers,
    *,
    stale: policy.ServeStale,
    now: float,
) -> web.Response:
    """RFC 5861 §3: the stale response now, and a refresh job started (or joined) behind it."""
    assert found.entry is not None
    try:
        await start_fetch(svc, request, url, found, sent, since=now, track=False)
    except Problem as exc:  # the stale answer stands; the refresh waits for the next request
        log.info("background refresh of %s not started: %s", url, exc.detail)
    field = cache_status(svc.pseudonym, hit=True, ttl=stale.ttl, detail="stale-while-revalidate")
    return await _serve_stored(svc, tuple(request.headers.items()), found.entry, field, now)


async def _miss(
    svc: Services,
    request: web.Request,
    url: str,
    found: lookup.Found,
    sent: Headers,
    *,
    now: float,
    fwd: str,
    detail: str | None,
    api: bool,
) -> web.StreamResponse:
    """No usable stored response: start (or join) the fetch, then wait for it or answer 202."""
    req_headers: Headers = tuple(request.headers.items())
    if policy.CacheControl.of(req_headers).only_if_cached:
        return problem_response(
            504,
            "Not Cached",
            "only-if-cached was requested and no usable response is stored",
            headers={"Cache-Status": cache_status(svc.pseudonym, fwd=fwd, detail="only-if-cached")},
        )
    await svc.upstream.admit(url)
    started = await start_fetch(svc, request, url, found, sent, since=now)
    svc.counters.add(Count.REFRESHES if fwd == "request" else Count.MISSES)
    if not api and policy.first(req_headers, "range") is not None:
        # No stored response answers this range: relay it now (never store a part as the whole); the job just
        # started stores the whole response for the next request. (/fetch never relays: its request's fields are
        # meant for grenier, not the target; its range is cut from the job's whole response instead.)
        return await passthrough.relay(request, url, "bypass", "range request not answerable from cache")
    record = await _wait(svc, request, started.record if started.joined is None else started.joined)
    if started.joined is not None:
        # Collapsed: the joined job's outcome is ours only when shareable with our request (else a fetch of our
        # own starts, under our record); either way the location we answer with is our own record's.
        if not record.pending:
            record = await svc.dispatcher.resolve(started.record, since=now, admit=admission(svc, request))
            record = await _wait(svc, request, record)
        else:
            record = replace(started.record, state=record.state)
    if record.pending:
        return responses.accepted(record, pseudonym=svc.pseudonym, fwd=fwd, collapsed=started.collapsed, detail=detail)
    # The response leaves now, after the wait: its Age and Cache-Status ttl are read at this one later instant.
    return await responses.outcome(
        req_headers,
        record,
        await _held(svc, record),
        pseudonym=svc.pseudonym,
        now=time.time(),
        store=svc.store,
        fwd=fwd,
        collapsed=record.joined is not None,
        detail=detail,
    )


async def start_fetch(
    svc: Services,
    request: web.Request,
    url: str,
    found: lookup.Found,
    sent: Headers,
    *,
    since: float,
    track: bool = True,
) -> Started:
    """Start or join the fetch of ``url`` with the forwarded fields ``sent`` (``track``: the request will poll or
    wait for it); a new fetch first passes the client's miss rate and the queue's backlog."""
    await admission(svc, request)()
    started = await svc.dispatcher.start(url, flight=found.key, since=since, headers=sent, track=track)
    request[JOB_ID_KEY] = started.record.id  # for the access log
    if started.collapsed:
        svc.counters.add(Count.COLLAPSED)
    return started


def admission(svc: Services, request: web.Request) -> Admit:
    """The checks a fetch for this client passes before it is queued: its miss rate, the queue's backlog."""

    async def admit() -> None:
        svc.miss_rate.take(str(svc.access.client(request)))
        await svc.check_backlog()

    return admit


async def _wait(svc: Services, request: web.Request, record: JobRecord) -> JobRecord:
    wait = prefer.wait_seconds(request.headers.getall("Prefer", []), svc.wait_default, svc.settings.cache.max_wait)
    if wait > 0 and record.pending:
        return await svc.store.wait_job(record.id, wait) or record
    return record


async def _held(svc: Services, record: JobRecord) -> StoredResponse | None:
    return await lookup.held_response(svc.store, record.outcome) if isinstance(record.outcome, Fetched) else None


def as_foreign(response: web.StreamResponse) -> web.StreamResponse:
    """``response`` made fit to serve from grenier's own origin (:func:`responses.make_foreign`)."""
    responses.make_foreign(response.headers)
    return response


async def fetch(request: web.Request) -> web.StreamResponse:
    """``GET /fetch?url=U``."""
    svc = request.app[SERVICES]
    svc.access.check_client(request)
    return as_foreign(await serve_target(request, normalize(request.query.get("url")), api=True))


async def job(request: web.Request) -> web.StreamResponse:
    """``GET /_grenier/jobs/<id>``: 202 while pending, then the fetched response (or why there is none)."""
    svc = request.app[SERVICES]
    job_id = request.match_info["job_id"]
    record = await svc.store.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise NotFound(f"no job {job_id!r}: it never existed or its record has expired")
    collapsed = record.joined is not None
    record = await svc.dispatcher.resolve(record, since=time.time(), admit=admission(svc, request))
    if record.pending:
        return responses.accepted(record, pseudonym=svc.pseudonym, fwd="uri-miss", collapsed=collapsed)
    response = await responses.outcome(
        tuple(request.headers.items()),
        record,
        await _held(svc, record),
        pseudonym=svc.pseudonym,
        now=time.time(),
        store=svc.store,
        fwd="uri-miss",
        collapsed=record.joined is not None,
    )
    return as_foreign(response)
