"""Limits, each with a clear refusal: request line and URL length, request and upstream body sizes, miss rate, the
job backlog, and slow clients."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.http import assert_problem, fetch_target, parse_raw, raw_roundtrip, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess, Launcher


@pytest.fixture(scope="module")
def limited(loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    env = {
        **loopback_env,
        "GRENIER_SERVER_MAX_BODY_BYTES": "1000",
        "GRENIER_UPSTREAM_MAX_BODY_BYTES": "4000",
        "GRENIER_SERVER_KEEPALIVE_TIMEOUT": "1",
        "GRENIER_SERVER_MISS_RATE": "0",
    }
    with Launcher(tmp_path_factory.mktemp("limits")) as launcher:
        yield launcher.serve(env)


def test_request_line_over_16_kib(limited: GrenierProcess, origin: Origin) -> None:
    target = fetch_target(origin.url("/long?" + "a" * 17_000))
    received, closed = raw_roundtrip(limited.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), wait=5)
    reply = parse_raw(received)
    assert reply.status in {400, 414}, received[:300]
    assert reply.header("Content-Type").startswith("application/problem+json")
    assert closed
    assert origin.hits("/long") == 0


def test_header_field_over_16_kib(limited: GrenierProcess, origin: Origin) -> None:
    path = unique("plain")
    raw = f"GET {origin.url(path)} HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 17_000}\r\n\r\n".encode()
    received, closed = raw_roundtrip(limited.port, raw, wait=5)
    reply = parse_raw(received)
    assert reply.status in {400, 431}, received[:300]
    assert reply.header("Content-Type").startswith("application/problem+json")
    assert closed
    assert origin.hits(path) == 0


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_target_url_over_8_kib(limited: GrenierProcess, origin: Origin, form: str) -> None:
    url = origin.url("/long?" + "a" * 9000)
    if form == "fetch":
        reply = request(limited.port, "GET", fetch_target(url), host=f"127.0.0.1:{limited.port}")
    else:
        reply = request(limited.port, "GET", url)
    assert_problem(reply, 414, "8192 bytes")
    assert origin.hits("/long") == 0


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_passthrough_body_over_max_body_bytes(limited: GrenierProcess, origin: Origin, framing: str) -> None:
    path = unique("post")
    body = b"p" * 5000
    headers = [("Content-Type", "application/octet-stream")]
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        payload = b"".join(b"%x\r\n%s\r\n" % (500, body[i : i + 500]) for i in range(0, 5000, 500)) + b"0\r\n\r\n"
    else:
        payload = body
    reply = request(limited.port, "POST", origin.url(path), headers, payload)
    assert_problem(reply, 413, "server.max_body_bytes", "1000")
    assert origin.hits(path) == 0


def test_body_refusal_closes_the_connection(limited: GrenierProcess, origin: Origin) -> None:
    """A refused body is not read: the connection ends with the 413 rather than draining what follows."""
    path = unique("post")
    head = f"POST {origin.url(path)} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\nContent-Length: 5000\r\n\r\n"
    received, closed = raw_roundtrip(limited.port, head.encode() + b"p" * 2000, wait=3)
    assert parse_raw(received).status == 413, received[:300]
    assert closed, "the connection stayed open after the 413"
    assert origin.hits(path) == 0


def test_passthrough_body_under_the_limit_is_relayed(limited: GrenierProcess, origin: Origin) -> None:
    path = unique("post")
    reply = request(limited.port, "POST", origin.url(path), [], b"q" * 900)
    assert reply.status == 200, reply
    (seen,) = origin.seen(path)
    assert seen.body == b"q" * 900


@pytest.mark.parametrize("kind", ["big", "bigchunked"])
def test_upstream_body_over_max_body_bytes(limited: GrenierProcess, origin: Origin, kind: str) -> None:
    path = unique(kind)
    reply = request(limited.port, "GET", origin.url(path))
    assert_problem(reply, 502, "4000-byte limit")
    again = request(limited.port, "GET", origin.url(path), [("Cache-Control", "only-if-cached")])
    assert again.status == 504, "an oversized body must not be stored"


def test_slow_client_is_cut_off_and_others_are_served(limited: GrenierProcess, origin: Origin) -> None:
    """keepalive_timeout=1: a socket that stalls half-way through its request line is closed within a few seconds."""
    slow = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    try:
        slow.sendall(b"GET /fetch?url=htt")
        started = time.monotonic()
        path = unique("plain")
        served = request(limited.port, "GET", origin.url(path), timeout=5)
        assert served.status == 200, served
        assert request(limited.port, "GET", "/_grenier/health", timeout=5).status == 200
        slow.settimeout(8)
        try:
            rest = slow.recv(65536)
            while rest and time.monotonic() - started < 8:
                rest = slow.recv(65536)
        except (TimeoutError, ConnectionResetError):
            rest = b"timeout"
        assert rest == b"", "the stalled connection was not closed"
        assert time.monotonic() - started < 6
    finally:
        slow.close()


# --- miss rate -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rate_limited(loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    env = {**loopback_env, "GRENIER_SERVER_MISS_RATE": "1", "GRENIER_SERVER_MISS_BURST": "2"}
    with Launcher(tmp_path_factory.mktemp("rate")) as launcher:
        yield launcher.serve(env)


def test_miss_rate_limits_misses_not_hits(rate_limited: GrenierProcess, origin: Origin) -> None:
    first, second, third = unique("plain"), unique("plain"), unique("plain")
    assert request(rate_limited.port, "GET", origin.url(first)).status == 200
    assert request(rate_limited.port, "GET", origin.url(second)).status == 200
    refused = request(rate_limited.port, "GET", origin.url(third))
    assert_problem(refused, 429, "server.miss_rate")
    assert int(refused.header("Retry-After")) >= 1
    assert origin.hits(third) == 0
    for _ in range(3):
        hit = request(rate_limited.port, "GET", origin.url(first))
        assert hit.status == 200, hit
        assert hit.header("Cache-Status").startswith("grenier;hit")


# --- job backlog (Redis mode, no worker) -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backlogged(
    module_redis: str, loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrenierProcess]:
    env = {
        **loopback_env,
        "GRENIER_REDIS_URL": module_redis,
        "GRENIER_CACHE_MISS": "async",
        "GRENIER_JOBS_MAX_PENDING": "2",
    }
    with Launcher(tmp_path_factory.mktemp("backlog")) as launcher:
        yield launcher.serve(env)


def test_pending_jobs_cap_answers_503(backlogged: GrenierProcess, origin: Origin) -> None:
    paths = [unique("plain") for _ in range(3)]
    for path in paths[:2]:
        accepted = request(backlogged.port, "GET", origin.url(path))
        assert accepted.status == 202, accepted
        assert json.loads(accepted.body)
    refused = request(backlogged.port, "GET", origin.url(paths[2]))
    assert_problem(refused, 503, "jobs.max_pending")
    assert int(refused.header("Retry-After")) >= 1
    assert all(origin.hits(p) == 0 for p in paths), "no worker runs: nothing is fetched"
