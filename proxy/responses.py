"""Building client responses from records: a stored entry, a job's outcome, a job still pending.

Every builder takes the response's ``now`` from its caller, so the ``Age`` and the Cache-Status ``ttl`` of one
response are computed at one instant.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import assert_never

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload
from multidict import CIMultiDict, CIMultiDictProxy

from core import forwarding, policy
from core.outcome import Failed, Fetched
from core.policy import Headers
from core.records import BodyRef, JobRecord, StoredResponse
from core.store import Store

from .cache_status import cache_status
from .ranges import Unsatisfiable, byte_range
from .refusals import problem_response

#: Fields recomputed for every response rather than replayed from the store.
_REPLACED = frozenset({"content-length", "age", "cache-status"})


#: How a failed job's cause reads as a status: the upstream timed out, or the target was refused (SSRF guard);
#: anything else is a bad gateway.
_FAILURES = {
    "timeout": (504, "Upstream Timeout"),
    "too_slow": (504, "Upstream Too Slow"),
    "refused": (403, "Forbidden target"),
}


def job_location(job_id: str) -> str:
    return f"/_grenier/jobs/{job_id}"


@functools.lru_cache(maxsize=4096)
def _replayed(pairs: Headers) -> CIMultiDictProxy[str]:
    """A stored response's fields as they are replayed, built once per field set (every hit on it reuses them)."""
    return CIMultiDictProxy(CIMultiDict((k, v) for k, v in pairs if k.lower() not in _REPLACED))


def hit_fields(pairs: Headers, pseudonym: str) -> CIMultiDict[str]:
    """A stored response's fields as every answer from it carries them: replayed, plus this cache's ``Via``
    (``Age`` and ``Cache-Status`` are added per response)."""
    headers = _replayed(pairs).copy()
    headers.add("Via", f"1.1 {pseudonym}")
    return headers


def _fields(pairs: Headers, age: float, status_field: str, pseudonym: str) -> CIMultiDict[str]:
    headers = hit_fields(pairs, pseudonym)
    headers["Age"] = str(int(age))
    headers["Cache-Status"] = status_field
    return headers


#: Pages fetched for a client are served from grenier's own origin by /fetch and the job endpoint: sandbox them,
#: so that their scripts can never act as that origin (on grenier's control endpoints, say).
FOREIGN_CONTENT = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def make_foreign(headers: CIMultiDict[str]) -> None:
    """Make ``headers`` fit to serve from grenier's own origin: the upstream's origin-scoped fields
    (:data:`core.forwarding.ORIGIN_SCOPED`) dropped, its CSP replaced by a sandbox."""
    for name in {n for n in headers if forwarding.origin_scoped(n)}:
        headers.popall(name, None)
    headers.update(FOREIGN_CONTENT)


class BodyGone(Exception):
    """A stored entry's chunks are gone (expired or evicted before their entry): the entry is unusable."""


#: Chunks read per store round trip while a body streams out (a few hundred KiB to a few MiB at a time).
CHUNKS_PER_READ = 4


async def _chunks(store: Store, ref: BodyRef, first: int, last: int) -> AsyncIterablePayload:
    """Bytes ``first`` to ``last`` of a chunked body, read a few chunks at a time as the client takes them.

    The first read happens here, before any header is sent, so a body already gone is a :class:`BodyGone` the
    handler can still answer for; a chunk that goes missing later can only cut the response short, which aborts
    the connection (a ``ConnectionError``), so the client never takes a truncated body for a whole one.
    """
    numbers = ref.span(first, last)
    batches = [numbers[i : i + CHUNKS_PER_READ] for i in range(0, len(numbers), CHUNKS_PER_READ)]
    opening = await store.get_chunks(ref.name, batches[0], ref.size)
    if any(c is None for c in opening):
        raise BodyGone(ref.name)

    async def stream() -> AsyncIterator[bytes]:
        for n, batch in enumerate(batches):
            got = opening if n == 0 else await store.get_chunks(ref.name, batch, ref.size)
            for index, data in zip(batch, got, strict=True):
                expected = min(ref.chunk, ref.size - index * ref.chunk)
                if data is None or len(data) != expected:
                    raise ConnectionResetError(f"stored body {ref.name} lost chunk {index} while streaming")
                start = index * ref.chunk
                yield data[max(first - start, 0) : min(last - start + 1, expected)]

    return AsyncIterablePayload(stream())


async def from_entry(
    request_headers: Headers,
    entry: StoredResponse,
    status_field: str,
    *,
    pseudonym: str,
    now: float,
    store: Store,
) -> web.Response:
    """The stored response for this request: a 304 when its conditionals match (§4.3.2), one byte range when
    asked (RFC 9110 §14), else the whole of it; always with a fresh ``Age`` (§4.2.3) and ``Cache-Status``.

    A chunked body streams from ``store`` (only the chunks a range needs); :class:`BodyGone` when it is gone."""
    age = policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
    if policy.not_modified(request_headers, entry.status, entry.headers):
        return web.Response(
            status=304, headers=_fields(policy.not_modified_headers(entry.headers), age, status_field, pseudonym)
        )
    headers = _fields(entry.headers, age, status_field, pseudonym)
    size, status, first, last = entry.size, entry.status, 0, entry.size - 1
    range_field = policy.first(request_headers, "range")
    if range_field and entry.status == 200 and policy.first(request_headers, "if-range") is None:
        try:
            span = byte_range(range_field, size)
        except Unsatisfiable:
            return problem_response(
                416,
                "Range Not Satisfiable",
                f"the range {range_field!r} lies outside the {size}-byte representation",
                headers={"Content-Range": f"bytes */{size}", "Cache-Status": status_field},
            )
        if span is not None:
            first, last = span
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if entry.body_ref is None or size == 0:
        return web.Response(status=status, headers=headers, body=entry.body[first : last + 1])
    headers["Content-Length"] = str(last - first + 1)
    return web.Response(status=status, headers=headers, body=await _chunks(store, entry.body_ref, first, last))


async def outcome(
    request_headers: Headers,
    record: JobRecord,
    held: StoredResponse | None,
    *,
    pseudonym: str,
    now: float,
    store: Store,
    fwd: str,
    collapsed: bool = False,
    detail: str | None = None,
) -> web.Response:
    """A finished job as the client sees it: the fetched response (``held``, see :func:`core.lookup.held_response`),
    or a problem naming why there is none."""
    match record.outcome:
        case Failed(kind=kind, detail=why):
            status, title = _FAILURES.get(kind, (502, "Bad Gateway"))
            return problem_response(
                status,
                title,
                why,
                instance=job_location(record.id),
                url=record.url,
                cause=kind,
                headers={"Cache-Status": cache_status(pseudonym, fwd=fwd, collapsed=collapsed, detail=kind)},
            )
        case Fetched() if held is None:
            return _gone(record)
        case Fetched() as got:
            assert held is not None
            entry = held
            ttl = None
            if got.from_cache:
                ttl = entry.lifetime - policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
            field = cache_status(
                pseudonym,
                fwd=fwd,
                fwd_status=got.fwd_status if got.fwd_status is not None else entry.status,
                ttl=ttl,
                stored=got.stored,
                collapsed=collapsed,
                detail=got.detail or detail or got.not_stored,
            )
            try:
                return await from_entry(request_headers, entry, field, pseudonym=pseudonym, now=now, store=store)
            except BodyGone:
                return _gone(record)
        case None:  # a pending record: the callers answer 202 for those; a corrupt ended one has nothing to give
            return problem_response(
                502, "Bad Gateway", "the job ended without an outcome", instance=job_location(record.id)
            )
        case _:
            assert_never(record.outcome)


def _gone(record: JobRecord) -> web.Response:
    return problem_response(
        404,
        "Gone",
        "the job's response was stored but has since expired or been evicted: request the URL again",
        instance=job_location(record.id),
        url=record.url,
    )


def accepted(
    record: JobRecord, *, pseudonym: str, fwd: str, collapsed: bool = False, detail: str | None = None
) -> web.Response:
    """``202 Accepted`` pointing at the job (RFC 9110 §15.3.3)."""
    location = job_location(record.id)
    return web.json_response(
        record.status_doc(location),
        status=202,
        headers={
            "Location": location,
            "Retry-After": "1",
            "Cache-Status": cache_status(pseudonym, fwd=fwd, collapsed=collapsed, detail=detail),
            "Cache-Control": "no-store",
        },
    )
