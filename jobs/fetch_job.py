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
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, TypedDict, assert_never

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import inspection, invalidation, lookup, partial, policy, telemetry
from core.counts import Count
from core.forwarding import marks, outgoing
from core.netguard import TargetRefused
from core.outcome import Failed, Fetched, Outcome
from core.policy import STALE_IF_ERROR, STALE_IF_UNREACHABLE, Headers
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
    deliveries = env.settings.jobs.max_deliveries
    if record.attempts >= deliveries:
        # Every worker that took this job up died before it ended it (the record still says running): a poison
        # job. It ends here instead of killing workers for ever; its pollers are told, and a new request fetches
        # afresh.
        log.error("job %s: %s: its worker died %d times running it; failing it", job_id, url, record.attempts)
        detail = (
            f"the worker fetching {url} stopped {record.attempts} times before finishing the job"
            f" (jobs.max_deliveries is {deliveries}): it is not tried again; ask for the URL again to start a new job"
        )
        return await _finish(env, record, Failed("crashed", detail), flight)
    record = record.running(time.time())
    await store.put_job(record, env.settings.jobs.result_ttl)
    started, tally = time.monotonic(), Tally()
    try:
        outcome = await _fetch_and_store(env, url, message.headers, tally)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # The store is down (its breaker logged it once): no record can be written; the runtime waits for the
        # store and runs the job again (jobs/runtime.py).
        log.warning("job %s: %s interrupted: the store is unreachable (%s)", job_id, url, exc)
        raise
    except Exception as exc:
        # Never leave a job "running" for its pollers: record the failure (if the store answers), then let the
        # broker's retry policy see the error.
        log.exception("job %s: %s crashed", job_id, url)
        if isinstance(exc, RedisError):
            telemetry.REDIS_ERRORS.labels("job").inc()
        with contextlib.suppress(Exception):
            failed = Failed("internal", f"the fetch job failed unexpectedly ({type(exc).__name__})")
            await _finish(env, record, failed, flight, time.monotonic() - started)
        raise
    seconds = time.monotonic() - started
    done = await _finish(env, record, outcome, flight, seconds)
    log_job(job_id, url, outcome, tally.bytes, seconds)
    return done


@dataclass
class Tally:
    """What a job's fetch received, for its log line."""

    bytes: int = 0


def describe(outcome: Outcome) -> tuple[str, str | None]:
    """A job's outcome in one word for its log line (``stored``, ``revalidated``, ``not-stored``, ``stale-if-error``,
    ``failed``), and the reason when it has one."""
    if isinstance(outcome, Failed):
        return "failed", outcome.kind
    if outcome.detail == STALE_IF_ERROR:
        return "stale-if-error", outcome.error
    if outcome.detail == REVALIDATED:
        return "revalidated", outcome.not_stored
    return ("stored", None) if outcome.stored else ("not-stored", outcome.not_stored)


def log_job(job_id: str, url: str, outcome: Outcome, received: int, seconds: float) -> None:
    """The one line a finished job leaves: what it fetched, how it ended, the upstream's status, the body bytes
    received and how long it took (also as structured fields for ``log.format = "json"``)."""
    word, reason = describe(outcome)
    status = outcome.fwd_status if isinstance(outcome, Fetched) else None
    log.info(
        "job %s %s%s: %s status=%s bytes=%d duration=%.3f",
        job_id,
        word,
        f" ({reason})" if reason else "",
        url,
        status if status is not None else "-",
        received,
        seconds,
        extra={
            "fields": {
                "job": job_id,
                "url": url,
                "outcome": word,
                "reason": reason,
                "upstream_status": status,
                "bytes": received,
                "duration": round(seconds, 3),
            }
        },
    )


async def _finish(env: JobEnv, record: JobRecord, outcome: Outcome, flight: str, seconds: float = 0.0) -> JobRecord:
    done = record.ended(outcome, time.time())
    word, _ = describe(outcome)
    kind = outcome.kind if isinstance(outcome, Failed) else ""
    telemetry.JOBS.labels(word, kind).inc()
    telemetry.JOB_SECONDS.labels(word).observe(seconds)
    jobs = env.settings.jobs
    # A record that carries an unstored response holds a body: keep it only as long as its requester needs it.
    holds_body = isinstance(outcome, Fetched) and outcome.response is not None
    await env.store.finish_job(done, min(jobs.result_ttl, jobs.unstored_result_ttl) if holds_body else jobs.result_ttl)
    await env.store.release(flight, done.id, INFLIGHT_LINGER)
    await env.store.put_note(
        cache_key(done.url), inspection.note_of(done.id, outcome, done.finished or 0.0), jobs.result_ttl
    )
    await env.store.incr(_counts(outcome))
    await env.store.remember_job(recent(done, word, seconds))
    return done


def recent(done: JobRecord, word: str, seconds: float) -> dict[str, Any]:
    """What the operator's page lists about an ended job (``Store.remember_job``)."""
    outcome = done.outcome
    return {
        "id": done.id,
        "url": done.url,
        "state": done.state,
        "outcome": word,
        "status": outcome.fwd_status if isinstance(outcome, Fetched) else None,
        "seconds": round(seconds, 3),
        "ended": done.finished,
    }


def _counts(outcome: Outcome) -> dict[Count, int]:
    if isinstance(outcome, Failed):
        return {Count.JOBS_FAILED: 1}
    if outcome.detail == STALE_IF_ERROR:
        return {Count.JOBS_DONE: 1, Count.STALE_IF_ERROR: 1}
    if outcome.detail == STALE_IF_UNREACHABLE:
        return {Count.JOBS_DONE: 1, Count.STALE_IF_UNREACHABLE: 1}
    return {Count.JOBS_DONE: 1, Count.STORED if outcome.stored else Count.NOT_STORED: 1}


async def _fetch_and_store(env: JobEnv, url: str, headers: Headers, tally: Tally) -> Outcome:
    """Fetch what is missing, once: the client's range, or only what a stored part lacks (RFC 9111 §3.4).

    Only an origin that answers a request for the missing bytes (under ``If-Range``) with a part that does not
    complete the stored one (a new representation's part, ignoring ``If-Range``) costs a second fetch, for what
    the client asked, so that no request is answered with less than it asked for."""
    found = await lookup.find(env.store, url, headers)
    kept = found.entry
    held = partial.held(kept.status, kept.headers, kept.size) if kept is not None else None
    plan = partial.ask(headers, held)
    outcome = await _fetch(env, url, headers, found, held=held, plan=plan, tally=tally)
    if plan.completes and isinstance(outcome, Fetched) and not await _answers(env.store, outcome, headers):
        log.info("job: %s: the origin's part did not complete the stored one; fetching what was asked", url)
        again = partial.Ask(partial.forwarded_range(headers), revalidate=False, why="the stored part was not completed")
        outcome = await _fetch(env, url, headers, replace(found, entry=None), held=None, plan=again, tally=tally)
    return outcome


async def _answers(store: Store, outcome: Fetched, headers: Headers) -> bool:
    """Whether the response an outcome stands for answers the request: a whole one, or a part holding its range."""
    got = await lookup.held_response(store, outcome)
    return got is None or partial.answers(got.status, got.headers, got.size, headers)


async def _fetch(
    env: JobEnv,
    url: str,
    headers: Headers,
    found: lookup.Found,
    *,
    held: partial.Part | None,
    plan: partial.Ask,
    tally: Tally,
) -> Outcome:
    """Fetch as ``plan`` says, decide on the status and fields as soon as they arrive, and stream the body where
    the decision says; a failure at any point (before the response, or while its body streams) ends in the failure
    half of :func:`core.policy.after_fetch` (stand the stale response in, or fail). The stored response takes part
    (revalidated, freshened, standing in) only when the plan says it holds all that is wanted."""
    kept = found.entry
    if not plan.revalidate:
        found = replace(found, entry=None)
    stored = found.entry
    conditional = policy.validators(stored.headers) if stored is not None else ()
    # ``headers`` are the fields the request presented (they select the variant); the deny list stays here, and
    # the range the job asks for is the plan's (``partial.ask``), not the client's field.
    sent = (
        *outgoing(headers, env.settings.upstream.deny_fields),
        *plan.fields,
        *conditional,
        *marks(env.settings.server.pseudonym),
    )
    limit = env.settings.jobs.time_limit
    try:
        async with asyncio.timeout(limit), env.upstream.stream(url, sent) as got:
            received = policy.Received(got.status, got.headers, got.request_time, got.response_time)
            decision = policy.after_fetch(
                headers, stored.times if stored else None, received, time.time(), env.settings.cache
            )
            try:
                if isinstance(decision, policy.Store) and decision.status == 206:
                    return await _store_part(env, url, headers, kept=kept, held=held, got=got, decision=decision)
                return await _carry_out(env, url, headers, found, got, decision=decision)
            finally:
                tally.bytes = got.received_bytes
    except TargetRefused as exc:
        log.info("job: %s refused: %s", url, exc.detail)
        return Failed("refused", exc.detail)
    except UpstreamError as exc:
        if exc.kind == "refused":
            return Failed("refused", exc.detail)
        failure = Failed(exc.kind, exc.detail)
    except TimeoutError:
        failure = Failed("timeout", f"the job exceeded jobs.time_limit ({limit:g} s)")
    # "connect": the origin refused or dropped the connection before any response (the cache is disconnected).
    decision = policy.after_fetch(
        headers,
        stored.times if stored else None,
        None,
        time.time(),
        env.settings.cache,
        unreachable=failure.kind == "connect",
    )
    if isinstance(decision, policy.StandIn):
        return _stand_in(url, found, headers, None, failure.detail, detail=decision.detail)
    log.info("job: %s failed: %s", url, failure.detail)
    return failure


def _stand_in(
    url: str, found: lookup.Found, sent: Headers, fwd_status: int | None, error: str, *, detail: str
) -> Fetched:
    """The stored (stale) response stands in for ``error`` (``detail``: stale-if-error, or the origin unreachable);
    the outcome names it by its key."""
    assert found.entry is not None  # after_fetch stands in only a stored response
    log.info("job: %s failed (%s); serving stale (%s)", url, error, detail)
    return Fetched(fwd_status, key=found.key, detail=detail, error=error, **_variant(found.entry.headers, sent))


async def _carry_out(
    env: JobEnv, url: str, headers: Headers, found: lookup.Found, got: UpstreamStream, *, decision: policy.AfterFetch
) -> Outcome:
    """Do what ``after_fetch`` decided about a response whose body has not been read yet."""
    rules, stored = env.settings.cache, found.entry
    match decision:
        case policy.Fail():  # only ever the answer to no response at all
            raise AssertionError("after_fetch failed a received response")
        case policy.StandIn(reason=reason, detail=detail):
            return _stand_in(url, found, headers, got.status, reason, detail=detail)
        case policy.Freshen():
            assert stored is not None
            # A 304 has no body: the freshened entry points at the stored body (inline, or the same chunks, kept
            # alive as long as the entry now is). Nothing is copied.
            entry = _entry(env, url, got, decision, stored.body, ref=stored.body_ref, stored=stored)
            if stored.body_ref is not None:
                await env.store.keep_chunks(stored.body_ref.name, stored.body_ref.count, decision.keep + CHUNK_MARGIN)
            key = await _save(env, url, headers, entry, decision.keep)
            log.info("job: %s -> 304 (revalidated)", url)
            return Fetched(got.status, key=key, stored=True, detail=REVALIDATED, **_variant(entry.headers, headers))
        case policy.Store():
            body, ref = await write_body(
                env.store, url, got.pieces(rules.chunk_bytes), rules.chunk_bytes, decision.keep + CHUNK_MARGIN
            )
            entry = _entry(env, url, got, decision, body, ref=ref)
            key = await _save(env, url, headers, entry, decision.keep)
            log.info("job: %s -> %d (stored, %d bytes)", url, got.status, entry.size)
            return Fetched(got.status, key=key, stored=True, **_variant(entry.headers, headers))
        case policy.DoNotStore(reason=reason, freshened=True):
            assert stored is not None
            entry = _entry(env, url, got, decision, stored.body, ref=stored.body_ref, stored=stored)
            log.info("job: %s -> 304 (%s)", url, reason)
            return Fetched(
                got.status, response=entry, not_stored=reason, detail=REVALIDATED, **_variant(entry.headers, headers)
            )
        case policy.DoNotStore(reason=reason):
            # Kept for the request that fetched it alone, briefly: its chunks expire with the job's record.
            keep = min(env.settings.jobs.result_ttl, env.settings.jobs.unstored_result_ttl) + CHUNK_MARGIN
            body, ref = await write_body(env.store, url, got.pieces(rules.chunk_bytes), rules.chunk_bytes, keep)
            entry = _entry(env, url, got, decision, body, ref=ref)
            log.info("job: %s -> %d (%s)", url, got.status, reason)
            return Fetched(got.status, response=entry, not_stored=reason, **_variant(entry.headers, headers))
        case _:
            assert_never(decision)


async def _store_part(
    env: JobEnv,
    url: str,
    headers: Headers,
    *,
    kept: StoredResponse | None,
    held: partial.Part | None,
    got: UpstreamStream,
    decision: policy.Store,
) -> Outcome:
    """Store a 206 as a part (RFC 9111 §3.3), combined with the stored response when §3.4 allows it (same strong
    validator and length, spans that overlap or adjoin): the combined span, or the complete 200 once the parts
    add up. The part's body streams into the store first; a combination is then assembled from both bodies, one
    chunk at a time, under a new version, and the entry pointing at it is written last."""
    chunk, expire = env.settings.cache.chunk_bytes, decision.keep + CHUNK_MARGIN
    body, ref = await write_body(env.store, url, got.pieces(chunk), chunk, expire)
    entry = _entry(env, url, got, decision, body, ref=ref)
    new = partial.held(entry.status, entry.headers, entry.size)
    if new is None:
        reason = "the 206's Content-Range does not match its body"
        log.info("job: %s -> 206 (%s)", url, reason)
        return Fetched(got.status, response=entry, not_stored=reason, **_variant(entry.headers, headers))
    combination = partial.combine(held, new)
    if isinstance(combination, partial.Combine) and kept is not None:
        fields = kept.headers if combination.fields_from == "stored" else entry.headers
        pieces = _pieces(env.store, combination, kept, entry)
        try:
            body, ref = await write_body(env.store, url, _rechunk(pieces, chunk), chunk, expire)
        except BodyGoneError:
            combination = partial.Alone("the stored part's body is gone")
        else:
            status = 200 if combination.whole else 206
            whole = partial.combined_fields(fields, combination)
            entry = StoredResponse(
                url, status, whole, body, got.request_time, got.response_time, decision.lifetime, ref, entry.tags
            )
    key = await _save(env, url, headers, entry, decision.keep)
    how = "combined" if isinstance(combination, partial.Combine) else f"stored alone: {combination.reason}"
    log.info("job: %s -> 206 %s (%s; %d bytes)", url, new, how, entry.size)
    # A part stored at the key may be replaced by another request's part (of another range) before this job's
    # requesters read it: the outcome carries its own (a whole response answers any range, so it is named only).
    own = entry if entry.status == 206 else None
    return Fetched(got.status, key=key, response=own, stored=True, **_variant(entry.headers, headers))


class BodyGoneError(Exception):
    """A stored body's chunk is gone while a combination reads it."""


async def _pieces(
    store: Store, combination: partial.Combine, kept: StoredResponse, new: StoredResponse
) -> AsyncIterator[bytes]:
    """The combined body, piece by piece, each read from the body that holds it."""
    starts = {"stored": _start(kept), "new": _start(new)}
    for piece in combination.pieces:
        source = kept if piece.source == "stored" else new
        offset = starts[piece.source]
        async for data in _body_bytes(store, source, piece.first - offset, piece.last - offset):
            yield data


def _start(entry: StoredResponse) -> int:
    """Where a stored body starts in the representation (0 unless it is a part)."""
    part = partial.held(entry.status, entry.headers, entry.size)
    return part.first if part is not None else 0


async def _body_bytes(store: Store, entry: StoredResponse, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes ``first`` to ``last`` of a stored body, inline or read chunk by chunk."""
    ref = entry.body_ref
    if ref is None:
        yield entry.body[first : last + 1]
        return
    for index in ref.span(first, last):
        (data,) = await store.get_chunks(ref.name, [index], ref.size)
        if data is None:
            raise BodyGoneError(ref.name)
        start = index * ref.chunk
        yield data[max(first - start, 0) : last - start + 1]


async def _rechunk(pieces: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """``pieces`` regrouped into pieces of exactly ``size`` bytes (the last may be shorter), as bodies are stored."""
    buffer = bytearray()
    async for data in pieces:
        buffer += data
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


async def write_body(
    store: Store, url: str, pieces: AsyncIterator[bytes], chunk: int, expire: float
) -> tuple[bytes, BodyRef | None]:
    """Stream a body (``pieces`` of ``chunk`` bytes, the last maybe shorter) into the store: inline when it is one
    chunk, else chunk by chunk under a new version (so memory holds one chunk at a time). The caller writes the
    entry that points at it last, once it is whole."""
    name = f"{cache_key(url)}:{uuid.uuid4().hex[:16]}"
    size, count, first = 0, 0, b""
    async for piece in pieces:
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
    env: JobEnv,
    url: str,
    got: UpstreamStream,
    decision: policy.Freshen | policy.Store | policy.DoNotStore,
    body: bytes,
    *,
    ref: BodyRef | None,
    stored: StoredResponse | None = None,
) -> StoredResponse:
    """The response to keep (or hand over): its surrogate keys read from its fields (a 304 that names none keeps
    the ``stored`` response's), those fields then dropped when ``cache.strip_tag_fields`` says so."""
    headers = decision.headers
    tags = invalidation.tags_of(headers) or (stored.tags if stored is not None else ())
    if env.settings.cache.strip_tag_fields:
        headers = invalidation.without_tag_fields(headers)
    return StoredResponse(
        url, decision.status, headers, body, got.request_time, got.response_time, decision.lifetime, ref, tags
    )


class _Variant(TypedDict):
    vary: tuple[str, ...]
    variant: str | None


def _variant(response_headers: Headers, sent: Headers) -> _Variant:
    """The fields a response varies on and the digest of the fetching request's values for them (§4.1)."""
    fields = policy.vary_fields(response_headers)
    digest = policy.variant_key(fields, sent) if fields and fields != ("*",) else None
    return {"vary": fields, "variant": digest}
