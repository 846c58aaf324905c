"""The job-queue seam: what the server needs to hand a fetch to the workers, and what a worker process needs to run
them, whatever carries the messages.

:class:`JobQueue` is a protocol, like :class:`~core.store.Store`: the embedded and the Redis implementations live in
``jobs.queues`` and pass one contract test (``tests/unit/test_queue_contract.py``); a further broker slots in
beside them without a branch anywhere else.

A message carries a job id, a URL, the request fields the fetch forwards and the in-flight key it releases: never a
body (the job record in the store is the truth; the message only says "go").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .policy import Headers


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    url: str
    headers: Headers = ()
    """The fields the client presented: they select the Vary variant the job stores, and it sends
    :func:`core.forwarding.outgoing` of them."""
    flight: str = ""
    """The in-flight key the job holds and releases when it ends; empty means the URL's own key."""

    def options(self) -> dict[str, Any]:
        """The message's options as the broker carries them (JSON)."""
        return {"headers": [list(h) for h in self.headers], "flight": self.flight}

    @classmethod
    def from_options(cls, job_id: str, url: str, options: dict[str, Any] | None) -> JobMessage:
        options = options or {}
        headers = tuple((str(k), str(v)) for k, v in options.get("headers", ()))
        return cls(job_id, url, headers, str(options.get("flight") or ""))


@dataclass(frozen=True)
class Defer:
    """A handler's answer when it may not run a message yet (its origin already has as many fetches running as
    ``jobs.max_per_origin`` allows): the queue puts the message back, to be taken again after ``seconds``, so the
    wait holds no worker thread."""

    seconds: float


JobHandler = Callable[[JobMessage], Awaitable[Defer | None]]
"""What a worker does with one message; it runs on the workers' event loop. It returns :class:`Defer` to have the
message put back for later, ``None`` when it is done with it."""


class Workers(Protocol):
    """Worker threads consuming a queue in this process."""

    def stop(self, timeout: float) -> None:
        """Stop taking messages and wait up to ``timeout`` seconds for the running jobs (blocking)."""
        ...


class JobQueue(Protocol):
    async def send(self, message: JobMessage) -> None:
        """Enqueue one fetch; raises when the queue cannot be reached."""
        ...

    async def pending(self) -> int:
        """Messages waiting to be taken by a worker (the backlog that ``jobs.max_pending`` bounds)."""
        ...

    async def ping(self) -> None:
        """Raise when the queue cannot be reached (readiness)."""
        ...

    def start_workers(
        self, handler: JobHandler, *, threads: int, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> Workers:
        """Run ``threads`` worker threads in this process, each message handed to ``handler``; ``on_stop`` runs on
        the workers' event loop once their threads are done (to close what the handler opened there)."""
        ...

    async def close(self) -> None: ...
