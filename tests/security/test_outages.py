"""Redis outages under a bounded load, through real processes: ``grenier serve``, ``grenier worker`` and a real
``redis-server`` paused (``SIGSTOP``) or killed (``SIGKILL``) and started again, empty. Each test counts what its
clients got: never a ``500``; while the store is down, ``503`` + ``Retry-After`` answered fast (the breaker fails
at once once the outage is known) and logged once, not per request; once it is back, every request answered again,
with no failure on the first ones (stale pooled connections are retried, not failed)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from tests.support.http import Reply, assert_problem, fetch_target, request
from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess, Launcher
from tests.support.redis import RedisServer

#: The bounded load: this many requests from this many concurrent clients.
REQUESTS, CLIENTS = 200, 20
#: Once the outage is known, a 503 takes at most this (no command timeout, no connection attempt per request).
FAST = 1.0
#: Once Redis answers again, grenier answers 200 again within this.
RECOVERY = 10.0
#: The line the breaker logs when the store goes down (once per outage, in each process).
DOWN_LINE = "Redis unreachable"
#: A poll of a job (any id: the record is read before anything is known of it).
POLL = "/_grenier/jobs/" + "0" * 32


@pytest.fixture
def stack(tmp_path: Path, loopback_env: dict[str, str]) -> Iterator[tuple[RedisServer, GrenierProcess, Launcher]]:
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_CACHE_HOT_BYTES": "0"}
    settings["GRENIER_SERVER_PROCESSES"] = "1"
    with Launcher(tmp_path) as launcher:
        launcher.worker(settings)
        yield redis, launcher.serve(settings), launcher
    redis.stop()


def timed(port: int, target: str) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = request(port, "GET", target, timeout=30)
    return reply, time.monotonic() - started


def load(port: int, targets: list[str]) -> tuple[Counter[int], list[tuple[Reply, float]]]:
    """``REQUESTS`` requests over ``targets`` from ``CLIENTS`` concurrent clients: the statuses counted, and each
    reply with how long it took."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        replies = list(pool.map(lambda i: timed(port, targets[i % len(targets)]), range(REQUESTS)))
    return Counter(r.status for r, _ in replies), replies


def assert_fast_503s(replies: list[tuple[Reply, float]]) -> None:
    for reply, took in replies:
        assert_problem(reply, 503, "store")
        assert reply.header("Retry-After").isdigit()
        assert took < FAST, f"a 503 took {took:.2f} s while the outage was known"


def stored_targets(origin: Origin, port: int, count: int = 5) -> list[str]:
    targets = [fetch_target(origin.route()) for _ in range(count)]
    for target in targets:
        assert request(port, "GET", target).status == 200
    return targets


def test_a_paused_store_under_load(stack: tuple[RedisServer, GrenierProcess, Launcher], origin: Origin) -> None:
    redis, grenier, _ = stack
    targets = stored_targets(origin, grenier.port)
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        first, took = timed(grenier.port, targets[0])  # finds out: one command timeout at most
        assert_problem(first, 503, "store")
        assert took < 5.0
        # Hits and misses read the store through its fast reads; a poll reads through redis-py's pool: both fail fast.
        statuses, replies = load(grenier.port, [*targets, fetch_target(origin.route()), POLL])
        assert statuses == {503: REQUESTS}, statuses
        assert_fast_503s(replies)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    wait_until(lambda: request(grenier.port, "GET", targets[0]).status == 200, RECOVERY, "grenier to answer again")
    statuses, _ = load(grenier.port, targets)
    assert statuses == {200: REQUESTS}, statuses
    log = grenier.log()
    assert log.count(DOWN_LINE) == 1, log[-3000:]
    assert log.count("reachable again") == 1, log[-3000:]
    assert "Traceback" not in log


def test_a_killed_and_restarted_store_under_load(
    stack: tuple[RedisServer, GrenierProcess, Launcher], origin: Origin
) -> None:
    redis, grenier, _ = stack
    targets = stored_targets(origin, grenier.port)
    redis.kill()
    statuses, replies = load(grenier.port, targets)
    assert statuses == {503: REQUESTS}, statuses
    assert_fast_503s(replies[CLIENTS:])  # the first wave may find out first (one refused connection each)
    redis.restart()  # empty: every entry and job record is gone
    grenier.wait_log("reachable again", timeout=RECOVERY)
    # The first requests after the restart: the pool's connections all died with the old server; none may fail.
    fresh = [fetch_target(origin.route()) for _ in range(5)]
    statuses, _ = load(grenier.port, targets + fresh)
    assert statuses == {200: REQUESTS}, statuses
    log = grenier.log()
    assert log.count(DOWN_LINE) == 1, log[-3000:]
    assert "Traceback" not in log


def test_bypass_relays_to_the_origin_while_the_store_is_down(
    tmp_path: Path, loopback_env: dict[str, str], origin: Origin
) -> None:
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_REDIS_ON_DOWN": "bypass"}
    with Launcher(tmp_path) as launcher:
        grenier = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "1"})
        url = origin.route()
        redis.kill()
        for _ in range(3):
            reply = request(grenier.port, "GET", url)  # forward proxy: absolute-form target
            assert reply.status == 200, reply
            assert reply.body == f"body of {origin.path_of(url)}".encode()
            status = reply.cache_status
            assert status.get("fwd") == "bypass", status
            assert "store unreachable" in str(status.get("detail")), status
        assert origin.hits(url) == 3  # uncached: each one went to the origin
        # A request the cache cannot relay (grenier's own API) still gets the 503.
        assert_problem(request(grenier.port, "GET", fetch_target(url)), 503, "store")
    redis.stop()


def test_a_job_whose_record_was_lost_with_the_store_says_so(
    tmp_path: Path, loopback_env: dict[str, str], origin: Origin
) -> None:
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_CACHE_MISS": "async"}
    with Launcher(tmp_path) as launcher:
        grenier = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "1"})
        accepted = request(grenier.port, "GET", fetch_target(origin.route(delays=(5.0,))))
        assert accepted.status == 202, accepted
        location = accepted.location
        redis.restart()  # without persistence: the record and the queued job are gone
        grenier.wait_log("reachable again", timeout=RECOVERY)
        problem = assert_problem(request(grenier.port, "GET", location), 410, "lost", "again")
        assert problem["job"] in location
        page = location.replace("/_grenier/jobs/", "/_grenier/ui/jobs/")  # the browser's job page says the same
        assert_problem(request(grenier.port, "GET", page), 410, "lost")
        # An id never issued recently is still a plain 404.
        assert_problem(request(grenier.port, "GET", "/_grenier/jobs/" + "0" * 32), 404)
    redis.stop()


def test_stopping_a_worker_while_redis_is_down_is_bounded(
    tmp_path: Path, loopback_env: dict[str, str], origin: Origin
) -> None:
    """A job in flight when Redis dies cannot be acknowledged: the stop gives up on it after a few seconds (it is
    redelivered later) instead of retrying the acknowledgement until the time limit runs out."""
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_CACHE_MISS": "async"}
    with Launcher(tmp_path) as launcher:
        worker = launcher.worker(settings)
        grenier = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "1"})
        url = origin.route(delays=(2.0,))
        assert request(grenier.port, "GET", fetch_target(url)).status == 202
        wait_until(lambda: origin.hits(url) == 1, 10, "the worker to fetch")
        redis.kill()
        started = time.monotonic()
        code = worker.stop(timeout=90)
        took = time.monotonic() - started
        assert code == 0, worker.log()[-3000:]
        assert took < 20, f"stopping took {took:.1f} s"


#: Concurrent clients on one ``grenier serve`` process in Redis mode, and the requests each sends (hits).
CONCURRENT, EACH = 1000, 2


def test_a_thousand_concurrent_clients_of_hits_in_redis_mode(
    tmp_path: Path, loopback_env: dict[str, str], origin: Origin, redis_url: str
) -> None:
    """Every one answered, none with a 5xx: the store's pool waits for a free connection rather than failing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the server inherits it
    assert wanted > CONCURRENT * 2 + 100, f"RLIMIT_NOFILE hard limit {hard} is too low for this test"
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis_url, "GRENIER_CACHE_HOT_BYTES": "0"}
    with Launcher(tmp_path) as launcher:
        launcher.worker(settings)
        grenier = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "1"})
        targets = stored_targets(origin, grenier.port, 10)

        async def client(session: aiohttp.ClientSession, i: int) -> list[int]:
            statuses = []
            for n in range(EACH):
                async with session.get(grenier.url + targets[(i + n) % len(targets)]) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            return statuses

        async def everyone() -> Counter[int]:
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                results = await asyncio.gather(*(client(session, i) for i in range(CONCURRENT)))
            return Counter(s for statuses in results for s in statuses)

        statuses = asyncio.run(everyone())
        assert statuses == {200: CONCURRENT * EACH}, statuses
        assert "Traceback" not in grenier.log()


def test_a_job_interrupted_by_a_paused_store_completes_once_it_is_back(
    tmp_path: Path, loopback_env: dict[str, str], origin: Origin
) -> None:
    """The job cannot write its result while Redis is paused; it is not dropped: the worker waits for the store
    and runs it again, and its poller gets the response."""
    redis = RedisServer(tmp_path)
    settings = {**loopback_env, "GRENIER_REDIS_URL": redis.url, "GRENIER_CACHE_MISS": "async"}
    with Launcher(tmp_path) as launcher:
        worker = launcher.worker(settings)
        grenier = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "1"})
        url = origin.route(delays=(1.0, 0.0))
        accepted = request(grenier.port, "GET", fetch_target(url))
        assert accepted.status == 202, accepted
        wait_until(lambda: origin.hits(url) == 1, 10, "the worker to fetch")
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(8.0)  # longer than the job, its store writes and the broker's command timeout
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        wait_until(lambda: request(grenier.port, "GET", accepted.location).status == 200, 20, "the job to complete")
        assert "Traceback" not in worker.log()
    redis.stop()
