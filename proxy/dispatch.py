"""The miss path: start a fetch job for a URL, or join the one already fetching it (request collapsing).

The job record is written *before* the URL is claimed, so whoever reads the in-flight marker always finds a record
behind it; the marker is claimed with one atomic ``SET NX GET``, so concurrent misses agree on a single job.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.policy import Headers
from core.problems import Unavailable
from core.records import JobRecord
from core.settings import Settings
from core.store import Store
from jobs.fetch_job import inflight_ttl

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Enqueue a fetch: job id, URL, and the options the job needs (request fields, in-flight key)."""


@dataclass(frozen=True)
class Started:
    record: JobRecord
    joined: bool
    """True when this request collapsed onto a job another request had started."""


def _joinable(prior: JobRecord, since: float) -> bool:
    """A pending job, or one that ended after the caller read the store with a shareable outcome: stored, or a
    failure. An unstored response (private, no-store, Set-Cookie) belongs to the request that fetched it."""
    if prior.pending:
        return True
    return (prior.finished or 0.0) >= since and (prior.stored or prior.state == "failed")


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, send: Send) -> None:
        self.settings = settings
        self.store = store
        self.send = send

    async def start(self, url: str, *, flight: str, since: float, headers: Headers = ()) -> Started:
        """Start (or join) the job fetching ``url`` for requests that share ``flight`` (the stored key they read).

        ``since`` is when the caller read the store: a job that ended before then has nothing newer than what the
        caller saw (and found wanting), so only a pending job, or one that ended after, is joined. ``headers`` are
        the request fields the job forwards.
        """
        now = time.time()
        ttl, result_ttl = inflight_ttl(self.settings), self.settings.jobs.result_ttl
        record = JobRecord(id=uuid.uuid4().hex, url=url, created=now)
        await self.store.put_job(record, result_ttl)
        prior_id = await self.store.claim(flight, record.id, ttl)
        if prior_id is not None:
            prior = await self.store.get_job(prior_id)
            if prior is not None and _joinable(prior, since):
                await self.store.delete_job(record.id)
                return Started(prior, joined=True)
            await self.store.take_over(flight, record.id, ttl)
        try:
            await self.send(record.id, url, {"headers": [list(h) for h in headers], "flight": flight})
        except Exception as exc:
            log.error("could not enqueue job for %s: %s", url, exc)
            failed = record.with_(state="failed", finished=time.time(), error="could not enqueue", error_kind="queue")
            await self.store.finish_job(failed, result_ttl)
            await self.store.release(flight, record.id, 0.001)
            problem = Unavailable("the job queue is unreachable; try again shortly")
            problem.headers["Retry-After"] = "5"
            raise problem from None
        return Started(record, joined=False)
