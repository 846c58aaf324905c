"""Reverse-proxy mode (``upstream.origin``) against a real origin, next to a forward proxy on the same Redis."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest

from tests.support.http import fetch_url, get, poll_job
from tests.support.origins import Origin
from tests.support.processes import GrenierProcess, Launcher


@dataclass(frozen=True)
class Pair:
    reverse: GrenierProcess
    forward: GrenierProcess


@pytest.fixture(scope="module")
def pair(module_launcher: Launcher, module_redis: str, origin: Origin) -> Pair:
    settings = {"GRENIER_REDIS_URL": module_redis}
    module_launcher.worker(settings, processes=1)
    reverse = module_launcher.serve({**settings, "GRENIER_UPSTREAM_ORIGIN": origin.base})
    forward = module_launcher.serve(settings)
    return Pair(reverse, forward)


async def test_any_path_maps_onto_the_origin(pair: Pair, origin: Origin, http: aiohttp.ClientSession) -> None:
    target = origin.route("/any/path", body=b"reverse body")
    assert target == origin.base + "/any/path"

    miss = await get(http, pair.reverse.url + "/any/path?q=1")
    assert miss.status == 202
    assert miss.cache_status == {"fwd": "uri-miss"}
    assert miss.json()["url"] == origin.base + "/any/path?q=1"
    done = await poll_job(http, pair.reverse.url, miss.location)
    assert done.status == 200
    assert done.body == b"reverse body"
    assert [s.query for s in origin.seen("/any/path")] == ["q=1"]

    hit = await get(http, pair.reverse.url + "/any/path?q=1")
    assert hit.status == 200
    assert hit.cache_status["hit"] is True
    assert hit.body == b"reverse body"
    # ... exactly as /fetch?url=<origin>/any/path?q=1 would: the forward proxy finds the same entry.
    same = await get(http, fetch_url(pair.forward.url, origin.base + "/any/path?q=1"))
    assert same.cache_status["hit"] is True
    assert same.body == b"reverse body"
    # A different query is a different resource.
    other = await get(http, pair.reverse.url + "/any/path?q=2")
    assert other.status == 202
    # q=1 was fetched once (its job may fetch q=2 by now: that is the other resource's own fetch).
    assert [s.query for s in origin.seen("/any/path")].count("q=1") == 1


async def test_root_is_proxied_not_the_form(pair: Pair, origin: Origin, http: aiohttp.ClientSession) -> None:
    origin.route("/", body=b"origin root page", content_type="text/html")
    miss = await get(http, pair.reverse.url + "/")
    assert miss.status == 202
    assert miss.json()["url"] == origin.base + "/"
    done = await poll_job(http, pair.reverse.url, miss.location)
    assert done.body == b"origin root page"


async def test_control_endpoints_still_work(pair: Pair, origin: Origin, http: aiohttp.ClientSession) -> None:
    base = pair.reverse.url
    assert (await get(http, base + "/_grenier/health")).json()["status"] == "ok"
    assert (await get(http, base + "/_grenier/ready")).status == 200
    stats = await get(http, base + "/_grenier/stats")
    assert stats.status == 200
    assert stats.json()["mode"] == "redis"
    form = await get(http, base + "/_grenier/")
    assert form.status == 200
    assert b"<form" in form.body
    assert (await get(http, base + "/_grenier/jobs/" + "0" * 32)).problem(404)
    # /fetch?url= still works in reverse mode under /_grenier/, for any URL.
    target = origin.route()
    miss = await get(http, fetch_url(base + "/_grenier", target))
    assert miss.status == 202
    assert (await poll_job(http, base, miss.location)).status == 200
    # ... while a bare /fetch is just another origin path.
    proxied = await get(http, base + "/fetch?url=" + target)
    assert proxied.status == 202
    assert proxied.json()["url"].startswith(origin.base + "/fetch?url=")
