"""The store down or wedged: requests are answered ``503`` with ``Retry-After`` (a problem document, no traceback),
never a ``500`` and never held; when Redis is back, so is grenier. Redis is paused (``SIGSTOP``: connections accepted,
nothing answered) and then stopped outright."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http import Reply, assert_no_traceback, assert_problem, fetch_target, request
from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess, Launcher
from tests.support.redis import RedisServer

#: A request against a wedged store is answered within this: the store's command timeout (2 s) with room to spare.
ANSWER_BOUND = 10.0


@pytest.fixture
def stack(tmp_path: Path, loopback_env: dict[str, str]) -> Iterator[tuple[RedisServer, GrenierProcess]]:
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_CACHE_HOT_BYTES": "0"}
    with Launcher(tmp_path) as launcher:
        launcher.worker(settings)
        yield redis, launcher.serve(settings)
    redis.stop()


def timed(port: int, target: str) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = request(port, "GET", target, timeout=ANSWER_BOUND + 5)
    return reply, time.monotonic() - started


def test_a_paused_store_is_a_503_with_retry_after(stack: tuple[RedisServer, GrenierProcess], origin: Origin) -> None:
    redis, grenier = stack
    target = fetch_target(origin.route())
    assert request(grenier.port, "GET", target).status == 200
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        reply, took = timed(grenier.port, target)
        assert_problem(reply, 503, "store")
        assert reply.header("Retry-After").isdigit()
        assert took < ANSWER_BOUND
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    wait_until(lambda: request(grenier.port, "GET", target).status == 200, 20, "grenier to answer again")
    assert "Traceback" not in grenier.log()


def test_a_stopped_store_is_a_503_with_retry_after(stack: tuple[RedisServer, GrenierProcess], origin: Origin) -> None:
    redis, grenier = stack
    target = fetch_target(origin.route())
    redis.stop()
    reply, took = timed(grenier.port, target)
    assert_problem(reply, 503, "store")
    assert reply.header("Retry-After").isdigit()
    assert_no_traceback(reply.body)
    assert took < ANSWER_BOUND
    assert "Traceback" not in grenier.log()
