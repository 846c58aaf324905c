"""No tunnel through grenier, over raw sockets: ``Upgrade`` is never forwarded, and an upstream that answers
``101 Switching Protocols`` (or any interim status as its final answer) gets the client a ``502`` problem, never the
switch nor the bytes that follow it, on the relay and on a cacheable fetch alike."""

from __future__ import annotations

import re

from tests.support.http import assert_no_traceback, build, parse_raw, raw_roundtrip
from tests.support.origins import Answer, Origin, unique
from tests.support.processes import GrenierProcess


def _statuses(received: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3})", received)


SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    b"TUNNELLED BYTES FROM UPSTREAM"
)


def test_upstream_101_is_a_502_and_upgrade_is_never_forwarded(open_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("switch")
    origin.program(path, lambda n, seen: Answer(raw=SWITCH))
    data = build(
        "POST",
        origin.url(path),
        [("Connection", "Upgrade, keep-alive"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "x3JJHMbDL1Ez")],
        b"hello",
        close=False,
    )
    received, _ = raw_roundtrip(open_grenier.port, data, wait=3)
    reply = parse_raw(received)
    assert _statuses(received) == [b"502"], received[:400]
    assert reply.problem(502, "101")
    assert b"TUNNELLED" not in received
    assert_no_traceback(received)
    (seen,) = origin.seen(path)
    assert "Upgrade" not in seen, seen.headers
    assert "upgrade" not in (seen.get("Connection") or "").lower(), seen.headers
    assert open_grenier.alive()


def test_upstream_101_to_a_cacheable_get_is_a_502(open_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("switch")
    origin.program(path, lambda n, seen: Answer(raw=SWITCH))
    received, _ = raw_roundtrip(open_grenier.port, build("GET", origin.url(path), close=False), wait=3)
    assert _statuses(received) == [b"502"], received[:400]
    assert b"TUNNELLED" not in received
    assert parse_raw(received).problem(502)
