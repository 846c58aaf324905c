"""One slow origin must not starve the fetch jobs of others.

An upstream that trickles its body a byte a second keeps every read timeout at bay and would hold a worker thread
for the whole fetch: a few such URLs held every thread, and other clients' misses waited behind them. Two limits
stop that: a worker process runs at most ``jobs.max_per_origin`` fetches to one origin at a time (further jobs for
it are put back, holding no thread), and a fetch whose body arrives slower than ``upstream.min_rate_bytes`` per
second over ``upstream.min_rate_window`` fails as too slow (504). Attacked over real sockets, embedded and in Redis
mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.http import Reply, assert_problem, request
from tests.support.origins import TEXT, Answer, Origin, unique
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess, Launcher, allow_loopback

#: The slow body: one byte a second, so a minute to send it all.
TRICKLE_BYTES = 60
TRICKLE = Answer(200, (("Cache-Control", "max-age=60"), *TEXT), b"t" * TRICKLE_BYTES, trickle=(1, 1.0))
#: What grenier is started with: few worker threads, two fetches per origin, at least 16 bytes/s over 5 s.
THREADS, PER_ORIGIN, MIN_RATE, WINDOW = 4, 2, 16, 5.0
LIMITS = {
    "GRENIER_JOBS_THREADS": str(THREADS),
    "GRENIER_JOBS_MAX_PER_ORIGIN": str(PER_ORIGIN),
    "GRENIER_UPSTREAM_MIN_RATE_BYTES": str(MIN_RATE),
    "GRENIER_UPSTREAM_MIN_RATE_WINDOW": str(WINDOW),
}


@pytest.fixture(scope="module")
def slow_origin() -> Iterator[Origin]:
    """An origin whose every path trickles."""
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fast_origin() -> Iterator[Origin]:
    """Another origin, answering at once: the victims' target."""
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["embedded", "redis"])
def limited(
    request: pytest.FixtureRequest,
    origin: Origin,
    slow_origin: Origin,
    fast_origin: Origin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GrenierProcess]:
    env = {
        "GRENIER_CACHE_MISS": "async",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SERVER_MISS_RATE": "0",
        **allow_loopback(origin.port, slow_origin.port, fast_origin.port),
        **LIMITS,
    }
    with Launcher(tmp_path_factory.mktemp(f"starvation-{request.param}")) as launcher:
        if request.param == "redis":
            env["GRENIER_REDIS_URL"] = request.getfixturevalue("module_redis")
            launcher.worker(env, processes=1)
        yield launcher.serve(env)


def _miss(proxy: GrenierProcess, url: str) -> str:
    reply = request(proxy.port, "GET", url, timeout=10)
    assert reply.status == 202, reply
    return reply.location


def _waited(proxy: GrenierProcess, url: str, wait: int = 15) -> tuple[Reply, float]:
    """A miss that waits for its fetch (``Prefer: wait``), and how long it took."""
    started = time.monotonic()
    reply = request(proxy.port, "GET", url, (("Prefer", f"wait={wait}"),), timeout=wait + 10)
    return reply, time.monotonic() - started


def _outcome(proxy: GrenierProcess, location: str, timeout: float) -> Reply:
    replies: list[Reply] = []

    def ended() -> bool:
        replies.append(request(proxy.port, "GET", location, host=f"127.0.0.1:{proxy.port}", timeout=10))
        return replies[-1].status != 202

    wait_until(ended, timeout, f"{location} to end")
    return replies[-1]


def test_trickling_origin_does_not_starve_another_origins_miss(
    limited: GrenierProcess, slow_origin: Origin, fast_origin: Origin
) -> None:
    """Twice as many trickling URLs as worker threads: a miss on another origin is still answered at once, well
    before the first slow fetch could fail as too slow (so the per-origin cap, not the rate, is what freed it)."""
    paths = [unique("trickle") for _ in range(2 * THREADS)]
    for path in paths:
        slow_origin.program(path, lambda n, seen: TRICKLE)
        _miss(limited, slow_origin.url(path))
    wait_until(lambda: sum(slow_origin.hits(p) for p in paths) >= PER_ORIGIN, 10, "the slow fetches to start")

    victim, took = _waited(limited, fast_origin.url(unique("victim")))
    assert victim.status == 200, victim
    assert took < WINDOW / 2, f"the victim's miss took {took:.1f} s behind the trickling origin"
    assert sum(slow_origin.hits(p) for p in paths) <= PER_ORIGIN, "more fetches to one origin than jobs.max_per_origin"


def test_trickling_fetch_fails_as_too_slow_and_frees_its_origin(limited: GrenierProcess, origin: Origin) -> None:
    """A trickle fails with a 504 that names the limit within about one window, far below the minute it would
    take; a victim on the same origin, queued behind the cap, is answered as soon as a slot frees."""
    slow = [unique("trickle") for _ in range(PER_ORIGIN)]
    for path in slow:
        origin.program(path, lambda n, seen: TRICKLE)
    started = time.monotonic()
    locations = [_miss(limited, origin.url(path)) for path in slow]
    wait_until(lambda: all(origin.hits(p) for p in slow), 10, "the slow fetches to start")

    victim, _ = _waited(limited, origin.url(unique("victim")), wait=20)
    assert victim.status == 200, victim
    assert time.monotonic() - started < 3 * WINDOW, "the victim waited for the trickles' whole duration"

    for location in locations:
        failed = _outcome(limited, location, 3 * WINDOW)
        assert_problem(failed, 504, "too slow", "upstream.min_rate_bytes")
    assert time.monotonic() - started < 3 * WINDOW < TRICKLE_BYTES / 2
