"""Reverse-proxy paths and the bytes sent upstream, attacked through a running grenier: a path cannot climb out of
the origin's path prefix in any spelling, and the origin is sent exactly the target the cache key was made from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http import assert_problem, fetch_target, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess, Launcher

PREFIX = "/app"


@pytest.fixture(scope="module")
def reverse_grenier(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    """Reverse mode onto ``<origin>/app``: only paths under ``/app`` on the origin are grenier's to reach."""
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_UPSTREAM_ORIGIN": origin.url(PREFIX),
    }
    with Launcher(tmp_path_factory.mktemp("reverse-paths")) as launcher:
        yield launcher.serve(env)


#: Raw targets (``{leaf}`` a fresh path segment) that resolve outside ``/app`` once dot-segments are removed.
ESCAPES = [
    "/../{leaf}",
    "/%2e%2e/{leaf}",
    "/%2E%2E/{leaf}",
    "/.%2e/{leaf}",
    "/a/../../{leaf}",
    "/./../{leaf}",
    "/..",
    "/%2e%2e",
    "/..%2f{leaf}",
    "/..%5c{leaf}",
    "/a/%2e%2e/%2e%2e/{leaf}",
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("spelling", ESCAPES)
def test_dot_segments_cannot_leave_the_origin_prefix(
    reverse_grenier: GrenierProcess, origin: Origin, spelling: str, method: str
) -> None:
    """``/../x`` and its encodings, cached (GET) or relayed (POST): a 400 that names the path; the origin gets
    nothing at all."""
    leaf = unique("escape").strip("/").replace("/", "-")
    before = len(origin.seen)
    reply = request(reverse_grenier.port, method, spelling.format(leaf=leaf), body=b"x" if method == "POST" else None)
    assert_problem(reply, 400, "path")
    assert not [s for s in origin.seen[before:] if leaf in s.target or leaf in s.path]


def test_credentialed_escape_is_refused(reverse_grenier: GrenierProcess, origin: Origin) -> None:
    """A request with ``Cookie`` (relayed, never cached) is refused the same way."""
    leaf = unique("escape").strip("/").replace("/", "-")
    before = len(origin.seen)
    reply = request(reverse_grenier.port, "GET", f"/%2e%2e/{leaf}", [("Cookie", "sid=1")])
    assert_problem(reply, 400, "path")
    assert not [s for s in origin.seen[before:] if leaf in s.target]


@pytest.mark.parametrize("spelling", ["/a/../{leaf}", "/a/%2e%2e/{leaf}", "/./{leaf}"])
def test_dot_segments_inside_the_prefix_are_sent_as_written(
    reverse_grenier: GrenierProcess, origin: Origin, spelling: str
) -> None:
    """Dot-segments that stay under ``/app`` are not refused, and reach the origin byte for byte (its own business
    how to read them), so the key names exactly what was fetched."""
    leaf = unique("inside").strip("/").replace("/", "-")
    raw = spelling.format(leaf=leaf)
    reply = request(reverse_grenier.port, "GET", raw)
    assert reply.status == 200, reply
    assert [s.target for s in origin.seen if leaf in s.target] == [PREFIX + raw]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_reverse_target_is_sent_byte_for_byte(reverse_grenier: GrenierProcess, origin: Origin, method: str) -> None:
    """Escapes in path and query are not decoded on the wire (``%61`` stays ``%61``), cached or relayed."""
    leaf = unique("bytes").strip("/").replace("/", "-")
    raw = f"/{leaf}/%61%2F?q=%62&r=%2f"
    reply = request(reverse_grenier.port, method, raw, body=b"x" if method == "POST" else None)
    assert reply.status == 200, reply
    assert [s.target for s in origin.seen if leaf in s.target] == [PREFIX + raw]


def test_fetch_target_is_sent_byte_for_byte(open_grenier: GrenierProcess, origin: Origin) -> None:
    """``/fetch?url=`` too: the origin is sent the key's own path and query, dot-segments and escapes included."""
    path = unique("bytes")
    raw = f"{path}/x/../%61?q=%62"
    reply = request(open_grenier.port, "GET", fetch_target(origin.url(raw)), host=f"127.0.0.1:{open_grenier.port}")
    assert reply.status == 200, reply
    assert [s.target for s in origin.seen if path in s.target] == [raw]
