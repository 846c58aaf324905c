"""Several grenier processes on one Redis: shared counters and shared jobs; readiness when that Redis dies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.http import fetch_url, get, poll_job
from tests.support.origins import Origin
from tests.support.polling import async_wait_until
from tests.support.processes import Launcher
from tests.support.redis import RedisServer


async def stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    reply = await get(http, base + "/_grenier/stats")
    assert reply.status == 200
    doc: dict[str, Any] = reply.json()
    return doc


async def test_stats_are_shared_by_two_proxies(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    settings = {"GRENIER_REDIS_URL": fresh_redis()}
    launcher.worker(settings, processes=1)
    one, two = launcher.serve(settings), launcher.serve(settings)
    before = await stats(http, one.url)
    assert before["mode"] == "redis"
    # The store's usage is read at each instant, and each process reports on itself.
    own = {"store", "process"}
    counters = {k: v for k, v in before.items() if k not in own}
    assert counters == {k: v for k, v in (await stats(http, two.url)).items() if k not in own}
    assert before["store"]["keys"] >= 1  # Redis mode reports the server's usage

    target = origin.route()
    miss = await get(http, fetch_url(one.url, target))
    assert miss.status == 202
    assert (await poll_job(http, two.url, miss.location)).status == 200  # a job started by one, polled on two
    for _ in range(3):
        assert (await get(http, fetch_url(one.url, target))).cache_status["hit"] is True
    for _ in range(2):
        assert (await get(http, fetch_url(two.url, target))).cache_status["hit"] is True

    expected = {"hits": before["hits"] + 5, "misses": before["misses"] + 1, "jobs_done": before["jobs_done"] + 1}

    async def agreed() -> bool:
        seen = [await stats(http, one.url), await stats(http, two.url)]
        return all({k: s[k] for k in expected} == expected for s in seen)

    # Each process flushes its counters about once a second; both must come to the same totals.
    await async_wait_until(agreed, 10, f"both proxies to report {expected}")
    assert origin.hits(target) == 1


async def test_concurrent_misses_on_two_proxies_share_one_job(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    settings = {"GRENIER_REDIS_URL": fresh_redis()}
    launcher.worker(settings, processes=1)
    proxies = [launcher.serve(settings), launcher.serve(settings)]
    target = origin.route(delays=(1.5,))

    replies = await asyncio.gather(*(get(http, fetch_url(proxies[i % 2].url, target)) for i in range(40)))
    assert {r.status for r in replies} == {202}
    # One job, but a location of its own for each request; any proxy resolves any of them through Redis.
    assert len({r.location for r in replies}) == 40
    done = await asyncio.gather(*(poll_job(http, proxies[(i + 1) % 2].url, r.location) for i, r in enumerate(replies)))
    assert {d.status for d in done} == {200}
    assert origin.hits(target) == 1


async def test_ready_is_503_when_redis_is_down(
    launcher: Launcher, tmp_path: Path, origin: Origin, http: aiohttp.ClientSession
) -> None:
    doomed = RedisServer(tmp_path)
    try:
        serve = launcher.serve({"GRENIER_REDIS_URL": doomed.url})
        assert (await get(http, serve.url + "/_grenier/ready")).status == 200
        doomed.kill()

        async def not_ready() -> Any:
            reply = await get(http, serve.url + "/_grenier/ready")
            return reply if reply.status != 200 else None

        reply = await async_wait_until(not_ready, 15, "/_grenier/ready to notice Redis is gone")
        doc = reply.problem(503)
        assert "store" in doc["detail"]
        assert doc["checks"]["store"] != "ok"
        assert doc["checks"]["broker"] != "ok"
        # The process itself is still up, and a request that needs Redis fails as a problem, not a traceback.
        assert (await get(http, serve.url + "/_grenier/health")).status == 200
        failing = await get(http, fetch_url(serve.url, origin.route()))
        failing.problem(failing.status)
        assert failing.status >= 500
    finally:
        doomed.kill()
