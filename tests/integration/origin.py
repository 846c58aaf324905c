"""A real origin HTTP server on 127.0.0.1 with programmable routes, for the integration tests.

It runs an aiohttp application on its own event loop in a background thread, so that it serves ``grenier worker``
subprocesses, the in-process embedded app and synchronous fixtures alike, whatever the test's own loop is doing.

Each test registers the paths it needs (unique per test, so one origin can serve a whole session) and reads back how
often each path was requested.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web

#: The freshness a route gets unless a test says otherwise: long enough that no test sees it expire by accident.
DEFAULT_CACHE_CONTROL = "max-age=300"


@dataclass(frozen=True)
class Route:
    """What the origin answers on one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    cache_control: str | None = DEFAULT_CACHE_CONTROL
    #: Seconds to sleep before answering, per request number (1st, 2nd, ...); the last value repeats.
    delays: Sequence[float] = (0.0,)
    #: Append ``#<request number>`` to the body, so each fetch is distinguishable.
    changing: bool = False
    #: Send ``Date: now`` and ``Expires: now + expires_in`` (both HTTP-dates).
    expires_in: int | None = None
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Seen:
    """One request as the origin received it."""

    path: str
    query: str
    headers: dict[str, str]


class Origin:
    """The origin server: ``route()`` programs a path, ``hits()`` counts its requests."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._seen: dict[str, list[Seen]] = defaultdict(list)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-origin", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Origin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- programming and inspecting ----------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str | None = None, **spec: object) -> str:
        """Program ``path`` (a fresh unique one when omitted) and return its absolute URL."""
        path = path or f"/r/{uuid.uuid4().hex}"
        route = Route(**spec)  # type: ignore[arg-type]
        if not route.body:
            route = Route(**{**spec, "body": f"body of {path}".encode()})  # type: ignore[arg-type]
        with self._lock:
            self._routes[path] = route
        return self.base + path

    def hits(self, path_or_url: str) -> int:
        return len(self.seen(path_or_url))

    def seen(self, path_or_url: str) -> list[Seen]:
        path = path_or_url.removeprefix(self.base).split("?", 1)[0]
        with self._lock:
            return list(self._seen.get(path, []))

    # -- serving -----------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            route = self._routes.get(request.path)
            seen = self._seen[request.path]
            seen.append(Seen(request.path, request.query_string, dict(request.headers)))
            number = len(seen)
        if route is None:
            return web.Response(status=404, text=f"origin has no route {request.path}")
        delay = route.delays[min(number, len(route.delays)) - 1]
        if delay:
            await asyncio.sleep(delay)
        headers = dict(route.headers)
        if route.cache_control is not None:
            headers["Cache-Control"] = route.cache_control
        if route.expires_in is not None:
            now = time.time()
            headers["Date"] = formatdate(now, usegmt=True)
            headers["Expires"] = formatdate(now + route.expires_in, usegmt=True)
        body = route.body + (f"#{number}".encode() if route.changing else b"")
        headers["Content-Type"] = route.content_type
        return web.Response(status=route.status, body=body, headers=headers)
