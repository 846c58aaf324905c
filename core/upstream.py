"""Fetch one URL upstream with aiohttp's client: timeouts, a body cap and bounded retries on connection errors.

An HTTP error status is a response like any other (it is returned, never retried); only failures to get a response
at all are retried, a few times, quickly, because a client is polling for the outcome.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from . import netguard
from .netguard import Guard
from .policy import Headers

USER_AGENT = "grenier/0.1"

ErrorKind = Literal["timeout", "connect", "too_large", "protocol", "refused"]


class UpstreamError(Exception):
    """The upstream gave no usable response; ``kind`` maps to 504 (timeout) or 502 (anything else)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 5.0
    total_timeout: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    retries: int = 2
    retry_backoff: float = 0.2
    read_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_connections_per_origin: int = 16


def backoff(attempt: int, base: float, cap: float = 5.0) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base`` doubling each time, at most ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def new_session(limits: FetchLimits, guard: Guard | None) -> aiohttp.ClientSession:
    """An upstream session: responses kept as sent (no decompression, no redirects, no cookie jar).

    With a ``guard`` every connection goes through the SSRF guard's resolver (client-chosen targets); without one
    it is for the operator's own reverse-proxy origin.
    """
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout
    )
    if guard is not None:
        connector = netguard.connector(guard, limit_per_host=limits.max_connections_per_origin)
    else:
        connector = aiohttp.TCPConnector(limit_per_host=limits.max_connections_per_origin)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        headers={"User-Agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        max_line_size=limits.max_header_bytes,
        max_field_size=limits.max_header_bytes,
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


async def fetch_once(session: aiohttp.ClientSession, url: str, headers: Headers, limits: FetchLimits) -> Fetched:
    request_time = time.time()
    try:
        async with session.get(url, headers=list(headers), allow_redirects=False) as resp:
            response_time = time.time()
            body = await _read_capped(resp, limits.max_body_bytes)
            fields = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers)
            return Fetched(resp.status, fields, body, request_time, response_time)
    except TimeoutError:
        raise UpstreamError("timeout", f"upstream did not answer within {limits.total_timeout:g} s") from None
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


async def fetch(session: aiohttp.ClientSession, url: str, headers: Headers, limits: FetchLimits) -> Fetched:
    """``fetch_once`` with up to ``limits.retries`` retries after connection errors only."""
    attempt = 0
    while True:
        try:
            return await fetch_once(session, url, headers, limits)
        except UpstreamError as exc:
            attempt += 1
            if exc.kind != "connect" or attempt > limits.retries:
                raise
            await asyncio.sleep(backoff(attempt, limits.retry_backoff))
