"""The store on a real 3-primary Redis Cluster (``redis.cluster``), the jobs on a real RabbitMQ: two ``grenier serve``
and two ``grenier worker`` processes share them, as separate hosts would.

Every key of one URL lives in one slot (hash tags), and no command spans two: a cross-slot command would fail here
with ``CROSSSLOT``, as it would on any cluster.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest
import redis

from tests.support.cluster import RedisCluster
from tests.support.http import fetch_url, get, poll_job, send
from tests.support.origins import Origin
from tests.support.polling import async_wait_until
from tests.support.processes import GrenierProcess, Launcher

BOUND = 20.0


@pytest.fixture
def proxies(
    launcher: Launcher, cluster_url: str, rabbitmq_server: str, fresh_queue: str
) -> tuple[GrenierProcess, GrenierProcess]:
    settings = {
        "GRENIER_REDIS_URL": cluster_url,
        "GRENIER_REDIS_CLUSTER": "true",
        "GRENIER_JOBS_BROKER": "rabbitmq",
        "GRENIER_JOBS_BROKER_URL": rabbitmq_server,
        "GRENIER_JOBS_QUEUE": fresh_queue,
        "GRENIER_SERVER_MISS_RATE": "0",  # the coalescing test sends many misses from one client
    }
    launcher.worker(settings, processes=1)
    launcher.worker(settings, processes=1)
    return launcher.serve(settings), launcher.serve(settings)


async def test_miss_poll_hit_vary_and_purge_across_two_proxies(
    proxies: tuple[GrenierProcess, GrenierProcess],
    redis_cluster: RedisCluster,
    origin: Origin,
    http: aiohttp.ClientSession,
) -> None:
    one, two = proxies
    target = origin.route(changing=True, headers={"Vary": "Accept-Language"})
    fr, en = {"Accept-Language": "fr"}, {"Accept-Language": "en"}

    miss = await get(http, fetch_url(one.url, target), fr)
    assert miss.status == 202
    done = await poll_job(http, one.url, miss.location, timeout=BOUND)
    assert done.status == 200
    assert done.body.endswith(b"#1")
    hit = await get(http, fetch_url(two.url, target), fr)  # the other proxy finds what the first one caused
    assert hit.cache_status["hit"] is True
    assert hit.body.endswith(b"#1")

    other = await get(http, fetch_url(two.url, target), en)  # another variant: a fetch of its own
    assert other.status == 202
    assert (await poll_job(http, two.url, other.location, timeout=BOUND)).body.endswith(b"#2")
    assert (await get(http, fetch_url(one.url, target), en)).body.endswith(b"#2")
    assert (await get(http, fetch_url(one.url, target), fr)).body.endswith(b"#1")

    # The entry, its variants and their claims share the URL's slot: one node holds them all.
    url_hash = hashlib.sha256(target.encode()).hexdigest()
    holders = []
    for node in redis_cluster.nodes:
        with redis.Redis(port=node.port) as client:
            if list(client.scan_iter(match=f"grenier:entry:{{{url_hash}}}*", count=1000)):
                holders.append(node.port)
    assert len(holders) == 1, f"the URL's entries are spread over nodes {holders}"

    purged = await send(http, "DELETE", one.url + "/_grenier/cache?url=" + target)
    assert purged.status == 200

    async def both_miss() -> bool:
        replies = [await get(http, fetch_url(p.url, target), fr) for p in (one, two)]
        return all("hit" not in r.cache_status for r in replies)

    await async_wait_until(both_miss, BOUND, "the purge to reach both proxies")


async def test_concurrent_misses_over_both_proxies_make_one_fetch_per_url(
    proxies: tuple[GrenierProcess, GrenierProcess], origin: Origin, http: aiohttp.ClientSession
) -> None:
    urls, per_url = 20, 10
    # Each answer takes a moment, so the later requests arrive while the URL's job is in flight.
    targets = [origin.route(delays=(0.5,)) for _ in range(urls)]
    requests = [(proxies[i % 2], t) for t in targets for i in range(per_url)]
    replies = await asyncio.gather(*(get(http, fetch_url(p.url, t)) for p, t in requests))
    assert {r.status for r in replies} <= {200, 202}, [r.status for r in replies]
    for (proxy, _), reply in zip(requests, replies, strict=True):
        if reply.status == 202:
            assert (await poll_job(http, proxy.url, reply.location, timeout=BOUND)).status == 200
    assert [origin.hits(t) for t in targets] == [1] * urls  # coalesced cluster-wide: one fetch per URL

    # Counters are spread over shard keys (each worker adds to one of its own) and summed on read.
    stats: dict[str, int] = {}

    async def counted() -> bool:  # processes flush their counters about once a second
        nonlocal stats
        stats = (await get(http, proxies[1].url + "/_grenier/stats")).json()
        return stats["jobs_done"] >= urls and stats["misses"] + stats["collapsed"] >= urls * per_url

    await async_wait_until(counted, BOUND, f"the summed counters to show every job and miss; last {stats}")
    assert stats["jobs_done"] == urls
