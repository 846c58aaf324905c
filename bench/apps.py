"""The small aiohttp servers the benchmark runs, each in its own process: ``python -m bench.apps KIND --port P``.

* ``origin``: the upstream every cache in the run fetches from. ``/body/<n>[/anything]`` answers ``n`` bytes that
  may be stored for ten minutes.
* ``bare``: the same bytes, for the sizes it is given, straight from memory: what aiohttp alone can serve.
* ``naive``: the same bytes, read with one redis-py asyncio ``GET`` per request from ``bench:naive:<n>``: the
  simplest Redis-backed cache, the design grenier on Redis must beat.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from aiohttp import web

from bench.processes import HOST

HEADERS = {"Content-Type": "application/octet-stream", "Cache-Control": "max-age=600"}
#: Largest body the origin makes (a bound on a typo, not a limit of the benchmark's).
MAX_BODY = 64 * 1024 * 1024


@functools.lru_cache(maxsize=64)
def body(size: int) -> bytes:
    """The ``size`` bytes every server in the run answers for ``/body/<size>``."""
    return (b"grenier bench " * (size // 14 + 1))[:size]


def path(size: int, tail: str = "") -> str:
    return f"/body/{size}/{tail}" if tail else f"/body/{size}"


def naive_key(size: int) -> str:
    return f"bench:naive:{size}"


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _sized_routes(app: web.Application, handler: Handler) -> None:
    app.router.add_get(r"/body/{size:\d+}", handler)
    app.router.add_get(r"/body/{size:\d+}/{tail:.*}", handler)


def origin_app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        size = int(request.match_info["size"])
        if size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        return web.Response(body=body(size), headers=HEADERS)

    app = web.Application()
    _sized_routes(app, page)
    return app


def bare_app(sizes: Sequence[int]) -> web.Application:
    bodies = {str(size): body(size) for size in sizes}

    async def page(request: web.Request) -> web.Response:
        found = bodies.get(request.match_info["size"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found, headers=HEADERS)

    app = web.Application()
    _sized_routes(app, page)
    return app


REDIS = web.AppKey("redis", aioredis.Redis)


def naive_app(redis_url: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        found = await request.app[REDIS].get(naive_key(int(request.match_info["size"])))
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found, headers=HEADERS)

    async def connection(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = aioredis.Redis.from_url(redis_url)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    app.cleanup_ctx.append(connection)
    _sized_routes(app, page)
    return app


def _loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        loop: asyncio.AbstractEventLoop = importlib.import_module("uvloop").new_event_loop()
        return loop
    return asyncio.new_event_loop()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.apps", description="Run one of the benchmark's own servers.")
    p.add_argument("kind", choices=["origin", "bare", "naive"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sizes", default="", help="comma-separated body sizes (bare)")
    p.add_argument("--redis-url", default="", help="the Redis holding bench:naive:<n> (naive)")
    p.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT, to run several side by side")
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = p.parse_args(argv)
    match args.kind:
        case "origin":
            app = origin_app()
        case "bare":
            app = bare_app([int(s) for s in args.sizes.split(",") if s])
        case _:
            app = naive_app(args.redis_url)
    web.run_app(
        app,
        host=HOST,
        port=args.port,
        reuse_port=args.reuse_port or None,
        access_log=None,
        print=None,
        loop=_loop(args.loop),
    )


if __name__ == "__main__":
    main()
