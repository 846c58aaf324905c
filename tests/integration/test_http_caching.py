"""RFC 9111 / 5861 behaviour end to end: real redis-server, real `grenier serve` and `grenier worker` processes, a
real origin on 127.0.0.1, and ordinary HTTP clients pointed at grenier as a forward or reverse proxy in wait mode.

Responses are made stale on arrival with an upstream ``Age`` larger than their ``max-age`` (§4.2.3), so no test
has to sleep for freshness to run out.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest

from tests.support.http import Reply, get, send
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.polling import async_wait_until
from tests.support.processes import Launcher

ROOT = Path(__file__).resolve().parents[2]


# --- grenier processes ---------------------------------------------------------------------------------------------


@dataclass
class Grenier:
    forward: str
    reverse: str


@pytest.fixture(scope="module")
def grenier(module_redis: str, origin: Origin, module_launcher: Launcher) -> Grenier:
    """One worker and two proxies on one Redis, in wait mode: a forward proxy and a reverse proxy for the origin."""
    common = {
        "GRENIER_REDIS_URL": module_redis,
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_JOBS_POLL_INTERVAL": "0.05",
        "GRENIER_JOBS_THREADS": "4",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SECURITY_ALLOW_PORTS": str(origin.port),
    }
    module_launcher.worker(common, processes=1)
    forward = module_launcher.serve(common)
    reverse = module_launcher.serve({**common, "GRENIER_UPSTREAM_ORIGIN": origin.url("")})
    return Grenier(forward=forward.url, reverse=reverse.url)


async def via_proxy(g: Grenier, url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """An ordinary client using grenier as its HTTP proxy (absolute-form requests)."""
    async with aiohttp.ClientSession() as s:
        return await send(s, method, url, headers or {}, proxy=g.forward, data=b"x" if method == "POST" else None)


async def via_reverse(g: Grenier, path: str, headers: dict[str, str] | None = None) -> Reply:
    async with aiohttp.ClientSession() as s:
        return await get(s, g.reverse + path, headers or {})


# --- the tests -----------------------------------------------------------------------------------------------------


async def test_revalidation_with_etag_freshens_without_refetching(grenier: Grenier, origin: Origin) -> None:
    """§4.3.1/§4.3.4: a stale entry with an ETag is revalidated with If-None-Match; the 304 freshens it."""
    path = unique("etag")
    url = origin.url(path)
    first = await via_proxy(grenier, url)
    assert first.text == "etag body 1"
    assert "fwd=uri-miss" in first.headers["Cache-Status"]
    second = await via_proxy(grenier, url)  # stored stale on arrival: revalidated
    assert second.text == "etag body 1"
    assert "fwd-status=304" in second.headers["Cache-Status"]
    assert origin.answered(path, 304) == 1
    third = await via_proxy(grenier, url)  # freshened by the 304's max-age=60
    assert third.text == "etag body 1"
    assert third.headers["Cache-Status"].startswith("grenier;hit")
    assert int(third.headers["Age"]) < 60


async def test_revalidation_with_last_modified(grenier: Grenier, origin: Origin) -> None:
    """§4.3.1: If-Modified-Since from Last-Modified; the 304 path keeps the stored body."""
    path = unique("lm")
    await via_proxy(grenier, origin.url(path))
    again = await via_proxy(grenier, origin.url(path))
    assert again.text == "lm body 1"
    assert origin.answered(path, 304) == 1
    assert origin.hits(path) == 2


async def test_client_conditional_gets_304_from_a_fresh_entry(grenier: Grenier, origin: Origin) -> None:
    """§4.3.2: a client's matching If-None-Match is answered 304 from the cache."""
    path = unique("etag")
    await via_proxy(grenier, origin.url(path))
    await via_proxy(grenier, origin.url(path))  # revalidated: now fresh for 60 s
    reply = await via_proxy(grenier, origin.url(path), headers={"If-None-Match": '"v1"'})
    assert reply.status == 304
    assert reply.headers["ETag"] == '"v1"'
    assert "hit" in reply.headers["Cache-Status"]
    assert reply.text == ""
    assert reply.headers["Age"] != "11", "the Age of the response the 304 replaced must not survive it"


async def test_vary_variants_coexist(grenier: Grenier, origin: Origin) -> None:
    """§4.1: variants selected by Accept-Language live side by side; each request gets its own."""
    path = unique("vary")
    fr = await via_reverse(grenier, path, {"Accept-Language": "fr"})
    en = await via_reverse(grenier, path, {"Accept-Language": "en"})
    assert fr.text.startswith("lang=fr")
    assert en.text.startswith("lang=en")
    assert "fwd=vary-miss" in en.headers["Cache-Status"]
    fr_again = await via_reverse(grenier, path, {"Accept-Language": "FR"})  # values of Accept-* are caseless
    en_again = await via_reverse(grenier, path, {"Accept-Language": "en"})
    assert fr_again.text == fr.text
    assert en_again.text == en.text
    assert fr_again.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 2


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(grenier: Grenier, origin: Origin) -> None:
    """RFC 5861 §3: within the window the stale response comes back at once; one background job refreshes it."""
    path = unique("swr")
    assert (await via_proxy(grenier, origin.url(path))).text == "swr 1"
    stale = await via_proxy(grenier, origin.url(path))
    assert stale.text == "swr 1"
    assert 'detail="stale-while-revalidate"' in stale.headers["Cache-Status"]
    await async_wait_until(lambda: origin.hits(path) >= 2, 15, "the background refresh to reach the origin")
    fresh: list[Reply] = []

    async def refreshed() -> bool:
        fresh.append(await via_proxy(grenier, origin.url(path)))
        return fresh[-1].text == "swr 2"

    deadline = time.monotonic() + 15
    while not await refreshed():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert fresh[-1].headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 2


async def test_stale_if_error_serves_stale_when_origin_fails(grenier: Grenier, origin: Origin) -> None:
    """RFC 5861 §4: a 5xx during refresh is hidden behind the stale response within stale-if-error."""
    path = unique("sie")
    assert (await via_proxy(grenier, origin.url(path))).text == "sie 1"
    origin.failing.add(path)
    reply = await via_proxy(grenier, origin.url(path))
    assert reply.status == 200
    assert reply.text == "sie 1"
    assert "fwd-status=503" in reply.headers["Cache-Status"]
    assert 'detail="stale-if-error"' in reply.headers["Cache-Status"]


async def test_must_revalidate_passes_the_error_through(grenier: Grenier, origin: Origin) -> None:
    """§5.2.2.2: must-revalidate forbids serving stale, stale-if-error included."""
    path = unique("sie-mr")
    await via_proxy(grenier, origin.url(path))
    origin.failing.add(path)
    reply = await via_proxy(grenier, origin.url(path))
    assert reply.status == 503
    assert reply.text == "origin down"


async def test_post_invalidates_the_target(grenier: Grenier, origin: Origin) -> None:
    """§4.4: a successful POST goes straight upstream and invalidates the stored response."""
    path = unique("plain")
    url = origin.url(path)
    assert (await via_proxy(grenier, url)).text == f"plain {path} 1"
    assert (await via_proxy(grenier, url)).headers["Cache-Status"].startswith("grenier;hit")
    posted = await via_proxy(grenier, url, method="POST")
    assert posted.status == 201
    assert "fwd=method" in posted.headers["Cache-Status"]
    assert origin.hits(path, "POST") == 1
    after = await via_proxy(grenier, url)
    assert after.text == f"plain {path} 2"
    assert "fwd=uri-miss" in after.headers["Cache-Status"]


async def test_only_if_cached(grenier: Grenier, origin: Origin) -> None:
    """§5.2.1.7: only-if-cached answers 504 when nothing is stored, and the stored response when it is."""
    path = unique("plain")
    missing = await via_proxy(grenier, origin.url(path), headers={"Cache-Control": "only-if-cached"})
    assert missing.status == 504
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert origin.hits(path) == 0
    await via_proxy(grenier, origin.url(path))
    cached = await via_proxy(grenier, origin.url(path), headers={"Cache-Control": "only-if-cached"})
    assert cached.status == 200
    assert cached.text == f"plain {path} 1"


async def test_range_served_from_a_complete_entry(grenier: Grenier, origin: Origin) -> None:
    """RFC 9110 §14: a single byte range is cut from a complete stored response."""
    path = unique("plain")
    full = await via_proxy(grenier, origin.url(path))
    part = await via_proxy(grenier, origin.url(path), headers={"Range": "bytes=0-4"})
    assert part.status == 206
    assert part.text == full.text[:5]
    assert part.headers["Content-Range"] == f"bytes 0-4/{len(full.text)}"


def test_plain_python_client_through_the_forward_proxy(grenier: Grenier, origin: Origin) -> None:
    """An ordinary client (urllib with a proxy) gets the response itself, then a hit with Age and Via."""
    path = unique("plain")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": grenier.forward}))
    with opener.open(origin.url(path), timeout=20) as first:
        assert first.read().decode() == f"plain {path} 1"
    with opener.open(origin.url(path), timeout=20) as second:
        assert second.read().decode() == f"plain {path} 1"
        assert second.headers["Cache-Status"].startswith("grenier;hit")
        assert "grenier" in second.headers["Via"]
        assert second.headers["Age"].isdigit()


async def test_fetch_endpoint_cuts_a_range_from_the_whole_response(grenier: Grenier, origin: Origin) -> None:
    """RFC 9110 §14: /fetch never relays (its fields are meant for grenier): a range on a miss is cut from the whole
    response the job fetched, which is stored for the next request."""
    path = unique("plain")
    target = urllib.parse.quote(origin.url(path), safe="")
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{grenier.forward}/fetch?url={target}", headers={"Range": "bytes=0-4", "Cookie": "grenier-session=1"}
        ) as r,
    ):
        assert r.status == 206
        assert await r.text() == "plain"
        assert r.headers["Content-Range"].startswith("bytes 0-4/")
        assert "stored" in r.headers["Cache-Status"]
    assert origin.hits(path) == 1


def numbered(*fields: tuple[str, str]) -> Callable[[int, Seen], Answer]:
    """An origin program: the same fields on every answer, and a body that says which request it answers."""
    return lambda n, seen: Answer(200, (("Content-Type", "text/plain"), *fields), f"answer {n}".encode())


@pytest.mark.parametrize(
    ("expires", "reused"),
    [
        pytest.param("Thu, 01 Dec 2050 16:00:00 GMT", True, id="IMF-fixdate is a date"),
        pytest.param("Thu, 01 Dec 2050 16:00:00 UTC", False, id="zone UTC is invalid"),
        pytest.param("Thu, 01 Dec 50 16:00:00 GMT", False, id="2-digit year is invalid"),
        pytest.param("Thu 01 Dec 2050 16:00:00 GMT", False, id="no comma is invalid"),
        pytest.param("Thu, 01 Dec 2050 6:00:00 GMT", False, id="1-digit hour is invalid"),
    ],
)
async def test_malformed_expires_is_already_expired(
    grenier: Grenier, origin: Origin, expires: str, reused: bool
) -> None:
    """RFC 9111 §5.3 with RFC 9110 §5.6.7: an Expires that is not exactly an HTTP-date is already expired, so the
    next request goes to the origin instead of reusing the response for decades."""
    path = unique("expires")
    origin.program(path, numbered(("Date", formatdate(time.time(), usegmt=True)), ("Expires", expires)))
    assert (await via_proxy(grenier, origin.url(path))).text == "answer 1"
    second = await via_proxy(grenier, origin.url(path))
    if reused:
        assert second.text == "answer 1"
        assert second.headers["Cache-Status"].startswith("grenier;hit")
    else:
        assert second.text == "answer 2"
        assert "fwd=stale" in second.headers["Cache-Status"]
    assert origin.hits(path) == (1 if reused else 2)


async def test_two_expires_lines_are_invalid(grenier: Grenier, origin: Origin) -> None:
    """RFC 9111 §5.3: several Expires lines are invalid, not "the first one wins"."""
    path = unique("expires")
    later = formatdate(time.time() + 3600, usegmt=True)
    origin.program(path, numbered(("Expires", later), ("Expires", later)))
    await via_proxy(grenier, origin.url(path))
    assert (await via_proxy(grenier, origin.url(path))).text == "answer 2"


@pytest.mark.parametrize(
    ("age", "reused"),
    [
        pytest.param("0", True, id="Age 0 is fresh"),
        pytest.param("7200, 0", False, id="a list is as old as its largest member"),
        pytest.param("0, 7200", False, id="whichever member comes first"),
    ],
)
async def test_an_age_list_never_makes_a_response_younger(
    grenier: Grenier, origin: Origin, age: str, reused: bool
) -> None:
    """RFC 9111 §5.1 / §4.2.3: ``Age: 7200, 0`` on a max-age=3600 response is stale, not 0 seconds old."""
    path = unique("age")
    origin.program(path, numbered(("Cache-Control", "max-age=3600"), ("Age", age)))
    await via_proxy(grenier, origin.url(path))
    second = await via_proxy(grenier, origin.url(path))
    assert second.text == ("answer 1" if reused else "answer 2")
    assert origin.hits(path) == (1 if reused else 2)


async def test_cdn_cache_control_overrides_cache_control(grenier: Grenier, origin: Origin) -> None:
    """RFC 9213 §2.1: CDN-Cache-Control governs this cache wholly (a no-store Cache-Control is ignored here) and is
    passed on to clients; Cache-Control is passed on unchanged too."""
    path = unique("cdn")
    origin.program(path, numbered(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")))
    first = await via_reverse(grenier, path)
    second = await via_reverse(grenier, path)
    assert second.text == "answer 1"
    assert second.headers["Cache-Status"].startswith("grenier;hit")
    for reply in (first, second):
        assert reply.headers["CDN-Cache-Control"] == "max-age=600"
        assert reply.headers["Cache-Control"] == "no-store"
    assert origin.hits(path) == 1


async def test_own_targeted_field_wins_and_is_not_passed_on(grenier: Grenier, origin: Origin) -> None:
    """RFC 9213 §2.1: Grenier-Cache-Control is more specific than CDN-Cache-Control and wins; being addressed to
    grenier alone, it never reaches a client (on the miss, on the hit, nor on a relay)."""
    path = unique("own")
    origin.program(
        path,
        numbered(
            ("Cache-Control", "max-age=0"),
            ("CDN-Cache-Control", "no-store"),
            ("Grenier-Cache-Control", "max-age=600"),
        ),
    )
    first = await via_proxy(grenier, origin.url(path))
    second = await via_proxy(grenier, origin.url(path))
    assert second.text == "answer 1"
    assert second.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 1
    relayed = await via_proxy(grenier, origin.url(path), method="POST")
    assert "fwd=method" in relayed.headers["Cache-Status"]
    for reply in (first, second, relayed):
        assert "Grenier-Cache-Control" not in reply.headers
        assert reply.headers["CDN-Cache-Control"] == "no-store"


def dropping_after_first(*fields: tuple[str, str]) -> Callable[[int, Seen], Answer]:
    """An origin program: a response stale on arrival (its Age over its max-age), then, to every later request, a
    connection closed without a byte of response (an origin gone away)."""

    def program(n: int, seen: Seen) -> Answer:
        if n > 1:
            return Answer(raw=b"")
        return Answer(200, (("Content-Type", "text/plain"), ("Age", "100"), *fields), b"answer 1")

    return program


async def test_stale_served_when_the_origin_drops_the_connection(grenier: Grenier, origin: Origin) -> None:
    """RFC 9111 §4.2.4: disconnected from the origin (no response at all), the stale response is served, marked
    stale in Cache-Status (a negative ttl and a detail), instead of a 502."""
    path = unique("gone")
    origin.program(path, dropping_after_first(("Cache-Control", "max-age=60")))
    assert (await via_proxy(grenier, origin.url(path))).text == "answer 1"
    reply = await via_proxy(grenier, origin.url(path))
    assert reply.status == 200
    assert reply.text == "answer 1"
    status = reply.headers["Cache-Status"]
    assert "fwd=stale" in status
    assert 'detail="stale (origin unreachable)"' in status
    ttl = int(status.split("ttl=")[1].split(";")[0])
    assert ttl < 0
    assert origin.hits(path) >= 2  # the refresh was tried (aiohttp retries a dropped reused connection once)


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "no-cache"])
async def test_stale_not_served_when_the_response_forbids_it(grenier: Grenier, origin: Origin, directive: str) -> None:
    """RFC 9111 §4.2.4 / §5.2.2: must-revalidate, proxy-revalidate and no-cache forbid serving stale even when the
    origin cannot be reached: the client gets the failure (502)."""
    path = unique("gone")
    origin.program(path, dropping_after_first(("Cache-Control", f"max-age=60, {directive}")))
    await via_proxy(grenier, origin.url(path))
    reply = await via_proxy(grenier, origin.url(path))
    assert reply.status == 502
    assert reply.headers["Content-Type"] == "application/problem+json"


async def test_head_response_updates_the_stored_get_fields(grenier: Grenier, origin: Origin) -> None:
    """RFC 9111 §4.3.5: a HEAD grenier sends upstream (here relayed: it carries a cookie) whose validators match the
    stored GET response updates that response's fields, as a 304 would; the body stays the stored one."""
    path = unique("head")
    origin.program(
        path,
        lambda n, seen: Answer(
            200,
            (("Content-Type", "text/plain"), ("ETag", '"v1"'), ("Cache-Control", "max-age=600"), ("X-Version", str(n))),
            b"same body",
        ),
    )
    first = await via_proxy(grenier, origin.url(path))
    assert first.headers["X-Version"] == "1"
    head = await via_proxy(grenier, origin.url(path), method="HEAD", headers={"Cookie": "a=1"})
    assert head.headers["X-Version"] == "2"
    assert origin.hits(path, "HEAD") == 1
    after = await via_proxy(grenier, origin.url(path))
    assert after.headers["Cache-Status"].startswith("grenier;hit")
    assert after.headers["X-Version"] == "2"
    assert after.text == "same body"
    assert origin.hits(path, "GET") == 1


async def test_head_response_with_other_validators_makes_the_stored_get_stale(grenier: Grenier, origin: Origin) -> None:
    """RFC 9111 §4.3.5: a HEAD response whose ETag differs from the stored response's makes that response stale:
    the next GET goes to the origin instead of serving the outdated body."""
    path = unique("head")
    origin.program(
        path,
        lambda n, seen: Answer(
            200,
            (("Content-Type", "text/plain"), ("ETag", f'"v{n}"'), ("Cache-Control", "max-age=600")),
            f"answer {n}".encode(),
        ),
    )
    assert (await via_proxy(grenier, origin.url(path))).text == "answer 1"
    assert (await via_proxy(grenier, origin.url(path))).headers["Cache-Status"].startswith("grenier;hit")
    await via_proxy(grenier, origin.url(path), method="HEAD", headers={"Cookie": "a=1"})
    after = await via_proxy(grenier, origin.url(path))
    assert after.text == "answer 3"
    assert "fwd=stale" in after.headers["Cache-Status"]
    assert origin.hits(path, "GET") == 2


async def test_103_early_hints_is_never_stored(grenier: Grenier, origin: Origin) -> None:
    """RFC 9110 §15.2.4 / RFC 8297: an origin's 103 before its final response is not a final response, so it is
    never stored (RFC 9111 §3) nor mixed into the one that is: the final 200 is stored and served as sent.
    (aiohttp's client reads and discards interim responses, so grenier cannot pass the 103 on: a documented
    deviation.)"""
    path = unique("hints")
    origin.program(
        path,
        lambda n, seen: Answer(
            raw=b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=600\r\nContent-Length: 8\r\n"
            b"Connection: close\r\n\r\n" + f"answer {n}".encode()
        ),
    )
    first = await via_proxy(grenier, origin.url(path))
    assert first.status == 200
    assert first.text == "answer 1"
    assert "Link" not in first.headers
    second = await via_proxy(grenier, origin.url(path))
    assert second.headers["Cache-Status"].startswith("grenier;hit")
    assert second.text == "answer 1"
    assert "Link" not in second.headers
    assert origin.hits(path) == 1


@pytest.mark.parametrize(
    ("zone", "status"), [pytest.param("GMT", 304, id="IMF-fixdate"), pytest.param("UTC", 200, id="zone UTC")]
)
async def test_a_malformed_if_modified_since_is_ignored(
    grenier: Grenier, origin: Origin, zone: str, status: int
) -> None:
    """RFC 9110 §13.1.3 with §5.6.7: a client's If-Modified-Since that is not a valid HTTP-date is ignored, so a
    fresh entry answers with the whole response instead of a 304."""
    path = unique("ims")
    modified = "Sun, 06 Nov 1994 08:49:37 GMT"
    origin.program(path, numbered(("Cache-Control", "max-age=600"), ("Last-Modified", modified)))
    await via_proxy(grenier, origin.url(path))
    reply = await via_proxy(grenier, origin.url(path), headers={"If-Modified-Since": modified.replace("GMT", zone)})
    assert reply.status == status
    assert reply.headers["Cache-Status"].startswith("grenier;hit")
    assert reply.text == ("" if status == 304 else "answer 1")
