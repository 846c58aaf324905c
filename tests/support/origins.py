"""The origin server the tests fetch from: one programmable HTTP/1.1 server on 127.0.0.1, recording what it receives.

It runs an aiohttp application on its own event loop in a background thread, so the same server answers ``grenier``
subprocesses, an in-process app on the test's loop, synchronous tests and fixtures of any scope alike.

What it answers on a path is, in this order:

* ``503 origin down`` while the path is in ``failing`` (an origin outage, switched on by a test);
* what a test programmed for that exact path: ``route()`` (a declarative ``Route``: body, status, fields, freshness,
  delays) or ``program()`` (any function of the request number and the request, returning an ``Answer``);
* otherwise a behaviour chosen by the path's first segment, its *kind* (``/etag/<unique>``, ``/echo/<unique>``...;
  see ``KINDS``), so that a test only has to make a unique path of the right kind.

Every request is recorded (``seen``, ``hits``) with the number it has among that path's requests of the same method
(HEAD counting as GET), so that answers can change from one fetch to the next and tests can assert what did, or never
did, reach the origin. Delays, stalls and trickles end early when the server stops, so that no teardown waits for them.

``DroppingOrigin`` and ``GarbageOrigin`` are the exception: TCP listeners that are not HTTP servers at all, for the
fetcher's tests of peers that close at once or answer with something that is not HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

#: The freshness an answer gets unless a test says otherwise: long enough that no test sees it expire by accident.
DEFAULT_CACHE_CONTROL = "max-age=300"
#: The fields of a plain answer, fresh for that long; ``TEXT`` without the freshness.
FRESH = (("Cache-Control", DEFAULT_CACHE_CONTROL), ("Content-Type", "text/plain"))
TEXT = (("Content-Type", "text/plain"),)
#: Methods a cache may answer; every other method gets the kinds' "unsafe" answer.
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: The Last-Modified the ``lm`` kind sends (and revalidates against).
LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"


def unique(prefix: str = "r") -> str:
    """A path of kind ``prefix`` that no other test uses, so one origin can serve a whole session."""
    return f"/{prefix}/{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Seen:
    """One request as the origin received it: fields in arrival order, the body as read.

    It reads like its header section: ``seen["User-Agent"]``, ``"Cookie" in seen`` (names are caseless)."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: The request target exactly as it arrived (``path`` is decoded): what a proxy sent, byte for byte.
    target: str = ""

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.names()


@dataclass(frozen=True)
class Answer:
    """What the origin sends for one request."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    #: Exact bytes to write instead of a response, after which the connection is closed (malformed answers).
    raw: bytes | None = None
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Send the body with chunked transfer coding, this many bytes per chunk (0: with a Content-Length).
    chunk: int = 0
    #: ``(n, seconds)``: send the first ``n`` bytes of the body, then stall that long before the rest.
    stall: tuple[int, float] | None = None
    #: ``(n, seconds)``: send the body ``n`` bytes at a time, pausing that long before each piece (a slow upstream
    #: that keeps every read timeout at bay).
    trickle: tuple[int, float] | None = None


#: What a path answers: (this request's number among the path's requests of its method, the request) -> the answer.
Program = Callable[[int, Seen], Answer]


@dataclass(frozen=True)
class Route:
    """A declarative program for one path."""

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    cache_control: str | None = DEFAULT_CACHE_CONTROL
    #: Seconds to wait before answering, per request number (1st, 2nd, ...); the last value repeats.
    delays: Sequence[float] = (0.0,)
    #: Append ``#<request number>`` to the body, so each fetch is distinguishable.
    changing: bool = False
    #: Send ``Date: now`` and ``Expires: now + expires_in`` (both HTTP-dates).
    expires_in: int | None = None
    content_type: str = "text/plain"

    def __call__(self, n: int, seen: Seen) -> Answer:
        headers = dict(self.headers)
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if self.expires_in is not None:
            now = time.time()
            headers["Date"] = formatdate(now, usegmt=True)
            headers["Expires"] = formatdate(now + self.expires_in, usegmt=True)
        headers["Content-Type"] = self.content_type
        body = self.body + (f"#{n}".encode() if self.changing else b"")
        delay = self.delays[min(n, len(self.delays)) - 1]
        return Answer(self.status, tuple(headers.items()), body, delay=delay)


@dataclass(frozen=True)
class Ranged:
    """A program for one path that serves byte ranges of ``body`` as an origin does (RFC 9110 §14): a single
    ``Range`` is answered 206 with its ``Content-Range`` (416 when unsatisfiable), anything else 200 with the whole;
    ``If-Range`` is honoured (a range only while it matches the current ETag) unless ``if_range`` is false. The
    ETag is ``"v<k>"``, ``k`` the request number when ``changing``, else 1."""

    body: bytes
    cache_control: str = DEFAULT_CACHE_CONTROL
    changing: bool = False
    if_range: bool = True
    delay: float = 0.0

    def __call__(self, n: int, seen: Seen) -> Answer:
        etag = f'"v{n if self.changing else 1}"'
        fields = (("Cache-Control", self.cache_control), ("ETag", etag), ("Content-Type", "text/plain"))
        spec = (seen.get("Range") or "").removeprefix("bytes=")
        current = not self.if_range or seen.get("If-Range") in {None, etag}
        first_s, dash, last_s = spec.partition("-")
        if not spec or "," in spec or not dash or not current:
            return Answer(200, fields, self.body, delay=self.delay)
        size = len(self.body)
        if not first_s:
            first, last = max(0, size - int(last_s)), size - 1
        else:
            first, last = int(first_s), min(int(last_s) if last_s else size - 1, size - 1)
        if first >= size:
            return Answer(416, (("Content-Range", f"bytes */{size}"),), b"", delay=self.delay)
        part = (*fields, ("Content-Range", f"bytes {first}-{last}/{size}"))
        return Answer(206, part, self.body[first : last + 1], delay=self.delay)


class Requests(list[Seen]):
    """Every request the origin received, in arrival order; called with a path (or a URL on the origin), that path's
    requests only."""

    def __init__(self, lock: threading.Lock, path_of: Callable[[str], str]) -> None:
        super().__init__()
        self._lock = lock
        self._path_of = path_of

    def __call__(self, path_or_url: str) -> list[Seen]:
        path = self._path_of(path_or_url)
        with self._lock:
            return [s for s in self if s.path == path]


class Origin:
    """The origin server; ``start()`` it, program paths, read back what it saw, ``stop()`` it."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self._lock = threading.Lock()
        #: Every request received; ``seen(path)`` for one path's.
        self.seen = Requests(self._lock, self.path_of)
        #: Paths that answer ``503 origin down`` for as long as they are in this set.
        self.failing: set[str] = set()
        self._programs: dict[str, Program] = {}
        self._numbers: Counter[tuple[str, str]] = Counter()
        self._statuses: list[tuple[str, int]] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        #: Where the ``redirect`` kind points (by default a path on this origin).
        self.redirect_to = redirect_to or self.url("/landing")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-origin", daemon=True)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

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
        await web.SockSite(self._runner, self._sock).start()

    def stop(self) -> None:
        """End every delay and stall, close the server, end its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
        self._sock.close()

    # -- programming and inspecting ----------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def path_of(self, path_or_url: str) -> str:
        return path_or_url.removeprefix(self.base).split("?", 1)[0]

    def route(self, path: str | None = None, **spec: Any) -> str:
        """Program ``path`` (a fresh unique one when omitted) with a ``Route``; return its absolute URL. Without a
        body, the body is ``body of <path>``."""
        path = path or unique()
        if not spec.get("body"):
            spec["body"] = f"body of {path}".encode()
        self.program(path, Route(**spec))
        return self.url(path)

    def program(self, path: str, behaviour: Program) -> None:
        """Make ``path`` answer what ``behaviour`` returns (instead of what its kind would)."""
        with self._lock:
            self._programs[path] = behaviour

    def hits(self, path_or_url: str, method: str | None = None) -> int:
        """How many requests ``path_or_url``'s path got (of ``method`` only, when given)."""
        return sum(1 for s in self.seen(path_or_url) if method is None or s.method == method)

    def answered(self, path_or_url: str, status: int) -> int:
        """How many times the origin answered ``status`` on ``path_or_url``'s path (e.g. 304 to a revalidation)."""
        path = self.path_of(path_or_url)
        with self._lock:
            return sum(1 for p, s in self._statuses if p == path and s == status)

    # -- serving -----------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.method,
            request.path,
            request.query_string,
            tuple(request.headers.items()),
            await request.read(),
            request.raw_path,
        )
        with self._lock:
            self.seen.append(seen)
            key = (seen.path, "GET" if seen.method == "HEAD" else seen.method)
            self._numbers[key] += 1
            n = self._numbers[key]
            program = self._programs.get(seen.path)
            failing = seen.path in self.failing
        if failing:
            answer = Answer(503, TEXT, b"origin down")
        elif program is not None:
            answer = program(n, seen)
        else:
            answer = self._by_kind(n, seen)
        with self._lock:
            self._statuses.append((seen.path, answer.status))
        return await self._send(request, answer)

    def _by_kind(self, n: int, seen: Seen) -> Answer:
        kind = seen.path.strip("/").split("/", 1)[0]
        if seen.method not in SAFE_METHODS:
            if kind == "plain":  # the RFC 9111 tests' resource: an unsafe method creates something under it
                return Answer(201, (("Location", seen.path + "-created"), *TEXT), b"created")
            return Answer(200, TEXT, f"{seen.method} {seen.path} {n}".encode())
        if kind == "redirect":
            return Answer(302, (("Location", self.redirect_to), FRESH[0]), b"moved")
        return KINDS.get(kind, _plain)(n, seen)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _send(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        if answer.delay:
            await self._pause(answer.delay)
        if answer.raw is not None:
            transport = request.transport
            if transport is not None:
                transport.write(answer.raw)
                transport.close()
            return web.Response()  # never sent: writing it fails on the closed connection, which aiohttp ignores
        headers = CIMultiDict(answer.headers)
        if not answer.chunk and answer.stall is None and answer.trickle is None:
            return web.Response(status=answer.status, headers=headers, body=answer.body)
        response = web.StreamResponse(status=answer.status, headers=headers)
        if answer.chunk:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(answer.body)
        with contextlib.suppress(ConnectionError):  # the client may give up half-way: that is what some tests do
            await response.prepare(request)
            start = 0
            if answer.stall is not None:
                start, pause = answer.stall
                await response.write(answer.body[:start])
                await self._pause(pause)
            step = answer.chunk or max(len(answer.body), 1)
            if answer.trickle is not None:
                step, pause = answer.trickle
            for offset in range(start, len(answer.body), step):
                if answer.trickle is not None:
                    await self._pause(pause)
                    if self._stopping.is_set():
                        return response
                await response.write(answer.body[offset : offset + step])
            await response.write_eof()
        return response


# -- kinds: what an unprogrammed path answers to GET and HEAD, by its first segment ------------------------------------


def _plain(n: int, seen: Seen) -> Answer:
    return Answer(200, FRESH, f"plain {seen.path} {n}".encode())


def _echo(n: int, seen: Seen) -> Answer:
    """Reflects what a poisoner would like the origin to act upon."""
    names = ("authorization", "cookie", "x-forwarded-host", "x-original-url", "x-evil")
    echoed = {name: seen.get(name) for name in names}
    return Answer(200, FRESH, f"echo {seen.path} {n} {json.dumps(echoed, sort_keys=True)}".encode())


def _cookie(n: int, seen: Seen) -> Answer:
    return Answer(200, (*FRESH, ("Set-Cookie", "session=abc123; HttpOnly")), f"cookie {seen.path} {n}".encode())


def _size(seen: Seen) -> int:
    return int(seen.path.strip("/").split("/")[1])


def _sized(n: int, seen: Seen) -> Answer:
    """``/sized/<bytes>``: that many bytes, with a Content-Length."""
    return Answer(200, body=b"x" * _size(seen))


def _chunked(n: int, seen: Seen) -> Answer:
    """``/chunked/<bytes>``: that many bytes, chunked in pieces of 300."""
    return Answer(200, body=b"y" * _size(seen), chunk=300)


def _etag(n: int, seen: Seen) -> Answer:
    """Stale on arrival (upstream Age over max-age), with an ETag; a matching If-None-Match gets a 304."""
    if seen.get("If-None-Match") == '"v1"':
        return Answer(304, (("ETag", '"v1"'), ("Cache-Control", "max-age=60")))
    return Answer(200, (("ETag", '"v1"'), ("Cache-Control", "max-age=10"), ("Age", "11"), *TEXT), b"etag body %d" % n)


def _lm(n: int, seen: Seen) -> Answer:
    """Stale on arrival, with a Last-Modified; a matching If-Modified-Since gets a 304."""
    if seen.get("If-Modified-Since") == LAST_MODIFIED:
        return Answer(304, (("Cache-Control", "max-age=60"),))
    headers = (("Last-Modified", LAST_MODIFIED), ("Cache-Control", "max-age=10"), ("Age", "11"), *TEXT)
    return Answer(200, headers, b"lm body %d" % n)


def _vary(n: int, seen: Seen) -> Answer:
    lang = seen.get("Accept-Language") or "none"
    return Answer(
        200, (("Vary", "Accept-Language"), ("Cache-Control", "max-age=60"), *TEXT), f"lang={lang} n={n}".encode()
    )


def _swr(n: int, seen: Seen) -> Answer:
    """The first answer is stale on arrival within stale-while-revalidate; later ones are fresh."""
    cc = "max-age=10, stale-while-revalidate=60" if n == 1 else "max-age=60"
    return Answer(200, (("Cache-Control", cc), ("Age", "11" if n == 1 else "0"), *TEXT), b"swr %d" % n)


def _sie(n: int, seen: Seen) -> Answer:
    cc = "max-age=10, stale-if-error=60"
    return Answer(200, (("Cache-Control", cc), ("Age", "11"), *TEXT), b"sie %d" % n)


def _sie_mr(n: int, seen: Seen) -> Answer:
    cc = "max-age=10, must-revalidate, stale-if-error=60"
    return Answer(200, (("Cache-Control", cc), ("Age", "11"), *TEXT), b"sie-mr %d" % n)


#: Behaviour by a path's first segment; any other kind (and ``plain``) answers ``plain <path> <n>``, fresh for 300 s.
#: ``redirect`` (a 302 to ``Origin.redirect_to``) is the origin's own, as it depends on the instance.
KINDS: dict[str, Program] = {
    "plain": _plain,
    "echo": _echo,
    "cookie": _cookie,
    "big": lambda n, seen: Answer(200, FRESH, b"x" * 10_000),
    "bigchunked": lambda n, seen: Answer(200, FRESH[:1], b"x" * 10_000, chunk=1000),
    "sized": _sized,
    "chunked": _chunked,
    "etag": _etag,
    "lm": _lm,
    "vary": _vary,
    "swr": _swr,
    "sie": _sie,
    "sie-mr": _sie_mr,
}


# -- peers that are not HTTP servers -------------------------------------------------------------------------------


class DroppingOrigin:
    """A TCP listener on the caller's event loop that accepts and at once closes each connection, counting them.

    Not an ``Origin``: an HTTP server reads a request before it can answer anything, and this one must not."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


class GarbageOrigin(DroppingOrigin):
    """Answers every request with bytes that are not HTTP, counting connections."""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP ready, not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()
