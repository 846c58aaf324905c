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

from jobs.fetch_job import inflight_ttl

from .config import Settings
from .problems import Unavailable
from .records import JobRecord
from .store import Store
from .targets import cache_key

log = logging.getLogger(__name__)

Send = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class Started:
    record: JobRecord
    joined: bool
    """True when this request collapsed onto a job another request had started."""


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, send: Send) -> None:
        self.settings = settings
        self.store = store
        self.send = send

    async def start(self, url: str, *, force: bool = False) -> Started:
        """Start (or join) the job for ``url``. ``force`` refuses to join a job that ended before this call."""
        now = time.time()
        url_hash = cache_key(url)
        ttl, result_ttl = inflight_ttl(self.settings), self.settings.jobs.result_ttl
        record = JobRecord(id=uuid.uuid4().hex, url=url, created=now)
        await self.store.put_job(record, result_ttl)
        prior_id = await self.store.claim(url_hash, record.id, ttl)
        if prior_id is not None:
            prior = await self.store.get_job(prior_id)
            if prior is not None and (prior.pending or not force):
                await self.store.delete_job(record.id)
                return Started(prior, joined=True)
            await self.store.take_over(url_hash, record.id, ttl)
        try:
            await self.send(record.id, url)
        except Exception as exc:
            log.error("could not enqueue job for %s: %s", url, exc)
            failed = record.with_(state="failed", finished=time.time(), error="could not enqueue", error_kind="queue")
            await self.store.finish_job(failed, result_ttl)
            await self.store.release(url_hash, record.id, 0.001)
            problem = Unavailable("the job queue is unreachable; try again shortly")
            problem.headers["Retry-After"] = "5"
            raise problem from None
        return Started(record, joined=False)
