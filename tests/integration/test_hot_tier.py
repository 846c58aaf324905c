"""The hot tier across two real ``grenier serve`` processes on one Redis: a purge, an invalidation or a refresh made
through one process reaches the other's hot tier by notification. The tiers' window is long (60 s) here, so only
the notification can make the other process see the change within the test's bound."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tests.support.http import Reply, fetch_url, get, send
from tests.support.origins import Origin
from tests.support.polling import async_wait_until
from tests.support.processes import GrenierProcess, Launcher

BOUND = 5.0


def two_servers(launcher: Launcher, redis_url: str) -> tuple[GrenierProcess, GrenierProcess]:
    settings = {"GRENIER_REDIS_URL": redis_url, "GRENIER_CACHE_MISS": "wait", "GRENIER_CACHE_HOT_SECONDS": "60"}
    launcher.worker(settings)
    return launcher.serve(settings), launcher.serve(settings)


async def hot_hits(http: aiohttp.ClientSession, server: GrenierProcess) -> int:
    hits: int = (await get(http, server.url + "/_grenier/stats")).json()["store"]["hot_hits"]
    return hits


async def both_hot(http: aiohttp.ClientSession, servers: tuple[GrenierProcess, ...], target: str) -> Reply:
    """Request ``target`` through each server until each answers it from its hot tier (its hot hits go up)."""
    reply = await get(http, fetch_url(servers[0].url, target))
    for server in servers:

        async def served_hot(server: GrenierProcess = server) -> bool:
            nonlocal reply
            before = await hot_hits(http, server)
            reply = await get(http, fetch_url(server.url, target))
            return reply.cache_status.get("hit") is True and await hot_hits(http, server) > before

        await async_wait_until(served_hot, BOUND, f"{target} to be hot in {server.url}")
    return reply


async def test_a_purge_through_one_process_reaches_the_other(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, two = two_servers(launcher, fresh_redis())
    target = origin.route(changing=True)
    await both_hot(http, (one, two), target)
    purged = await send(http, "DELETE", one.url + "/_grenier/cache?url=" + target)
    assert purged.status == 200

    async def two_misses() -> bool:
        return "hit" not in (await get(http, fetch_url(two.url, target))).cache_status

    await async_wait_until(two_misses, BOUND, "the purge to reach the other process's hot tier")


async def test_a_refresh_and_an_invalidation_through_one_process_reach_the_other(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, two = two_servers(launcher, fresh_redis())
    target = origin.route(changing=True)
    assert (await both_hot(http, (one, two), target)).body.endswith(b"#1")
    refreshed = await get(http, fetch_url(one.url, target), {"Cache-Control": "no-cache"})
    assert refreshed.body.endswith(b"#2")

    async def two_serves_the_refresh() -> bool:
        reply = await get(http, fetch_url(two.url, target))
        return reply.cache_status.get("hit") is True and reply.body.endswith(b"#2")

    await async_wait_until(two_serves_the_refresh, BOUND, "the refresh to reach the other process's hot tier")

    posted = await send(http, "POST", target, proxy=one.url, data=b"change it")  # §4.4: an unsafe method
    assert posted.status < 400

    async def two_refetches() -> bool:
        return "hit" not in (await get(http, fetch_url(two.url, target))).cache_status

    await async_wait_until(two_refetches, BOUND, "the invalidation to reach the other process's hot tier")
