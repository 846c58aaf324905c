"""The HTTP contract end to end in Redis mode: a real ``grenier serve``, a real ``grenier worker``, a real Redis.

One serve and one worker process run for the whole module (each test uses origin paths of its own); tests that need
a differently configured proxy start it themselves on the same Redis database and worker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser

import aiohttp
import pytest
import redis

from tests.support.http import Reply, assert_no_traceback, get, miss_then_done, poll_job, send
from tests.support.http import fetch_url as _fetch_url
from tests.support.origins import Origin
from tests.support.ports import CLOSED_PORT
from tests.support.processes import GrenierProcess, Launcher

MAX_BODY = 100_000
MAX_TTL = 120
DEFAULT_TTL = 2
TOTAL_TIMEOUT = 2

STACK_SETTINGS = {
    "GRENIER_CACHE_DEFAULT_TTL": str(DEFAULT_TTL),
    "GRENIER_CACHE_MAX_TTL": str(MAX_TTL),
    "GRENIER_UPSTREAM_TOTAL_TIMEOUT": str(TOTAL_TIMEOUT),
    "GRENIER_UPSTREAM_MAX_BODY_BYTES": str(MAX_BODY),
    "GRENIER_UPSTREAM_RETRY_BACKOFF": "0.05",
    # This module checks the backbone's expiry: entries leave Redis with their freshness.
    "GRENIER_CACHE_STALE_KEEP": "0",
}


class Stack:
    def __init__(self, serve: GrenierProcess, redis_url: str, settings: dict[str, str]) -> None:
        self.serve = serve
        self.redis_url = redis_url
        self.settings = settings
        #: A plain Redis client, to read what grenier wrote.
        self.redis = redis.Redis.from_url(redis_url)

    @property
    def base(self) -> str:
        return self.serve.url

    def fetch_url(self, target: str) -> str:
        return _fetch_url(self.base, target)


@pytest.fixture(scope="module")
def stack(module_launcher: Launcher, module_redis: str) -> Iterator[Stack]:
    settings = {"GRENIER_REDIS_URL": module_redis, **STACK_SETTINGS}
    module_launcher.worker(settings, processes=1)
    stack = Stack(module_launcher.serve(settings), module_redis, settings)
    yield stack
    stack.redis.close()


def entry_key(url: str) -> str:
    """The documented key scheme: ``grenier:entry:{<sha256 of the canonical URL>}`` (a Redis Cluster hash tag)."""
    return "grenier:entry:{" + hashlib.sha256(url.encode()).hexdigest() + "}"


def job_id_of(location: str) -> str:
    job_id = location.rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), location
    return job_id


async def new_job_started(http: aiohttp.ClientSession, stack: Stack, target: str, old_location: str) -> Reply:
    """Ask for ``target`` until a new job starts for it (bounded); requests meanwhile may join the ended job."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        reply = await get(http, stack.fetch_url(target))
        if reply.status == 202 and reply.location != old_location:
            return reply
        assert "hit" not in reply.cache_status, "an unstorable outcome was served as a cache hit"
        assert asyncio.get_running_loop().time() < deadline, "no new job was ever started"
        await asyncio.sleep(0.1)


# -- miss, job, hit ----------------------------------------------------------------------------------------------


async def test_miss_answers_202_pointing_at_its_job(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route()
    reply = await get(http, stack.fetch_url(target))

    assert reply.status == 202
    job_id = job_id_of(reply.location)
    assert reply.headers["Retry-After"] == "1"
    assert reply.cache_status == {"fwd": "uri-miss"}
    assert reply.headers["Content-Type"].startswith("application/json")
    doc = reply.json()
    assert doc["id"] == job_id
    assert doc["url"] == target
    assert doc["state"] in {"queued", "running"}


async def test_polling_a_job_gives_its_status_then_the_response(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(delays=(1.0,), content_type="text/x-grenier-test")
    first = await get(http, stack.fetch_url(target))
    assert first.status == 202

    pending = await get(http, stack.base + first.location)
    assert pending.status == 202
    assert pending.headers["Retry-After"] == "1"
    assert pending.headers["Location"] == first.headers["Location"] == stack.base + first.location
    doc = pending.json()
    assert doc["state"] in {"queued", "running"}
    assert doc["url"] == target
    assert doc["id"] == job_id_of(first.location)
    assert isinstance(doc["created"], float)
    assert doc["finished"] is None

    done = await poll_job(http, stack.base, first.location)
    assert done.status == 200
    assert done.body == f"body of {target.removeprefix(origin.base)}".encode()
    assert done.headers["Content-Type"] == "text/x-grenier-test"
    status = done.cache_status
    assert status["fwd"] == "uri-miss"
    assert status["stored"] is True
    assert status["fwd-status"] == 200
    assert origin.hits(target) == 1
    # Job records live jobs.result_ttl seconds (default 3600).
    ttl_ms = stack.redis.pttl(f"grenier:job:{job_id_of(first.location)}")
    assert 3_500_000 < ttl_ms <= 3_600_000


async def test_fresh_entry_is_served_with_age_and_ttl(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(cache_control="max-age=100", headers={"X-Origin": "yes"})
    done = await miss_then_done(http, stack.base, target)
    assert done.status == 200

    for _ in range(3):
        hit = await get(http, stack.fetch_url(target))
        assert hit.status == 200
        assert hit.body == done.body
        assert hit.headers["X-Origin"] == "yes"
        assert int(hit.headers["Age"]) >= 0
        status = hit.cache_status
        assert status["hit"] is True
        assert 90 < status["ttl"] <= 100
        assert set(status) == {"hit", "ttl"}
    assert origin.hits(target) == 1


@pytest.mark.parametrize(
    ("spec", "bounds"),
    [
        pytest.param({"cache_control": "max-age=100, s-maxage=50"}, (40, 50), id="s-maxage-wins"),
        pytest.param({"cache_control": "max-age=70"}, (60, 70), id="max-age"),
        pytest.param({"cache_control": None, "expires_in": 90}, (80, 90), id="expires-minus-date"),
        pytest.param({"cache_control": "max-age=100000"}, (MAX_TTL - 10, MAX_TTL), id="capped-by-max-ttl"),
    ],
)
async def test_entry_lifetime_comes_from_the_response(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession, spec: dict[str, object], bounds: tuple[int, int]
) -> None:
    low, high = bounds
    target = origin.route(**spec)
    done = await miss_then_done(http, stack.base, target)
    assert done.cache_status["stored"] is True
    assert low < done.cache_status["ttl"] <= high

    hit = await get(http, stack.fetch_url(target))
    assert hit.cache_status["hit"] is True
    assert low < hit.cache_status["ttl"] <= high
    # The entry itself expires from Redis with its freshness (this module sets cache.stale_keep to 0).
    assert low * 1000 < stack.redis.pttl(entry_key(target)) <= high * 1000


async def test_default_ttl_applies_without_freshness_and_the_entry_then_expires(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(cache_control=None)
    done = await miss_then_done(http, stack.base, target)
    assert done.cache_status["stored"] is True
    assert 0 <= done.cache_status["ttl"] <= DEFAULT_TTL

    async def expired() -> Reply | None:
        reply = await get(http, stack.fetch_url(target))
        if reply.status == 200:
            assert reply.body == done.body
            if "hit" in reply.cache_status:
                assert reply.cache_status["ttl"] <= DEFAULT_TTL
            else:  # joined the job that just ended (its in-flight marker lingers briefly)
                assert "collapsed" in reply.cache_status
            return None
        return reply

    deadline = asyncio.get_running_loop().time() + DEFAULT_TTL + 10
    miss = None
    while miss is None:
        assert asyncio.get_running_loop().time() < deadline, "the default_ttl entry never expired"
        miss = await expired()
        await asyncio.sleep(0.1)
    assert miss.status == 202
    assert miss.cache_status["fwd"] in {"uri-miss", "stale"}
    again = await poll_job(http, stack.base, miss.location)
    assert again.status == 200
    assert origin.hits(target) == 2


@pytest.mark.parametrize(("cache_control", "why"), [("no-store", "no-store"), ("private, max-age=60", "private")])
async def test_unstorable_response_is_delivered_by_its_job_but_not_stored(
    stack: Stack,
    origin: Origin,
    http: aiohttp.ClientSession,
    cache_control: str,
    why: str,
) -> None:
    target = origin.route(cache_control=cache_control)
    first = await get(http, stack.fetch_url(target))
    done = await poll_job(http, stack.base, first.location)

    assert done.status == 200
    assert done.body == f"body of {target.removeprefix(origin.base)}".encode()
    status = done.cache_status
    assert status["fwd"] == "uri-miss"
    assert "stored" not in status
    assert why in status["detail"]
    assert not stack.redis.exists(entry_key(target))

    # Another request right after must not be handed that response: it was never stored, so it is a new miss.
    second = await get(http, stack.fetch_url(target))
    assert second.status == 202, f"a later request got the ended job's {why} response: {second.headers['Cache-Status']}"
    assert second.location != first.location
    assert (await poll_job(http, stack.base, second.location)).status == 200
    assert origin.hits(target) == 2


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
async def test_request_no_cache_refreshes_while_others_get_the_old_entry(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession, directive: str
) -> None:
    target = origin.route(changing=True, delays=(0.0, TOTAL_TIMEOUT / 2))
    path = target.removeprefix(origin.base)
    done = await miss_then_done(http, stack.base, target)
    assert done.body == f"body of {path}#1".encode()

    refresh = await get(http, stack.fetch_url(target), {"Cache-Control": directive})
    assert refresh.status == 202
    assert refresh.cache_status["fwd"] == "request"
    assert refresh.json()["url"] == target

    # Meanwhile another client still gets the old entry, as a hit.
    other = await get(http, stack.fetch_url(target))
    still_pending = await get(http, stack.base + refresh.location)
    assert still_pending.status == 202, "the refresh ended too soon to observe the old entry being served"
    assert other.status == 200
    assert other.body == f"body of {path}#1".encode()
    assert other.cache_status["hit"] is True

    renewed = await poll_job(http, stack.base, refresh.location)
    assert renewed.status == 200
    assert renewed.body == f"body of {path}#2".encode()
    after = await get(http, stack.fetch_url(target))
    assert after.cache_status["hit"] is True
    assert after.body == f"body of {path}#2".encode()
    assert origin.hits(target) == 2


# -- Prefer: wait and cache.miss ---------------------------------------------------------------------------------


async def test_prefer_wait_answers_with_the_response(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route(delays=(0.3,))
    reply = await get(http, stack.fetch_url(target), {"Prefer": "wait=15"})

    assert reply.status == 200
    assert reply.body == f"body of {target.removeprefix(origin.base)}".encode()
    status = reply.cache_status
    assert status["fwd"] == "uri-miss"
    assert status["stored"] is True
    assert "hit" not in status
    hit = await get(http, stack.fetch_url(target))
    assert hit.cache_status["hit"] is True
    assert origin.hits(target) == 1


async def test_prefer_wait_still_pending_answers_202(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route(delays=(TOTAL_TIMEOUT + 2,))
    reply = await get(http, stack.fetch_url(target), {"Prefer": "wait=0.3"})

    assert reply.status == 202
    assert reply.cache_status["fwd"] == "uri-miss"
    assert reply.headers["Retry-After"] == "1"
    assert reply.json()["state"] in {"queued", "running"}


async def test_default_is_async_and_miss_wait_waits(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession, launcher: Launcher
) -> None:
    assert "GRENIER_CACHE_MISS" not in stack.settings
    target = origin.route(delays=(0.3,))
    assert (await get(http, stack.fetch_url(target))).status == 202

    waiting = launcher.serve({**stack.settings, "GRENIER_REDIS_URL": stack.redis_url, "GRENIER_CACHE_MISS": "wait"})
    other = origin.route(delays=(0.3,))
    reply = await get(http, _fetch_url(waiting.url, other))
    assert reply.status == 200
    assert reply.body == f"body of {other.removeprefix(origin.base)}".encode()
    assert reply.cache_status["fwd"] == "uri-miss"
    assert reply.cache_status["stored"] is True
    # An explicit respond-async still gets the 202 at once.
    third = origin.route()
    assert (await get(http, _fetch_url(waiting.url, third), {"Prefer": "respond-async"})).status == 202


# -- HEAD and the forward proxy ----------------------------------------------------------------------------------


async def test_head_works_like_get_without_a_body(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route()
    miss = await send(http, "HEAD", stack.fetch_url(target))
    assert miss.status == 202
    assert miss.cache_status == {"fwd": "uri-miss"}
    assert miss.body == b""
    assert (await poll_job(http, stack.base, miss.location)).status == 200

    hit = await send(http, "HEAD", stack.fetch_url(target))
    assert hit.status == 200
    assert hit.body == b""
    assert hit.cache_status["hit"] is True
    assert hit.headers["Content-Type"] == "text/plain"
    assert "Age" in hit.headers
    full = await get(http, stack.fetch_url(target))
    assert full.body == f"body of {target.removeprefix(origin.base)}".encode()
    assert origin.hits(target) == 1


async def test_forward_proxy_absolute_form_behaves_like_fetch(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route()
    miss = await get(http, target, proxy=stack.base)
    assert miss.status == 202
    assert miss.cache_status == {"fwd": "uri-miss"}
    assert miss.json()["url"] == target
    done = await poll_job(http, stack.base, miss.location)
    assert done.status == 200

    via_proxy = await get(http, target, proxy=stack.base)
    via_fetch = await get(http, stack.fetch_url(target))
    for hit in (via_proxy, via_fetch):
        assert hit.status == 200
        assert hit.cache_status["hit"] is True
        assert hit.body == done.body
    assert origin.hits(target) == 1

    # The same with a bare socket, so the request line is exactly absolute-form.
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.serve.port)
    host = urllib.parse.urlsplit(target).netloc
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"cache-status: grenier;hit;ttl=" in head.lower()
    assert body == done.body


async def test_connect_is_refused_with_a_problem(stack: Stack, http: aiohttp.ClientSession) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.serve.port)
    writer.write(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"application/problem+json" in head.lower()
    assert b"CONNECT" in body


# -- job outcomes ------------------------------------------------------------------------------------------------


async def test_connection_refused_job_is_a_502_problem_naming_the_cause(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    port = CLOSED_PORT  # nothing listens there
    target = f"http://127.0.0.1:{port}/nobody-home"
    first = await get(http, stack.fetch_url(target))
    assert first.status == 202
    failed = await poll_job(http, stack.base, first.location)

    doc = failed.problem(502)
    assert str(port) in doc["detail"]
    assert "connect" in doc["detail"].lower()
    assert doc["url"] == target
    # The failure is not cached: asking again starts a new job (once the ended job's marker has lapsed).
    await new_job_started(http, stack, target, first.location)


async def test_upstream_timeout_job_is_a_504_problem(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route(delays=(TOTAL_TIMEOUT + 3,))
    first = await get(http, stack.fetch_url(target))
    failed = await poll_job(http, stack.base, first.location, timeout=TOTAL_TIMEOUT + 15)

    doc = failed.problem(504)
    assert "within" in doc["detail"] or "timeout" in doc["detail"].lower()
    assert doc["url"] == target
    assert origin.hits(target) == 1


async def test_origin_error_status_is_a_response_not_a_failure(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(status=500, body=b"origin broke", cache_control=None)
    done = await miss_then_done(http, stack.base, target)

    assert done.status == 500
    assert done.body == b"origin broke"
    assert done.cache_status["fwd-status"] == 500
    assert "stored" not in done.cache_status
    assert origin.hits(target) == 1


async def test_unknown_job_is_a_404_problem(stack: Stack, http: aiohttp.ClientSession) -> None:
    for job_id in ("0" * 32, "not-a-job-id"):
        doc = (await get(http, f"{stack.base}/_grenier/jobs/{job_id}")).problem(404)
        assert job_id in doc["detail"]


async def test_concurrent_misses_share_one_job_and_one_fetch(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(delays=(1.5,))
    replies = await asyncio.gather(*(get(http, stack.fetch_url(target)) for _ in range(50)))

    assert {r.status for r in replies} == {202}
    # Each request holds a location of its own (linked to the one job), so none can read another's outcome.
    locations = {r.location for r in replies}
    assert len(locations) == 50
    assert {r.json()["id"] for r in replies} == {job_id_of(loc) for loc in locations}
    assert sum(1 for r in replies if "collapsed" not in r.cache_status) == 1
    done = await asyncio.gather(*(poll_job(http, stack.base, r.location) for r in replies))
    assert {d.status for d in done} == {200}
    assert origin.hits(target) == 1


async def test_body_over_the_limit_is_not_stored_and_the_job_says_why(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = origin.route(body=b"x" * (MAX_BODY * 2))
    first = await get(http, stack.fetch_url(target))
    outcome = await poll_job(http, stack.base, first.location)

    if outcome.status == 200:  # relayed but not stored: Cache-Status says why
        assert "stored" not in outcome.cache_status
        why = outcome.cache_status["detail"]
    else:  # no response relayed: the problem says why
        why = outcome.problem(502)["detail"]
    assert str(MAX_BODY) in why
    assert not stack.redis.exists(entry_key(target))
    await new_job_started(http, stack, target, first.location)


async def test_stored_body_is_raw_bytes_in_one_value(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    body = bytes(range(256)) * 300  # every byte value, not valid UTF-8, under the size limit
    target = origin.route(body=body, content_type="application/octet-stream")
    done = await miss_then_done(http, stack.base, target)
    assert done.body == body

    value = stack.redis.get(entry_key(target))
    assert isinstance(value, bytes)
    assert value.endswith(body)
    assert len(value) < len(body) + 4096
    assert base64.b64encode(body[:300]) not in value
    assert stack.redis.type(entry_key(target)) == b"string"
    hit = await get(http, stack.fetch_url(target))
    assert hit.cache_status["hit"] is True
    assert hit.body == body


async def test_a_stored_body_is_kept_once_and_its_job_refers_to_it(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """The job record of a stored response holds its store key, not a second copy of the body."""
    body = b"k" * (MAX_BODY // 2)
    target = origin.route(body=body)
    first = await get(http, stack.fetch_url(target))
    done = await poll_job(http, stack.base, first.location)
    assert done.body == body
    record = stack.redis.get(f"grenier:job:{job_id_of(first.location)}")
    assert isinstance(record, bytes)
    assert len(record) < 4096
    assert (await get(http, stack.fetch_url(target))).body == body


async def test_an_unstored_body_stays_with_its_job_for_a_short_time(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """A response the cache may not hold is kept for its requester only, for ``jobs.unstored_result_ttl``."""
    body = b"p" * (MAX_BODY // 2)
    target = origin.route(body=body, cache_control="no-store")
    first = await get(http, stack.fetch_url(target))
    done = await poll_job(http, stack.base, first.location)
    assert done.body == body
    key = f"grenier:job:{job_id_of(first.location)}"
    assert len(stack.redis.get(key) or b"") > len(body)
    assert 0 < stack.redis.pttl(key) <= 60_000


# -- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        pytest.param("", 400, "missing", id="missing-url"),
        pytest.param("?url=", 400, "missing", id="empty-url"),
        pytest.param("?url=/just/a/path", 400, "relative", id="relative-url"),
        pytest.param("?url=example.com/page", 400, "relative", id="no-scheme"),
        pytest.param("?url=ftp://example.com/file", 400, "ftp", id="ftp-scheme"),
        pytest.param("?url=http://example.com/" + "a" * 8300, 414, "8192", id="over-8-KiB"),
    ],
)
async def test_client_mistakes_are_problems_with_a_detail(
    stack: Stack, http: aiohttp.ClientSession, query: str, status: int, words: str
) -> None:
    reply = await get(http, f"{stack.base}/fetch{query}")
    doc = reply.problem(status)
    assert words in doc["detail"]


async def test_other_errors_are_problems_too(stack: Stack, origin: Origin, http: aiohttp.ClientSession) -> None:
    not_found = (await get(http, f"{stack.base}/no/such/endpoint")).problem(404)
    assert "/no/such/endpoint" in not_found["detail"]
    post = await send(http, "POST", f"{stack.base}/fetch?url=http://example.com/")
    post.problem(405)
    # In forward mode other methods are relayed straight to the origin (RFC 9111 §4.4), never queued.
    forward_post = await send(http, "POST", origin.route(), proxy=stack.base)
    assert forward_post.status == 200
    assert "fwd=method" in forward_post.headers["Cache-Status"]


# -- browser form ------------------------------------------------------------------------------------------------


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.inputs: dict[str, str] = {}
        self.buttons: list[str] = []
        self.iframes: list[str] = []
        self.refresh = False
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:  # the first form: the fetch form (the operator's page has more)
            self.action, self.method = a.get("action"), a.get("method", "get").lower()
        elif tag == "input" and "name" in a:
            self.inputs[a["name"]] = a.get("type", "text")
        elif tag == "button":
            self._in_button = True
            self.buttons.append("")
        elif tag == "iframe":
            self.iframes.append(a.get("src", ""))
        elif tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            self.refresh = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button:
            self.buttons[-1] += data


def parse_page(reply: Reply) -> _Form:
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    page = _Form()
    page.feed(reply.body.decode())
    return page


async def test_html_form_leads_to_a_job_page_that_refreshes_until_ready(
    stack: Stack, origin: Origin, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/_grenier/"):
        page = parse_page(await get(http, stack.base + path))
        assert page.inputs.get("url") in {"url", "text"}
        assert any("Fetch" in b for b in page.buttons)
        assert page.action
        assert page.method == "get"

    target = origin.route(delays=(1.0,))
    submitted = await get(http, stack.base + page.action + "?" + urllib.parse.urlencode({"url": target}))
    assert submitted.status == 303
    job_page = submitted.headers["Location"]

    pending = parse_page(await get(http, stack.base + job_page))
    assert pending.refresh
    assert not pending.iframes

    deadline = asyncio.get_running_loop().time() + 20
    while True:
        ready = parse_page(await get(http, stack.base + job_page))
        if not ready.refresh:
            break
        assert asyncio.get_running_loop().time() < deadline, "the job page never stopped refreshing"
        await asyncio.sleep(0.1)
    assert len(ready.iframes) == 1
    frame = ready.iframes[0]
    assert frame.startswith("/_grenier/jobs/")
    shown = await get(http, stack.base + frame)
    assert shown.status == 200
    assert shown.body == f"body of {target.removeprefix(origin.base)}".encode()

    # Submitting again once it is cached shows the cached copy at once.
    cached = await get(http, stack.base + page.action + "?" + urllib.parse.urlencode({"url": target}))
    assert len(parse_page(cached).iframes) == 1
    assert origin.hits(target) == 1


async def test_form_submission_with_a_bad_url_is_a_problem(stack: Stack, http: aiohttp.ClientSession) -> None:
    reply = await get(http, stack.base + "/_grenier/ui/fetch?url=ftp%3A%2F%2Fexample.com%2F")
    assert "ftp" in reply.problem(400)["detail"]


# -- operations --------------------------------------------------------------------------------------------------


async def test_health_and_ready(stack: Stack, http: aiohttp.ClientSession) -> None:
    startup = [line for line in stack.serve.log().splitlines() if "serving on" in line]
    assert startup  # one line per server process (server.processes)
    assert all(f"127.0.0.1:{stack.serve.port}" in line and "mode: redis" in line for line in startup), startup
    health = await get(http, stack.base + "/_grenier/health")
    assert health.status == 200
    assert health.json()["status"] == "ok"
    ready = await get(http, stack.base + "/_grenier/ready")
    assert ready.status == 200
    assert ready.json() == {"status": "ready", "store": "ok", "broker": "ok"}


async def test_no_response_carries_a_traceback(stack: Stack, http: aiohttp.ClientSession) -> None:
    paths = [
        "/fetch?url=%ZZ",
        "/fetch?url=http://[::1",
        "/fetch?url=http://user:pw@example.com/",
        "/fetch?url=http://example.com:99999/",
        "/_grenier/jobs/",
        "/_grenier/ui/jobs/" + "f" * 32,
        "/_grenier/stats/extra",
    ]
    for path in paths:
        reply = await get(http, stack.base + path)
        assert 400 <= reply.status < 500, (path, reply.status)
        reply.problem(reply.status)
        assert_no_traceback(reply.body)
