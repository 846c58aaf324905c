"""Building client responses from records: a stored entry, a job's outcome, a job still pending."""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from . import policy
from .cache_status import cache_status
from .problems import problem_response
from .records import JobRecord, StoredResponse

#: Fields recomputed for every response rather than replayed from the store.
_REPLACED = frozenset({"content-length", "age", "cache-status"})


def job_location(job_id: str) -> str:
    return f"/_grenier/jobs/{job_id}"


def stored_response(entry: StoredResponse, status_field: str, now: float | None = None) -> web.Response:
    """The stored status, fields and body, with a fresh ``Age`` (RFC 9111 §4.2.3) and ``Cache-Status``."""
    now = time.time() if now is None else now
    headers: CIMultiDict[str] = CIMultiDict((k, v) for k, v in entry.headers if k.lower() not in _REPLACED)
    age = policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
    headers["Age"] = str(int(age))
    headers["Cache-Status"] = status_field
    return web.Response(status=entry.status, headers=headers, body=entry.body)


def outcome(record: JobRecord, *, fwd: str, collapsed: bool = False, detail: str | None = None) -> web.Response:
    """A finished job as the client sees it: the fetched response, or a problem naming why there is none."""
    if record.state == "failed" or record.response is None:
        status = 504 if record.error_kind == "timeout" else 502
        title = "Upstream Timeout" if status == 504 else "Bad Gateway"
        return problem_response(
            status,
            title,
            record.error or "the fetch failed",
            instance=job_location(record.id),
            url=record.url,
            cause=record.error_kind,
            headers={"Cache-Status": cache_status(fwd=fwd, collapsed=collapsed, detail=record.error_kind)},
        )
    entry = record.response
    now = time.time()
    ttl = None
    if record.stored:
        ttl = entry.lifetime - policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
    field = cache_status(
        fwd=fwd,
        fwd_status=entry.status,
        ttl=ttl,
        stored=record.stored,
        collapsed=collapsed,
        detail=detail or record.not_stored,
    )
    return stored_response(entry, field, now)


def accepted(record: JobRecord, *, fwd: str, collapsed: bool = False, detail: str | None = None) -> web.Response:
    """``202 Accepted`` pointing at the job (RFC 9110 §15.3.3)."""
    location = job_location(record.id)
    return web.json_response(
        record.status_doc(location),
        status=202,
        headers={
            "Location": location,
            "Retry-After": "1",
            "Cache-Status": cache_status(fwd=fwd, collapsed=collapsed, detail=detail),
            "Cache-Control": "no-store",
        },
    )
