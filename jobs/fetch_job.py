"""What one fetch job does, as a plain coroutine over a store and an HTTP session: the actor only calls it.

It is idempotent: a redelivered message whose job already ended does nothing, and one whose worker died mid-fetch
(the record still says ``running``) fetches again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from proxy import policy
from proxy.config import Settings
from proxy.records import JobRecord, StoredResponse
from proxy.store import Store
from proxy.targets import cache_key

from .fetcher import FetchLimits, UpstreamError, fetch

log = logging.getLogger(__name__)

#: How long the in-flight marker outlives its job, so a miss that raced the job's end joins it (and gets its
#: response) instead of fetching again.
INFLIGHT_LINGER = 2.0


@dataclass(frozen=True)
class JobEnv:
    settings: Settings
    store: Store
    session: aiohttp.ClientSession

    @property
    def limits(self) -> FetchLimits:
        return fetch_limits(self.settings)

    @property
    def policy_limits(self) -> policy.Limits:
        c = self.settings.cache
        return policy.Limits(default_ttl=c.default_ttl, max_ttl=c.max_ttl)


def fetch_limits(settings: Settings) -> FetchLimits:
    u = settings.upstream
    return FetchLimits(u.connect_timeout, u.total_timeout, u.max_body_bytes, u.retries, u.retry_backoff)


def inflight_ttl(settings: Settings) -> float:
    """Long enough that a job redelivered after its worker died still owns its URL."""
    return settings.jobs.time_limit * 2 + settings.jobs.heartbeat_timeout + 10


async def run(env: JobEnv, job_id: str, url: str) -> JobRecord | None:
    store, ttl = env.store, env.settings.jobs.result_ttl
    record = await store.get_job(job_id)
    if record is None:
        log.warning("job %s: record gone (expired?), nothing to do", job_id)
        return None
    if not record.pending:
        log.info("job %s: already %s, redelivery ignored", job_id, record.state)
        return record
    record = record.with_(state="running", started=time.time(), attempts=record.attempts + 1)
    await store.put_job(record, ttl)
    url_hash = cache_key(url)
    try:
        async with asyncio.timeout(env.settings.jobs.time_limit):
            fetched = await fetch(env.session, url, (), env.limits)
    except (UpstreamError, TimeoutError) as exc:
        kind, detail = (
            (exc.kind, exc.detail)
            if isinstance(exc, UpstreamError)
            else ("timeout", f"job exceeded its {env.settings.jobs.time_limit:g} s time limit")
        )
        done = record.with_(state="failed", finished=time.time(), error=detail, error_kind=kind)
        await store.finish_job(done, ttl)
        await store.release(url_hash, job_id, INFLIGHT_LINGER)
        await store.incr({"jobs_failed": 1})
        log.info("job %s: %s failed: %s", job_id, url, detail)
        return done

    headers = policy.storable_headers(fetched.headers)
    lifetime = policy.freshness_lifetime(headers, env.policy_limits)
    entry = StoredResponse(
        url, fetched.status, headers, fetched.body, fetched.request_time, fetched.response_time, lifetime
    )
    reason = policy.not_storable_reason("GET", fetched.status, (), headers)
    if reason is None and lifetime <= 0 and env.settings.cache.stale_keep <= 0:
        reason = "response is already stale (zero freshness lifetime)"
    if reason is None:
        await store.put_entry(url_hash, entry, lifetime + env.settings.cache.stale_keep)
    done = record.with_(state="done", finished=time.time(), response=entry, stored=reason is None, not_stored=reason)
    await store.finish_job(done, ttl)
    await store.release(url_hash, job_id, INFLIGHT_LINGER)
    await store.incr({"jobs_done": 1, "stored" if reason is None else "not_stored": 1})
    log.info("job %s: %s -> %d (%s)", job_id, url, fetched.status, "stored" if reason is None else reason)
    return done
