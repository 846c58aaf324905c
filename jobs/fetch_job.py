"""What one fetch job does, as a plain coroutine over a store and an :class:`~core.upstream.Upstream`.

It fetches the URL with the client's forwarded fields, conditionally when a stored response has validators
(RFC 9111 §4.3.1), asks :func:`core.policy.after_fetch` what to do with what came back (freshen, store, do not
store, stand the stale response in, fail) and carries that out: the store writes, the terminal record, the release
of the URL's in-flight claim, the counters.

It is idempotent: a redelivered message whose job already ended does nothing, and one whose worker died mid-fetch
(the record still says ``running``) fetches again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TypedDict, assert_never

from core import lookup, policy
from core.counts import Count
from core.forwarding import marks
from core.netguard import TargetRefused
from core.outcome import STALE_IF_ERROR, Failed, Fetched, Outcome
from core.policy import Headers
from core.queue import JobMessage
from core.records import JobRecord, StoredResponse
from core.settings import Settings
from core.store import Store
from core.targets import cache_key
from core.upstream import Upstream, UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)

#: How long the in-flight claim outlives its job, so a miss that raced the job's end joins it (and gets its
#: response) instead of fetching again.
INFLIGHT_LINGER = 2.0

#: ``Fetched.detail`` of a stored response that a 304 confirmed.
REVALIDATED = "revalidated"


@dataclass(frozen=True)
class JobEnv:
    settings: Settings
    store: Store
    upstream: Upstream


async def run(env: JobEnv, message: JobMessage) -> JobRecord | None:
    store, job_id, url = env.store, message.job_id, message.url
    flight = message.flight or cache_key(url)
    record = await store.get_job(job_id)
    if record is None:
        log.warning("job %s: record gone (expired?), nothing to do", job_id)
        return None
    if not record.pending:
        log.info("job %s: already %s, redelivery ignored", job_id, record.state)
        return record
    record = record.running(time.time())
    await store.put_job(record, env.settings.jobs.result_ttl)
    try:
        outcome = await _fetch_and_store(env, url, message.headers)
    except Exception as exc:
        # Never leave a job "running" for its pollers: record the failure (if the store answers), then let the
        # broker's retry policy see the error.
        log.exception("job %s: %s crashed", job_id, url)
        with contextlib.suppress(Exception):
            failed = Failed("internal", f"the fetch job failed unexpectedly ({type(exc).__name__})")
            await _finish(env, record, failed, flight)
        raise
    return await _finish(env, record, outcome, flight)


async def _finish(env: JobEnv, record: JobRecord, outcome: Outcome, flight: str) -> JobRecord:
    done = record.ended(outcome, time.time())
    jobs = env.settings.jobs
    # A record that carries an unstored response holds a body: keep it only as long as its requester needs it.
    holds_body = isinstance(outcome, Fetched) and outcome.response is not None
    await env.store.finish_job(done, min(jobs.result_ttl, jobs.unstored_result_ttl) if holds_body else jobs.result_ttl)
    await env.store.release(flight, done.id, INFLIGHT_LINGER)
    await env.store.incr(_counts(outcome))
    return done


def _counts(outcome: Outcome) -> dict[Count, int]:
    if isinstance(outcome, Failed):
        return {Count.JOBS_FAILED: 1}
    if outcome.detail == STALE_IF_ERROR:
        return {Count.JOBS_DONE: 1, Count.STALE_IF_ERROR: 1}
    return {Count.JOBS_DONE: 1, Count.STORED if outcome.stored else Count.NOT_STORED: 1}


async def _get(env: JobEnv, url: str, sent: Headers) -> UpstreamResponse | Failed:
    limit = env.settings.jobs.time_limit
    try:
        async with asyncio.timeout(limit):
            return await env.upstream.fetch(url, sent)
    except TargetRefused as exc:
        return Failed("refused", exc.detail)
    except UpstreamError as exc:
        return Failed(exc.kind, exc.detail)
    except TimeoutError:
        return Failed("timeout", f"job exceeded its {limit:g} s time limit")


async def _fetch_and_store(env: JobEnv, url: str, headers: Headers) -> Outcome:
    rules = env.settings.cache
    found = await lookup.find(env.store, url, headers)
    stored = found.entry
    conditional = policy.validators(stored.headers) if stored is not None else ()
    got = await _get(env, url, (*headers, *conditional, *marks(env.settings.server.pseudonym)))
    if isinstance(got, Failed) and got.kind == "refused":
        log.info("job: %s refused: %s", url, got.detail)
        return got
    received = None
    if isinstance(got, UpstreamResponse):
        received = policy.Received(got.status, got.headers, got.request_time, got.response_time)
    decision = policy.after_fetch(headers, stored.times if stored else None, received, time.time(), rules)
    fwd_status = received.status if received is not None else None
    match decision:
        case policy.Fail():
            assert isinstance(got, Failed)
            log.info("job: %s failed: %s", url, got.detail)
            return got
        case policy.StandIn(reason=reason):
            assert stored is not None
            error = got.detail if isinstance(got, Failed) else reason
            log.info("job: %s failed (%s); serving stale (stale-if-error)", url, error)
            return Fetched(
                fwd_status, key=found.key, detail=STALE_IF_ERROR, error=error, **_variant(stored.headers, headers)
            )
        case policy.Freshen() | policy.Store():
            assert isinstance(got, UpstreamResponse)
            freshened = isinstance(decision, policy.Freshen)
            body = stored.body if freshened and stored is not None else got.body
            entry = _entry(url, got, decision, body)
            index_keep = rules.max_ttl + rules.stale_keep
            key = await lookup.save(env.store, url, headers, entry, expire=decision.keep, index_expire=index_keep)
            log.info("job: %s -> %d (stored)", url, got.status)
            return Fetched(
                fwd_status,
                key=key,
                stored=True,
                detail=REVALIDATED if freshened else None,
                **_variant(entry.headers, headers),
            )
        case policy.DoNotStore(reason=reason, freshened=freshened):
            assert isinstance(got, UpstreamResponse)
            body = stored.body if freshened and stored is not None else got.body
            entry = _entry(url, got, decision, body)
            log.info("job: %s -> %d (%s)", url, got.status, reason)
            return Fetched(
                fwd_status,
                response=entry,
                not_stored=reason,
                detail=REVALIDATED if freshened else None,
                **_variant(entry.headers, headers),
            )
        case _:
            assert_never(decision)


def _entry(
    url: str, got: UpstreamResponse, decision: policy.Freshen | policy.Store | policy.DoNotStore, body: bytes
) -> StoredResponse:
    return StoredResponse(
        url, decision.status, decision.headers, body, got.request_time, got.response_time, decision.lifetime
    )


class _Variant(TypedDict):
    vary: tuple[str, ...]
    variant: str | None


def _variant(response_headers: Headers, sent: Headers) -> _Variant:
    """The fields a response varies on and the digest of the fetching request's values for them (§4.1)."""
    fields = policy.vary_fields(response_headers)
    digest = policy.variant_key(fields, sent) if fields and fields != ("*",) else None
    return {"vary": fields, "variant": digest}
