"""Waking an idle Redis worker when a job is queued, instead of letting it find the job on its next poll.

Dramatiq's Redis consumer, finding its queue empty, sleeps with a growing back-off (up to the poll interval) and
polls again, so a job queued while every worker sleeps waits for the next poll: in the benchmark, a share of the
miss-to-ready time. Here each enqueue also pushes a token on a wake-up list, and an idle consumer waits on that
list with ``BLPOP`` (bounded by the same poll interval, so a lost token costs what the poll would) instead of
sleeping: a queued job is fetched about one round trip after it is sent.

The list is trimmed to :data:`MAX_TOKENS`, so tokens of jobs that a busy worker fetched on its own never pile up;
a spare token only costs an idle worker one empty fetch.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from core import telemetry

#: Tokens kept on a queue's wake-up list at most (more than any number of idle consumers needs).
MAX_TOKENS = 64


def wake_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.wake"


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose enqueues wake an idle consumer (see the module docstring)."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakingConsumer

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        enqueued: Message[Any] = super().enqueue(message, delay=delay)
        if delay is None:  # a delayed message reaches the queue later, by the consumers' own polling
            key = wake_key(self.namespace, message.queue_name)
            with self.client.pipeline(transaction=False) as pipe:
                pipe.lpush(key, 1)
                pipe.ltrim(key, 0, MAX_TOKENS - 1)
                pipe.execute()
        return enqueued


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's ``_RedisConsumer.__next__``, except that an empty fetch waits for a wake-up token instead of
    sleeping (a consumer whose prefetch is full still sleeps: a token it took could not be used by it)."""

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count >= self.prefetch:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    time.sleep(backoff_ms / 1000)
                    return None
                self.message_cache = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not self.message_cache:
                    key = wake_key(self.broker.namespace, self.queue_name)
                    self.broker.client.blpop([key], timeout=max(self.timeout / 1000, 0.01))
                    return None
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # A paused Redis times out rather than refusing: either way the consumer restarts (quietly, one line),
            # instead of logging a traceback as an unexpected error.
            telemetry.REDIS_ERRORS.labels("broker").inc()
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
