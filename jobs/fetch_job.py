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
import uuid
from dataclasses import dataclass
from typing import TypedDict, assert_never

from core import lookup, policy
from core.counts import Count
from core.forwarding import marks, outgoing
from core.netguard import TargetRefused
from core.outcome import STALE_IF_ERROR, Failed, Fetched, Outcome
from core.policy import Headers
from core.queue import JobMessage
from core.records import BodyRef, JobRecord, StoredResponse
from core.settings import Settings
from core.store import Store
from core.targets import cache_key
from core.upstream import Upstream, UpstreamError, UpstreamStream

log = logging.getLogger(__name__)

#: How long the in-flight claim outlives its job, so a miss that raced the job's end joins it (and gets its
#: response) instead of fetching again.
INFLIGHT_LINGER = 2.0

#: Chunks outlive the entry that points at them by this much, so an entry never points at chunks already gone.
CHUNK_MARGIN = 60.0

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


async def _fetch_and_store(env: JobEnv, url: str, headers: Headers) -> Outcome:
    """Fetch, decide on the status and fields as soon as they arrive, and stream the body where the decision says;
    a failure at any point (before the response, or while its body streams) ends in the failure half of
    :func:`core.policy.after_fetch` (stand the stale response in, or fail)."""
    found = await lookup.find(env.store, url, headers)
    stored = found.entry
    conditional = policy.validators(stored.headers) if stored is not None else ()
    # ``headers`` are the fields the request presented (they select the variant); the deny list stays here.
    sent = (*outgoing(headers, env.settings.upstream.deny_fields), *conditional, *marks(env.settings.server.pseudonym))
    limit = env.settings.jobs.time_limit
    try:
        async with asyncio.timeout(limit), env.upstream.stream(url, sent) as got:
            received = policy.Received(got.status, got.headers, got.request_time, got.response_time)
            decision = policy.after_fetch(
                headers, stored.times if stored else None, received, time.time(), env.settings.cache
            )
            return await _carry_out(env, url, headers, found, got, decision=decision)
    except TargetRefused as exc:
        log.info("job: %s refused: %s", url, exc.detail)
        return Failed("refused", exc.detail)
    except UpstreamError as exc:
        if exc.kind == "refused":
            return Failed("refused", exc.detail)
        failure = Failed(exc.kind, exc.detail)
    except TimeoutError:
        failure = Failed("timeout", f"job exceeded its {limit:g} s time limit")
    decision = policy.after_fetch(headers, stored.times if stored else None, None, time.time(), env.settings.cache)
    if isinstance(decision, policy.StandIn):
        return _stand_in(url, found, headers, None, failure.detail)
    log.info("job: %s failed: %s", url, failure.detail)
    return failure


def _stand_in(url: str, found: lookup.Found, sent: Headers, fwd_status: int | None, error: str) -> Fetched:
    """RFC 5861 §4: the stored (stale) response stands in for ``error``; the outcome names it by its key."""
    assert found.entry is not None  # after_fetch stands in only a stored response
    log.info("job: %s failed (%s); serving stale (stale-if-error)", url, error)
    return Fetched(fwd_status, key=found.key, detail=STALE_IF_ERROR, error=error, **_variant(found.entry.headers, sent))


async def _carry_out(
    env: JobEnv, url: str, headers: Headers, found: lookup.Found, got: UpstreamStream, *, decision: policy.AfterFetch
) -> Outcome:
    """Do what ``after_fetch`` decided about a response whose body has not been read yet."""
    rules, stored = env.settings.cache, found.entry
    match decision:
        case policy.Fail():  # only ever the answer to no response at all
            raise AssertionError("after_fetch failed a received response")
        case policy.StandIn(reason=reason):
            return _stand_in(url, found, headers, got.status, reason)
        case policy.Freshen():
            assert stored is not None
            # A 304 has no body: the freshened entry points at the stored body (inline, or the same chunks, kept
            # alive as long as the entry now is). Nothing is copied.
            entry = _entry(url, got, decision, stored.body, stored.body_ref)
            if stored.body_ref is not None:
                await env.store.keep_chunks(stored.body_ref.name, stored.body_ref.count, decision.keep + CHUNK_MARGIN)
            key = await _save(env, url, headers, entry, decision.keep)
            log.info("job: %s -> 304 (revalidated)", url)
            return Fetched(got.status, key=key, stored=True, detail=REVALIDATED, **_variant(entry.headers, headers))
        case policy.Store():
            body, ref = await write_body(env.store, url, got, rules.chunk_bytes, decision.keep + CHUNK_MARGIN)
            entry = _entry(url, got, decision, body, ref)
            key = await _save(env, url, headers, entry, decision.keep)
            log.info("job: %s -> %d (stored, %d bytes)", url, got.status, entry.size)
            return Fetched(got.status, key=key, stored=True, **_variant(entry.headers, headers))
        case policy.DoNotStore(reason=reason, freshened=True):
            assert stored is not None
            entry = _entry(url, got, decision, stored.body, stored.body_ref)
            log.info("job: %s -> 304 (%s)", url, reason)
            return Fetched(
                got.status, response=entry, not_stored=reason, detail=REVALIDATED, **_variant(entry.headers, headers)
            )
        case policy.DoNotStore(reason=reason):
            # Kept for the request that fetched it alone, briefly: its chunks expire with the job's record.
            keep = min(env.settings.jobs.result_ttl, env.settings.jobs.unstored_result_ttl) + CHUNK_MARGIN
            body, ref = await write_body(env.store, url, got, rules.chunk_bytes, keep)
            entry = _entry(url, got, decision, body, ref)
            log.info("job: %s -> %d (%s)", url, got.status, reason)
            return Fetched(got.status, response=entry, not_stored=reason, **_variant(entry.headers, headers))
        case _:
            assert_never(decision)


async def write_body(
    store: Store, url: str, got: UpstreamStream, chunk: int, expire: float
) -> tuple[bytes, BodyRef | None]:
    """Stream the body into the store: inline when it fits in one chunk, else chunk by chunk under a new version
    (so memory holds one chunk at a time). The caller writes the entry that points at it last, once it is whole."""
    name = f"{cache_key(url)}:{uuid.uuid4().hex[:16]}"
    size, count, first = 0, 0, b""
    async for piece in got.pieces(chunk):
        if count == 0 and not first:
            first = piece
        else:
            if count == 0:
                await store.put_chunk(name, 0, first, expire)
                count = 1
            await store.put_chunk(name, count, piece, expire)
            count += 1
        size += len(piece)
    if count == 0:  # the whole body fits in one chunk: it travels inline with the entry
        return first, None
    return b"", BodyRef(name, size, chunk)


async def _save(env: JobEnv, url: str, headers: Headers, entry: StoredResponse, keep: float) -> str:
    rules = env.settings.cache
    return await lookup.save(env.store, url, headers, entry, expire=keep, index_expire=rules.max_ttl + rules.stale_keep)


def _entry(
    url: str,
    got: UpstreamStream,
    decision: policy.Freshen | policy.Store | policy.DoNotStore,
    body: bytes,
    ref: BodyRef | None,
) -> StoredResponse:
    return StoredResponse(
        url, decision.status, decision.headers, body, got.request_time, got.response_time, decision.lifetime, ref
    )


class _Variant(TypedDict):
    vary: tuple[str, ...]
    variant: str | None


def _variant(response_headers: Headers, sent: Headers) -> _Variant:
    """The fields a response varies on and the digest of the fetching request's values for them (§4.1)."""
    fields = policy.vary_fields(response_headers)
    digest = policy.variant_key(fields, sent) if fields and fields != ("*",) else None
    return {"vary": fields, "variant": digest}
