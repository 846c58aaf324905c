"""Request collapsing must never hand one client another client's response.

In async mode a miss that finds a fetch of the same URL already pending collapses onto it. Each request still gets
a job location of its own, and that location only ever delivers what its holder may see: the shared outcome when it
is shareable with the holder's request (stored, and the holder's variant), otherwise the outcome of a fetch of the
holder's own. Attacked over real sockets, embedded and in Redis mode.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from tests.support.http import Reply, request
from tests.support.origins import TEXT, Answer, Origin, Seen, unique
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess, Launcher

JOB_ID = re.compile(r"/_grenier/jobs/([0-9a-f]{32})")
#: How long the first fetch of a path takes: long enough for a second client to miss while it is pending.
FIRST_FETCH_DELAY = 1.5


@pytest.fixture(scope="module", params=["embedded", "redis"])
def collapsing(
    request: pytest.FixtureRequest, loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrenierProcess]:
    """grenier in async mode (a miss answers 202 and a job location), embedded or with a Redis worker."""
    env = {**loopback_env, "GRENIER_CACHE_MISS": "async", "GRENIER_SERVER_MISS_RATE": "0"}
    with Launcher(tmp_path_factory.mktemp(f"collapsing-{request.param}")) as launcher:
        if request.param == "redis":
            env["GRENIER_REDIS_URL"] = request.getfixturevalue("module_redis")
            launcher.worker(env, processes=1)
        yield launcher.serve(env)


def _get(proxy: GrenierProcess, target: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return request(proxy.port, "GET", target, headers, host=f"127.0.0.1:{proxy.port}", timeout=20)


def _accepted(proxy: GrenierProcess, url: str, headers: tuple[tuple[str, str], ...] = ()) -> str:
    """Miss ``url`` through the forward proxy; the job location of the 202."""
    reply = request(proxy.port, "GET", url, headers, timeout=20)
    assert reply.status == 202, reply
    assert JOB_ID.fullmatch(reply.location), reply.location
    return reply.location


def _outcome(proxy: GrenierProcess, location: str) -> Reply:
    """Poll a job location (bounded) until it answers something other than 202."""
    replies: list[Reply] = []

    def ended() -> bool:
        replies.append(_get(proxy, location))
        return replies[-1].status != 202

    wait_until(ended, 20, f"{location} to end")
    return replies[-1]


def _slow_first(answer: Answer) -> Answer:
    return Answer(answer.status, answer.headers, answer.body, delay=FIRST_FETCH_DELAY)


def _private(n: int, seen: Seen) -> Answer:
    """A personal page: private, with a session cookie, different for every fetch."""
    headers = (("Cache-Control", "private, max-age=60"), ("Set-Cookie", f"session=secret-{n}"), *TEXT)
    answer = Answer(200, headers, f"account page of requester #{n}".encode())
    return _slow_first(answer) if n == 1 else answer


def _vary(n: int, seen: Seen) -> Answer:
    lang = seen.get("Accept-Language") or "none"
    headers = (("Vary", "Accept-Language"), ("Cache-Control", "max-age=60"), *TEXT)
    answer = Answer(200, headers, f"page in {lang}".encode())
    return _slow_first(answer) if n == 1 else answer


def test_a_collapsed_client_never_gets_another_clients_private_response(
    collapsing: GrenierProcess, origin: Origin
) -> None:
    path = unique("private")
    origin.program(path, _private)
    first = _accepted(collapsing, origin.url(path))
    second = _accepted(collapsing, origin.url(path))  # while the first fetch is pending
    assert second != first, "the second client was handed the first client's job location"

    mine = _outcome(collapsing, first)
    assert mine.status == 200, mine
    assert mine.body == b"account page of requester #1"  # (its Set-Cookie is origin-scoped: never on grenier's)

    theirs = _outcome(collapsing, second)
    assert theirs.status == 200, theirs
    assert b"requester #1" not in theirs.body, "the first requester's private body reached the second"
    assert "secret-1" not in theirs.header("Set-Cookie"), "the first requester's cookie reached the second"
    assert theirs.body == b"account page of requester #2"
    assert origin.hits(path) == 2
    # The first location still answers its own holder only what it answered before.
    assert _get(collapsing, first).body == b"account page of requester #1"


def test_a_collapsed_client_gets_its_own_variant(collapsing: GrenierProcess, origin: Origin) -> None:
    path = unique("vary")
    origin.program(path, _vary)
    french = _accepted(collapsing, origin.url(path), (("Accept-Language", "fr"),))
    english = _accepted(collapsing, origin.url(path), (("Accept-Language", "en"),))
    assert english != french

    assert _outcome(collapsing, french).body == b"page in fr"
    assert _outcome(collapsing, english).body == b"page in en", "another variant was handed to a joiner"
    assert origin.hits(path) == 2


def test_a_joiner_that_waits_gets_its_own_private_response(collapsing: GrenierProcess, origin: Origin) -> None:
    """``Prefer: wait``: the joiner's wait ends with its own fetch, not the first requester's response."""
    path = unique("private")
    origin.program(path, _private)
    first = _accepted(collapsing, origin.url(path))
    waited = request(collapsing.port, "GET", origin.url(path), (("Prefer", "wait=10"),), timeout=20)
    assert waited.status == 200, waited
    assert waited.body == b"account page of requester #2"
    assert waited.header("Set-Cookie") == "session=secret-2"
    assert _outcome(collapsing, first).body == b"account page of requester #1"


def test_shareable_outcomes_still_collapse_onto_one_fetch(collapsing: GrenierProcess, origin: Origin) -> None:
    path = unique("shared")
    origin.program(path, lambda n, seen: Answer(200, (("Cache-Control", "max-age=60"), *TEXT), b"public", delay=1.0))
    locations: list[str] = []
    lock = threading.Lock()

    def miss() -> None:
        location = _accepted(collapsing, origin.url(path))
        with lock:
            locations.append(location)

    threads = [threading.Thread(target=miss) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(locations) == 8
    assert len(set(locations)) == 8, "every request gets a location of its own (they are not guessable)"
    replies = [_outcome(collapsing, location) for location in locations]
    assert {r.body for r in replies} == {b"public"}
    assert origin.hits(path) == 1, "collapsed requests share one upstream fetch"
    assert sum(1 for r in replies if r.cache_status.get("collapsed")) == 7
