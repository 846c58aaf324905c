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
import time
from dataclasses import dataclass

import aiohttp

from . import netguard
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


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    if resp.content_length is not None and resp.content_length > cap:
        raise UpstreamError("too_large", f"upstream body is {resp.content_length} bytes, over the {cap}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise UpstreamError("too_large", f"upstream body is over the {cap}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_once(
    session: aiohttp.ClientSession, url: str, headers: Headers, bounds: UpstreamSettings
) -> UpstreamResponse:
    request_time = time.time()
    try:
        async with session.get(url, headers=list(headers), allow_redirects=False) as resp:
            response_time = time.time()
            body = await _read_capped(resp, bounds.max_body_bytes)
            fields = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers)
            return UpstreamResponse(resp.status, fields, body, request_time, response_time)
    except TimeoutError:
        raise UpstreamError("timeout", f"upstream did not answer within {bounds.total_timeout:g} s") from None
    except netguard.TargetRefused as exc:
        raise UpstreamError("refused", exc.detail) from None
    except aiohttp.ClientConnectionError as exc:
        refusal = netguard.refusal_of(exc)
        if refusal is not None:
            raise UpstreamError("refused", refusal.detail) from None
        raise UpstreamError("connect", f"cannot reach upstream: {exc}") from None
    except aiohttp.ClientResponseError as exc:
        raise UpstreamError("protocol", f"upstream sent an invalid response: {exc.message}") from None
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamError("protocol", f"upstream body was cut short: {exc}") from None


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: Headers, bounds: UpstreamSettings
) -> UpstreamResponse:
    """``fetch_once`` with up to ``bounds.retries`` retries after connection errors only."""
    attempt = 0
    while True:
        try:
            return await fetch_once(session, url, headers, bounds)
        except UpstreamError as exc:
            attempt += 1
            if exc.kind != "connect" or attempt > bounds.retries:
                raise
            await asyncio.sleep(backoff(attempt, bounds.retry_backoff))


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

    async def fetch(self, url: str, headers: Headers) -> UpstreamResponse:
        """GET ``url`` with ``headers`` through the right session, with retries after connection errors."""
        self.check_spelling(url)
        return await fetch(self.session_for(url), url, headers, self.settings)

    async def close(self) -> None:
        await self.guarded.close()
        await self.trusted_session.close()
