"""Fetch jobs on RabbitMQ (``jobs.broker = "rabbitmq"``): real ``grenier serve`` and ``grenier worker`` processes, a
real rabbitmq-server carrying the jobs and a real Redis holding the store.

Each test takes a queue name of its own on the session's RabbitMQ and a Redis database of its own.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import aiohttp

from tests.support.http import assert_problem, fetch_url, get, poll_job
from tests.support.origins import Origin
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import Launcher, alive, worker_children


def on_rabbitmq(redis_url: str, broker_url: str, queue: str, **more: str) -> dict[str, str]:
    return {
        "GRENIER_REDIS_URL": redis_url,
        "GRENIER_JOBS_BROKER": "rabbitmq",
        "GRENIER_JOBS_BROKER_URL": broker_url,
        "GRENIER_JOBS_QUEUE": queue,
        **more,
    }


async def test_miss_202_poll_then_hit_through_rabbitmq(
    launcher: Launcher,
    fresh_redis: Callable[[], str],
    rabbitmq_server: str,
    fresh_queue: str,
    origin: Origin,
    http: aiohttp.ClientSession,
) -> None:
    settings = on_rabbitmq(fresh_redis(), rabbitmq_server, fresh_queue)
    launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    target = origin.route(body=b"carried by rabbit", headers={"Cache-Control": "max-age=60"})

    miss = await get(http, fetch_url(serve.url, target))
    assert miss.status == 202
    assert miss.cache_status == {"fwd": "uri-miss"}
    done = await poll_job(http, serve.url, miss.location)
    assert done.status == 200
    assert done.body == b"carried by rabbit"

    hit = await get(http, fetch_url(serve.url, target))
    assert hit.status == 200
    assert hit.cache_status["hit"] is True
    assert hit.body == b"carried by rabbit"
    assert origin.hits(target) == 1
    assert "rabbitmq" in serve.log()  # the start-up line says where the jobs go


async def test_backlog_limit_reads_the_queue_depth(
    launcher: Launcher,
    fresh_redis: Callable[[], str],
    rabbitmq_server: str,
    fresh_queue: str,
    origin: Origin,
    http: aiohttp.ClientSession,
) -> None:
    # No worker: each miss's job stays on the queue, and the queue's depth is what the limit counts.
    serve = launcher.serve(on_rabbitmq(fresh_redis(), rabbitmq_server, fresh_queue, GRENIER_JOBS_MAX_PENDING="2"))
    for _ in range(2):
        assert (await get(http, fetch_url(serve.url, origin.route()))).status == 202
    refused = await get(http, fetch_url(serve.url, origin.route()))
    assert_problem(refused, 503, "2 fetch jobs are queued")
    assert refused.headers["Retry-After"]


async def test_worker_killed_mid_job_its_job_completes_on_another_worker_at_once(
    launcher: Launcher,
    fresh_redis: Callable[[], str],
    rabbitmq_server: str,
    fresh_queue: str,
    origin: Origin,
    http: aiohttp.ClientSession,
) -> None:
    settings = on_rabbitmq(fresh_redis(), rabbitmq_server, fresh_queue)
    first = launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    (child,) = wait_until(lambda: worker_children(first.pid), 10, "the first worker's child process")
    # The first fetch stalls (the origin holds it far longer than the test), the redelivered one answers at once.
    target = origin.route(delays=(50.0, 0.0), body=b"survived a kill")

    miss = await get(http, fetch_url(serve.url, target))
    assert miss.status == 202

    async def running() -> bool:
        reply = await get(http, serve.url + miss.location)
        return reply.status == 202 and reply.json()["state"] == "running"

    await async_wait_until(running, 15, "the job to be running on the first worker")
    wait_until(lambda: origin.hits(target) == 1, 10, "the first worker's request to reach the origin")

    second = launcher.worker(settings, processes=1)
    wait_until(lambda: worker_children(second.pid), 10, "the second worker's child process")
    second.wait_log("consuming", timeout=20)
    # The first worker goes for good: its supervisor first (so it replaces nothing), then the child mid-job.
    os.kill(first.pid, signal.SIGKILL)
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: not alive(child), 10, f"worker child {child} to die")

    done = await poll_job(http, serve.url, miss.location, timeout=30)
    redelivered_after = time.monotonic() - killed_at
    print(f"\nRabbitMQ: the killed worker's job completed {redelivered_after:.2f} s after the kill")
    assert done.status == 200, done.body[:500]
    assert done.body == b"survived a kill"
    assert origin.hits(target) == 2  # the killed attempt and the redelivered one
    # No heartbeat to wait for: the broker hands the job over as soon as the dead worker's connection closes
    # (the Redis broker's default heartbeat_timeout alone is 10 s).
    assert redelivered_after < 8, f"the job took {redelivered_after:.1f} s to complete after the kill"
    assert (await get(http, fetch_url(serve.url, target))).cache_status["hit"] is True


def test_rabbitmq_broker_without_an_amqp_url_stops_startup(launcher: Launcher, fresh_redis: Callable[[], str]) -> None:
    serve = launcher.serve({"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_JOBS_BROKER": "rabbitmq"}, ready=False)
    assert serve.proc.wait(20) == 2
    assert "jobs.broker_url" in serve.log()
