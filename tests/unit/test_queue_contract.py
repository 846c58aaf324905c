"""One contract for every job queue (core/queue.py): the embedded queue, the Redis queue on a real redis-server and
the RabbitMQ queue on a real rabbitmq-server.

Each test sends real messages through a real Dramatiq broker and, where it says so, consumes them with real worker
threads; waits are bounded polls that fail naming what never happened.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import redis

from core.problems import Unavailable
from core.queue import JobMessage, JobQueue
from core.settings import JobsSettings
from jobs.queues import EmbeddedQueue, RabbitQueue, RedisQueue
from tests.support.ports import free_port

JOBS = JobsSettings(poll_interval=0.05, heartbeat_timeout=5.0)
BOUND = 15.0  # seconds a bounded wait allows; it only catches "never happened"


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {BOUND} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(params=["embedded", "redis", "rabbitmq"])
def queue(request: pytest.FixtureRequest) -> Iterator[JobQueue]:
    if request.param == "embedded":
        q: JobQueue = EmbeddedQueue(JOBS)
    elif request.param == "redis":
        q = RedisQueue(request.getfixturevalue("redis_url"), JOBS)
    else:
        jobs = replace(JOBS, queue=request.getfixturevalue("fresh_queue"))
        q = RabbitQueue(request.getfixturevalue("rabbitmq_server"), jobs)
    try:
        yield q
    finally:
        asyncio.run(q.close())


class Recorder:
    """A job handler that remembers what it was handed (from the workers' event loop thread)."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.seen: list[JobMessage] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    async def handle(self, message: JobMessage) -> None:
        with self.lock:
            self.seen.append(message)
        if message.job_id == self.fail_on:
            raise ValueError("this job fails")

    async def on_stop(self) -> None:
        self.stopped.set()

    def ids(self) -> list[str]:
        with self.lock:
            return [m.job_id for m in self.seen]


def send(queue: JobQueue, *messages: JobMessage) -> None:
    async def go() -> None:
        for m in messages:
            await queue.send(m)

    asyncio.run(go())


def pending(queue: JobQueue) -> int:
    return asyncio.run(queue.pending())


def test_sent_messages_wait_until_a_worker_takes_them(queue: JobQueue) -> None:
    assert pending(queue) == 0
    send(queue, JobMessage("a" * 32, "http://e.com/1"), JobMessage("b" * 32, "http://e.com/2"))
    assert pending(queue) == 2


def test_ping_answers_when_the_queue_is_up(queue: JobQueue) -> None:
    assert asyncio.run(queue.ping()) is None


def test_workers_hand_every_message_to_the_handler_as_sent(queue: JobQueue) -> None:
    message = JobMessage(
        "c" * 32, "http://e.com/x?y=\xe9", (("Accept", "text/html"), ("Accept-Language", "fr")), "flight:1"
    )
    send(queue, message, JobMessage("d" * 32, "http://e.com/z"))
    recorder = Recorder()
    workers = queue.start_workers(recorder.handle, threads=2, on_stop=recorder.on_stop)
    try:
        eventually(lambda: len(recorder.ids()) == 2, "both messages to reach the handler")
        assert message in recorder.seen  # headers, flight and a non-ASCII URL cross the broker unchanged
        assert JobMessage("d" * 32, "http://e.com/z") in recorder.seen
        eventually(lambda: pending(queue) == 0, "the backlog to drain")
    finally:
        workers.stop(5.0)
    assert recorder.stopped.is_set(), "on_stop did not run after the worker threads stopped"


def test_a_failing_job_does_not_stop_the_workers(queue: JobQueue) -> None:
    recorder = Recorder(fail_on="e" * 32)
    workers = queue.start_workers(recorder.handle, threads=1)
    try:
        send(queue, JobMessage("e" * 32, "http://e.com/fails"), JobMessage("f" * 32, "http://e.com/next"))
        eventually(lambda: "f" * 32 in recorder.ids(), "the message after a failing one to be handled")
    finally:
        workers.stop(5.0)


def test_redis_queue_unreachable_is_an_error_not_a_hang() -> None:
    queue = RedisQueue(f"redis://127.0.0.1:{free_port()}/0", JOBS)
    try:
        with pytest.raises(redis.ConnectionError):
            asyncio.run(queue.ping())
    finally:
        asyncio.run(queue.close())


def test_rabbit_queue_unreachable_is_a_503_not_a_hang() -> None:
    queue = RabbitQueue(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", JOBS)
    try:
        with pytest.raises(Unavailable, match="job broker is unreachable"):
            asyncio.run(queue.ping())
        with pytest.raises(Unavailable):
            asyncio.run(queue.pending())
    finally:
        asyncio.run(queue.close())
