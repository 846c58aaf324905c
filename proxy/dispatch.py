"""The miss path: start a fetch job for a URL, or join the one already fetching it (request collapsing).

The job record is written *before* the URL is claimed, so whoever reads the in-flight claim always finds a record
behind it; the claim is one atomic ``SET NX GET``, so concurrent misses agree on a single job. Whether a job that
already ended may be joined is :func:`core.outcome.shareable`'s call, the same rule the handlers use.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from core.outcome import Failed, shareable
from core.policy import Headers
from core.problems import Unavailable
from core.queue import JobMessage, JobQueue
from core.records import JobRecord
from core.settings import Settings
from core.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    record: JobRecord
    joined: bool
    """True when this request collapsed onto a job another request had started."""


def joinable(prior: JobRecord, since: float, sent: Headers) -> bool:
    """A pending job, or one that ended after the caller read the store (``since``) with an outcome the caller
    may share: a job that ended before then has nothing newer than what the caller saw and found wanting."""
    if prior.pending:
        return True
    return (prior.finished or 0.0) >= since and prior.outcome is not None and shareable(prior.outcome, sent)


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue

    async def start(self, url: str, *, flight: str, since: float, headers: Headers = ()) -> Started:
        """Start (or join) the job fetching ``url`` for requests that share ``flight`` (the stored key they read).

        ``since`` is when the caller read the store (the request's clock); ``headers`` are the request fields the
        job forwards.
        """
        ttl, result_ttl = self.settings.jobs.claim_ttl, self.settings.jobs.result_ttl
        record = JobRecord(id=uuid.uuid4().hex, url=url, created=since)
        await self.store.put_job(record, result_ttl)
        prior_id = await self.store.claim(flight, record.id, ttl)
        if prior_id is not None:
            prior = await self.store.get_job(prior_id)
            if prior is not None and joinable(prior, since, headers):
                await self.store.delete_job(record.id)
                return Started(prior, joined=True)
            await self.store.take_over(flight, record.id, ttl)
        try:
            await self.queue.send(JobMessage(record.id, url, headers, flight))
        except Exception as exc:
            log.error("could not enqueue job for %s: %s", url, exc)
            failed = record.ended(Failed("queue", "could not enqueue"), since)
            await self.store.finish_job(failed, result_ttl)
            await self.store.release(flight, record.id, 0.001)
            raise Unavailable("the job queue is unreachable; try again shortly") from None
        return Started(record, joined=False)
