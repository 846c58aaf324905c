"""Redis behind Sentinel (``redis.sentinels``): real ``grenier serve`` and ``grenier worker`` processes find the primary
through three real sentinels, and follow a failover by themselves.

The failover (``SENTINEL FAILOVER``, or the primary SIGKILLed) is timed from that moment to the first miss, sent once
the sentinels name the new primary, that completes (a new job through the store and the Redis broker, both on the
new primary); what clients saw meanwhile is counted by status.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.support.http import fetch_url, get, miss_then_done, poll_job
from tests.support.origins import Origin
from tests.support.processes import Launcher
from tests.support.sentinel import SERVICE, SentinelSet

#: Bound on the recovery; what it took is printed (pytest -s) and recorded in docs/scaling.md.
RECOVERY_BOUND = 30.0


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    group = SentinelSet(tmp_path / "sentinel")
    try:
        yield group
    finally:
        group.stop()


@pytest.mark.parametrize("how", ["sentinel-failover", "primary-killed"])
async def test_requests_recover_by_themselves_after_a_failover(
    how: str, sentinels: SentinelSet, launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    settings = {
        "GRENIER_REDIS_URL": "",  # the sentinels say where the primary is
        "GRENIER_REDIS_SENTINELS": ",".join(sentinels.addresses),
        "GRENIER_REDIS_SENTINEL_SERVICE": SERVICE,
    }
    launcher.worker(settings, processes=1)
    serve = launcher.serve(settings)
    assert "via sentinels" in serve.log()

    before = origin.route(body=b"written before", headers={"Cache-Control": "max-age=300"})
    done = await miss_then_done(http, serve.url, before)
    assert done.status == 200
    assert done.body == b"written before"
    primary = redis.Redis(port=sentinels.primary.port)
    assert primary.exists("grenier:stats:misses") or primary.dbsize() > 0  # it went to the primary Sentinel named
    assert primary.wait(1, 5000) == 1  # the replica has it too (replication is asynchronous)
    primary.close()

    old = sentinels.primary_port()
    if how == "sentinel-failover":
        sentinels.failover()
    else:
        sentinels.primary.kill()  # the sentinels must notice (down-after 1 s), agree and promote the replica
    started = time.monotonic()

    # Requests go on from the first moment, so the count shows what clients saw while the primary changed.
    seen: Counter[int] = Counter()
    switched_at = None
    while True:  # a new URL each time: a miss needs a claim, a job record and a message on the new primary
        if switched_at is None and _names_new_primary(sentinels, old):
            switched_at = time.monotonic() - started
        target = origin.route(body=b"after the failover")
        try:
            first = await get(http, fetch_url(serve.url, target))
            seen[first.status] += 1
            if first.status == 202:
                final = await poll_job(http, serve.url, first.location, timeout=RECOVERY_BOUND)
                seen[final.status] += 1
                if switched_at is not None and final.status == 200 and final.body == b"after the failover":
                    break  # a miss sent once the new primary was named: it went through the new primary
        except aiohttp.ClientError:
            seen[0] += 1  # no answer at all
        assert time.monotonic() - started < RECOVERY_BOUND, f"no miss completed after the failover; saw {seen}"
        await asyncio.sleep(0.1)
    recovered = time.monotonic() - started
    print(
        f"\n{how}: new primary named after {switched_at:.2f} s, a miss through it completed after {recovered:.2f} s;"
        f" statuses meanwhile {dict(seen)}"
    )
    assert seen[500] == 0, f"a failover must never be a 500: {seen}"
    if how == "primary-killed":
        # The store's breaker (core/breaker.py) saw the primary go and, through the sentinels, the new one answer:
        # one line each way, not a line per request.
        log = serve.log()
        assert "Redis unreachable" in log, log[-2000:]
        assert "Redis reachable again" in log, log[-2000:]
    assert sentinels.replica is not None
    assert sentinels.primary_port() == sentinels.replica.port != old

    hit = await get(http, fetch_url(serve.url, before))
    assert hit.status == 200
    assert hit.cache_status["hit"] is True  # the entry written before the failover, read from the new primary
    assert hit.body == b"written before"
    assert "Traceback" not in serve.log()


def _names_new_primary(sentinels: SentinelSet, old: int) -> bool:
    try:
        return sentinels.primary_port() != old
    except redis.RedisError:
        return False
