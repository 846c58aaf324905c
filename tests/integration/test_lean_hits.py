"""The lean hit path (``proxy/lean.py``) against the full one, through real ``grenier serve`` processes (embedded,
and on Redis with a worker), over raw sockets so that every byte sent and answered is the test's own.

A request with a field the lean path does not know (``X-Full-Path``) goes the full way; the same request without it
takes the lean path. Both must answer alike; the per-process count of lean answers (``/_grenier/stats``) says which
path answered.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from multidict import CIMultiDict

from tests.support.http import Reply, fetch_target, request
from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess, Launcher

#: Bodies above this are stored in chunks (set low so that a small test body is chunked).
CHUNK = 4096
FULL = ("X-Full-Path", "1")
#: Fields whose values differ between two answers given a moment apart.
PER_RESPONSE = {"date", "age"}


def lean_count(server: GrenierProcess) -> int:
    stats = request(server.port, "GET", "/_grenier/stats").json()
    count: int = stats["process"]["lean_hits"]
    return count


def split_responses(data: bytes) -> list[Reply]:
    """Every whole response in ``data``, in order (bodies framed by Content-Length)."""
    replies = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        fields: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            fields.add(name.strip(), value.strip())
        length = int(fields.get("Content-Length", "0"))
        if len(rest) < length:  # not all in yet
            break
        replies.append(Reply(int(lines[0].split()[1]), fields, rest[:length]))
        data = rest[length:]
    return replies


def converse(port: int, *pieces: bytes, expect: int, pause: float = 0.0, timeout: float = 10.0) -> list[Reply]:
    """Send ``pieces`` on one connection (``pause`` seconds apart) and read until ``expect`` responses are in."""
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for n, piece in enumerate(pieces):
            if n and pause:
                time.sleep(pause)
            sock.sendall(piece)
        while len(split_responses(received)) < expect and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
    replies = split_responses(received)
    assert len(replies) == expect, f"expected {expect} responses, got {len(replies)}: {received[:300]!r}"
    return replies


def head_of(target: str, port: int, *fields: tuple[str, str], method: bytes = b"GET") -> bytes:
    lines = [method + b" " + target.encode() + b" HTTP/1.1", f"Host: 127.0.0.1:{port}".encode()]
    lines += [f"{k}: {v}".encode() for k, v in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def comparable(reply: Reply) -> tuple[int, list[tuple[str, str]], bytes]:
    fields = sorted((k.lower(), v) for k, v in reply.headers.items() if k.lower() not in PER_RESPONSE)
    return reply.status, fields, reply.body


@pytest.fixture(scope="module")
def servers(module_launcher: Launcher, module_redis: str) -> dict[str, GrenierProcess]:
    chunked = {"GRENIER_CACHE_CHUNK_BYTES": str(CHUNK), "GRENIER_CACHE_MISS": "wait"}
    module_launcher.worker({"GRENIER_REDIS_URL": module_redis, **chunked})
    return {
        "embedded": module_launcher.serve(chunked),
        "redis": module_launcher.serve({"GRENIER_REDIS_URL": module_redis, **chunked}),
        # No hot tier: every lean answer is read from Redis first.
        "redis-read": module_launcher.serve(
            {"GRENIER_REDIS_URL": module_redis, "GRENIER_CACHE_HOT_BYTES": "0", **chunked}
        ),
    }


def warm(server: GrenierProcess, target: str) -> None:
    """Fetch ``target`` through ``server`` until a full-path request for it is a hit (in Redis mode that read also
    puts the entry, and its chunks, in the process's hot tier)."""

    def hit() -> bool:
        reply = request(server.port, "GET", target, (FULL,))
        return reply.status == 200 and "hit" in reply.headers.get("Cache-Status", "")

    wait_until(hit, 10, f"{target} to be a hit")


TargetOf = Callable[[Origin, bytes], str]
FORMS: dict[str, TargetOf] = {
    "fetch": lambda origin, body: fetch_target(
        origin.route(body=body, headers={"Access-Control-Allow-Origin": "*", "X-Up": "1"})
    ),
    "forward": lambda origin, body: origin.route(body=body, headers={"X-Up": "1"}),
}


@pytest.mark.parametrize("mode", ["embedded", "redis", "redis-read"])
@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("size", [100, 5 * CHUNK + 17], ids=["inline", "chunked"])
def test_the_lean_path_answers_as_the_full_path_does(
    servers: dict[str, GrenierProcess], origin: Origin, mode: str, form: str, size: int
) -> None:
    server = servers[mode]
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    target = FORMS[form](origin, body)
    warm(server, target)
    before = lean_count(server)
    lean, full = converse(server.port, head_of(target, server.port), head_of(target, server.port, FULL), expect=2)
    assert lean_count(server) == before + 1, "the first request should have taken the lean path, and only it"
    assert comparable(lean) == comparable(full)
    assert lean.body == body
    assert "hit" in lean.headers["Cache-Status"]
    assert lean.headers["Age"].isdigit()
    assert "Date" in lean.headers
    if form == "fetch":  # served from grenier's own origin: sandboxed, no CORS grant of the upstream's
        assert lean.headers["Content-Security-Policy"] == "sandbox"
        assert "Access-Control-Allow-Origin" not in lean.headers


def test_reverse_mode_answers_lean_as_it_does_in_full(launcher: Launcher, origin: Origin) -> None:
    server = launcher.serve({"GRENIER_UPSTREAM_ORIGIN": origin.base, "GRENIER_CACHE_MISS": "wait"})
    path = origin.path_of(origin.route(body=b"reverse body"))
    warm(server, path)
    before = lean_count(server)
    lean, full, control = converse(
        server.port,
        head_of(path, server.port),
        head_of(path, server.port, FULL),
        head_of("/_grenier/health", server.port),
        expect=3,
    )
    assert lean_count(server) == before + 1
    assert comparable(lean) == comparable(full)
    assert lean.body == b"reverse body"
    assert control.json()["status"] == "ok"  # the control endpoints are never taken for the origin's paths


@pytest.mark.parametrize(
    ("fields", "method", "status"),
    [
        ((("Cache-Control", "no-cache"),), b"GET", 200),  # §5.2.1.4: a refresh, not a hit
        ((("Range", "bytes=0-3"),), b"GET", 206),
        ((("If-None-Match", "*"),), b"GET", 304),
        ((("Host", "127.0.0.1"),), b"GET", 400),  # two Host fields
        ((("Via", "1.1 grenier"),), b"GET", 508),  # a loop
        ((), b"get", 400),  # methods are case-sensitive
        ((("Transfer-Encoding", "chunked"),), b"GET", 400),  # a body with no chunk: framing the full path refuses
    ],
    ids=["no-cache", "range", "if-none-match", "two-hosts", "loop", "lowercase-method", "framing"],
)
def test_requests_the_lean_path_must_not_answer_go_the_full_way(
    servers: dict[str, GrenierProcess], origin: Origin, fields: tuple[tuple[str, str], ...], method: bytes, status: int
) -> None:
    server = servers["embedded"]
    target = origin.route(body=b"0123456789")
    warm(server, target)
    fetched = origin.hits(target)
    before = lean_count(server)
    data = head_of(target, server.port, *fields, method=method)
    if method == b"GET" and fields and fields[0][0] == "Transfer-Encoding":
        data += b"zz\r\n"  # not a chunk size
    (reply,) = converse(server.port, data, expect=1)
    assert reply.status == status, reply.body[:300]
    assert lean_count(server) == before
    if status == 200:
        assert origin.hits(target) == fetched + 1
        assert "hit" not in reply.headers["Cache-Status"]


def test_pipelined_and_split_requests_keep_their_order_and_framing(
    servers: dict[str, GrenierProcess], origin: Origin
) -> None:
    server = servers["embedded"]
    target = origin.route(body=b"pipelined")
    warm(server, target)
    before = lean_count(server)
    lean, lean_too, ranged, after = converse(
        server.port,
        head_of(target, server.port) * 2 + head_of(target, server.port, ("Range", "bytes=0-1")),
        head_of(target, server.port),
        expect=4,
        pause=0.2,
    )
    assert [r.status for r in (lean, lean_too, ranged, after)] == [200, 200, 206, 200]
    assert lean.body == lean_too.body == after.body == b"pipelined"
    assert ranged.body == b"pi"
    # The two before the range were lean; from the range on, the connection is aiohttp's.
    assert lean_count(server) == before + 2

    whole = head_of(target, server.port)
    before = lean_count(server)
    (split,) = converse(server.port, whole[:10], whole[10:], expect=1, pause=0.2)
    assert split.status == 200
    assert split.body == b"pipelined"
    assert lean_count(server) == before + 1  # the head's first half waited for the rest


def test_pipelined_requests_wait_in_order_behind_a_store_read(
    servers: dict[str, GrenierProcess], origin: Origin
) -> None:
    server = servers["redis-read"]
    targets = [origin.route(body=f"body {n}".encode()) for n in range(3)]
    for target in targets:
        warm(server, target)
    before = lean_count(server)
    replies = converse(server.port, b"".join(head_of(t, server.port) for t in targets * 2), expect=6)
    assert [r.body for r in replies] == [f"body {n}".encode() for n in range(3)] * 2
    assert lean_count(server) == before + 6


def test_the_lean_path_never_serves_a_stale_or_purged_entry(servers: dict[str, GrenierProcess], origin: Origin) -> None:
    server = servers["redis"]
    target = origin.route(cache_control="max-age=1", changing=True)
    warm(server, target)
    (first,) = converse(server.port, head_of(target, server.port), expect=1)
    assert "hit" in first.headers["Cache-Status"]
    time.sleep(1.5)  # freshness is computed at serve time: now it is stale
    (later,) = converse(server.port, head_of(target, server.port), expect=1)
    assert "hit" not in later.headers["Cache-Status"]
    assert later.body != first.body

    kept = origin.route(body=b"purge me")
    warm(server, kept)
    purged = request(server.port, "DELETE", "/_grenier/cache?url=" + kept)
    assert purged.status == 200
    before = lean_count(server)
    (after,) = converse(server.port, head_of(kept, server.port), expect=1)
    assert "hit" not in after.headers["Cache-Status"]
    assert lean_count(server) == before


def test_off_sends_every_request_the_full_way(launcher: Launcher, origin: Origin) -> None:
    server = launcher.serve({"GRENIER_SERVER_LEAN_HITS": "false", "GRENIER_CACHE_MISS": "wait"})
    target = origin.route(body=b"full only")
    warm(server, target)
    (reply,) = converse(server.port, head_of(target, server.port), expect=1)
    assert "hit" in reply.headers["Cache-Status"]
    assert reply.body == b"full only"
    assert lean_count(server) == 0
