"""The upstream side: one :class:`Upstream` owns the two client sessions, the target check and their closing.

Two sessions, because two kinds of target exist: client-chosen ones, whose every connection goes through the SSRF
guard (:mod:`core.netguard`), and the operator's reverse-proxy origin, which is trusted. The server's relay, the form
and the fetch job all reach upstream through one ``Upstream``, so none of them can pick the wrong session or forget
the check.

Fetching: an HTTP error status is a response like any other (it is returned, never retried); only failures to get a
response at all are retried, a few times, quickly, because a client is polling for the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from yarl import URL

from . import netguard, telemetry
from .netguard import Guard
from .outcome import FailureKind
from .policy import Headers
from .settings import Settings, UpstreamSettings
from .targets import host_port, on_origin

USER_AGENT = "grenier/0.1"


class UpstreamError(Exception):
    """The upstream gave no usable response; ``kind`` maps to 504 (timeout) or 502 (anything else)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: FailureKind = kind
        self.detail = detail


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float


def wire_url(url: str) -> URL:
    """The URL to request for the canonical ``url``: its path and query go out exactly as the cache key holds them.

    aiohttp would otherwise re-spell them (``/a/../b`` to ``/b``, ``%61`` to ``a``), so that two keys could name one
    upstream resource, and a reverse-proxied ``/../x`` could reach outside the origin's path prefix.
    """
    return URL(url, encoded=True)


def backoff(attempt: int, base: float, cap: float = 5.0) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base`` doubling each time, at most ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def new_session(bounds: UpstreamSettings, guard: Guard | None) -> aiohttp.ClientSession:
    """An upstream session: responses kept as sent (no decompression, no redirects, no cookie jar).

    With a ``guard`` every connection goes through the SSRF guard's resolver (client-chosen targets); without one
    it is for the operator's own reverse-proxy origin.
    """
    timeout = aiohttp.ClientTimeout(
        total=bounds.total_timeout, sock_connect=bounds.connect_timeout, sock_read=bounds.read_timeout
    )
    if guard is not None:
        connector = netguard.connector(guard, limit_per_host=bounds.max_connections_per_origin)
    else:
        connector = aiohttp.TCPConnector(limit_per_host=bounds.max_connections_per_origin)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        headers={"User-Agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        max_line_size=bounds.max_header_bytes,
        max_field_size=bounds.max_header_bytes,
    )


def _failure(exc: BaseException, bounds: UpstreamSettings) -> UpstreamError | None:
    """aiohttp's (and the guard's) failures as the one error the rest of grenier knows; ``None`` for others."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamError("timeout", timeout_detail(exc, bounds))
    if isinstance(exc, netguard.TargetRefused):
        return UpstreamError("refused", exc.detail)
    if isinstance(exc, aiohttp.ClientConnectionError):
        refusal = netguard.refusal_of(exc)
        if refusal is not None:
            return UpstreamError("refused", refusal.detail)
        return UpstreamError("connect", f"cannot reach upstream: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("protocol", f"upstream body was cut short: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError("protocol", f"upstream sent an invalid response: {exc.message}")
    return None


def timeout_detail(exc: TimeoutError, bounds: UpstreamSettings) -> str:
    """Which of the upstream timeouts fired, by name and value: a read that stalled for ``read_timeout`` must not be
    reported as a fetch that took the whole ``total_timeout``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"could not connect to upstream within upstream.connect_timeout ({bounds.connect_timeout:g} s)"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"upstream sent nothing for upstream.read_timeout ({bounds.read_timeout:g} s)"
    return f"upstream did not answer within upstream.total_timeout ({bounds.total_timeout:g} s)"


def too_slow(bounds: UpstreamSettings, what: str) -> UpstreamError:
    """The failure of an upstream slower than the minimum rate (``what`` it was too slow to send)."""
    return UpstreamError(
        "too_slow",
        f"upstream was too slow: {what} (upstream.min_rate_bytes is {bounds.min_rate_bytes} bytes/s over"
        f" upstream.min_rate_window, {bounds.min_rate_window:g} s)",
    )


class UpstreamStream:
    """An upstream response whose status and fields have arrived and whose body is read piece by piece, never
    beyond ``upstream.max_body_bytes``, so memory stays flat whatever the body's size, and never slower than
    ``upstream.min_rate_bytes`` per second over each ``upstream.min_rate_window``: the read timeout alone would let an
    upstream that trickles a byte now and then hold its reader (a worker thread) for as long as it likes."""

    def __init__(
        self, resp: aiohttp.ClientResponse, request_time: float, response_time: float, bounds: UpstreamSettings
    ) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers)
        self.request_time = request_time
        self.response_time = response_time
        self.bounds = bounds
        self.cap = cap = bounds.max_body_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise UpstreamError("too_large", f"upstream body is {resp.content_length} bytes, over the {cap}-byte limit")

    @property
    def received_bytes(self) -> int:
        """Body bytes received from the upstream so far."""
        return self._resp.content.total_bytes

    async def _arrivals(self) -> AsyncIterator[bytes]:
        """The body as it arrives; every window of ``min_rate_window`` seconds must bring ``min_rate_bytes`` per
        second of it (checked when the window ends, whether or not anything arrived), else the fetch is too slow."""
        content, rate, window = self._resp.content, self.bounds.min_rate_bytes, self.bounds.min_rate_window
        if rate <= 0:
            async for piece in content.iter_chunked(64 * 1024):
                yield piece
            return
        loop = asyncio.get_running_loop()
        end, got = loop.time() + window, 0
        while True:
            deadline = asyncio.timeout_at(end)
            data: bytes | None = None
            try:
                async with deadline:
                    data = await content.readany()
            except TimeoutError:
                if not deadline.expired():  # aiohttp's own read timeout, not the window's end
                    raise
            if data == b"":  # the end of the body
                return
            if data:
                got += len(data)
                yield data
            if loop.time() >= end:
                if got < rate * window:
                    raise too_slow(self.bounds, f"{got} bytes of body in {window:g} s")
                end, got = loop.time() + window, 0

    async def pieces(self, size: int) -> AsyncIterator[bytes]:
        """The body in pieces of exactly ``size`` bytes (the last may be shorter); raises :class:`UpstreamError`
        when the body is over the cap, cut short or too slow."""
        buffer = bytearray()
        total = 0
        async for data in self._arrivals():
            total += len(data)
            if total > self.cap:
                raise UpstreamError("too_large", f"upstream body is over the {self.cap}-byte limit")
            buffer += data
            while len(buffer) >= size:
                yield bytes(buffer[:size])
                del buffer[:size]
        if buffer or total == 0:
            yield bytes(buffer)

    async def read(self) -> bytes:
        return b"".join([p async for p in self.pieces(1 << 20)])


async def _head(
    session: aiohttp.ClientSession, url: str, headers: Headers, bounds: UpstreamSettings
) -> aiohttp.ClientResponse:
    """Send the request and read the status and fields: with a minimum rate, an upstream gets the connect and read
    timeouts plus one ``min_rate_window`` for them, however it spaces its bytes out."""
    if bounds.min_rate_bytes <= 0:
        return await session.get(wire_url(url), headers=list(headers), allow_redirects=False)
    limit = bounds.connect_timeout + bounds.read_timeout + bounds.min_rate_window
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            return await session.get(wire_url(url), headers=list(headers), allow_redirects=False)
    except TimeoutError:
        if deadline.expired():
            raise too_slow(bounds, f"no status and header fields within {limit:g} s") from None
        raise


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession, url: str, headers: Headers, bounds: UpstreamSettings
) -> AsyncIterator[UpstreamStream]:
    """GET ``url`` and yield once its status and fields are in, retrying connection errors (only, and only before
    any response) up to ``bounds.retries`` times; every failure, then or while the body is read, is an
    :class:`UpstreamError`."""
    attempt = 0
    host = telemetry.HOSTS(host_port(url)[0])
    while True:
        request_time = time.time()
        sent = time.perf_counter()
        try:
            resp = await _head(session, url, headers, bounds)
            break
        except Exception as exc:
            error = _failure(exc, bounds)
            if error is None:
                raise
            telemetry.UPSTREAM_ERRORS.labels(host, error.kind).inc()
            attempt += 1
            if error.kind != "connect" or attempt > bounds.retries:
                raise error from None
            await asyncio.sleep(backoff(attempt, bounds.retry_backoff))
    telemetry.UPSTREAM_SECONDS.labels(host).observe(time.perf_counter() - sent)
    if 100 <= resp.status < 200:
        # aiohttp skips interim responses but returns a 101: a protocol switch nobody asked for (grenier never
        # forwards Upgrade). It is no response to pass on, and its connection now carries something else: drop it.
        resp.close()
        telemetry.UPSTREAM_ERRORS.labels(host, "protocol").inc()
        raise UpstreamError("protocol", f"upstream answered {resp.status} instead of a final response")
    try:
        yield UpstreamStream(resp, request_time, time.time(), bounds)
    except Exception as exc:
        error = _failure(exc, bounds)
        if error is None:
            raise
        telemetry.UPSTREAM_ERRORS.labels(host, error.kind).inc()
        raise error from None
    finally:
        resp.release()


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: Headers, bounds: UpstreamSettings
) -> UpstreamResponse:
    """The whole response in memory (for small bodies and tests); see :func:`open_stream`."""
    async with open_stream(session, url, headers, bounds) as got:
        body = await got.read()
        return UpstreamResponse(got.status, got.headers, body, got.request_time, got.response_time)


class Upstream:
    """The guarded and the origin session, the target check and their closing, for one event loop.

    Build it on the loop that will use it (aiohttp sessions belong to one loop): the server builds one at start-up,
    each worker process one on its job loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.upstream
        self.guard = settings.guard
        self.origin = settings.upstream.origin
        self.guarded = new_session(self.settings, self.guard)
        """For client-chosen targets: every connection passes the SSRF guard."""
        self.trusted_session = new_session(self.settings, None)
        """For the operator's reverse-proxy origin, which is trusted."""

    def trusted(self, url: str) -> bool:
        """Is ``url`` on the operator's reverse-proxy origin (exempt from the SSRF guard)?"""
        return on_origin(url, self.origin)

    def session_for(self, url: str) -> aiohttp.ClientSession:
        return self.trusted_session if self.trusted(url) else self.guarded

    def check_spelling(self, url: str) -> None:
        """Refuse (:class:`~core.netguard.TargetRefused`) a client-chosen target whose host or port alone shows it
        is forbidden, before any lookup; literal addresses never reach the resolver, so they are judged here."""
        if not self.trusted(url):
            netguard.check_host(*host_port(url), self.guard)

    async def admit(self, url: str) -> None:
        """:meth:`check_spelling`, then resolve the host and judge every address it has (a 403 before any job is
        queued for a target the guard would refuse anyway)."""
        if not self.trusted(url):
            netguard.check_host(*host_port(url), self.guard)
            await netguard.resolve_and_check(*host_port(url), self.guard)

    def stream(self, url: str, headers: Headers) -> contextlib.AbstractAsyncContextManager[UpstreamStream]:
        """:func:`open_stream` through the right session, after the target check."""
        self.check_spelling(url)
        return open_stream(self.session_for(url), url, headers, self.settings)

    async def close(self) -> None:
        await self.guarded.close()
        await self.trusted_session.close()
