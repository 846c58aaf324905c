"""grenier as a transparent intermediary, end to end: real redis-server, a real `grenier worker`, real `grenier
serve` processes (a forward and a reverse proxy, in async mode) and a real origin.

* Vary matched on what the client presented (RFC 9111 §4.1): its end-to-end fields reach the origin, but the
  override fields of ``upstream.deny_fields``; variants, collapsing and revalidation follow the presented fields.
* Requests with Authorization (RFC 9111 §3.5): a fetch of their own, stored and shared only when the origin says so.
* A miss any client can follow: an absolute job location naming grenier, answered by grenier in absolute-form too;
  a page for a browser; ``Preference-Applied: wait`` (RFC 7240 §3).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.http import Reply, send
from tests.support.origins import TEXT, Answer, Origin, Seen, unique
from tests.support.ports import free_port
from tests.support.processes import Launcher

WAIT = {"Prefer": "wait=10"}


@dataclass
class Grenier:
    forward: str
    reverse: str
    common: dict[str, str]


@pytest.fixture(scope="module")
def grenier(module_redis: str, origin: Origin, module_launcher: Launcher) -> Grenier:
    """One worker, a forward proxy and a reverse proxy for the origin, on one Redis, in async mode."""
    common = {
        "GRENIER_REDIS_URL": module_redis,
        "GRENIER_JOBS_POLL_INTERVAL": "0.05",
        "GRENIER_JOBS_THREADS": "4",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SERVER_MISS_RATE": "0",
        "GRENIER_SECURITY_ALLOW_PORTS": str(origin.port),
    }
    module_launcher.worker(common, processes=1)
    forward = module_launcher.serve(common)
    reverse = module_launcher.serve({**common, "GRENIER_UPSTREAM_ORIGIN": origin.url("")})
    return Grenier(forward=forward.url, reverse=reverse.url, common=common)


async def through(proxy: str, url: str, headers: dict[str, str] | None = None) -> Reply:
    """An ordinary client using grenier at ``proxy`` as its HTTP proxy (absolute-form requests)."""
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        return await send(s, "GET", url, headers or {}, proxy=proxy)


async def direct(url: str, headers: dict[str, str] | None = None) -> Reply:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        return await send(s, "GET", url, headers or {})


async def ask(mode: str, g: Grenier, origin: Origin, path: str, headers: dict[str, str]) -> Reply:
    """``path`` on the origin through grenier in ``mode`` (forward or reverse), waiting for the fetch."""
    if mode == "forward":
        return await through(g.forward, origin.url(path), {**WAIT, **headers})
    return await direct(g.reverse + path, {**WAIT, **headers})


MODES = ["forward", "reverse"]


def varies_on(
    field: str, *, delay: float = 0.0, extra: tuple[tuple[str, str], ...] = ()
) -> Callable[[int, Seen], Answer]:
    """A response that says which value of ``field`` the origin saw, and ``Vary: field``."""

    def answer(n: int, seen: Seen) -> Answer:
        headers = (("Vary", field), ("Cache-Control", "max-age=60"), *TEXT)
        return Answer(200, headers, f"{field}={seen.get(field)} #{n}".encode(), delay=delay)

    return answer


# --- item 3: Vary on what the client presented (RFC 9111 §4.1) -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_variants_are_selected_by_the_fields_the_client_presented(
    grenier: Grenier, origin: Origin, mode: str
) -> None:
    """§4.1: a response stored for ``Foo: 1`` never answers ``Foo: 2``; Foo reaches the origin."""
    path = unique("vary-foo")
    origin.program(path, varies_on("Foo"))
    one = await ask(mode, grenier, origin, path, {"Foo": "1"})
    assert one.status == 200, one
    assert one.text == "Foo=1 #1"
    two = await ask(mode, grenier, origin, path, {"Foo": "2"})
    assert two.text == "Foo=2 #2", "a variant stored for Foo: 1 answered Foo: 2"
    assert two.cache_status["fwd"] == "vary-miss"
    again = await ask(mode, grenier, origin, path, {"Foo": "1"})
    assert again.text == "Foo=1 #1"
    assert again.header("Cache-Status").startswith("grenier;hit"), again
    assert origin.hits(path) == 2


async def test_a_denied_field_never_reaches_the_origin_but_still_selects_the_variant(
    grenier: Grenier, origin: Origin
) -> None:
    """The override fields of ``upstream.deny_fields`` are never sent; the variant is still keyed by what the
    client presented, so a request with another value of it is not served the first one's response."""
    path = unique("vary-xfh")
    origin.program(path, varies_on("X-Forwarded-Host"))
    evil = await ask("forward", grenier, origin, path, {"X-Forwarded-Host": "evil.example"})
    assert evil.text == "X-Forwarded-Host=None #1"
    clean = await ask("forward", grenier, origin, path, {})
    assert clean.cache_status["fwd"] == "vary-miss", clean
    assert all("x-forwarded-host" not in seen.names() for seen in origin.seen(path))
    assert origin.hits(path) == 2


async def test_revalidation_carries_the_varied_fields(grenier: Grenier, origin: Origin) -> None:
    """§4.3.1: the conditional request for a stored variant carries the fields that selected it."""
    path = unique("vary-etag")

    def answer(n: int, seen: Seen) -> Answer:
        base = (("Vary", "Foo"), ("ETag", '"v1"'), *TEXT)
        if seen.get("If-None-Match") == '"v1"':
            return Answer(304, (*base, ("Cache-Control", "max-age=60")))
        return Answer(200, (*base, ("Cache-Control", "max-age=10"), ("Age", "11")), f"Foo={seen.get('Foo')}".encode())

    origin.program(path, answer)
    first = await ask("reverse", grenier, origin, path, {"Foo": "1"})
    assert first.text == "Foo=1"
    second = await ask("reverse", grenier, origin, path, {"Foo": "1"})  # stale on arrival: revalidated
    assert second.text == "Foo=1"
    assert second.cache_status.get("fwd-status") == 304, second
    revalidation = origin.seen(path)[1]
    assert revalidation.get("If-None-Match") == '"v1"'
    assert revalidation.get("Foo") == "1", "the revalidation request lost the varied field"


async def test_only_requests_whose_varied_fields_match_collapse(grenier: Grenier, origin: Origin) -> None:
    """Concurrent misses share one fetch only when their varied fields match (§4.1): the requests of another
    variant that joined the first fetch share one fetch of their own variant."""
    path = unique("vary-collapse")
    origin.program(path, varies_on("Foo", delay=1.0))

    async def later(foo: str) -> Reply:
        await asyncio.sleep(0.3)  # the first request's job is under way
        return await ask("forward", grenier, origin, path, {"Foo": foo})

    first, *others = await asyncio.gather(
        ask("forward", grenier, origin, path, {"Foo": "1"}), later("1"), later("2"), later("2"), later("2")
    )
    assert first.text == "Foo=1 #1"
    assert others[0].text == "Foo=1 #1"
    assert others[0].cache_status.get("collapsed") is True, others[0]
    assert [r.text for r in others[1:]] == ["Foo=2 #2"] * 3, "another variant's response reached a collapsed request"
    assert origin.hits(path) == 2, "one fetch per variant"


async def test_joiners_of_another_variant_share_one_fetch_through_their_job_locations(
    grenier: Grenier, origin: Origin
) -> None:
    """The same in async mode: each request polls its own job location, and those of the second variant are
    answered by one fetch of that variant."""
    path = unique("vary-collapse")
    origin.program(path, varies_on("Foo", delay=1.0))
    first = await through(grenier.forward, origin.url(path), {"Foo": "1"})
    seconds = [await through(grenier.forward, origin.url(path), {"Foo": "2"}) for _ in range(3)]
    assert {r.status for r in (first, *seconds)} == {202}
    done = await asyncio.gather(*(follow(grenier.forward, r.header("Location")) for r in (first, *seconds)))
    assert [r.text for r in done] == ["Foo=1 #1", "Foo=2 #2", "Foo=2 #2", "Foo=2 #2"]
    assert origin.hits(path) == 2, "one fetch per variant"


async def test_browser_spellings_of_accept_encoding_share_a_variant(grenier: Grenier, origin: Origin) -> None:
    """§4.1 normalisation: Accept-Encoding selects by the set of identity / gzip / br / zstd it accepts."""
    path = unique("vary-ae")
    origin.program(path, varies_on("Accept-Encoding"))
    spellings = ["gzip, deflate, br", "br, gzip", "gzip,deflate,br", "gzip, deflate, br;q=1", "x-gzip, br"]
    replies = [await ask("reverse", grenier, origin, path, {"Accept-Encoding": s}) for s in spellings]
    assert {r.body for r in replies} == {b"Accept-Encoding=gzip, deflate, br #1"}
    assert origin.hits(path) == 1
    gzip_only = await ask("reverse", grenier, origin, path, {"Accept-Encoding": "gzip"})
    assert gzip_only.text == "Accept-Encoding=gzip #2"


async def test_fetch_endpoint_keeps_its_allow_list(grenier: Grenier, origin: Origin) -> None:
    """``/fetch?url=``'s fields are for grenier: Foo is not sent, so it selects no variant."""
    path = unique("vary-api")
    origin.program(path, varies_on("Foo"))
    api = f"{grenier.forward}/fetch?url={origin.url(path)}"
    one = await direct(api, {**WAIT, "Foo": "1"})
    assert one.text == "Foo=None #1"
    two = await direct(api, {**WAIT, "Foo": "2"})
    assert two.header("Cache-Status").startswith("grenier;hit"), two
    assert origin.hits(path) == 1


# --- item 7: requests with Authorization (RFC 9111 §3.5) ------------------------------------------------------------


def authorized_page(cache_control: str, *, delay: float = 0.0) -> Callable[[int, Seen], Answer]:
    def answer(n: int, seen: Seen) -> Answer:
        headers = (("Cache-Control", cache_control), *TEXT)
        return Answer(200, headers, f"for {seen.get('Authorization')} #{n}".encode(), delay=delay)

    return answer


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("allows", ["public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"])
async def test_an_authorized_response_that_allows_it_is_stored_and_shared(
    grenier: Grenier, origin: Origin, mode: str, allows: str
) -> None:
    path = unique("auth-shared")
    origin.program(path, authorized_page(allows))
    alice = await ask(mode, grenier, origin, path, {"Authorization": "Bearer alice"})
    assert alice.text == "for Bearer alice #1", "the credentials reach the origin on the request's own fetch"
    assert alice.cache_status.get("stored") is True, alice
    anyone = await ask(mode, grenier, origin, path, {})
    assert anyone.header("Cache-Status").startswith("grenier;hit"), anyone
    assert anyone.body == alice.body
    bob = await ask(mode, grenier, origin, path, {"Authorization": "Bearer bob"})
    assert bob.header("Cache-Status").startswith("grenier;hit"), "a response that allows it answers Authorization"
    assert origin.hits(path) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_an_authorized_response_without_permission_is_neither_stored_nor_reused(
    grenier: Grenier, origin: Origin, mode: str
) -> None:
    path = unique("auth-private")
    origin.program(path, authorized_page("max-age=60"))
    alice = await ask(mode, grenier, origin, path, {"Authorization": "Bearer alice"})
    assert alice.text == "for Bearer alice #1"
    assert "stored" not in alice.cache_status
    anyone = await ask(mode, grenier, origin, path, {})
    assert anyone.text == "for None #2", "alice's response reached another requester"
    assert anyone.cache_status.get("stored") is True
    bob = await ask(mode, grenier, origin, path, {"Authorization": "Bearer bob"})
    assert bob.text == "for Bearer bob #3", "a stored response that does not allow it answered Authorization"
    assert bob.cache_status["fwd"] == "miss"
    last = await ask(mode, grenier, origin, path, {})
    assert last.body == anyone.body, "bob's response replaced the shared one"


async def test_requests_with_and_without_authorization_never_collapse(grenier: Grenier, origin: Origin) -> None:
    """Even for a response every request could share once stored, a request with Authorization never joins a job
    started without it (nor another requester's), and the reverse."""
    path = unique("auth-collapse")
    origin.program(path, authorized_page("public, max-age=60", delay=1.0))
    with_auth, without, other = await asyncio.gather(
        ask("forward", grenier, origin, path, {"Authorization": "Bearer alice"}),
        ask("forward", grenier, origin, path, {}),
        ask("forward", grenier, origin, path, {"Authorization": "Bearer bob"}),
    )
    assert origin.hits(path) == 3, "a request joined a job fetched with other credentials"
    assert sorted(str(seen.get("Authorization")) for seen in origin.seen(path)) == [
        "Bearer alice",
        "Bearer bob",
        "None",
    ]
    for reply in (with_auth, without, other):
        assert reply.status == 200, reply
        assert "collapsed" not in reply.cache_status


async def test_share_authorized_off_relays(grenier: Grenier, origin: Origin, module_launcher: Launcher) -> None:
    off = module_launcher.serve({**grenier.common, "GRENIER_CACHE_SHARE_AUTHORIZED": "false"})
    path = unique("auth-off")
    origin.program(path, authorized_page("public, max-age=60"))
    relayed = await through(off.url, origin.url(path), {"Authorization": "Bearer alice"})
    assert relayed.text == "for Bearer alice #1"
    assert relayed.cache_status["fwd"] == "bypass"
    after = await through(off.url, origin.url(path), WAIT)
    assert after.cache_status["fwd"] == "uri-miss", "the relayed response was stored"


# --- item 9: a miss any client can follow ---------------------------------------------------------------------------


def slow(n: int, seen: Seen) -> Answer:
    return Answer(200, (("Cache-Control", "max-age=60"), *TEXT), f"slow #{n}".encode(), delay=0.5)


async def follow(proxy: str | None, location: str, timeout: float = 20.0) -> Reply:
    """GET the absolute job ``location`` until it answers something other than 202, through ``proxy`` if given."""
    for _ in range(int(timeout / 0.1)):
        reply = await (through(proxy, location) if proxy else direct(location))
        if reply.status != 202:
            return reply
        await asyncio.sleep(0.1)
    pytest.fail(f"job {location} still pending after {timeout} s")


async def test_a_forward_proxy_client_follows_the_absolute_job_location(grenier: Grenier, origin: Origin) -> None:
    """The 202's Location names grenier (not the target), and grenier answers it in absolute-form, never fetching
    it from anyone."""
    path = unique("slow")
    origin.program(path, slow)
    accepted = await through(grenier.forward, origin.url(path))
    assert accepted.status == 202, accepted
    location = accepted.header("Location")
    assert location.startswith(grenier.forward + "/_grenier/jobs/"), location
    assert accepted.json()["location"] == location
    done = await follow(grenier.forward, location)
    assert done.status == 200, done
    assert done.text == "slow #1"
    assert origin.hits(path) == 1
    assert all(not s.path.startswith("/_grenier") for s in origin.seen(path)), "the job location was fetched"


async def test_public_url_names_the_job_location(grenier: Grenier, origin: Origin, module_launcher: Launcher) -> None:
    port = free_port()
    public = f"http://grenier.test:{port}"
    named = module_launcher.serve({**grenier.common, "GRENIER_SERVER_PUBLIC_URL": public}, port=port)
    path = unique("slow")
    origin.program(path, slow)
    accepted = await through(named.url, origin.url(path))
    assert accepted.header("Location").startswith(public + "/_grenier/jobs/"), accepted
    # grenier.test resolves nowhere: only grenier itself can answer this.
    done = await follow(named.url, accepted.header("Location"))
    assert done.text == "slow #1"


async def test_reverse_mode_job_location_names_the_host_asked(grenier: Grenier, origin: Origin) -> None:
    path = unique("slow")
    origin.program(path, slow)
    accepted = await direct(grenier.reverse + path)
    assert accepted.status == 202, accepted
    assert accepted.header("Location").startswith(grenier.reverse + "/_grenier/jobs/"), accepted
    done = await follow(None, accepted.header("Location"))
    assert done.text == "slow #1"


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("mode", MODES)
async def test_a_browser_gets_a_page_that_follows_the_job(grenier: Grenier, origin: Origin, mode: str) -> None:
    path = unique("slow")
    origin.program(path, slow)
    if mode == "forward":
        page = await through(grenier.forward, origin.url(path), {"Accept": BROWSER_ACCEPT})
    else:
        page = await direct(grenier.reverse + path, {"Accept": BROWSER_ACCEPT})
    assert page.status == 202, page
    assert page.header("Content-Type").startswith("text/html"), page
    assert page.header("Cache-Control") == "no-store"
    assert urlsplit(page.header("Location")).path.startswith("/_grenier/jobs/")
    # The page's one script is the one its Content-Security-Policy lets run; it asks for the same URL with a wait.
    (script,) = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page.header("Content-Security-Policy")
    assert "location.href" in script
    assert "Prefer" in script
    # What the script does next: the same URL, waiting; the stored response comes back, so it reloads into a hit.
    waited = await ask(mode, grenier, origin, path, {})
    assert waited.text == "slow #1"
    assert waited.header("Preference-Applied") == "wait"
    reloaded = await ask(mode, grenier, origin, path, {"Accept": BROWSER_ACCEPT})
    assert reloaded.header("Cache-Status").startswith("grenier;hit"), reloaded
    assert origin.hits(path) == 1


async def test_other_clients_keep_the_json_202(grenier: Grenier, origin: Origin) -> None:
    path = unique("slow")
    origin.program(path, slow)
    accepted = await through(grenier.forward, origin.url(path), {"Accept": "*/*"})
    assert accepted.status == 202, accepted
    assert accepted.json()["state"] in {"queued", "running"}
    assert "Preference-Applied" not in accepted.headers


async def test_preference_applied_says_a_wait_was_honoured(grenier: Grenier, origin: Origin) -> None:
    """RFC 7240 §3: only when the client asked for a wait and grenier waited."""
    path = unique("slow")
    origin.program(path, slow)
    waited = await through(grenier.forward, origin.url(path), WAIT)
    assert waited.status == 200, waited
    assert waited.header("Preference-Applied") == "wait"
    assert "prefer" not in origin.seen(path)[0].names(), "the preference was grenier's to apply"
    hit = await through(grenier.forward, origin.url(path), WAIT)
    assert hit.header("Cache-Status").startswith("grenier;hit")
    assert "Preference-Applied" not in hit.headers, "a hit did not wait"
    other = unique("slow")
    origin.program(other, slow)
    asynchronous = await through(grenier.forward, origin.url(other), {"Prefer": "respond-async"})
    assert asynchronous.status == 202
    assert "Preference-Applied" not in asynchronous.headers


async def test_only_job_locations_are_answered_in_absolute_form(grenier: Grenier) -> None:
    """An unknown job is grenier's own 404; any other of its endpoints asked for through the proxy is still a loop."""
    unknown = await through(grenier.forward, f"{grenier.forward}/_grenier/jobs/{'0' * 32}")
    assert unknown.status == 404, unknown
    assert "no job" in unknown.json()["detail"]
    for path in ("/_grenier/stats", "/_grenier/jobs/../stats", f"/_grenier/jobs/{'0' * 32}/x"):
        other = await through(grenier.forward, grenier.forward + path)
        assert other.status in {400, 508}, (path, other)
