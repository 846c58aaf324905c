"""How failures become problem documents (``proxy/refusals.py``), through a real aiohttp server."""

from __future__ import annotations

from typing import Any

import redis.connection
from aiohttp import web

from proxy.refusals import problems_middleware


async def _inside_redis(request: web.Request) -> web.Response:
    redis.connection.parse_url("http://not-redis")  # raises ValueError from inside redis-py
    return web.Response()


async def _inside_grenier(request: web.Request) -> web.Response:
    raise ValueError("a bug of ours")


async def test_a_failure_inside_the_redis_client_is_a_503_and_ours_a_500(aiohttp_client: Any) -> None:
    """A store client that breaks (redis-py's cluster client does, with plain exceptions, while a node fails over)
    is a dependency down: 503 + Retry-After. grenier's own bug stays a 500 with an incident number."""
    app = web.Application(middlewares=[problems_middleware])
    app.router.add_get("/redis", _inside_redis)
    app.router.add_get("/ours", _inside_grenier)
    client = await aiohttp_client(app)
    store = await client.get("/redis")
    assert store.status == 503
    assert store.headers["Content-Type"] == "application/problem+json"
    assert "Retry-After" in store.headers
    assert "ValueError" in (await store.json())["detail"]
    ours = await client.get("/ours")
    assert ours.status == 500
    assert "incident" in (await ours.json())["detail"]
