"""The miss path: start a fetch job for a URL, or join the one already fetching it (request collapsing).

The job record is written *before* the URL is claimed, so whoever reads the in-flight claim always finds a record
behind it; the claim is one atomic ``SET NX GET``, so concurrent misses agree on a single job. Whether a job that
already ended may be joined is :func:`core.outcome.shareable`'s call, the same rule the handlers use.

A request that joins gets a record (and so a job location) of its own, linked to the job it joined: the location
delivers the joined job's outcome only when :func:`core.outcome.shareable` says this request may use it, and
otherwise turns into a fetch of the request's own (:meth:`Dispatcher.resolve`). A private response, or another
variant, therefore never reaches a request it was not fetched for, while shareable outcomes keep one upstream fetch;
the joiners of one other variant share one fetch of it (:func:`variant_flight`). A request with ``Authorization``
claims apart (:func:`flight`): it never joins a job fetched without the same credentials, nor the reverse.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from core.job_ids import new_job_id
from core.outcome import Failed, Fetched, Outcome, shareable
from core.policy import Headers, values, variant_key
from core.problems import Unavailable
from core.queue import JobMessage, JobQueue
from core.records import JobRecord
from core.settings import Settings
from core.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    record: JobRecord
    """This request's own job record: its id is the job location the request (and only it) is given."""
    joined: JobRecord | None = None
    """The job another request had started that this one collapsed onto (``record.joined`` names it)."""

    @property
    def collapsed(self) -> bool:
        return self.joined is not None


def flight(key: str, sent: Headers) -> str:
    """The claim requests collapse on: the stored key they read, and for a request with Authorization also its
    credentials, so that it never joins a job started without them (nor another requester's), or the reverse."""
    credentials = values(sent, "authorization")
    if not credentials:
        return key
    digest = hashlib.sha256("\n".join(credentials).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"{key}:auth:{digest}"


def variant_flight(outcome: Outcome | None, sent: Headers) -> str | None:
    """The claim of the ``Vary`` variant ``sent`` selects, when ``outcome`` stored another variant of its URL (its
    key names the URL's variants' generation): the key that variant is, or will be, stored under, which later misses
    of it claim too. ``None`` when the outcome says nothing of variants."""
    if not isinstance(outcome, Fetched) or outcome.key is None or not outcome.vary or outcome.vary == ("*",):
        return None
    generation, sep, _ = outcome.key.rpartition(":")
    if not sep:
        return None
    return flight(f"{generation}:{variant_key(outcome.vary, sent)}", sent)


def joinable(prior: JobRecord, since: float, sent: Headers) -> bool:
    """A pending job, or one that ended after the caller read the store (``since``) with an outcome the caller
    may share: a job that ended before then has nothing newer than what the caller saw and found wanting."""
    if prior.pending:
        return True
    return (prior.finished or 0.0) >= since and prior.outcome is not None and shareable(prior.outcome, sent)


#: Admission for a fetch a joiner starts of its own (the client's miss rate, the queue's backlog); it raises a
#: :class:`~core.problems.Problem` to refuse.
Admit = Callable[[], Awaitable[None]]


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue

    async def start(self, url: str, *, flight: str, since: float, headers: Headers = (), track: bool = True) -> Started:
        """Start (or join) the job fetching ``url`` for requests that share ``flight`` (the stored key they read).

        ``since`` is when the caller read the store (the request's clock); ``headers`` are the request fields the
        job forwards. A request that joins another's job keeps a record of its own, linked to that job
        (``JobRecord.joined``), unless ``track`` is false (nobody will ever poll it: a background refresh).
        """
        ttl, result_ttl = self.settings.jobs.claim_ttl, self.settings.jobs.result_ttl
        record = JobRecord(id=new_job_id(since), url=url, created=since)
        await self.store.put_job(record, result_ttl)
        prior_id = await self.store.claim(flight, record.id, ttl)
        if prior_id is not None:
            prior = await self.store.get_job(prior_id)
            if prior is not None and joinable(prior, since, headers):
                if not track:
                    await self.store.delete_job(record.id)
                    return Started(record, prior)
                joiner = replace(record, joined=prior.id, sent=headers)
                if prior.outcome is not None:  # ended, and shareable with this request (joinable said so)
                    joiner = joiner.ended(prior.outcome, prior.finished or since)
                await self.store.put_job(joiner, result_ttl)
                return Started(joiner, prior)
            await self.store.take_over(flight, record.id, ttl)
        await self._send(record, headers, flight, since)
        return Started(record)

    async def resolve(self, record: JobRecord, *, since: float, admit: Admit) -> JobRecord:
        """What a job location answers now: its own record, or, for a request that joined another's job, that
        job's progress (pending), its outcome when shareable with this request (which then becomes this record's
        own), else a fetch of this request's own, started here (or by a concurrent poll) after ``admit``."""
        if record.joined is None or not record.pending:
            return record
        prior = await self.store.get_job(record.joined)
        if prior is not None and prior.pending:
            return replace(record, state=prior.state, started=prior.started, attempts=prior.attempts)
        if prior is not None and prior.outcome is not None and shareable(prior.outcome, record.sent):
            done = record.ended(prior.outcome, prior.finished or since)
            await self.store.finish_job(done, self.settings.jobs.result_ttl)
            return done
        variant = variant_flight(prior.outcome, record.sent) if prior is not None else None
        return await self.fetch_own(record, since=since, admit=admit, variant=variant)

    async def fetch_own(
        self, record: JobRecord, *, since: float, admit: Admit, variant: str | None = None
    ) -> JobRecord:
        """Turn a joiner's record into a job of its own (same id, so its location stays the one the request
        holds): the outcome it joined is not its to use. One claim per record makes concurrent polls start it
        once. With ``variant`` (the joined job stored another ``Vary`` variant), the fetch claims that variant's
        key, so that the joiners of one variant collapse in turn: one that finds it claimed by a pending job is
        linked to that job instead (RFC 9111 §4.1)."""
        ttl = self.settings.jobs.claim_ttl
        own_claim = f"own:{record.id}"
        if await self.store.claim(own_claim, record.id, ttl) is not None:
            return await self.store.get_job(record.id) or record  # another poll started it
        flight = own_claim
        if variant is not None:
            prior_id = await self.store.claim(variant, record.id, ttl)
            prior = await self.store.get_job(prior_id) if prior_id not in (None, record.id) else None
            if prior is not None and prior.pending:
                linked = replace(record, joined=prior.id, state=prior.state)
                await self.store.put_job(linked, self.settings.jobs.result_ttl)
                await self.store.release(own_claim, record.id, 0.001)  # resolved again once that job ends
                return linked
            if prior_id not in (None, record.id):
                await self.store.take_over(variant, record.id, ttl)
            flight = variant
        try:
            await admit()
        except Exception:
            await self.store.release(own_claim, record.id, 0.001)  # refused for now: a later poll tries again
            if flight != own_claim:
                await self.store.release(flight, record.id, 0.001)
            raise
        own = replace(record, joined=None, state="queued", started=None, attempts=0)
        await self.store.put_job(own, self.settings.jobs.result_ttl)
        await self._send(own, record.sent, flight, since)
        return own

    async def _send(self, record: JobRecord, headers: Headers, flight: str, since: float) -> None:
        try:
            await self.queue.send(JobMessage(record.id, record.url, headers, flight))
        except Exception as exc:
            log.error("could not enqueue job for %s: %s", record.url, exc)
            failed = record.ended(Failed("queue", "could not enqueue"), since)
            await self.store.finish_job(failed, self.settings.jobs.result_ttl)
            await self.store.release(flight, record.id, 0.001)
            raise Unavailable("the job queue is unreachable; try again shortly") from None
