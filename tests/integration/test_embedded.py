"""Embedded mode (no Redis): the real app with its in-process store and Dramatiq worker, in-process and as a process.

In-process tests build the app with ``create_app(settings)`` and drive it through ``aiohttp_client``: the same
application ``grenier serve`` runs, with its real StubBroker worker threads fetching from a real origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from core.settings import build
from grenier.wiring import create_app
from tests.support.http import Reply, fetch_url, get, poll_job
from tests.support.origins import Origin
from tests.support.ports import CLOSED_PORT
from tests.support.processes import Launcher

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class InProcess:
    """An embedded grenier app under test, addressed by URL like the subprocesses are."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.base = str(client.make_url("")).rstrip("/")

    def fetch_url(self, target: str) -> str:
        return fetch_url(self.base, target)


@pytest.fixture
def embedded(aiohttp_client: AiohttpClient, loopback: dict[str, str]) -> Callable[..., Awaitable[InProcess]]:
    async def make(settings: Mapping[str, str] | None = None) -> InProcess:
        app_settings = build({}, {**loopback, "GRENIER_UPSTREAM_RETRY_BACKOFF": "0.05", **(settings or {})})
        assert app_settings.embedded
        return InProcess(await aiohttp_client(create_app(app_settings)))

    return make


async def test_miss_job_then_hit(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded()
    target = origin.route(delays=(0.5,))
    miss = await get(http, app.fetch_url(target))
    assert miss.status == 202
    assert miss.headers["Retry-After"] == "1"
    assert miss.cache_status == {"fwd": "uri-miss"}
    assert miss.json()["url"] == target

    done = await poll_job(http, app.base, miss.location)
    assert done.status == 200
    assert done.cache_status["stored"] is True
    hit = await get(http, app.fetch_url(target))
    assert hit.status == 200
    assert hit.cache_status["hit"] is True
    assert 290 < hit.cache_status["ttl"] <= 300
    assert hit.body == done.body
    assert "Age" in hit.headers
    assert origin.hits(target) == 1

    # Foreign pages served from grenier's own origin are sandboxed, so their scripts cannot act as grenier.
    for reply in (done, hit):
        assert reply.headers["Content-Security-Policy"] == "sandbox"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"

    metrics = await get(http, app.base + "/_grenier/metrics")
    assert metrics.status == 200
    assert 'grenier_responses_total{cache="hit",status="2xx"} 1.0' in metrics.body.decode()
    # the 202, each poll of the job and its outcome all say fwd=uri-miss
    assert 'grenier_responses_total{cache="uri-miss",status="2xx"}' in metrics.body.decode()

    stats = (await get(http, app.base + "/_grenier/stats")).json()
    assert stats["mode"] == "embedded"
    assert stats["hits"] == 1
    assert stats["misses"] == 1
    assert stats["jobs_done"] == 1
    assert (await get(http, app.base + "/_grenier/ready")).json()["status"] == "ready"


async def test_concurrent_misses_share_one_job(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded()
    target = origin.route(delays=(1.0,))
    replies = await asyncio.gather(*(get(http, app.fetch_url(target)) for _ in range(50)))
    assert {r.status for r in replies} == {202}
    # Each request holds a location of its own (linked to the one job), so none can read another's outcome.
    assert len({r.location for r in replies}) == 50
    done = await asyncio.gather(*(poll_job(http, app.base, r.location) for r in replies))
    assert {d.status for d in done} == {200}
    assert origin.hits(target) == 1


async def test_miss_wait_setting_answers_with_the_response(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded({"GRENIER_CACHE_MISS": "wait"})
    target = origin.route(delays=(0.3,))
    reply = await get(http, app.fetch_url(target))
    assert reply.status == 200
    assert reply.body == f"body of {target.removeprefix(origin.base)}".encode()
    assert reply.cache_status["fwd"] == "uri-miss"
    assert reply.cache_status["stored"] is True
    assert (await get(http, app.fetch_url(origin.route()), {"Prefer": "respond-async"})).status == 202


async def test_prefer_wait_is_capped_by_max_wait(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded({"GRENIER_CACHE_MAX_WAIT": "0.2"})
    target = origin.route(delays=(3.0,))
    reply = await get(http, app.fetch_url(target), {"Prefer": "wait=30"})
    assert reply.status == 202
    assert reply.json()["state"] in {"queued", "running"}


async def test_unstorable_and_refresh(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded()
    private = origin.route(cache_control="no-store")
    done = await poll_job(http, app.base, (await get(http, app.fetch_url(private))).location)
    assert done.status == 200
    assert "stored" not in done.cache_status

    changing = origin.route(changing=True)
    first = await poll_job(http, app.base, (await get(http, app.fetch_url(changing))).location)
    assert first.body.endswith(b"#1")
    refresh = await get(http, app.fetch_url(changing), {"Cache-Control": "no-cache"})
    assert refresh.status == 202
    assert refresh.cache_status["fwd"] == "request"
    second = await poll_job(http, app.base, refresh.location)
    assert second.body.endswith(b"#2")
    hit = await get(http, app.fetch_url(changing))
    assert hit.cache_status["hit"] is True
    assert hit.body.endswith(b"#2")


async def test_failed_job_is_a_problem(
    embedded: Callable[..., Awaitable[InProcess]], http: aiohttp.ClientSession
) -> None:
    app = await embedded({"GRENIER_UPSTREAM_RETRIES": "0"})
    port = CLOSED_PORT
    failed = await poll_job(http, app.base, (await get(http, app.fetch_url(f"http://127.0.0.1:{port}/"))).location)
    assert str(port) in failed.problem(502)["detail"]


async def test_forward_proxy_in_process(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    app = await embedded()
    target = origin.route()
    miss = await get(http, target, proxy=app.base)
    assert miss.status == 202
    assert (await poll_job(http, app.base, miss.location)).status == 200
    hit: Reply = await get(http, target, proxy=app.base)
    assert hit.cache_status["hit"] is True
    assert origin.hits(target) == 1


async def test_grenier_serve_alone_is_a_working_proxy(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    serve = launcher.serve({})  # no redis.url: embedded store and in-process workers
    startup = [line for line in serve.log().splitlines() if "serving on" in line]
    assert len(startup) == 1
    assert f"127.0.0.1:{serve.port}" in startup[0]
    assert "embedded" in startup[0]

    target = origin.route(delays=(0.3,))
    miss = await get(http, fetch_url(serve.url, target))
    assert miss.status == 202
    assert miss.cache_status == {"fwd": "uri-miss"}
    done = await poll_job(http, serve.url, miss.location)
    assert done.status == 200
    assert done.cache_status["stored"] is True
    for hit in (await get(http, fetch_url(serve.url, target)), await get(http, target, proxy=serve.url)):
        assert hit.status == 200
        assert hit.cache_status["hit"] is True
        assert hit.body == done.body
    waited = await get(http, fetch_url(serve.url, origin.route()), {"Prefer": "wait=10"})
    assert waited.status == 200
    assert waited.cache_status["stored"] is True

    stats = (await get(http, serve.url + "/_grenier/stats")).json()
    assert stats["mode"] == "embedded"
    assert stats["hits"] == 2
    assert (await get(http, serve.url + "/")).headers["Content-Type"].startswith("text/html")
    assert origin.hits(target) == 1
    assert serve.stop() == 0
    assert "Traceback" not in serve.log()


async def test_cache_status_names_the_configured_pseudonym(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    """RFC 9211 §2: the Cache-Status member names this cache, which is ``server.pseudonym`` (as in Via)."""
    app = await embedded({"GRENIER_SERVER_PSEUDONYM": "edge-7", "GRENIER_CACHE_MISS": "wait"})
    target = origin.route(cache_control="max-age=300")
    fetched = await get(http, app.fetch_url(target))
    hit = await get(http, app.fetch_url(target))
    health = await get(http, app.base + "/_grenier/health")
    assert fetched.headers["Cache-Status"].startswith("edge-7;fwd=uri-miss")
    assert hit.headers["Cache-Status"].startswith("edge-7;hit")
    assert hit.headers["Via"] == "1.1 edge-7"
    assert health.headers["Cache-Status"] == "edge-7;fwd=bypass"


async def test_the_embedded_store_stays_within_memory_bytes(
    embedded: Callable[..., Awaitable[InProcess]], origin: Origin, http: aiohttp.ClientSession
) -> None:
    """Misses of many distinct bodies never take the store past ``cache.memory_bytes``: older entries go."""
    budget = 256 * 1024
    app = await embedded({"GRENIER_CACHE_MEMORY_BYTES": str(budget), "GRENIER_CACHE_MISS": "wait"})
    targets = [origin.route(body=bytes([i]) * 40_000, cache_control="max-age=300") for i in range(12)]
    for target in targets:
        assert (await get(http, app.fetch_url(target))).status == 200
        usage = (await get(http, app.base + "/_grenier/stats")).json()["store"]
        assert usage["bytes"] <= budget
    assert usage["evicted"] >= 4
    newest = await get(http, app.fetch_url(targets[-1]))
    assert newest.cache_status["hit"] is True
    assert newest.body == bytes([11]) * 40_000
    oldest = await get(http, app.fetch_url(targets[0]))
    assert "hit" not in oldest.cache_status
