"""Building client responses from records: a stored entry, a job's outcome, a job still pending.

Every builder takes the response's ``now`` from its caller, so the ``Age`` and the Cache-Status ``ttl`` of one
response are computed at one instant.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from collections.abc import AsyncIterator
from typing import assert_never

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload
from multidict import CIMultiDict, CIMultiDictProxy

from core import forwarding, partial, policy
from core.outcome import Failed, Fetched
from core.policy import Headers
from core.records import BodyRef, JobRecord, StoredResponse
from core.store import Store

from .cache_status import cache_status
from .locations import job_location
from .refusals import problem_response

#: Fields recomputed for every response rather than replayed from the store.
_REPLACED = frozenset({"content-length", "age", "cache-status"})


#: How a failed job's cause reads as a status: the upstream timed out, or the target was refused (SSRF guard);
#: anything else is a bad gateway.
_FAILURES = {
    "timeout": (504, "Upstream Timeout"),
    "too_slow": (504, "Upstream Too Slow"),
    "refused": (403, "Forbidden target"),
    "crashed": (502, "Fetch Job Crashed"),
}


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

    A stored part (a 206, RFC 9111 §3.3) answers with the range asked when it holds it (``partial.covered``), else
    as it was received (the answer to the range its fetch asked for). A chunked body streams from ``store`` (only
    the chunks a range needs); :class:`BodyGone` when it is gone."""
    age = policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
    if policy.not_modified(request_headers, entry.status, entry.headers):
        return web.Response(
            status=304, headers=_fields(policy.not_modified_headers(entry.headers), age, status_field, pseudonym)
        )
    headers = _fields(entry.headers, age, status_field, pseudonym)
    size, status, first, last = entry.size, entry.status, 0, entry.size - 1
    range_field = policy.first(request_headers, "range")
    if entry.status == 206:
        part = partial.held(entry.status, entry.headers, size)
        span = partial.covered(part, request_headers) if part is not None else None
        if part is not None and span is not None:
            # Positions in the representation, read from the part's own body, which starts at part.first.
            first, last = span[0] - part.first, span[1] - part.first
            length = "*" if part.length is None else str(part.length)
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{length}"
    elif range_field and entry.status == 200 and policy.first(request_headers, "if-range") is None:
        try:
            span = partial.byte_range(range_field, size)
        except partial.Unsatisfiable:
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
    record: JobRecord,
    *,
    location: str,
    pseudonym: str,
    fwd: str,
    collapsed: bool = False,
    detail: str | None = None,
    html_page: bool = False,
) -> web.Response:
    """``202 Accepted`` pointing at the job (RFC 9110 §15.3.3) at its absolute ``location``: the JSON status
    document, or for a browser (``html_page``) a page that follows the job and then shows the response."""
    headers = {
        "Location": location,
        "Retry-After": "1",
        "Cache-Status": cache_status(pseudonym, fwd=fwd, collapsed=collapsed, detail=detail),
        "Cache-Control": "no-store",
    }
    if html_page:
        headers["Content-Security-Policy"] = _PENDING_CSP
        return web.Response(
            status=202, headers=headers, text=_pending_page(record.url, location), content_type="text/html"
        )
    return web.json_response(record.status_doc(location), status=202, headers=headers)


#: The pending page's script: ask for the same URL again, waiting for the job (``Prefer: wait``), until the answer
#: is no longer grenier's 202; then reload when the response was stored (the reload is a hit), else show the
#: response it got (an unstored one is this request's alone: a reload would fetch it again).
_PENDING_SCRIPT = """(async () => {
  for (;;) {
    const r = await fetch(location.href, {headers: {"Prefer": "wait=25"}});
    const status = r.headers.get("Cache-Status") || "";
    if (r.status === 202 && status.includes("fwd=") && !status.includes("fwd-status")) continue;
    if (/;(hit|stored)\\b/.test(status)) { location.reload(); return; }
    const text = await r.text();
    document.open(); document.write(text); document.close(); return;
  }
})();"""

_PENDING_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_PENDING_SCRIPT.encode()).digest()).decode()
    + "'"
)


def _pending_page(url: str, location: str) -> str:
    """The HTML a browser gets on a miss: the script above, and without script a slow refresh and the job's link."""
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Fetching…</title>"
        '<noscript><meta http-equiv="refresh" content="5"></noscript></head><body>'
        f"<p>Fetching <code>{html.escape(url)}</code>; this page shows it as soon as it arrives.</p>"
        f'<p><a href="{html.escape(location)}">The fetch job</a></p>'
        f"<script>{_PENDING_SCRIPT}</script></body></html>"
    )
