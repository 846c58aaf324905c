"""What one fetch job does, as a plain coroutine over a store and an HTTP session: the actor only calls it.

It fetches the URL with the client's forwarded fields, conditionally when a stored response has validators
(§4.3.1), and then, as :mod:`proxy.policy` decides: freshens the stored response on a 304 (§4.3.4), stands the
stale response in for a failure when stale-if-error allows (RFC 5861 §4), or stores the new response.

It is idempotent: a redelivered message whose job already ended does nothing, and one whose worker died mid-fetch
(the record still says ``running``) fetches again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from core import lookup, netguard, policy
from core.forwarding import marks
from core.policy import Headers
from core.records import JobRecord, StoredResponse
from core.settings import Settings
from core.store import Store
from core.targets import cache_key, host_port, on_origin
from core.upstream import Fetched, FetchLimits, UpstreamError, fetch

log = logging.getLogger(__name__)

#: How long the in-flight marker outlives its job, so a miss that raced the job's end joins it (and gets its
#: response) instead of fetching again.
INFLIGHT_LINGER = 2.0


@dataclass(frozen=True)
class JobEnv:
    settings: Settings
    store: Store
    guarded_session: aiohttp.ClientSession
    """For client-chosen targets: every connection passes the SSRF guard."""
    origin_session: aiohttp.ClientSession
    """For the operator's reverse-proxy origin, which is trusted."""

    @property
    def limits(self) -> FetchLimits:
        return fetch_limits(self.settings)

    def trusted(self, url: str) -> bool:
        return on_origin(url, self.settings.upstream.origin)


def fetch_limits(settings: Settings) -> FetchLimits:
    u = settings.upstream
    return FetchLimits(
        connect_timeout=u.connect_timeout,
        total_timeout=u.total_timeout,
        max_body_bytes=u.max_body_bytes,
        retries=u.retries,
        retry_backoff=u.retry_backoff,
        read_timeout=u.read_timeout,
        max_header_bytes=u.max_header_bytes,
        max_connections_per_origin=u.max_connections_per_origin,
    )


def inflight_ttl(settings: Settings) -> float:
    """Long enough that a job redelivered after its worker died still owns its URL."""
    return settings.jobs.time_limit * 2 + settings.jobs.heartbeat_timeout + 10


class _Job:
    """One run: the record as it goes, and the writes that end it."""

    def __init__(self, env: JobEnv, record: JobRecord, url: str, headers: Headers, flight: str) -> None:
        self.env, self.record, self.url, self.headers, self.flight = env, record, url, headers, flight
        self.limits = env.settings.limits

    async def finish(self, done: JobRecord, counts: dict[str, int]) -> JobRecord:
        await self.env.store.finish_job(done, self.env.settings.jobs.result_ttl)
        await self.env.store.release(self.flight, done.id, INFLIGHT_LINGER)
        await self.env.store.incr(counts)
        return done

    async def failed(self, kind: str, detail: str) -> JobRecord:
        done = self.record.with_(state="failed", finished=time.time(), error=detail, error_kind=kind)
        log.info("job %s: %s failed: %s", done.id, self.url, detail)
        return await self.finish(done, {"jobs_failed": 1})

    async def stale_stands_in(self, stale: StoredResponse, fwd_status: int | None, error: str) -> JobRecord:
        done = self.record.with_(
            state="done",
            finished=time.time(),
            response=stale,
            fwd_status=fwd_status,
            detail="stale-if-error",
            error=error,
        )
        log.info("job %s: %s failed (%s); serving stale (stale-if-error)", done.id, self.url, error)
        return await self.finish(done, {"jobs_done": 1, "stale_if_error": 1})

    async def store(
        self, entry: StoredResponse, fwd_status: int, detail: str | None, stale: StoredResponse | None
    ) -> JobRecord:
        reason = policy.not_storable_reason("GET", entry.status, self.headers, entry.headers, self.limits)
        if reason is None and stale is not None and not policy.may_replace(stale.status, entry.status, entry.headers):
            reason = "an error without explicit freshness does not replace the stored response"
        keep = policy.retention(entry.headers, entry.lifetime, self.limits)
        if reason is None and keep <= 0:
            reason = "response is already stale and stale_keep is 0"
        if reason is None:
            index_keep = self.limits.max_ttl + self.limits.stale_keep
            await lookup.save(self.env.store, self.url, self.headers, entry, expire=keep, index_expire=index_keep)
        fields = policy.vary_fields(entry.headers)
        done = self.record.with_(
            state="done",
            finished=time.time(),
            response=entry,
            stored=reason is None,
            not_stored=reason,
            fwd_status=fwd_status,
            detail=detail,
            variant=policy.variant_key(fields, self.headers) if fields and fields != ("*",) else None,
        )
        log.info("job %s: %s -> %d (%s)", done.id, self.url, fwd_status, "stored" if reason is None else reason)
        return await self.finish(done, {"jobs_done": 1, "stored" if reason is None else "not_stored": 1})


def _entry(
    url: str, fetched: Fetched, *, status: int, headers: Headers, body: bytes, limits: policy.Limits
) -> StoredResponse:
    lifetime = policy.freshness_lifetime(status, headers, fetched.response_time, limits)
    return StoredResponse(url, status, headers, body, fetched.request_time, fetched.response_time, lifetime)


async def run(env: JobEnv, job_id: str, url: str, options: dict[str, Any] | None = None) -> JobRecord | None:
    options = options or {}
    headers: Headers = tuple((str(k), str(v)) for k, v in options.get("headers", ()))
    flight = str(options.get("flight") or cache_key(url))
    store = env.store
    record = await store.get_job(job_id)
    if record is None:
        log.warning("job %s: record gone (expired?), nothing to do", job_id)
        return None
    if not record.pending:
        log.info("job %s: already %s, redelivery ignored", job_id, record.state)
        return record
    record = record.with_(state="running", started=time.time(), attempts=record.attempts + 1)
    await store.put_job(record, env.settings.jobs.result_ttl)
    job = _Job(env, record, url, headers, flight)
    try:
        return await _fetch_and_store(env, job)
    except Exception as exc:
        # Never leave a job "running" for its pollers: record the failure (if the store answers), then let the
        # broker's retry policy see the error.
        log.exception("job %s: %s crashed", job_id, url)
        with contextlib.suppress(Exception):
            await job.failed("internal", f"the fetch job failed unexpectedly ({type(exc).__name__})")
        raise


async def _fetch_and_store(env: JobEnv, job: _Job) -> JobRecord:
    store, url, headers = env.store, job.url, job.headers

    stale = (await lookup.find(store, url, headers)).entry
    conditional = policy.validators(stale.headers) if stale is not None else ()
    session = env.origin_session if env.trusted(url) else env.guarded_session
    try:
        if session is env.guarded_session:  # literal addresses never reach the resolver: judge them here
            netguard.check_host(*host_port(url), env.settings.guard)
        async with asyncio.timeout(env.settings.jobs.time_limit):
            sent = (*headers, *conditional, *marks(env.settings.server.pseudonym))
            fetched = await fetch(session, url, sent, env.limits)
    except netguard.TargetRefused as exc:
        return await job.failed("refused", exc.detail)
    except (UpstreamError, TimeoutError) as exc:
        kind, detail = (
            (exc.kind, exc.detail)
            if isinstance(exc, UpstreamError)
            else ("timeout", f"job exceeded its {env.settings.jobs.time_limit:g} s time limit")
        )
        if stale is not None and policy.stale_if_error_allows(headers, stale.times, time.time(), job.limits):
            return await job.stale_stands_in(stale, None, detail)
        return await job.failed(kind, detail)

    if fetched.status == 304 and conditional and stale is not None:
        merged = policy.freshen(stale.headers, fetched.headers)
        freshened = _entry(url, fetched, status=stale.status, headers=merged, body=stale.body, limits=job.limits)
        return await job.store(freshened, 304, "revalidated", stale)
    if (
        fetched.status >= 500
        and stale is not None
        and policy.stale_if_error_allows(headers, stale.times, time.time(), job.limits)
    ):
        return await job.stale_stands_in(stale, fetched.status, f"upstream answered {fetched.status}")
    kept = policy.storable_headers(fetched.headers)
    entry = _entry(url, fetched, status=fetched.status, headers=kept, body=fetched.body, limits=job.limits)
    return await job.store(entry, fetched.status, None, stale)
