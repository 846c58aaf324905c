"""Stricter wire rules over raw sockets, under aiohttp's C parser and its pure-Python one alike: a ``Host`` that is not
``uri-host[:port]`` is a 400; HTTP/1.0 with ``Transfer-Encoding`` is answered and the connection closed; a method
that is not one the server knows by its exact (case-sensitive) name, or an HTTP version other than 1.0 and 1.1, is
refused; and reserved IPv6 addresses, IPv4-translated ones included, never pass the SSRF guard."""

from __future__ import annotations

import re

import pytest

from tests.support.http import assert_no_traceback, fetch_target, parse_raw, raw_roundtrip, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess


def _one_refusal(received: bytes, statuses: set[int]) -> None:
    reply = parse_raw(received)
    reply.problem(statuses)
    assert_no_traceback(received)
    assert len(re.findall(rb"HTTP/1\.[01] \d{3}", received)) == 1, received


@pytest.mark.parametrize(
    "host",
    ["a b", "a@b", "user@127.0.0.1", "a/b", "a?b", "a#b", "a:b:c", "[::1", "a:8x", "a\\b", '"a"'],
)
def test_a_host_field_that_is_not_a_uri_host_is_a_400(
    parser_grenier: GrenierProcess, origin: Origin, host: str
) -> None:
    path = unique("host")
    data = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n"
    received, _ = raw_roundtrip(parser_grenier.port, data, wait=5)
    _one_refusal(received, {400})
    assert "host" in parse_raw(received).json()["detail"].lower()
    assert origin.hits(path) == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "[::1]:80", "example.com", "ex-ample.com.", "xn--a.b"])
def test_a_host_field_that_is_a_uri_host_is_accepted(parser_grenier: GrenierProcess, host: str) -> None:
    reply = request(parser_grenier.port, "GET", "/_grenier/health", host=host)
    assert reply.status == 200, reply


def test_http10_with_transfer_encoding_is_answered_then_closed(parser_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("te10")
    data = (
        b"POST " + origin.url(path).encode() + b" HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    received, closed = raw_roundtrip(parser_grenier.port, data, wait=5)
    assert parse_raw(received).status == 200, received[:400]
    assert closed, "an HTTP/1.0 request with Transfer-Encoding left its connection open"
    assert origin.seen(path)[0].body == b"hello"


@pytest.mark.parametrize(
    ("line", "statuses"),
    [
        (b"get / HTTP/1.1", {400}),
        (b"Get / HTTP/1.1", {400}),
        (b"GET / HTTP/1.2", {400, 505}),
        (b"GET / HTTP/1.9", {400, 505}),
        (b"GET / HTTP/2.0", {400, 505}),
        (b"GET / HTTP/0.9", {400, 505}),
    ],
    ids=["lowercase", "mixed-case", "1.2", "1.9", "2.0", "0.9"],
)
def test_unknown_methods_and_versions_are_refused(
    parser_grenier: GrenierProcess, line: bytes, statuses: set[int]
) -> None:
    received, closed = raw_roundtrip(parser_grenier.port, line + b"\r\nHost: 127.0.0.1\r\n\r\n", wait=5)
    _one_refusal(received, statuses)
    assert closed


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("[::ffff:0:7f00:1]", "loopback"),  # IPv4-translated (RFC 2765) 127.0.0.1
        ("[::ffff:0:a9fe:a9fe]", "metadata"),
        ("[::ffff:0:808:808]", "ipv4_translated"),
        ("[::1:0:0:1]", "reserved"),
        ("[0:1::1]", "reserved"),
        ("[4000::1]", "reserved"),
    ],
)
def test_reserved_ipv6_is_refused(guarded_grenier: GrenierProcess, origin: Origin, host: str, rule: str) -> None:
    url = f"http://{host}:{origin.port}/"
    reply = request(guarded_grenier.port, "GET", fetch_target(url), host=f"127.0.0.1:{guarded_grenier.port}")
    doc = reply.problem(403, "refused")
    assert doc.get("rule") == rule, doc
