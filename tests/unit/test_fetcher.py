"""Upstream fetches against a real aiohttp origin on 127.0.0.1 (core/upstream.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from core.netguard import Guard
from core.settings import UpstreamSettings
from core.upstream import USER_AGENT, UpstreamError, backoff, fetch, new_session
from tests.support.origins import Answer, DroppingOrigin, GarbageOrigin, Origin
from tests.support.ports import free_port as _closed_port

GZIPPED = gzip.compress(b"hello, compressed world\n" * 50, mtime=0)
CAP = 1000

#: aiohttp itself re-sends an idempotent request once when the server drops the connection without answering.
AIOHTTP_TRIES_PER_DROPPED_GET = 2


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (1, 0.2, 5.0, 0.2),
        (2, 0.2, 5.0, 0.4),
        (3, 0.2, 5.0, 0.8),
        (4, 0.2, 5.0, 1.6),
        (5, 0.2, 5.0, 3.2),
        (6, 0.2, 5.0, 5.0),
        (50, 0.2, 5.0, 5.0),
        (0, 0.2, 5.0, 0.2),
        (-3, 0.2, 5.0, 0.2),
        (3, 0.0, 5.0, 0.0),
        (3, 1.0, 2.0, 2.0),
        (2, 0.5, 1.0, 1.0),
    ],
    ids=[
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "capped",
        "far-capped",
        "zero-is-first",
        "negative-is-first",
        "zero-base",
        "small-cap",
        "exactly-cap",
    ],
)
def test_backoff(attempt: int, base: float, cap: float, expected: float) -> None:
    assert backoff(attempt, base, cap) == expected


def test_backoff_default_cap() -> None:
    assert backoff(100, 1.0) == 5.0
    assert isinstance(backoff(1, 1), float)


# --- the origin -------------------------------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[tuple[Origin, str]]:
    o = Origin().start()
    o.route(
        "/plain",
        body=b"plain body \x00\xff",
        content_type="application/octet-stream",
        headers={"X-Custom": "caf\xe9"},
        cache_control="max-age=5",
    )
    o.route("/echo", body=b"ok", cache_control=None)
    o.route("/gzip", body=GZIPPED, headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}, cache_control=None)
    o.route("/redirect", status=301, headers={"Location": "/plain"}, body=b"moved", cache_control=None)
    o.route("/error", status=503, headers={"Retry-After": "7"}, body=b"down for maintenance", cache_control=None)
    o.route("/missing", status=404, body=b"nothing here", cache_control=None)
    o.route("/slow", body=b"late", delays=(30,), cache_control=None)  # the delay ends when the origin stops
    o.program("/slow-body", lambda n, seen: Answer(body=b"z" * 100, stall=(10, 30)))
    # /sized/<n> and /chunked/<n> (chunks of 300) are kinds every origin answers.
    yield o, o.base
    o.stop()


LIMITS = UpstreamSettings(connect_timeout=2.0, total_timeout=10.0, max_body_bytes=CAP, retries=0, retry_backoff=0.01)


async def _fetch(
    url: str, limits: UpstreamSettings = LIMITS, headers: tuple[tuple[str, str], ...] = (), guard: Guard | None = None
) -> Any:
    """Without a guard, as for the operator's own reverse-proxy origin (these origins are on loopback)."""
    async with new_session(limits, guard) as session:
        return await fetch(session, url, headers, limits)


def _header(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


# --- responses are returned as sent -----------------------------------------------------------------------------


async def test_fetch_returns_status_headers_body(origin: tuple[Origin, str]) -> None:
    _, base = origin
    got = await _fetch(base + "/plain")
    assert got.status == 200
    assert got.body == b"plain body \x00\xff"
    # aiohttp's server writes "café" as UTF-8; the fetcher keeps the wire bytes one to one (latin-1)
    assert _header(got.headers, "X-Custom") == ["caf\xc3\xa9"]
    assert _header(got.headers, "X-Custom")[0].encode("latin-1") == "caf\xe9".encode()
    assert _header(got.headers, "Cache-Control") == ["max-age=5"]
    assert _header(got.headers, "Content-Length") == ["13"]
    assert [k for k, _ in got.headers if k.lower() == "x-custom"] == ["X-Custom"]  # names as received
    assert got.request_time <= got.response_time


async def test_fetch_sends_identity_headers(origin: tuple[Origin, str]) -> None:
    o, base = origin
    await _fetch(base + "/echo", headers=(("X-Forwarded-For", "10.0.0.1"),))
    (seen,) = o.seen
    assert seen["User-Agent"] == USER_AGENT
    assert seen["X-Forwarded-For"] == "10.0.0.1"
    assert "Accept-Encoding" not in seen  # we never ask for a coding the client did not


async def test_fetch_does_not_decompress(origin: tuple[Origin, str]) -> None:
    _, base = origin
    got = await _fetch(base + "/gzip")
    assert got.status == 200
    assert got.body == GZIPPED
    assert got.body[:2] == b"\x1f\x8b"
    assert _header(got.headers, "Content-Encoding") == ["gzip"]
    assert _header(got.headers, "Content-Length") == [str(len(GZIPPED))]


async def test_fetch_does_not_follow_redirects(origin: tuple[Origin, str]) -> None:
    _, base = origin
    got = await _fetch(base + "/redirect")
    assert got.status == 301
    assert _header(got.headers, "Location") == ["/plain"]
    assert got.body == b"moved"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [("/error", 503, b"down for maintenance"), ("/missing", 404, b"nothing here")],
    ids=["503", "404"],
)
async def test_fetch_returns_error_statuses_as_responses(
    origin: tuple[Origin, str], path: str, status: int, body: bytes
) -> None:
    _, base = origin
    got = await _fetch(base + path, UpstreamSettings(max_body_bytes=CAP, retries=2, retry_backoff=0.01))
    assert got.status == status
    assert got.body == body


# --- the body cap -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sized", "chunked"], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [0, CAP - 1, CAP], ids=["empty", "under", "at-cap"])
async def test_body_up_to_the_cap_is_returned(origin: tuple[Origin, str], kind: str, size: int) -> None:
    _, base = origin
    got = await _fetch(f"{base}/{kind}/{size}")
    assert got.status == 200
    assert len(got.body) == size


@pytest.mark.parametrize("kind", ["sized", "chunked"], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [CAP + 1, CAP * 5], ids=["one-over", "far-over"])
async def test_body_over_the_cap_is_too_large(origin: tuple[Origin, str], kind: str, size: int) -> None:
    _, base = origin
    with pytest.raises(UpstreamError) as info:
        await _fetch(f"{base}/{kind}/{size}")
    assert info.value.kind == "too_large"
    assert str(CAP) in info.value.detail


async def test_chunked_response_has_no_content_length(origin: tuple[Origin, str]) -> None:
    _, base = origin
    got = await _fetch(f"{base}/chunked/10")
    assert _header(got.headers, "Content-Length") == []
    assert _header(got.headers, "Transfer-Encoding") == ["chunked"]


# --- failures ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slow", "/slow-body"], ids=["no-headers", "stalled-body"])
async def test_slow_origin_times_out(origin: tuple[Origin, str], path: str) -> None:
    _, base = origin
    limits = UpstreamSettings(connect_timeout=2.0, total_timeout=0.3, max_body_bytes=CAP, retries=2, retry_backoff=0.01)
    with pytest.raises(UpstreamError) as info:
        await _fetch(base + path, limits)
    assert info.value.kind == "timeout"
    assert "0.3 s" in info.value.detail


@pytest.mark.parametrize("path", ["/slow", "/slow-body"], ids=["no-headers", "stalled-body"])
async def test_a_read_timeout_is_named_as_such(origin: tuple[Origin, str], path: str) -> None:
    """The message names the timeout that fired: a read stalled for 0.3 s, well inside the 10 s total."""
    _, base = origin
    limits = UpstreamSettings(
        connect_timeout=2.0, read_timeout=0.3, total_timeout=10.0, max_body_bytes=CAP, retries=0, min_rate_bytes=0
    )
    with pytest.raises(UpstreamError) as info:
        await _fetch(base + path, limits)
    assert info.value.kind == "timeout"
    assert info.value.detail == "upstream sent nothing for upstream.read_timeout (0.3 s)"


async def test_connection_refused_is_connect_error() -> None:
    limits = UpstreamSettings(connect_timeout=2.0, total_timeout=5.0, max_body_bytes=CAP, retries=2, retry_backoff=0.01)
    with pytest.raises(UpstreamError) as info:
        await _fetch(f"http://127.0.0.1:{_closed_port()}/", limits)
    assert info.value.kind == "connect"
    assert "cannot reach upstream" in info.value.detail


@pytest.fixture
async def dropping() -> AsyncIterator[tuple[DroppingOrigin, int]]:
    o = DroppingOrigin()
    port = await o.start()
    yield o, port
    assert o.server is not None
    o.server.close()
    await o.server.wait_closed()


@pytest.mark.parametrize("retries", [0, 1, 3], ids=["no-retry", "one-retry", "three-retries"])
async def test_connection_errors_are_retried(dropping: tuple[DroppingOrigin, int], retries: int) -> None:
    o, port = dropping
    limits = UpstreamSettings(
        connect_timeout=2.0, total_timeout=5.0, max_body_bytes=CAP, retries=retries, retry_backoff=0.01
    )
    with pytest.raises(UpstreamError) as info:
        await _fetch(f"http://127.0.0.1:{port}/", limits)
    assert info.value.kind == "connect"
    # Each of our attempts is 1 + aiohttp's own single retry of an idempotent request whose connection dropped
    # (RFC 9112 §9.3.1; aiohttp client.py ``retry_persistent_connection``).
    assert o.connections == (retries + 1) * AIOHTTP_TRIES_PER_DROPPED_GET


async def test_protocol_error_is_not_retried() -> None:
    o = GarbageOrigin()
    port = await o.start()
    try:
        limits = UpstreamSettings(
            connect_timeout=2.0, total_timeout=5.0, max_body_bytes=CAP, retries=3, retry_backoff=0.01
        )
        with pytest.raises(UpstreamError) as info:
            await _fetch(f"http://127.0.0.1:{port}/", limits)
        assert info.value.kind == "protocol"
        assert o.connections == 1
    finally:
        assert o.server is not None
        o.server.close()
        await o.server.wait_closed()


async def test_guarded_session_refuses_loopback(origin: tuple[Origin, str]) -> None:
    """A client-chosen target on loopback is refused by the SSRF guard, and not retried as a connection error."""
    _, base = origin
    port = int(base.rsplit(":", 1)[1])
    guard = Guard.from_lists([], [], [], [port])
    with pytest.raises(UpstreamError) as info:
        await _fetch(base + "/plain", guard=guard)
    assert info.value.kind == "refused"


async def test_guarded_session_allows_listed_network(origin: tuple[Origin, str]) -> None:
    _, base = origin
    port = int(base.rsplit(":", 1)[1])
    guard = Guard.from_lists(["127.0.0.0/8"], [], [], [port])
    got = await _fetch(base + "/plain", guard=guard)
    assert got.status == 200


def test_upstream_error_carries_kind_and_detail() -> None:
    exc = UpstreamError("timeout", "upstream did not answer within 3 s")
    assert exc.kind == "timeout"
    assert exc.detail == str(exc) == "upstream did not answer within 3 s"


async def test_new_session_settings() -> None:
    limits = UpstreamSettings(connect_timeout=1.5, total_timeout=7.0)
    async with new_session(limits, None) as session:
        assert isinstance(session, aiohttp.ClientSession)
        assert session.timeout.total == 7.0
        assert session.timeout.sock_connect == 1.5
        assert session.auto_decompress is False
        assert session.headers["User-Agent"] == USER_AGENT


# --- the minimum transfer rate ----------------------------------------------------------------------------------

#: At least 20 bytes/s over 0.5 s windows (10 bytes a window).
RATED = UpstreamSettings(
    connect_timeout=0.5,
    read_timeout=1.0,
    total_timeout=10.0,
    max_body_bytes=CAP,
    retries=0,
    min_rate_bytes=20,
    min_rate_window=0.5,
)


async def test_trickling_body_fails_as_too_slow(origin: tuple[Origin, str]) -> None:
    """Five bytes a second keeps every read timeout at bay, but not the minimum rate: it fails after one window."""
    o, base = origin
    o.program("/trickle", lambda n, seen: Answer(body=b"t" * 50, trickle=(1, 0.2)))
    with pytest.raises(UpstreamError) as info:
        await _fetch(base + "/trickle", RATED)
    assert info.value.kind == "too_slow"
    assert "upstream.min_rate_bytes" in info.value.detail


async def test_body_at_the_minimum_rate_or_faster_is_read(origin: tuple[Origin, str]) -> None:
    o, base = origin
    o.program("/steady", lambda n, seen: Answer(body=b"s" * 60, trickle=(10, 0.1)))  # 100 bytes/s
    assert (await _fetch(base + "/steady", RATED)).body == b"s" * 60


async def test_without_a_minimum_rate_a_trickle_is_read(origin: tuple[Origin, str]) -> None:
    o, base = origin
    o.program("/trickle-ok", lambda n, seen: Answer(body=b"t" * 8, trickle=(1, 0.1)))
    unrated = UpstreamSettings(connect_timeout=0.5, total_timeout=10.0, max_body_bytes=CAP, retries=0, min_rate_bytes=0)
    assert (await _fetch(base + "/trickle-ok", unrated)).body == b"t" * 8


async def test_trickling_header_section_fails_as_too_slow() -> None:
    """The status and fields get the connect and read timeouts plus one window, however their bytes are spaced."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            await _fetch(f"http://127.0.0.1:{port}/", RATED)
        assert info.value.kind == "too_slow"
        assert "header fields" in info.value.detail
        assert time.monotonic() - started < 5
    finally:
        server.close()
        await server.wait_closed()
