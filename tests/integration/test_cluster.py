"""The store on a real Redis Cluster (``redis.cluster``: 3 primaries, each with a replica), the jobs on a real
RabbitMQ: two ``grenier serve`` and two ``grenier worker`` processes share them, as separate hosts would.

Every key of one URL lives in one slot (hash tags), and no command spans two: a cross-slot command would fail here
with ``CROSSSLOT``, as it would on any cluster.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import pytest
import redis
from redis.crc import key_slot

from tests.support.cluster import RedisCluster
from tests.support.http import fetch_url, get, poll_job, send
from tests.support.origins import Origin
from tests.support.polling import async_wait_until
from tests.support.processes import GrenierProcess, Launcher

BOUND = 20.0


def url_hash(url: str) -> str:
    """The hash that keys ``url`` (and tags its keys' slot)."""
    return hashlib.sha256(url.encode()).hexdigest()


def two_and_two(
    launcher: Launcher, cluster_url: str, broker_url: str, queue: str, more: Mapping[str, str] = {}
) -> tuple[GrenierProcess, GrenierProcess]:
    """Two workers and two proxies on the cluster and RabbitMQ; the proxies returned once all four are ready."""
    settings = {
        "GRENIER_REDIS_URL": cluster_url,
        "GRENIER_REDIS_CLUSTER": "true",
        "GRENIER_JOBS_BROKER": "rabbitmq",
        "GRENIER_JOBS_BROKER_URL": broker_url,
        "GRENIER_JOBS_QUEUE": queue,
        "GRENIER_SERVER_MISS_RATE": "0",  # the tests send many misses from one client
        **more,
    }
    launcher.worker(settings, processes=1)
    launcher.worker(settings, processes=1)
    return launcher.serve(settings), launcher.serve(settings)


@pytest.fixture
def proxies(
    launcher: Launcher, cluster_url: str, rabbitmq_server: str, fresh_queue: str
) -> tuple[GrenierProcess, GrenierProcess]:
    return two_and_two(launcher, cluster_url, rabbitmq_server, fresh_queue)


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

    # The entry, its variants and their claims share the URL's slot: one primary holds them all.
    holders = []
    for node in redis_cluster.primaries():
        with redis.Redis(port=node.port) as client:
            if list(client.scan_iter(match=f"grenier:entry:{{{url_hash(target)}}}*", count=1000)):
                holders.append(node.port)
    assert len(holders) == 1, f"the URL's entries are spread over nodes {holders}"

    purged = await send(http, "DELETE", one.url + "/_grenier/cache?url=" + target)
    assert purged.status == 200

    async def both_miss() -> bool:
        replies = [await get(http, fetch_url(p.url, target), fr) for p in (one, two)]
        return all("hit" not in r.cache_status for r in replies)

    await async_wait_until(both_miss, BOUND, "the purge to reach both proxies")


async def test_500_concurrent_misses_over_20_urls_through_both_proxies_make_20_fetches(
    proxies: tuple[GrenierProcess, GrenierProcess], origin: Origin
) -> None:
    urls, per_url, bound = 20, 25, 60.0
    # Each answer takes a moment, so the later requests arrive while the URL's job is in flight.
    targets = [origin.route(delays=(0.5,)) for _ in range(urls)]
    requests = [(proxies[i % 2], t) for t in targets for i in range(per_url)]
    wait = {"Prefer": f"wait={int(bound)}"}  # each answer is the fetched response: no polling to crowd the proxies
    # No cap on connections: all 500 requests are in flight at once (aiohttp's default allows 100).
    connector = aiohttp.TCPConnector(limit=0)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=bound)) as http:
        replies = await asyncio.gather(*(get(http, fetch_url(p.url, t), wait) for p, t in requests))
        elapsed = time.monotonic() - started
        print(f"\n{len(requests)} concurrent misses over {urls} URLs answered in {elapsed:.2f} s")
        refused = [r.text for r in replies if r.status != 200]
        assert [r.status for r in replies] == [200] * len(requests), refused[:3]
        for (_, target), reply in zip(requests, replies, strict=True):
            assert reply.body == f"body of {origin.path_of(target)}".encode()
        assert [origin.hits(t) for t in targets] == [1] * urls  # coalesced cluster-wide: one fetch per URL

        # Counters are spread over shard keys (each worker adds to one of its own) and summed on read.
        stats: dict[str, int] = {}

        async def counted() -> bool:  # processes flush their counters about once a second
            nonlocal stats
            stats = (await get(http, proxies[1].url + "/_grenier/stats")).json()
            return stats["jobs_done"] >= urls and stats["misses"] + stats["collapsed"] >= len(requests)

        await async_wait_until(counted, BOUND, f"the summed counters to show every job and miss; last {stats}")
        assert stats["jobs_done"] == urls


@dataclass(frozen=True)
class Answer:
    when: float
    kind: str  # "hit" or "miss"
    status: int  # 0: no answer at all (timeout, connection error)
    good: bool  # the expected body with a 200


class Flow:
    """Hits of one URL and misses of fresh URLs through the proxies, each kind in a loop per proxy, until stopped;
    every answer noted, and every refusal that is not a problem document (a 503 without ``Retry-After``)."""

    def __init__(self, http: aiohttp.ClientSession, origin: Origin, hot: str, fresh: Callable[[], str]) -> None:
        self.http, self.origin, self.hot, self.fresh = http, origin, hot, fresh
        self.seen: list[Answer] = []
        self.malformed: list[str] = []  # refusals that are not a problem document (503: with Retry-After)
        self.stop = asyncio.Event()

    async def ask(self, kind: str, proxy: GrenierProcess) -> None:
        while not self.stop.is_set():
            target = self.hot if kind == "hit" else self.fresh()
            try:
                reply = await get(
                    self.http,
                    fetch_url(proxy.url, target),
                    {"Prefer": "wait=5"},
                    timeout=aiohttp.ClientTimeout(total=10),
                )
            except (TimeoutError, aiohttp.ClientError):
                self.seen.append(Answer(time.monotonic(), kind, 0, good=False))
                continue
            if reply.status >= 500 and not (
                reply.header("Content-Type") == "application/problem+json"
                and (reply.status != 503 or reply.header("Retry-After"))
            ):
                self.malformed.append(f"{reply.status} {reply.headers} {reply.text}")
            good = reply.status == 200 and reply.body == f"body of {self.origin.path_of(target)}".encode()
            self.seen.append(Answer(time.monotonic(), kind, reply.status, good))
            await asyncio.sleep(0.02 if good else 0.05)  # a refusal comes back at once: do not spin on it

    def failures_since(self, start: float) -> list[Answer]:
        return [a for a in self.seen if a.when > start and not a.good]

    def calm_since(self, start: float, calm: float) -> bool:
        """Has every answer of both kinds been good for ``calm`` seconds, after some failures since ``start``?"""
        failures = self.failures_since(start)
        if not failures or time.monotonic() - failures[-1].when < calm:
            return False
        return {a.kind for a in self.seen if a.when > failures[-1].when} == {"hit", "miss"}


async def test_a_killed_primary_is_replaced_by_its_replica_and_requests_recover_by_themselves(
    launcher: Launcher,
    cluster_url: str,
    redis_cluster: RedisCluster,
    rabbitmq_server: str,
    fresh_queue: str,
    origin: Origin,
    http: aiohttp.ClientSession,
) -> None:
    """SIGKILL a primary while hits and misses of URLs in its slots flow through two proxies: its replica takes over
    (``cluster-node-timeout`` 2 s, then an election) and requests succeed again without restarting anything. No hot
    tier, so every hit reads the store. Prints what clients saw, and when."""
    bound, calm = 30.0, 3.0
    proxies = two_and_two(launcher, cluster_url, rabbitmq_server, fresh_queue, {"GRENIER_CACHE_HOT_BYTES": "0"})
    victim = next(n for n in redis_cluster.primaries() if n.url != cluster_url)  # not the seed the processes named
    slots = redis_cluster.slots_of(victim)

    def victim_url() -> str:
        """A fresh origin URL whose keys live on the victim."""
        while True:
            url = origin.route(headers={"Cache-Control": "max-age=600"})
            if any(start <= key_slot(url_hash(url).encode()) <= end for start, end in slots):
                return url

    hot = victim_url()
    assert (await get(http, fetch_url(proxies[0].url, hot), {"Prefer": "wait=10"})).status == 200
    with redis.Redis(port=redis_cluster.replica_of(victim).port, socket_timeout=2) as replica:
        replica.execute_command("READONLY")  # replicated before the kill, as WAIT would make sure
        await async_wait_until(
            lambda: replica.exists(f"grenier:entry:{{{url_hash(hot)}}}"), BOUND, "the entry to reach the replica"
        )

    flow = Flow(http, origin, hot, victim_url)
    clients = [asyncio.create_task(flow.ask(kind, proxy)) for kind in ("hit", "miss") for proxy in proxies]
    try:
        await asyncio.sleep(1.0)
        assert flow.seen, "no answer in a second"
        assert flow.failures_since(0.0) == []  # everything works before the kill
        victim.kill()
        killed_at = time.monotonic()
        await async_wait_until(
            lambda: flow.calm_since(killed_at, calm), bound, f"every request to succeed again for {calm} s", 0.2
        )
        flow.stop.set()
        await asyncio.gather(*clients)
    finally:
        flow.stop.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        redis_cluster.revive(victim)  # back as a replica: the session's cluster keeps its shape

    failures = flow.failures_since(killed_at)
    assert failures, "the kill changed nothing: were the requests' keys on the killed primary?"
    recovered = failures[-1].when - killed_at
    meanwhile = [a for a in flow.seen if killed_at < a.when <= failures[-1].when]
    counts = collections.Counter(f"{a.kind} {a.status}" for a in meanwhile)
    print(
        f"\nprimary killed: first failure after {failures[0].when - killed_at:.2f} s, last after {recovered:.2f} s;"
        f" meanwhile {dict(sorted(counts.items()))};"
        f" then {len([a for a in flow.seen if a.when > failures[-1].when])} answers, all as expected"
    )
    assert all(a.status for a in failures), "a request got no answer at all"
    assert 500 not in {a.status for a in failures}, flow.malformed[:3]
    assert flow.malformed == []
    # After the failover: the entry written before the kill is a hit from the promoted replica on both proxies, and a
    # new miss in the same slots is fetched once.
    for proxy in proxies:
        assert (await get(http, fetch_url(proxy.url, hot))).cache_status["hit"] is True
    fresh = victim_url()
    assert (await get(http, fetch_url(proxies[1].url, fresh), {"Prefer": "wait=10"})).status == 200
    assert origin.hits(fresh) == 1
