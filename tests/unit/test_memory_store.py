"""The embedded store's bounds: by bytes (least recently used evictable values first) and by expiry (swept without
waiting for a read). Sizes are checked through the store's own accounting, which counts every value it holds."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.memory_store import KEY_OVERHEAD, MemoryStore, size_of
from core.outcome import Fetched
from core.records import JobRecord, StoredResponse

KIB = 1024


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(size: int, tag: str = "") -> StoredResponse:
    return StoredResponse(f"http://e.com/{tag}", 200, (("Content-Type", "text/plain"),), b"x" * size, 1.0, 1.0, 60.0)


@pytest.fixture
async def small() -> MemoryStore:
    """Room for about four 20 KiB entries."""
    return MemoryStore(90 * KIB, clock=ManualClock())


async def test_writes_beyond_the_bound_evict_the_least_recently_used(small: MemoryStore) -> None:
    for i in range(10):
        await small.put_entry(f"k{i}", entry(20 * KIB, str(i)), 60)
        assert (await small.usage())["bytes"] <= small.max_bytes
    assert await small.get_entry("k0") is None
    assert await small.get_entry("k9") == entry(20 * KIB, "9")
    assert (await small.usage())["evicted"] >= 5


async def test_a_read_keeps_an_entry_in_the_cache(small: MemoryStore) -> None:
    for i in range(4):
        await small.put_entry(f"k{i}", entry(20 * KIB, str(i)), 60)
    assert await small.get_entry("k0") is not None  # k0 is now the most recently used
    await small.put_entry("k4", entry(20 * KIB, "4"), 60)
    assert await small.get_entry("k0") is not None
    assert await small.get_entry("k1") is None


async def test_pending_jobs_claims_and_counters_are_never_evicted(small: MemoryStore) -> None:
    pending = JobRecord(id="j" * 32, url="http://e.com/", created=1.0)
    await small.put_job(pending, 60)
    assert await small.claim("h", "j" * 32, 60) is None
    for i in range(10):
        await small.put_entry(f"k{i}", entry(20 * KIB, str(i)), 60)
    assert await small.get_job("j" * 32) == pending
    assert await small.claim("h", "other", 60) == "j" * 32


async def test_ended_jobs_are_evictable(small: MemoryStore) -> None:
    done = JobRecord(id="d" * 32, url="http://e.com/", created=1.0).ended(Fetched(200, key="k"), 2.0)
    await small.put_job(done, 60)
    for i in range(10):
        await small.put_entry(f"k{i}", entry(20 * KIB, str(i)), 60)
    assert await small.get_job("d" * 32) is None


async def test_every_held_byte_is_counted() -> None:
    store = MemoryStore(64 * 1024 * KIB, clock=ManualClock())
    base = (await store.usage())["bytes"]
    await store.put_entry("k", entry(50 * KIB), 60)
    with_entry = (await store.usage())["bytes"]
    assert with_entry - base >= 50 * KIB + KEY_OVERHEAD
    job = JobRecord(id="j" * 32, url="http://e.com/", created=1.0).ended(Fetched(200, response=entry(30 * KIB)), 2.0)
    await store.put_job(job, 60)  # a job holding an unstored response holds its body
    assert (await store.usage())["bytes"] - with_entry == size_of(job) > 30 * KIB
    await store.put_entry("k", entry(1), 60)  # overwriting gives the old value's bytes back
    await store.delete_job("j" * 32)
    assert (await store.usage())["bytes"] - base == size_of(entry(1))
    await store.delete_entry("k")
    assert (await store.usage())["bytes"] == base


async def test_expired_values_are_swept_without_being_read() -> None:
    clock = ManualClock()
    store = MemoryStore(64 * 1024 * KIB, clock=clock, sweep_interval=0.01)
    try:
        await store.put_entry("short", entry(100 * KIB), 5)
        await store.put_entry("long", entry(KIB), 500)
        held = (await store.usage())["bytes"]
        clock.now += 10
        deadline = time.monotonic() + 5
        while (await store.usage())["bytes"] >= held:  # the sweeper thread, not a read, gives the bytes back
            assert time.monotonic() < deadline, "expired entry was never swept"
            await asyncio.sleep(0.01)
        assert (await store.usage())["keys"] == 1
        assert await store.get_entry("long") is not None
    finally:
        await store.close()


async def test_a_write_sweeps_what_has_expired() -> None:
    clock = ManualClock()
    store = MemoryStore(64 * 1024 * KIB, clock=clock, sweep_interval=3600)
    await store.put_entry("short", entry(100 * KIB), 5)
    clock.now += 10
    await store.put_entry("other", entry(KIB), 500)
    assert (await store.usage())["bytes"] < 100 * KIB
