"""The circuit breaker in front of Redis (``core/breaker.py``): refuses at once while open, logs once per state
change, probes in the background until the store answers; its ``Retry`` retries a dead connection once."""

from __future__ import annotations

import asyncio
import copy
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import breaker as breaker_module
from core.breaker import Breaker, GuardedRetry, StoreDown


class Probe:
    """Answers after ``failures`` failed probes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RedisConnectionError("still down")


async def test_tripped_it_refuses_at_once_then_mends_when_a_probe_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(breaker_module, "PROBE_INTERVAL", 0.01)
    probe = Probe(failures=3)
    breaker = Breaker(probe)
    breaker.check()  # closed: nothing raised
    with caplog.at_level(logging.WARNING, logger="core.breaker"):
        breaker.trip(RedisConnectionError("refused"))
        breaker.trip(RedisConnectionError("refused again"))  # already open: no second line
        with pytest.raises(StoreDown):
            breaker.check()
        for _ in range(200):
            if not breaker.is_open:
                break
            await asyncio.sleep(0.01)
    assert not breaker.is_open
    assert probe.calls == 4
    breaker.check()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0]
    assert "reachable again" in lines[1]
    await breaker.close()


async def test_the_retry_retries_a_dead_connection_once_without_tripping() -> None:
    breaker = Breaker(Probe(failures=0))
    retry = copy.deepcopy(GuardedRetry(breaker))  # as redis-py copies it per connection: the breaker is shared
    assert retry.breaker is breaker
    attempts: list[int] = []

    async def stale_then_fine() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RedisConnectionError("Connection closed by server.")
        return "PONG"

    async def fail(error: Exception) -> None:
        return None

    assert await retry.call_with_retry(stale_then_fine, fail) == "PONG"
    assert len(attempts) == 2
    assert not breaker.is_open
    await breaker.close()


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (RedisConnectionError("refused"), 2),  # tried once more, then the store is down
        (RedisTimeoutError("Timeout reading from socket"), 1),  # a wedged server: not retried (twice the wait)
    ],
)
async def test_the_retry_trips_the_breaker_when_the_store_does_not_answer(error: Exception, attempts: int) -> None:
    breaker = Breaker(Probe(failures=1000))
    retry = GuardedRetry(breaker)
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise error

    async def fail(error: Exception) -> None:
        return None

    with pytest.raises(type(error)):
        await retry.call_with_retry(down, fail)
    assert len(calls) == attempts
    assert breaker.is_open
    with pytest.raises(StoreDown):  # refused at once from now on, without calling anything
        await retry.call_with_retry(down, fail)
    assert len(calls) == attempts
    await breaker.close()
