"""The job queues on Dramatiq: :class:`EmbeddedQueue` (in-process), :class:`RedisQueue` and :class:`RabbitQueue`,
behind :class:`core.queue.JobQueue`, and :func:`open_queue`, the one place the settings choose between them.

Each queue builds its broker explicitly (never Dramatiq's implicit global one) and declares the one ``fetch`` actor
on it; the actor only turns the message back into a :class:`~core.queue.JobMessage` and hands it to whatever handler
the process's workers were started with, so the server (which only sends) needs no job resources at all.

Redelivery after a worker dies (Redis): Dramatiq's Redis broker keeps each message a worker has taken in that
worker's "acks" set until the actor returns. Every worker heartbeats on each poll; a maintenance pass (run on a
share of broker calls, ``MAINTENANCE_CHANCE`` per million) moves the unacknowledged messages of any worker silent for
longer than ``jobs.heartbeat_timeout`` back onto the queue, where a live worker picks them up. With the defaults a
job whose worker was SIGKILLed runs again about ``heartbeat_timeout`` (10 s) after the kill.

Redelivery after a worker dies (RabbitMQ): the queue is durable and its messages persistent; a worker acknowledges a
message only once the actor has returned, and RabbitMQ hands every unacknowledged message of a consumer whose
connection closes (a killed process's sockets close with it) to another consumer at once: no heartbeat delay.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import dramatiq
import pika.exceptions
import redis
from dramatiq import Actor, Broker, Worker
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import AsyncIO, Middleware, Retries, ShutdownNotifications
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import telemetry
from core.problems import Unavailable
from core.queue import JobHandler, JobMessage, Workers
from core.redis_clients import sync_client
from core.settings import JobsSettings, RedisSettings, Settings

from .wakeup import WakingRedisBroker

log = logging.getLogger(__name__)

ACTOR_NAME = "fetch"

_T = TypeVar("_T")

#: Maintenance on about one broker call in ten: idle workers poll every ``jobs.poll_interval``, so dead workers'
#: messages are found within a second or so of their heartbeat timing out, at a negligible cost.
MAINTENANCE_CHANCE = 100_000

#: Retries are for our own transient failures (the store unreachable); upstream errors are outcomes, never retried
#: by the broker (the fetcher retries connection errors itself, briefly).
MAX_RETRIES = 3


def _retry_when(retries: int, exc: BaseException) -> bool:
    return retries < MAX_RETRIES and isinstance(exc, redis.RedisError | ConnectionError | OSError)


def _middleware() -> list[Middleware]:
    return [
        AsyncIO(),
        ShutdownNotifications(),
        Retries(max_retries=MAX_RETRIES, min_backoff=500, max_backoff=5000, retry_when=_retry_when),
    ]


class _OnStop(Middleware):
    """Runs a coroutine on the workers' event loop once the worker threads are done (closing the job resources)."""

    def __init__(self, on_stop: Callable[[], Awaitable[None]]) -> None:
        self.on_stop = on_stop

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        # Middleware "after" hooks run in reverse order, so this runs before AsyncIO's: the loop is still up.
        thread = get_event_loop_thread()
        if thread is not None:
            try:
                thread.run_coroutine(self.on_stop())
            except Exception as exc:  # shutting down anyway; say what leaked
                log.warning("closing job resources failed: %s", exc)


class _DramatiqWorkers:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def stop(self, timeout: float) -> None:
        self.worker.stop(timeout=int(timeout * 1000))


class DramatiqQueue:
    """What both Dramatiq queues share: the actor, sending, and the one place worker threads are built."""

    def __init__(self, broker: Broker, jobs: JobsSettings) -> None:
        self.broker = broker
        self.jobs = jobs
        self._handler: JobHandler | None = None

        async def fetch(job_id: str, url: str, options: dict[str, Any] | None = None) -> None:
            if self._handler is None:  # a message reached a process that only sends: a wiring mistake
                raise RuntimeError("no job handler: start_workers was never called in this process")
            deferred = await self._handler(JobMessage.from_options(job_id, url, options))
            if deferred is not None:
                # Put back as a new, delayed message (the broker holds it, not a thread), then let this one go.
                delay = max(1, int(deferred.seconds * 1000))
                await asyncio.to_thread(self._actor.send_with_options, args=(job_id, url, options), delay=delay)

        decorate = dramatiq.actor(actor_name=ACTOR_NAME, broker=broker, queue_name=jobs.queue)
        self._actor: Actor = decorate(fetch)  # type: ignore[type-arg]

    async def send(self, message: JobMessage) -> None:
        # A blocking broker call (a Redis round trip in Redis mode): keep it off the event loop.
        await asyncio.to_thread(self._actor.send, message.job_id, message.url, message.options())

    async def pending(self) -> int:
        return await asyncio.to_thread(self._pending)

    async def ping(self) -> None:
        await asyncio.to_thread(self._ping)

    def start_workers(
        self, handler: JobHandler, *, threads: int, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> Workers:
        self._handler = handler
        if on_stop is not None:
            self.broker.add_middleware(_OnStop(on_stop))
        worker = Worker(self.broker, worker_threads=threads, worker_timeout=int(self.jobs.poll_interval * 1000))
        worker.start()
        return _DramatiqWorkers(worker)

    async def close(self) -> None:
        await asyncio.to_thread(self.broker.close)

    def _pending(self) -> int:
        raise NotImplementedError

    def _ping(self) -> None:
        raise NotImplementedError


class EmbeddedQueue(DramatiqQueue):
    """In-process: a ``StubBroker`` consumed by worker threads inside ``grenier serve``."""

    def __init__(self, jobs: JobsSettings) -> None:
        self.stub_broker = StubBroker(middleware=_middleware())
        super().__init__(self.stub_broker, jobs)

    def _pending(self) -> int:
        queue = self.stub_broker.queues.get(self.jobs.queue)
        return 0 if queue is None else int(queue.qsize())

    def _ping(self) -> None:
        return None


class RedisQueue(DramatiqQueue):
    """On Redis: any number of ``grenier serve`` send, any number of ``grenier worker`` processes consume."""

    #: Dramatiq's keys: no TTL, so ``volatile-lru`` evicts cache entries, never queued jobs.
    NAMESPACE = "grenier-jobs"

    def __init__(self, url: str, jobs: JobsSettings, client: redis.Redis | None = None) -> None:
        """On the Redis at ``url``, or through ``client`` (the primary Sentinel names) when given."""
        self.redis_broker = WakingRedisBroker(  # type: ignore[no-untyped-call]
            client=client if client is not None else broker_client(url),
            middleware=_middleware(),
            namespace=self.NAMESPACE,
            heartbeat_timeout=int(jobs.heartbeat_timeout * 1000),
            maintenance_chance=MAINTENANCE_CHANCE,
        )
        self.redis_broker.add_middleware(Heartbeat(self.redis_broker, jobs.queue, jobs.heartbeat_timeout / 3))
        super().__init__(self.redis_broker, jobs)

    def _pending(self) -> int:
        return int(self.redis_broker.client.llen(f"{self.NAMESPACE}:{self.jobs.queue}"))

    def _ping(self) -> None:
        self.redis_broker.client.ping()


class Heartbeat(Middleware):
    """Keeps a busy Redis worker's heartbeat going.

    Dramatiq's Redis consumer heartbeats only when it fetches, and it stops fetching while its prefetch is full: a
    worker whose threads are all in long fetches would look dead after ``heartbeat_timeout`` and its jobs would be
    redelivered (fetched twice). A thread here makes a no-op broker call (fetch zero messages) a few times per
    timeout, which refreshes the heartbeat of this process's broker.
    """

    def __init__(self, broker: RedisBroker, queue: str, interval: float) -> None:
        self.broker = broker
        self.queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: object) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="grenier-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.broker.do_fetch(self.queue, 0)
            except redis.RedisError as exc:  # the consumer will notice too; keep trying, saying so once
                telemetry.REDIS_ERRORS.labels("broker").inc()
                if not failing:
                    log.warning("heartbeat failed: %s", exc)
                failing = True
                continue
            if failing:
                log.warning("heartbeat going again")
            failing = False

    def before_worker_shutdown(self, broker: Broker, worker: object) -> None:
        self._stop.set()


class RabbitQueue(DramatiqQueue):
    """On RabbitMQ: a durable queue, persistent messages, each acknowledged after its job (see the module's
    docstring for redelivery). Job records, claims and entries stay in the store (Redis)."""

    def __init__(self, url: str, jobs: JobsSettings) -> None:
        self.rabbit_broker = RabbitmqBroker(url=url, middleware=_middleware())
        super().__init__(self.rabbit_broker, jobs)

    def _pending(self) -> int:
        """The queue's depth: the messages ready for a worker (those a worker holds are not pending)."""
        return self._on_channel(
            lambda: int(
                self.rabbit_broker.channel.queue_declare(queue=self.jobs.queue, passive=True).method.message_count
            )
        )

    def _ping(self) -> None:
        self._on_channel(lambda: self.rabbit_broker.declare_queue(self.jobs.queue, ensure=True))

    def _on_channel(self, call: Callable[[], _T]) -> _T:
        """Run ``call`` on this thread's channel, declaring the queue first; a broken connection is dropped and the
        call tried once more on a fresh one (an idle connection may have been closed by the server), then the
        broker is unreachable: 503, like a store that is down."""
        for attempt in (1, 2):
            try:
                self.rabbit_broker.declare_queue(self.jobs.queue, ensure=True)
                return call()
            except (pika.exceptions.AMQPError, BrokerConnectionError, OSError) as exc:
                del self.rabbit_broker.connection
                if attempt == 2:
                    raise Unavailable(f"the job broker is unreachable ({type(exc).__name__}); retry shortly") from exc
        raise AssertionError("unreachable")  # pragma: no cover


#: Seconds one broker command may take (a paused Redis must not hold a sender or a stopping worker for ever; a
#: consumer's ``BLPOP`` waits ``jobs.poll_interval``, far less).
BROKER_TIMEOUT = 5.0


def broker_client(url: str) -> redis.Redis:
    """The broker's client on ``url``: its commands bounded by ``BROKER_TIMEOUT``, and retried once, at once, on a
    fresh connection when a pooled one died with a restarted Redis (so a send after a restart does not fail)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=BROKER_TIMEOUT,
        socket_connect_timeout=BROKER_TIMEOUT,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def open_queue(settings: Settings) -> DramatiqQueue:
    """The queue the settings name: in-process when embedded, else on RabbitMQ or Redis (``jobs.broker``)."""
    jobs = settings.jobs
    if settings.embedded:
        return EmbeddedQueue(jobs)
    if jobs.broker == "rabbitmq":
        return RabbitQueue(jobs.broker_url, jobs)
    if jobs.broker_url:
        return RedisQueue(jobs.broker_url, jobs)
    return _redis_queue(settings.redis, jobs)


def _redis_queue(redis_settings: RedisSettings, jobs: JobsSettings) -> RedisQueue:
    if redis_settings.sentinels:
        return RedisQueue("", jobs, sync_client(redis_settings, socket_timeout=5.0, socket_connect_timeout=5.0))
    return RedisQueue(redis_settings.url, jobs)
