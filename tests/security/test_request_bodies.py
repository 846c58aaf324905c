"""Relayed request bodies over raw sockets: a body announced and never sent is bounded by ``server.body_timeout``
(a ``408`` problem, the connection closed); a body under ``server.max_body_bytes`` is relayed whole however many
TCP segments it arrives in; and the bytes relayed are the bytes received (a gzip body stays gzip, with its
``Content-Encoding``)."""

from __future__ import annotations

import gzip
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.http import build, exchange, parse_raw, raw_roundtrip
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess, Launcher

BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def body_grenier(loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    env = {**loopback_env, "GRENIER_SERVER_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with Launcher(tmp_path_factory.mktemp("bodies")) as launcher:
        yield launcher.serve(env)


@pytest.mark.parametrize("sent", [0, 10, 999], ids=["nothing", "a little", "all-but-one"])
def test_a_body_never_sent_is_a_408_and_the_connection_closed(
    body_grenier: GrenierProcess, origin: Origin, sent: int
) -> None:
    path = unique("body")
    head = build("POST", origin.url(path), [("Content-Length", "1000")], close=False)
    started = time.monotonic()
    received, closed = raw_roundtrip(body_grenier.port, head + b"x" * sent, wait=BODY_TIMEOUT + 5)
    assert closed, f"the connection is still open {time.monotonic() - started:.1f} s after a body that never came"
    parse_raw(received).problem(408, "body")
    assert received.count(b"HTTP/1.") == 1, received
    assert origin.hits(path) == 0
    assert body_grenier.alive()


def _answered_within(sock: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def test_a_body_in_several_segments_is_relayed_whole(body_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("segments")
    body = bytes(range(256)) * 400  # 102,400 bytes, under server.max_body_bytes (1 MiB)
    data = build("POST", origin.url(path), [("Content-Type", "application/octet-stream")], body)
    split = len(data) - len(body) // 2
    with socket.create_connection(("127.0.0.1", body_grenier.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data[:split])
        assert not _answered_within(sock, 0.3), "answered before the body was complete"
        sock.sendall(data[split:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    reply = parse_raw(received)
    assert reply.status == 200, received[:400]
    (seen,) = origin.seen(path)
    assert seen.body == body


def test_a_gzip_body_is_relayed_as_received(body_grenier: GrenierProcess, origin: Origin) -> None:
    path = unique("gzip")
    plain = b"a compressed request body " * 100
    packed = gzip.compress(plain)
    reply = exchange(
        body_grenier.port,
        build("POST", origin.url(path), [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")], packed),
        method="POST",
    )
    assert reply.status == 200, reply
    (seen,) = origin.seen(path)  # the origin decodes the body by its Content-Encoding: it must be gzip
    assert seen.get("Content-Encoding") == "gzip"
    assert seen.get("Content-Length") == str(len(packed))
    assert seen.body == plain
