"""Bodies that stream: stored in chunks by a real worker, served out of them by a real server, over a real Redis.

The module's chunks are small (16 KiB) so that ordinary bodies span many; the hot tier is off so that every read
reaches Redis (its own coherence is tested in test_hot_tier.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import aiohttp
import pytest
import redis

from core.records import StoredResponse, decode_cached
from tests.support.http import Reply, fetch_url, get, send
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.processes import GrenierProcess, Launcher

CHUNK = 16 * 1024
BODY = bytes(range(256)) * 800  # 204,800 bytes: every byte value, 13 chunks
SETTINGS = {
    "GRENIER_CACHE_CHUNK_BYTES": str(CHUNK),
    "GRENIER_CACHE_HOT_BYTES": "0",
    "GRENIER_CACHE_MISS": "wait",
    "GRENIER_UPSTREAM_RETRIES": "0",
}


@pytest.fixture(scope="module")
def server(module_launcher: Launcher, module_redis: str) -> GrenierProcess:
    settings = {"GRENIER_REDIS_URL": module_redis, **SETTINGS}
    module_launcher.worker(settings)
    return module_launcher.serve(settings)


@pytest.fixture(scope="module")
def store(module_redis: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(module_redis)
    yield client
    client.close()


def chunk_keys(store: redis.Redis) -> list[bytes]:
    return sorted(store.scan_iter(match="grenier:chunk:*", count=1000))


async def fetched(http: aiohttp.ClientSession, server: GrenierProcess, target: str, **headers: str) -> Reply:
    return await get(http, fetch_url(server.url, target), headers)


async def test_a_body_of_many_chunks_is_stored_in_chunks_and_served_byte_exact(
    server: GrenierProcess, store: redis.Redis, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(body=BODY, content_type="application/octet-stream")
    before = set(chunk_keys(store))
    first = await fetched(http, server, target)
    assert first.status == 200
    assert first.body == BODY
    added = set(chunk_keys(store)) - before
    assert len(added) == math.ceil(len(BODY) / CHUNK)
    assert all(len(store.get(k) or b"") <= CHUNK for k in added)
    hit = await fetched(http, server, target)
    assert hit.cache_status["hit"] is True
    assert hit.body == BODY
    assert hit.headers["Content-Length"] == str(len(BODY))
    head = await send(http, "HEAD", fetch_url(server.url, target))
    assert head.headers["Content-Length"] == str(len(BODY))
    assert head.body == b""


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 0), (CHUNK - 1, CHUNK), (1000, 3 * CHUNK + 17), (len(BODY) - 5, len(BODY) - 1)],
    ids=["first-byte", "across-a-boundary", "several-chunks", "tail"],
)
async def test_ranges_are_cut_from_the_stored_chunks(
    server: GrenierProcess, origin: Origin, http: aiohttp.ClientSession, first: int, last: int
) -> None:
    target = origin.route(body=BODY)
    assert (await fetched(http, server, target)).status == 200
    part = await fetched(http, server, target, Range=f"bytes={first}-{last}")
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(BODY)}"
    assert part.body == BODY[first : last + 1]


def entry_of(store: redis.Redis, target: str) -> StoredResponse:
    value = store.get("grenier:entry:{" + hashlib.sha256(target.encode()).hexdigest() + "}")
    assert isinstance(value, bytes)
    entry = decode_cached(value)
    assert isinstance(entry, StoredResponse)
    return entry


async def test_a_body_cut_short_is_never_visible_and_the_stored_one_stays(
    server: GrenierProcess, store: redis.Redis, origin: Origin, http: aiohttp.ClientSession
) -> None:
    path = unique("cut")
    cut = BODY[: 5 * CHUNK + 100]

    def answers(n: int, seen: Seen) -> Answer:
        if n == 1:
            return Answer(200, (("Cache-Control", "max-age=300"),), BODY)
        head = f"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
        return Answer(raw=head + cut)  # promises the whole body, sends five chunks' worth, hangs up

    origin.program(path, answers)
    target = origin.url(path)
    assert (await fetched(http, server, target)).body == BODY
    stored = entry_of(store, target)
    assert stored.body_ref is not None

    refresh = await fetched(http, server, target, **{"Cache-Control": "no-cache"})
    assert origin.hits(target) == 2
    # The failed refresh answers with an error or with the whole stored body: never with the five chunks it got.
    assert refresh.status == 502 or refresh.body == BODY, refresh.cache_status
    assert entry_of(store, target) == stored  # the entry still points at the complete body
    again = await fetched(http, server, target)
    assert again.cache_status["hit"] is True
    assert again.body == BODY


async def test_an_entry_whose_chunks_are_gone_is_a_miss_not_a_broken_body(
    server: GrenierProcess, store: redis.Redis, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(body=BODY, changing=True)
    before = set(chunk_keys(store))
    first = await fetched(http, server, target)
    assert first.body == BODY + b"#1"
    for key in set(chunk_keys(store)) - before:  # as if Redis had evicted them before their entry
        store.delete(key)
    again = await fetched(http, server, target)
    assert again.status == 200
    assert "hit" not in again.cache_status
    assert again.cache_status["detail"] == "stored body gone"
    assert again.body == BODY + b"#2"
    assert (await fetched(http, server, target)).body == BODY + b"#2"


async def test_embedded_mode_streams_chunks_too(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    embedded = launcher.serve(SETTINGS)
    target = origin.route(body=BODY)
    assert (await fetched(http, embedded, target)).body == BODY
    hit = await fetched(http, embedded, target)
    assert hit.cache_status["hit"] is True
    assert hit.body == BODY
    part = await fetched(http, embedded, target, Range=f"bytes={CHUNK - 3}-{CHUNK + 3}")
    assert part.body == BODY[CHUNK - 3 : CHUNK + 4]
