"""``grenier worker`` as a real process: a SIGKILLed worker loses no job, SIGTERM is a clean exit."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import aiohttp
import pytest

from tests.support.http import fetch_url, get, poll_job
from tests.support.origins import Origin
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import Launcher, alive, worker_children

HEARTBEAT = 3


async def test_worker_killed_mid_job_is_replaced_and_the_job_completes(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    settings = {"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_JOBS_HEARTBEAT_TIMEOUT": str(HEARTBEAT)}
    supervisor = launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    (child,) = wait_until(lambda: worker_children(supervisor.pid), 10, "the worker child process")
    target = origin.route(delays=(3.0,), body=b"slow but sure")

    miss = await get(http, fetch_url(serve.url, target))
    assert miss.status == 202
    job_url = serve.url + miss.location

    async def running() -> bool:
        reply = await get(http, job_url)
        return reply.status == 202 and reply.json()["state"] == "running"

    await async_wait_until(running, 15, "the job to be running")
    wait_until(lambda: origin.hits(target) == 1, 10, "the worker's request to reach the origin")
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: not alive(child), 10, f"worker child {child} to die")

    (replacement,) = wait_until(
        lambda: worker_children(supervisor.pid) - {child}, 15, "the supervisor to start a new worker child"
    )
    assert replacement != child
    assert supervisor.proc.poll() is None

    done = await poll_job(http, serve.url, miss.location, timeout=30)
    assert done.status == 200
    assert done.body == b"slow but sure"
    assert origin.hits(target) == 2  # the killed attempt and the redelivered one
    assert (await get(http, fetch_url(serve.url, target))).cache_status["hit"] is True


def test_worker_sigterm_exits_cleanly(launcher: Launcher, fresh_redis: Callable[[], str]) -> None:
    supervisor = launcher.worker({"GRENIER_REDIS_URL": fresh_redis()}, processes=2)
    kids = wait_until(lambda: k if len(k := worker_children(supervisor.pid)) == 2 else None, 10, "two worker children")
    code = supervisor.stop(timeout=30)
    assert code == 0, supervisor.log()[-3000:]
    for kid in kids:
        wait_until(lambda kid=kid: not alive(kid), 10, f"worker child {kid} to exit")
    assert "Traceback" not in supervisor.log()


async def test_worker_sigterm_mid_job_does_not_lose_the_job(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    settings = {"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_JOBS_HEARTBEAT_TIMEOUT": str(HEARTBEAT)}
    supervisor = launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    target = origin.route(delays=(2.0,), body=b"finished anyway")
    miss = await get(http, fetch_url(serve.url, target))
    job_url = serve.url + miss.location

    async def running() -> bool:
        reply = await get(http, job_url)
        return reply.status == 202 and reply.json()["state"] == "running"

    await async_wait_until(running, 15, "the job to be running")
    wait_until(lambda: origin.hits(target) == 1, 10, "the worker's request to reach the origin")
    assert await asyncio.to_thread(supervisor.stop, 30) == 0
    # Whether the stopping worker finished the job or handed it back, a worker that runs next must not find it
    # lost: the job ends with the origin's response.
    launcher.worker(settings, processes=1)
    done = await poll_job(http, serve.url, miss.location, timeout=20)
    assert done.status == 200, done.body[:500]
    assert done.body == b"finished anyway"


def test_worker_needs_redis(launcher: Launcher) -> None:
    worker = launcher.worker({}, ready=False)
    assert worker.proc.wait(20) == 2
    assert "redis.url" in worker.log()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        pytest.param({"GRENIER_CACHE_MISS": "sometimes"}, "cache.miss", id="bad-value"),
        pytest.param({"GRENIER_CACHE_MAX_TTL": "soon"}, "cache.max_ttl", id="not-a-number"),
        pytest.param({"GRENIER_CACHE_BOGUS": "1"}, "GRENIER_CACHE_BOGUS", id="unknown-key"),
    ],
)
def test_bad_setting_stops_startup_naming_the_key(launcher: Launcher, setting: dict[str, str], named: str) -> None:
    serve = launcher.serve(setting, ready=False)
    assert serve.proc.wait(20) == 2
    assert named in serve.log()
    assert "Traceback" not in serve.log()


async def test_an_idle_worker_is_woken_by_a_queued_job_not_by_its_next_poll(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    """With polls 60 s apart, only the wake-up token can bring a job to a worker that has been idle a while
    (Dramatiq's own consumer would by then sleep seconds between polls) within the request's wait."""
    settings = {"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_JOBS_POLL_INTERVAL": "60"}
    launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    await asyncio.sleep(8)  # idle: a polling consumer's back-off is now 2.5 to 5 s (10+ empty polls)
    for n in range(3):
        target = origin.route(body=f"woken {n}".encode())
        reply = await get(http, fetch_url(serve.url, target), {"Prefer": "wait=1"})
        assert reply.status == 200, f"job {n} was not picked up within the wait: {reply.status}"
        assert reply.body == f"woken {n}".encode()
        await asyncio.sleep(1.5)


async def test_a_job_whose_worker_dies_every_time_ends_failed(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    """A poison job: every worker that takes it up is SIGKILLed while it fetches (the origin stalls). After
    ``jobs.max_deliveries`` deliveries it ends failed, and its poll says why, instead of cycling for ever."""
    settings = {
        "GRENIER_REDIS_URL": fresh_redis(),
        "GRENIER_JOBS_HEARTBEAT_TIMEOUT": str(HEARTBEAT),
        "GRENIER_JOBS_MAX_DELIVERIES": "2",
    }
    supervisor = launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    target = origin.route(delays=(120.0,))  # stalls until the test's origin stops
    miss = await get(http, fetch_url(serve.url, target))
    assert miss.status == 202
    killed: set[int] = set()
    for delivery in (1, 2):
        wait_until(lambda d=delivery: origin.hits(target) == d, 40, f"delivery {delivery} to reach the origin")
        (child,) = wait_until(lambda: worker_children(supervisor.pid) - killed, 15, "a live worker child")
        os.kill(child, signal.SIGKILL)
        wait_until(lambda c=child: not alive(c), 10, f"worker child {child} to die")
        killed.add(child)

    done = await poll_job(http, serve.url, miss.location, timeout=60)
    problem = done.problem(502, "stopped 2 times", "jobs.max_deliveries")
    assert problem["cause"] == "crashed"
    assert origin.hits(target) == 2, "the third delivery did not fetch again"
    again = await get(http, fetch_url(serve.url, target))
    assert again.status == 202, "a new request starts a new job"
    assert again.location != miss.location
