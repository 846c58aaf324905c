"""The hot tier: bounded by bytes (least recently used first), nothing held past its window, and, in front of Redis,
coherent across processes by notification: a write or deletion in one store reaches the others' hot tiers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from core.hot_tier import HotTier
from core.invalidation import ByTag
from core.records import StoredResponse
from core.store import RedisStore, entry_key

BOUND = 5.0  # seconds a bounded wait allows; it only catches "never happened"


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_values_go_first_beyond_the_bound() -> None:
    hot = HotTier[bytes](max_bytes=300, max_item_bytes=200, ttl=60, clock=ManualClock())
    hot.put("a", b"a", 100)
    hot.put("b", b"b", 100)
    assert hot.get("a") == b"a"  # a is now the most recently used
    hot.put("c", b"c", 150)
    assert (hot.get("a"), hot.get("b"), hot.get("c")) == (b"a", None, b"c")
    assert hot.bytes == 250


def test_values_larger_than_an_item_may_be_are_not_held() -> None:
    hot = HotTier[bytes](max_bytes=1000, max_item_bytes=10, ttl=60)
    hot.put("big", b"x" * 11, 11)
    assert hot.get("big") is None
    assert hot.bytes == 0


def test_nothing_is_held_past_its_window() -> None:
    clock = ManualClock()
    hot = HotTier[bytes](max_bytes=1000, max_item_bytes=1000, ttl=2, clock=clock)
    hot.put("k", b"v", 1)
    clock.now += 1.9
    assert hot.get("k") == b"v"
    clock.now += 0.2
    assert hot.get("k") is None
    assert hot.bytes == 0


def entry(body: bytes) -> StoredResponse:
    return StoredResponse("http://e.com/", 200, (("Cache-Control", "max-age=60"),), body, 1.0, 1.0, 60.0)


@pytest.fixture
async def two_servers(redis_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore, redis.Redis]]:
    """Two server processes' stores, each with its own hot tier (a long window: only notifications keep them
    coherent here), and a plain client that writes behind their backs."""
    a = RedisStore.from_url(redis_url, HotTier[Any](1 << 20, 1 << 20, 300))
    b = RedisStore.from_url(redis_url, HotTier[Any](1 << 20, 1 << 20, 300))
    plain = redis.Redis.from_url(redis_url)
    try:
        yield a, b, plain
    finally:
        await a.close()
        await b.close()
        plain.close()


async def _subscribed(store: RedisStore, plain: redis.Redis, count: int) -> None:
    await store.get_entry("warm-up")  # starts the subscription
    deadline = asyncio.get_running_loop().time() + BOUND
    while plain.pubsub_numsub("grenier:entry-changed")[0][1] < count:
        assert asyncio.get_running_loop().time() < deadline, "the stores never subscribed"
        await asyncio.sleep(0.01)


async def eventually(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + BOUND
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def test_a_hot_entry_is_served_without_reading_redis(
    two_servers: tuple[RedisStore, RedisStore, redis.Redis],
) -> None:
    a, _, plain = two_servers
    await _subscribed(a, plain, 1)  # nothing is held hot before notifications flow
    await a.put_entry("h", entry(b"v1"), 60)
    assert await a.get_entry("h") == entry(b"v1")
    plain.set(entry_key("h"), entry(b"behind its back").encode())  # no notification: the hot copy stands
    assert await a.get_entry("h") == entry(b"v1")
    assert a.hot is not None
    assert a.hot.hits >= 1


async def test_a_write_in_one_process_reaches_the_other_hot_tier(
    two_servers: tuple[RedisStore, RedisStore, redis.Redis],
) -> None:
    a, b, plain = two_servers
    await _subscribed(a, plain, 1)
    await _subscribed(b, plain, 2)
    await a.put_entry("h", entry(b"v1"), 60)
    assert await b.get_entry("h") == entry(b"v1")  # now hot in b

    await a.put_entry("h", entry(b"v2"), 60)  # a refresh written by another process

    async def b_sees_v2() -> bool:
        return await b.get_entry("h") == entry(b"v2")

    await eventually(b_sees_v2, "the refresh reached the other process's hot tier")

    await a.delete_entry("h")  # a purge or an invalidation

    async def b_sees_nothing() -> bool:
        return await b.get_entry("h") is None

    await eventually(b_sees_nothing, "the purge reached the other process's hot tier")


async def test_only_the_chunks_of_a_body_small_enough_to_be_hot_are_held(
    two_servers: tuple[RedisStore, RedisStore, redis.Redis],
) -> None:
    """A large body streams through the process: holding its chunks would make its memory grow with the body."""
    a, _, plain = two_servers
    assert a.hot is not None
    await _subscribed(a, plain, 1)
    await a.put_chunk("small:v", 0, b"s" * 1000, 60)
    await a.put_chunk("large:v", 0, b"l" * 1000, 60)
    assert await a.get_chunks("small:v", [0], 1000) == [b"s" * 1000]
    held = a.hot.bytes
    assert held >= 1000
    assert await a.get_chunks("large:v", [0], a.hot.max_item_bytes + 1) == [b"l" * 1000]
    assert a.hot.bytes == held


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
async def test_a_tag_purge_in_one_process_reaches_the_other_hot_tier(
    two_servers: tuple[RedisStore, RedisStore, redis.Redis], soft: bool
) -> None:
    """Every variant a tag purge removes (or marks stale) is dropped from every process's hot tier, the purging
    process's own at once."""
    a, b, plain = two_servers
    await _subscribed(a, plain, 1)
    await _subscribed(b, plain, 2)
    tagged = StoredResponse("http://e.com/", 200, (), b"v", 1.0, 1.0, 60.0, tags=("t",))
    keys = ["h:g:1", "h:g:2"]
    for key in keys:
        await a.put_entry(key, tagged, 60)
        assert await a.get_entry(key) == tagged
        assert await b.get_entry(key) == tagged  # now hot in both
    assert await a.purge(ByTag("t"), soft=soft) == 2
    expected = replace(tagged, lifetime=0.0) if soft else None
    assert [await a.get_entry(k) for k in keys] == [expected] * 2

    async def b_sees_the_purge() -> bool:
        return [await b.get_entry(k) for k in keys] == [expected] * 2

    await eventually(b_sees_the_purge, "the tag purge reached the other process's hot tier")
