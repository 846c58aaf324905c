"""No response after a response cut short, over raw sockets: once a response's first bytes are out, a failure (the
upstream hanging up mid-body on the relay, a stored chunk gone mid-stream) closes the connection; nothing follows
the partial body, so a pipelined request is never answered out of step."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

from tests.support.http import assert_no_traceback, build, parse_raw, raw_roundtrip
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.processes import GrenierProcess, Launcher


def _statuses(received: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3})", received)


def _cut_mid_body(n: int, seen: Seen) -> Answer:
    return Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"partial-" * 100)


def test_relayed_body_cut_short_upstream_closes_the_connection(open_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("cut")
    origin.program(path, _cut_mid_body)
    follow = origin.route(body=b"the next response")
    data = build("POST", origin.url(path), [], b"x", close=False) + build("GET", follow, close=False)
    received, closed = raw_roundtrip(open_grenier.port, data, wait=5)
    assert _statuses(received) == [b"200"], f"a second response followed the cut one: {received[-400:]!r}"
    _, _, body = received.partition(b"\r\n\r\n")
    assert body == b"partial-" * 100, body[-200:]
    assert b"the next response" not in received
    assert closed, "the connection stayed open after a response cut short"
    assert origin.hits(follow) == 0
    assert open_grenier.alive()


CHUNK = 16 * 1024
STORED = bytes(range(256)) * 64 * 20  # 20 chunks: five store reads of four


@pytest.fixture(scope="module")
def chunked_grenier(
    module_redis: str, loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GrenierProcess, redis.Redis]]:
    """Redis mode with small chunks and no hot tier, so that a stored body streams out of Redis chunk by chunk."""
    env = {
        **loopback_env,
        "GRENIER_REDIS_URL": module_redis,
        "GRENIER_CACHE_CHUNK_BYTES": str(CHUNK),
        "GRENIER_CACHE_HOT_BYTES": "0",
    }
    client = redis.Redis.from_url(module_redis)
    with Launcher(tmp_path_factory.mktemp("chunked")) as launcher:
        launcher.worker(env, processes=1)
        yield launcher.serve(env), client
    client.close()


def test_stored_body_losing_a_chunk_mid_stream_closes_the_connection(
    chunked_grenier: tuple[GrenierProcess, redis.Redis], origin: Origin
) -> None:
    g, store = chunked_grenier
    target = origin.route(body=STORED, content_type="application/octet-stream")
    before = set(store.scan_iter(match="grenier:chunk:*", count=1000))
    received, _ = raw_roundtrip(g.port, build("GET", target), wait=10)
    assert parse_raw(received).body == STORED
    added = set(store.scan_iter(match="grenier:chunk:*", count=1000)) - before
    assert len(added) == len(STORED) // CHUNK
    lost = [k for k in added if int(k.rsplit(b":", 1)[1]) >= 10]  # after the first reads, before the end
    assert store.delete(*lost) == len(lost)
    follow = origin.route(body=b"the next response")
    data = build("GET", target, close=False) + build("GET", follow, close=False)
    received, closed = raw_roundtrip(g.port, data, wait=10)
    assert _statuses(received) == [b"200"], f"a second response followed the cut one: {received[-400:]!r}"
    _, _, body = received.partition(b"\r\n\r\n")
    reply = parse_raw(received)
    assert reply.header("Content-Length") == str(len(STORED))
    assert len(body) < len(STORED)
    assert STORED.startswith(body)
    assert b"the next response" not in received
    assert_no_traceback(received)
    assert closed, "the connection stayed open after a stored body was cut short"
    assert origin.hits(follow) == 0
    assert g.alive()
