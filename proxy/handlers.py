"""Request handlers for cached targets and job polling: read the store, ask :mod:`core.policy`, act (purges and
inspection: :mod:`proxy.purge`).

``serve_target`` reads the clock once and routes: a request the cache must not answer is relayed
(:func:`_relay_reason`), a usable stored response is served (:func:`_hit`, :func:`_serve_stale`), anything else
goes down the miss path (:func:`_miss`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import assert_never

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import forwarding, lookup, partial, policy
from core.counts import Count
from core.job_ids import JOB_ID, missing
from core.outcome import Fetched
from core.policy import Headers
from core.problems import MethodNotAllowed, NotFound, Problem
from core.records import JobRecord, StoredResponse
from core.targets import names_self, normalize

from . import passthrough, prefer, responses
from .access_log import JOB_ID_KEY
from .cache_status import cache_status
from .dispatch import Admit, Started, flight
from .locations import absolute_job_location
from .negotiation import prefers_html
from .refusals import problem_response
from .services import SERVICES, Services

log = logging.getLogger(__name__)

CACHEABLE_METHODS = ("GET", "HEAD")
#: RFC 9111 §3.5 detail when a request with Authorization may not use the stored response.
AUTHORIZED_MISS = "request carries Authorization and the stored response does not allow sharing it"
#: Cache-Status detail of a request relayed because the store is down (``redis.on_down = "bypass"``).
STORE_DOWN = "store unreachable"


class LoopDetected(Problem):
    status = 508
    title = "Loop Detected"


class JobLost(Problem):
    """A job accepted recently whose record the store no longer holds: Redis restarted without persistence, or
    evicted it. Gone for good (410), but nothing is wrong with the URL: asking for it again starts a new fetch."""

    status = 410
    title = "Job Record Lost"


async def serve_target(request: web.Request, url: str, *, api: bool = False) -> web.StreamResponse:
    """Answer for ``url`` from the cache, or start (or join) its fetch job and wait or answer 202.

    ``api`` marks ``/fetch?url=``: it only reads, and the request's own fields are meant for grenier: only the
    allow-listed ones go to the target. In forward and reverse mode grenier is transparent: the fetch carries the
    client's end-to-end fields (but the deny list), and those it presented select the variant (RFC 9111 §4.1).
    Other methods, requests with a cookie, and (unless ``cache.share_authorized``) requests with Authorization are
    relayed straight upstream: never answered from nor stored into a shared entry. A request with Authorization
    takes a fetch of its own (its credentials sent) and may use a stored response only if it allows that (§3.5).
    """
    svc = request.app[SERVICES]
    req_headers: Headers = tuple(request.headers.items())
    relay = _relay_reason(svc, request.method, url, req_headers, api=api)
    if relay is not None:
        return await passthrough.relay(request, url, *relay)
    try:
        return await _from_cache(svc, request, url, req_headers, api=api)
    except (RedisConnectionError, RedisTimeoutError):
        # The store is down (core/breaker.py fails fast meanwhile). With redis.on_down = "bypass" a GET or HEAD in
        # forward or reverse mode goes straight to the origin, uncached, as long as nothing was answered yet.
        if api or svc.settings.redis.on_down != "bypass" or request.writer.output_size > 0:
            raise
        return await passthrough.relay(request, url, "bypass", STORE_DOWN)


async def _from_cache(
    svc: Services, request: web.Request, url: str, req_headers: Headers, *, api: bool
) -> web.StreamResponse:
    """The cache's answer: a hit, a stale answer, or the miss path (the store is read, and may be down)."""
    now = time.time()
    if api:
        sent = forwarding.for_job(req_headers, svc.settings.upstream.forward_headers)
    else:
        sent = forwarding.presented(req_headers)
    found = await lookup.find(svc.store, url, sent)
    # A stored part (RFC 9111 §3.3) answers only a range it holds; for anything else it is as good as absent.
    entry = found.entry
    usable = entry if entry and partial.answers(entry.status, entry.headers, entry.size, req_headers) else None
    decision = policy.decide(req_headers, usable.times if usable else None, now, svc.settings.cache)
    authorized = bool(policy.values(sent, "authorization"))
    if authorized and usable is not None and not policy.shared_with_authorized(usable.headers):
        decision = policy.Forward("miss", AUTHORIZED_MISS)
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
                elif fwd == "uri-miss" and found.entry is not None:
                    fwd, detail = "partial", "the stored part does not hold the range asked"
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
    if api:
        return None
    if policy.values(req_headers, "cookie"):
        return "bypass", "request carries a cookie"
    if policy.values(req_headers, "authorization") and not svc.settings.cache.share_authorized:
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
    # A range miss is fetched once, by the job: the presented fields carry the client's range, and the job asks for
    # it (or only what a stored part lacks) and stores the part it gets (RFC 9111 §3.3). Only requests for the same
    # range collapse onto one job. (/fetch's allow list carries no Range: its request's fields are meant for
    # grenier; its range is cut from the whole.)
    started = await start_fetch(svc, request, url, found, sent, since=now)
    svc.counters.add(Count.REFRESHES if fwd == "request" else Count.MISSES)
    followed = started.record if started.joined is None else started.joined
    waited = followed.pending and _wait_seconds(svc, request) > 0
    record = await _wait(svc, request, followed)
    if started.joined is not None:
        # Collapsed: the joined job's outcome is ours only when shareable with our request (else a fetch of our
        # own starts, under our record); either way the location we answer with is our own record's.
        if not record.pending:
            record = await _follow(svc, request, started.record, since=now)
        else:
            record = replace(started.record, state=record.state)
    response = await _answer(svc, request, record, fwd=fwd, detail=detail, collapsed=started.collapsed, api=api)
    if waited and prefer.wait_requested(request.headers.getall("Prefer", [])):
        response.headers["Preference-Applied"] = "wait"  # RFC 7240 §3: the wait was honoured
    return response


async def _follow(svc: Services, request: web.Request, record: JobRecord, *, since: float) -> JobRecord:
    """A joiner whose joined job ended: its outcome when shareable, else the fetch its record turns into, waited
    for; that is its own fetch, or a fetch of its variant another joiner started (then its outcome is this
    request's once it ends)."""
    admit = admission(svc, request)
    record = await svc.dispatcher.resolve(record, since=since, admit=admit)
    if record.joined is not None and record.pending:
        joined = await svc.store.get_job(record.joined)
        if joined is not None:
            await _wait(svc, request, joined)
        record = await svc.dispatcher.resolve(record, since=since, admit=admit)
        return record if record.joined is not None else await _wait(svc, request, record)
    return await _wait(svc, request, record)


async def _answer(
    svc: Services,
    request: web.Request,
    record: JobRecord,
    *,
    fwd: str,
    detail: str | None,
    collapsed: bool,
    api: bool,
) -> web.StreamResponse:
    """The miss's answer once any wait is over: the 202 (JSON; in forward and reverse mode a page for a browser,
    which shows the target's URL), or the outcome."""
    req_headers: Headers = tuple(request.headers.items())
    if record.pending:
        return responses.accepted(
            record,
            location=absolute_job_location(request, svc.settings.server, record.id),
            pseudonym=svc.pseudonym,
            fwd=fwd,
            collapsed=collapsed,
            detail=detail,
            html_page=not api and prefers_html(request.headers.getall("Accept", [])),
        )
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
    ranged = partial.forwarded_range(sent)
    claim = flight(found.key, sent)
    started = await svc.dispatcher.start(
        url, flight=claim if not ranged else f"{claim}:{ranged[0][1]}", since=since, headers=sent, track=track
    )
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


def _wait_seconds(svc: Services, request: web.Request) -> float:
    return prefer.wait_seconds(request.headers.getall("Prefer", []), svc.wait_default, svc.settings.cache.max_wait)


async def _wait(svc: Services, request: web.Request, record: JobRecord) -> JobRecord:
    wait = _wait_seconds(svc, request)
    if wait > 0 and record.pending:
        return await svc.store.wait_job(record.id, wait) or record
    return record


async def _held(svc: Services, record: JobRecord) -> StoredResponse | None:
    return await lookup.held_response(svc.store, record.outcome) if isinstance(record.outcome, Fetched) else None


def as_foreign(response: web.StreamResponse) -> web.StreamResponse:
    """``response`` made fit to serve from grenier's own origin (:func:`responses.make_foreign`)."""
    responses.make_foreign(response.headers)
    return response


def no_record(svc: Services, job_id: str, now: float) -> Problem:
    """Why the store holds no record of ``job_id``: lost with the store (``410``, ask again) when its id was issued
    within ``jobs.result_ttl`` (:func:`core.job_ids.missing`), else never issued or expired (``404``)."""
    gone = missing(job_id, now, svc.settings.jobs.result_ttl) if JOB_ID.fullmatch(job_id) else None
    if gone is not None and gone.lost:
        return JobLost(
            f"job {job_id!r} was accepted {max(gone.age, 0):.0f} s ago, but the cache store no longer holds its"
            " record (it was lost with the store: Redis restarted without persistence, or evicted it; or its"
            " unstored response expired): request the URL again to start a new fetch",
            job=job_id,
        )
    return NotFound(f"no job {job_id!r}: it never existed or its record has expired")


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
        raise no_record(svc, job_id, time.time())
    collapsed = record.joined is not None
    record = await svc.dispatcher.resolve(record, since=time.time(), admit=admission(svc, request))
    if record.pending:
        location = absolute_job_location(request, svc.settings.server, record.id)
        return responses.accepted(
            record, location=location, pseudonym=svc.pseudonym, fwd="uri-miss", collapsed=collapsed
        )
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
