"""One contract for every store (core/store.py): MemoryStore, RedisStore on fakeredis, RedisStore on redis-server, and
RedisStore on a real 3-primary Redis Cluster (``redis.cluster``), where any command spanning two slots would fail.

Expiries here are short (0.2 s). ``pass_time`` moves past them: the memory store's injected clock is advanced, the
Redis backends (whose expiry is the server's) are slept past. That checks that things expire, it does not time them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import fakeredis
import pytest

from core.invalidation import ByPrefix, ByTag, ByUrl, Everything
from core.memory_store import MemoryStore
from core.outcome import Failed, Fetched
from core.records import JobRecord, StoredResponse, VaryIndex
from core.settings import RedisSettings
from core.store import (
    COUNTERS,
    DONE_CHANNEL,
    RECENT_JOBS,
    RECENT_JOBS_KEY,
    RedisStore,
    Store,
    entry_key,
    job_key,
    tag_key,
    urls_key,
    variants_key,
)
from core.targets import cache_key

SHORT = 0.2  # an expiry the tests sleep past
PAST_SHORT = 0.5
LONG = 60.0  # an expiry no test outlives
MEMORY_BYTES = 64 * 1024 * 1024  # room for everything the contract tests write
#: Bound on how long a woken waiter may take to return; generous, it only catches "never woke up".
WAKE_BOUND = 5.0
#: Bound on ``close()``; it only catches "never returns".
CLOSE_BOUND = 5.0

H1 = "a" * 64
H2 = "b" * 64


class ManualClock:
    """The memory store's clock, moved by the test rather than by time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _open(request: pytest.FixtureRequest, backend: str, clock: ManualClock | None = None) -> Store:
    if backend == "memory":
        return MemoryStore(MEMORY_BYTES, clock=clock or ManualClock())
    if backend == "fakeredis":
        return RedisStore(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    if backend == "cluster":
        return RedisStore.open(RedisSettings(url=request.getfixturevalue("cluster_url"), cluster=True))
    assert backend == "redis"
    url: str = request.getfixturevalue("redis_url")
    return RedisStore.from_url(url)


async def _closes(s: Store) -> bool:
    """Whether ``close()`` returns within CLOSE_BOUND; if it does not, it is cancelled so the suite goes on."""
    task = asyncio.create_task(s.close())
    done, _ = await asyncio.wait({task}, timeout=CLOSE_BOUND)
    if task in done:
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _close(s: Store) -> None:
    if not await _closes(s):
        pytest.fail(
            f"{type(s).__name__}.close() did not return within {CLOSE_BOUND} s "
            "(see test_close_right_after_the_first_wait)"
        )


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pass_time(backend: str, clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    """Let ``seconds`` pass for the store under test."""

    async def advance(seconds: float) -> None:
        if backend == "memory":
            clock.now += seconds
        else:
            await asyncio.sleep(seconds)

    return advance


@pytest.fixture
async def store(request: pytest.FixtureRequest, backend: str, clock: ManualClock) -> AsyncIterator[Store]:
    s = await _open(request, backend, clock)
    try:
        yield s
    finally:
        await _close(s)


@pytest.fixture(params=["fakeredis", "redis", "cluster"])
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    s = await _open(request, request.param)
    assert isinstance(s, RedisStore)
    try:
        yield s
    finally:
        await _close(s)


def _entry(body: bytes = b"body \x00\xff", url: str = "http://e.com/") -> StoredResponse:
    return StoredResponse(
        url=url,
        status=200,
        headers=(("Content-Type", "application/octet-stream"), ("X-Name", "caf\xe9")),
        body=body,
        request_time=1000.25,
        response_time=1000.5,
        lifetime=60.0,
    )


def _job(job_id: str = "job-1", state: str = "queued", **changes: object) -> JobRecord:
    return dataclasses.replace(JobRecord(id=job_id, url="http://e.com/", created=1000.0), state=state, **changes)


# --- entries ----------------------------------------------------------------------------------------------------


async def test_entry_absent(store: Store) -> None:
    assert await store.get_entry(H1) is None


async def test_entry_put_get(store: Store) -> None:
    entry = _entry(bytes(range(256)))
    await store.put_entry(H1, entry, LONG)
    assert await store.get_entry(H1) == entry
    assert await store.get_entry(H2) is None


async def test_entry_put_replaces(store: Store) -> None:
    await store.put_entry(H1, _entry(b"old"), LONG)
    await store.put_entry(H1, _entry(b"new"), LONG)
    got = await store.get_entry(H1)
    assert isinstance(got, StoredResponse)
    assert got.body == b"new"


async def test_entry_expires(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    await store.put_entry(H1, _entry(), SHORT)
    await store.put_entry(H2, _entry(), LONG)
    assert await store.get_entry(H1) == _entry()
    await pass_time(PAST_SHORT)
    assert await store.get_entry(H1) is None
    assert await store.get_entry(H2) == _entry()


async def test_entry_delete(store: Store) -> None:
    await store.put_entry(H1, _entry(), LONG)
    await store.put_entry(H2, _entry(), LONG)
    await store.delete_entry(H1)
    assert await store.get_entry(H1) is None
    assert await store.get_entry(H2) == _entry()
    await store.delete_entry(H1)  # deleting what is gone is fine


async def test_vary_index_and_variants(store: Store) -> None:
    """A URL's entry key may hold a variant index; each variant has its own key beside it."""
    index = VaryIndex(("accept-encoding",), "gen-1")
    gz, plain = _entry(b"\x1f\x8bgz"), _entry(b"plain")
    await store.put_entry(H1, index, LONG)
    await store.put_entry(f"{H1}:gen-1:v-gzip", gz, LONG)
    await store.put_entry(f"{H1}:gen-1:v-identity", plain, LONG)
    assert await store.get_entry(H1) == index
    assert await store.get_entry(f"{H1}:gen-1:v-gzip") == gz
    assert await store.get_entry(f"{H1}:gen-1:v-identity") == plain
    assert await store.get_entry(f"{H1}:gen-2:v-gzip") is None


# --- purges: by URL, prefix, tag, everything; hard or soft -----------------------------------------------------


def _tagged(url: str, *tags: str, body: bytes = b"b") -> StoredResponse:
    return dataclasses.replace(_entry(body, url), tags=tags)


async def _put(store: Store, url: str, *tags: str) -> str:
    """Store a response for ``url`` at its own key; returns the key."""
    await store.put_entry(cache_key(url), _tagged(url, *tags), LONG)
    return cache_key(url)


async def _put_variants(store: Store, url: str, *tags: str) -> list[str]:
    """``url`` varies: its index, and two variants tagged ``tags``; returns the variants' keys."""
    h = cache_key(url)
    await store.put_entry(h, VaryIndex(("accept-encoding",), "g1"), LONG)
    keys = [f"{h}:g1:gzip", f"{h}:g1:identity"]
    for key in keys:
        await store.put_entry(key, _tagged(url, *tags, body=key.encode()), LONG)
    return keys


async def _held(store: Store, *keys: str) -> list[bool]:
    return [await store.get_entry(k) is not None for k in keys]


async def test_purge_url_removes_it_and_every_variant(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/v")
    other = await _put(store, "http://a.com/w")
    assert await store.purge(ByUrl("http://a.com/v")) == 1
    assert await _held(store, cache_key("http://a.com/v"), *variants, other) == [False, False, False, True]
    assert await store.purge(ByUrl("http://a.com/v")) == 0  # nothing left: the caller says 404


async def test_purge_prefix_removes_the_urls_under_it_only(store: Store) -> None:
    img = [await _put(store, f"http://a.com/img/{n}") for n in (1, 2)]
    css = await _put(store, "http://a.com/css/x")
    lookalike = await _put(store, "http://a.com.evil/img/1")
    elsewhere = await _put(store, "http://b.com/img/1")
    assert await store.purge(ByPrefix("http://a.com/img/")) == 2
    assert await _held(store, *img, css, lookalike, elsewhere) == [False, False, True, True, True]
    assert await store.purge(ByPrefix("http://a.com/")) == 1  # a host ban: the host's path "/"
    assert await _held(store, css, lookalike, elsewhere) == [False, True, True]


async def test_purge_prefix_takes_the_variants_along(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/img/v")
    assert await store.purge(ByPrefix("http://a.com/img/")) == 1
    assert await _held(store, *variants) == [False, False]


async def test_purge_tag_removes_every_entry_carrying_it_across_variants(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/v", "product-1", "all")
    tagged = await _put(store, "http://a.com/t", "all", "product-1")
    untagged = await _put(store, "http://a.com/u", "product-2")
    assert await store.purge(ByTag("product-1")) == 3
    assert await _held(store, *variants, tagged, untagged) == [False, False, False, True]
    assert await store.purge(ByTag("product-1")) == 0
    assert await store.purge(ByTag("all")) == 0  # its entries are gone already


async def test_soft_purge_marks_entries_stale_and_keeps_them(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/v", "k")
    plain = await _put(store, "http://a.com/p", "k")
    assert await store.purge(ByTag("k"), soft=True) == 3
    for key in (*variants, plain):
        got = await store.get_entry(key)
        assert isinstance(got, StoredResponse)
        assert got.lifetime == 0.0
        assert dataclasses.replace(got, lifetime=60.0) == _tagged(got.url, "k", body=got.body), (
            "only its freshness changes"
        )
    assert await store.purge(ByTag("k"), soft=True) == 3, "a soft purge unlists nothing"


@pytest.mark.parametrize(
    "target", [ByUrl("http://a.com/v"), ByPrefix("http://a.com/"), Everything()], ids=["url", "prefix", "all"]
)
async def test_soft_purge_by_url_prefix_or_all_reaches_the_variants(store: Store, target: object) -> None:
    variants = await _put_variants(store, "http://a.com/v")
    assert await store.purge(target, soft=True) == 1  # type: ignore[arg-type]
    for key in variants:
        got = await store.get_entry(key)
        assert isinstance(got, StoredResponse)
        assert got.lifetime == 0.0
    assert isinstance(await store.get_entry(cache_key("http://a.com/v")), VaryIndex)


async def test_flush_removes_every_entry_and_nothing_else(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/v", "k")
    others = [await _put(store, f"http://b.com/{n}") for n in range(3)]
    await store.put_job(_job("job-1"), LONG)
    assert await store.purge(Everything()) == 4  # URLs (a variant is not counted on its own)
    assert await _held(store, cache_key("http://a.com/v"), *variants, *others) == [False] * 6
    assert await store.get_job("job-1") == _job("job-1")
    assert await store.purge(ByTag("k")) == 0
    assert await store.purge(Everything()) == 0


async def test_variants_are_listed(store: Store) -> None:
    variants = await _put_variants(store, "http://a.com/v")
    assert await store.variants(cache_key("http://a.com/v")) == sorted(variants)
    assert await store.variants(cache_key("http://a.com/none")) == []


async def test_note_round_trips_and_expires(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    note = {"job": "j1", "status": 500, "stored": False, "reason": "a server error does not replace it"}
    await store.put_note(H1, note, SHORT)
    assert await store.get_note(H1) == note
    assert await store.get_note(H2) is None
    await pass_time(PAST_SHORT)
    assert await store.get_note(H1) is None


async def test_redis_indexes_expire_with_their_entries(redis_store: RedisStore) -> None:
    """The key scheme: every index a write adds lives as long as its longest-lived entry, never for ever."""
    url = "http://a.com/v"
    await redis_store.put_entry(cache_key(url), VaryIndex(("accept",), "g"), 30.0)
    await redis_store.put_entry(f"{cache_key(url)}:g:x", _tagged(url, "k"), 20.0)
    await redis_store.put_entry(f"{cache_key(url)}:g:y", _tagged(url, "k"), 25.0)
    for key in (urls_key("http://a.com"), variants_key(cache_key(url)), tag_key("k")):
        assert 20_000 < await redis_store.redis.pttl(key) <= 25_000, key


# --- jobs -------------------------------------------------------------------------------------------------------


async def test_job_put_get_delete(store: Store) -> None:
    assert await store.get_job("job-1") is None
    record = _job("job-1", "running", started=1000.5, attempts=1)
    await store.put_job(record, LONG)
    got = await store.get_job("job-1")
    assert got == record
    assert got is not None
    assert got.outcome is None
    await store.delete_job("job-1")
    assert await store.get_job("job-1") is None
    await store.delete_job("job-1")  # deleting what is gone is fine
    await store.delete_job("never-existed")


async def test_job_with_response_round_trips(store: Store) -> None:
    entry = _entry(bytes(range(256)) * 3)
    record = _job("job-2", "done", finished=1001.0, outcome=Fetched(200, response=entry))
    await store.put_job(record, LONG)
    got = await store.get_job("job-2")
    assert got == record
    assert got is not None
    assert got.outcome == Fetched(200, response=entry)


async def test_job_expires(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    await store.put_job(_job("job-1"), SHORT)
    assert await store.get_job("job-1") == _job("job-1")
    await pass_time(PAST_SHORT)
    assert await store.get_job("job-1") is None


# --- in-flight markers ------------------------------------------------------------------------------------------


async def test_claim_first_wins(store: Store) -> None:
    assert await store.claim(H1, "job-1", LONG) is None
    assert await store.claim(H1, "job-2", LONG) == "job-1"
    assert await store.claim(H1, "job-3", LONG) == "job-1"
    assert await store.claim(H2, "job-4", LONG) is None  # markers are per URL


async def test_claim_again_after_expiry(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    assert await store.claim(H1, "job-1", SHORT) is None
    await pass_time(PAST_SHORT)
    assert await store.claim(H1, "job-2", LONG) is None
    assert await store.claim(H1, "job-3", LONG) == "job-2"


async def test_take_over(store: Store) -> None:
    assert await store.claim(H1, "job-1", LONG) is None
    await store.take_over(H1, "job-2", LONG)
    assert await store.claim(H1, "job-3", LONG) == "job-2"
    await store.take_over(H2, "job-4", LONG)  # taking over nothing just claims
    assert await store.claim(H2, "job-5", LONG) == "job-4"


async def test_release_shrinks_own_marker(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    assert await store.claim(H1, "job-1", LONG) is None
    await store.release(H1, "job-1", SHORT)
    assert await store.claim(H1, "job-2", LONG) == "job-1"  # it lingers
    await pass_time(PAST_SHORT)
    assert await store.claim(H1, "job-2", LONG) is None


async def test_release_leaves_someone_elses_marker(store: Store, pass_time: Callable[[float], Awaitable[None]]) -> None:
    assert await store.claim(H1, "job-1", LONG) is None
    await store.take_over(H1, "job-2", LONG)
    await store.release(H1, "job-1", SHORT)  # job-1 no longer owns the marker: no effect
    await pass_time(PAST_SHORT)
    assert await store.claim(H1, "job-3", LONG) == "job-2"


async def test_release_without_marker_creates_none(store: Store) -> None:
    await store.release(H1, "job-1", LONG)
    assert await store.claim(H1, "job-2", LONG) is None


# --- body chunks ------------------------------------------------------------------------------------------------


async def test_chunks_round_trip_in_order_and_gaps_read_as_none(store: Store) -> None:
    data = [bytes([i]) * 1000 for i in range(3)]
    for i, chunk in enumerate(data):
        await store.put_chunk("h:v1", i, chunk, LONG)
    assert await store.get_chunks("h:v1", [0, 1, 2], 3000) == data
    assert await store.get_chunks("h:v1", [2, 0], 3000) == [data[2], data[0]]
    assert await store.get_chunks("h:v1", [3], 3000) == [None]
    assert await store.get_chunks("h:v2", [0], 3000) == [None]  # another version of the same body is another body
    assert await store.get_chunks("h:v1", [], 3000) == []


async def test_chunks_expire_and_keep_chunks_extends_them(
    store: Store, pass_time: Callable[[float], Awaitable[None]]
) -> None:
    for i in range(2):
        await store.put_chunk("h:kept", i, b"k", SHORT)
        await store.put_chunk("h:left", i, b"l", SHORT)
    await store.keep_chunks("h:kept", 2, LONG)
    await pass_time(PAST_SHORT)
    assert await store.get_chunks("h:kept", [0, 1], 3000) == [b"k", b"k"]
    assert await store.get_chunks("h:left", [0, 1], 3000) == [None, None]


# --- finishing and waiting --------------------------------------------------------------------------------------


async def test_finish_job_wakes_wait_job(store: Store) -> None:
    await store.put_job(_job("job-1", "running"), LONG)
    waiter = asyncio.create_task(store.wait_job("job-1", 30.0))
    await asyncio.sleep(0.05)  # let the waiter get to its wait
    assert not waiter.done()
    done = _job("job-1", "done", finished=1001.0, outcome=Fetched(200, key="h1", stored=True))

    async def finisher() -> None:
        await store.finish_job(done, LONG)

    await asyncio.create_task(finisher())
    got = await asyncio.wait_for(waiter, WAKE_BOUND)  # far below the 30 s wait: woken, not timed out
    assert got == done
    assert got is not None
    assert got.state == "done"
    assert got.outcome == Fetched(200, key="h1", stored=True)
    assert await store.get_job("job-1") == done


async def test_finish_job_wakes_every_waiter(store: Store) -> None:
    await store.put_job(_job("job-1"), LONG)
    waiters = [asyncio.create_task(store.wait_job("job-1", 30.0)) for _ in range(3)]
    await asyncio.sleep(0.05)
    failed = _job("job-1", "failed", outcome=Failed("connect", "boom"))
    await store.finish_job(failed, LONG)
    results = await asyncio.wait_for(asyncio.gather(*waiters), WAKE_BOUND)
    assert results == [failed, failed, failed]


async def test_finish_job_leaves_other_waiters_waiting(store: Store) -> None:
    await store.put_job(_job("job-1"), LONG)
    await store.put_job(_job("job-2"), LONG)
    other = asyncio.create_task(store.wait_job("job-2", 0.6))
    await asyncio.sleep(0.05)
    await store.finish_job(_job("job-1", "done"), LONG)
    assert await asyncio.wait_for(other, WAKE_BOUND) == _job("job-2")  # still queued when it timed out


async def test_wait_job_returns_ended_record_at_once(store: Store) -> None:
    done = _job("job-1", "done", finished=1001.0)
    await store.finish_job(done, LONG)
    assert await asyncio.wait_for(store.wait_job("job-1", 30.0), WAKE_BOUND) == done


async def test_wait_job_unknown_id(store: Store) -> None:
    assert await asyncio.wait_for(store.wait_job("no-such-job", 30.0), WAKE_BOUND) is None


async def test_wait_job_timeout_returns_latest_pending_record(store: Store) -> None:
    await store.put_job(_job("job-1", "queued"), LONG)
    waiter = asyncio.create_task(store.wait_job("job-1", 0.3))
    await asyncio.sleep(0.05)
    running = _job("job-1", "running", started=1000.5, attempts=1)
    await store.put_job(running, LONG)  # an update that is not the end wakes nobody
    got = await asyncio.wait_for(waiter, WAKE_BOUND)
    assert got == running


async def test_wait_job_zero_timeout(store: Store) -> None:
    await store.put_job(_job("job-1"), LONG)
    assert await asyncio.wait_for(store.wait_job("job-1", 0.0), WAKE_BOUND) == _job("job-1")


# --- counters, ping, close --------------------------------------------------------------------------------------


async def test_counters_start_at_zero(store: Store) -> None:
    assert await store.counters() == dict.fromkeys(COUNTERS, 0)


async def test_incr_totals(store: Store) -> None:
    await store.incr({"hits": 2, "misses": 1})
    await store.incr({"hits": 3, "stored": 1})
    await store.incr({})
    assert await store.counters() == {**dict.fromkeys(COUNTERS, 0), "hits": 5, "misses": 1, "stored": 1}


async def test_incr_every_counter(store: Store) -> None:
    await store.incr({name: i + 1 for i, name in enumerate(COUNTERS)})
    await store.incr({name: 10 for name in COUNTERS})
    assert await store.counters() == {name: i + 11 for i, name in enumerate(COUNTERS)}


async def test_ping(store: Store) -> None:
    try:
        await store.ping()
    except Exception as exc:
        pytest.fail(f"ping raised {exc!r}")


async def test_close_after_waiting(store: Store) -> None:
    """Close stops whatever waiting started (the Redis notification listener); teardown closes again."""
    await store.put_job(_job("job-1"), LONG)
    assert await store.wait_job("job-1", 0.05) == _job("job-1")
    await _close(store)


async def test_close_right_after_the_first_wait(request: pytest.FixtureRequest, backend: str) -> None:
    """Shutting down just after a first ``wait_job`` (its listener still subscribing) must not hang.

    The store is closed after 0..11 turns of the event loop, so the close lands in each phase of the start-up.
    """
    for turns in range(12):
        s = await _open(request, backend)
        await s.finish_job(_job("job-1", "done"), LONG)
        assert await s.wait_job("job-1", 30.0) == _job("job-1", "done")
        for _ in range(turns):
            await asyncio.sleep(0)
        if not await _closes(s):
            pytest.fail(f"close() {turns} loop turns after the first wait_job did not return within {CLOSE_BOUND} s")


# --- unreadable values read as absent (Redis: someone else's bytes under our keys) ------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"", b"GRE1\x00\x00\x00\x09not json!", _job("job-9").encode()],
    ids=["text", "empty", "bad-meta", "job-record"],
)
async def test_corrupt_entry_reads_as_none(redis_store: RedisStore, garbage: bytes) -> None:
    await redis_store.redis.set(entry_key(H1), garbage)
    assert await redis_store.get_entry(H1) is None


@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"GRJ1\x00\x00\x00\x02[]", _entry().encode()],
    ids=["text", "meta-not-object", "entry-record"],
)
async def test_corrupt_job_reads_as_none(redis_store: RedisStore, garbage: bytes) -> None:
    await redis_store.redis.set(job_key("job-1"), garbage)
    assert await redis_store.get_job("job-1") is None
    assert await asyncio.wait_for(redis_store.wait_job("job-1", 30.0), WAKE_BOUND) is None


async def test_redis_entry_is_one_value_with_expiry(redis_store: RedisStore) -> None:
    """The key scheme: one value per entry, its bytes the record's encoding, with a millisecond expiry."""
    entry = _entry(bytes(range(256)))
    await redis_store.put_entry(H1, entry, 30.0)
    assert await redis_store.redis.get(entry_key(H1)) == entry.encode()
    ttl = await redis_store.redis.pttl(entry_key(H1))
    assert 0 < ttl <= 30_000


async def test_redis_waiter_is_woken_by_the_finish_notification(redis_server: str) -> None:
    """The finished job's PUBLISH is what wakes a waiter: its re-read fallback is set far past the wait bound, so
    without the notification the waiter would still be waiting when the bound runs out."""
    url = redis_server.rsplit("/", 1)[0] + "/0"
    waiting, worker = RedisStore.from_url(url), RedisStore.from_url(url)
    waiting.poll_fallback = 10 * WAKE_BOUND
    try:
        await waiting.put_job(_job("job-w", "running"), LONG)
        waiter = asyncio.create_task(waiting.wait_job("job-w", 10 * WAKE_BOUND))

        async def subscribed() -> bool:
            counts = await worker.redis.pubsub_numsub(DONE_CHANNEL)
            return bool(counts and counts[0][1] >= 1)

        deadline = asyncio.get_running_loop().time() + WAKE_BOUND
        while not await subscribed():
            assert asyncio.get_running_loop().time() < deadline, "the waiter never subscribed to job notifications"
            await asyncio.sleep(0.01)
        done = _job("job-w", "done", finished=1001.0)
        await worker.finish_job(done, LONG)  # another process's store: only the notification crosses over
        assert await asyncio.wait_for(waiter, WAKE_BOUND) == done
    finally:
        await _close(waiting)
        await _close(worker)


# --- the embedded store across threads --------------------------------------------------------------------------


async def test_memory_store_wakes_waiter_from_another_thread() -> None:
    """Embedded mode: a worker thread with its own event loop finishes the job the proxy's loop waits for."""
    store = MemoryStore(MEMORY_BYTES)
    await store.put_job(_job("job-1", "running"), LONG)
    waiter = asyncio.create_task(store.wait_job("job-1", 30.0))
    await asyncio.sleep(0.05)
    done = _job("job-1", "done", finished=1001.0)
    thread = threading.Thread(target=lambda: asyncio.run(store.finish_job(done, LONG)))
    thread.start()
    got = await asyncio.wait_for(waiter, WAKE_BOUND)
    thread.join()
    assert got == done


async def test_recent_jobs_keep_the_newest_and_drop_the_oldest(store: Store) -> None:
    assert await store.recent_jobs() == []
    for n in range(RECENT_JOBS + 5):
        await store.remember_job({"id": f"job{n}", "state": "done", "seconds": n / 10})
    kept = await store.recent_jobs()
    assert len(kept) == RECENT_JOBS
    assert kept[0] == {"id": f"job{RECENT_JOBS + 4}", "state": "done", "seconds": (RECENT_JOBS + 4) / 10}
    assert kept[-1]["id"] == "job5"


async def test_redis_recent_jobs_list_stays_bounded(redis_store: RedisStore) -> None:
    """The key scheme: the recent-jobs list is trimmed on every write, so it never grows past its bound."""
    for n in range(RECENT_JOBS + 7):
        await redis_store.remember_job({"id": f"job{n}"})
    assert await redis_store.redis.llen(RECENT_JOBS_KEY) == RECENT_JOBS
