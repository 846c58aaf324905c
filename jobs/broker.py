"""The one place the Dramatiq broker is built, explicitly, for either mode (never Dramatiq's implicit global).

Redelivery after a worker dies: Dramatiq's Redis broker keeps each message a worker has taken in that worker's
"acks" set until the actor returns. Every worker heartbeats on each poll; a maintenance pass (run on a share of
broker calls, ``MAINTENANCE_CHANCE`` per million) moves the unacknowledged messages of any worker silent for longer
than ``jobs.heartbeat_timeout`` back onto the queue, where a live worker picks them up. With the defaults here a job
whose worker was SIGKILLed runs again about ``heartbeat_timeout`` (10 s) after the kill.
"""

from __future__ import annotations

import logging
import threading

import redis
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, Middleware, Retries, ShutdownNotifications

from core.settings import Settings

log = logging.getLogger(__name__)

#: Maintenance on about one broker call in ten: idle workers poll every ``jobs.poll_interval``, so dead workers'
#: messages are found within a second or so of their heartbeat timing out, at a negligible cost.
MAINTENANCE_CHANCE = 100_000

#: Retries are for our own transient failures (the store unreachable); upstream errors are outcomes, never retried
#: by the broker (the fetcher retries connection errors itself, briefly).
MAX_RETRIES = 3


def _retry_when(retries: int, exc: BaseException) -> bool:
    return retries < MAX_RETRIES and isinstance(exc, redis.RedisError | ConnectionError | OSError)


class Heartbeat(Middleware):
    """Keeps a busy worker's heartbeat going.

    Dramatiq's Redis consumer heartbeats only when it fetches, and it stops fetching while its prefetch is full: a
    worker whose threads are all in long fetches would look dead after ``heartbeat_timeout`` and its jobs would be
    redelivered (fetched twice). A thread here makes a no-op broker call (fetch zero messages) a few times per
    timeout, which refreshes the heartbeat of this process's broker.
    """

    def __init__(self, queue: str, interval: float) -> None:
        self.queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: object) -> None:
        if not isinstance(broker, RedisBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="grenier-heartbeat", daemon=True)
        self._thread.start()

    def _run(self, broker: RedisBroker) -> None:
        while not self._stop.wait(self.interval):
            try:
                broker.do_fetch(self.queue, 0)
            except redis.RedisError as exc:  # the consumer will notice too; keep trying
                log.warning("heartbeat failed: %s", exc)

    def before_worker_shutdown(self, broker: Broker, worker: object) -> None:
        self._stop.set()


def middleware(settings: Settings) -> list[Middleware]:
    return [
        AsyncIO(),
        ShutdownNotifications(),
        Retries(max_retries=MAX_RETRIES, min_backoff=500, max_backoff=5000, retry_when=_retry_when),
        Heartbeat(settings.jobs.queue, settings.jobs.heartbeat_timeout / 3),
    ]


def make_broker(settings: Settings) -> Broker:
    if settings.embedded:
        return StubBroker(middleware=middleware(settings))
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis.url,
        middleware=middleware(settings),
        namespace="grenier-jobs",
        heartbeat_timeout=int(settings.jobs.heartbeat_timeout * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def pending(broker: Broker, queue: str) -> int:
    """Messages waiting in ``queue`` (not yet taken by a worker); blocking, call it off the event loop."""
    if isinstance(broker, RedisBroker):
        return int(broker.client.llen(f"{broker.namespace}:{queue}"))
    if isinstance(broker, StubBroker) and queue in broker.queues:
        return int(broker.queues[queue].qsize())
    return 0


def ping(broker: Broker) -> None:
    """Raise when the broker cannot be reached (blocking: call it off the event loop)."""
    if isinstance(broker, RedisBroker):
        broker.client.ping()
