"""Talking HTTP to grenier, and what its answers must look like.

Two clients, one ``Reply``: aiohttp (``send``, ``get``, ``poll_job``...) for what an ordinary client does, and raw
sockets (``build``, ``exchange``, ``request``, ``raw_roundtrip``...) for the bytes only an attacker would send, read
with http.client's parser or not parsed at all. Both give a ``Reply`` with the same assertions: an RFC 9457 problem
(``assert_problem``), never a traceback in a body (``assert_no_traceback``), grenier's ``Cache-Status`` parsed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import http_sf
import pytest
from multidict import CIMultiDict, MultiMapping

PROBLEM = "application/problem+json"
JOB_LOCATION_PREFIX = "/_grenier/jobs/"
TRACEBACK_MARKS = (b"Traceback", b'File "')


@dataclass(frozen=True)
class Reply:
    """One response: status, fields (caseless names), body bytes."""

    status: int
    headers: MultiMapping[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str:
        """The field's (first) value, or ``""`` when it is absent."""
        return self.headers.get(name) or ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def cache_status(self) -> dict[str, Any]:
        """The parameters of grenier's member of ``Cache-Status`` (RFC 9211), parsed as a structured field."""
        raw = self.headers.get("Cache-Status")
        assert raw is not None, f"no Cache-Status on a {self.status} reply"
        members: Any = http_sf.parse(raw.encode(), tltype="list")
        assert len(members) == 1, raw
        name, params = members[0]
        assert str(name) == "grenier", raw
        return {k: (str(v) if isinstance(v, http_sf.Token) else v) for k, v in params.items()}

    @property
    def location(self) -> str:
        """The job a ``202`` points at, as a path on grenier (its ``Location`` is absolute and names grenier)."""
        loc = self.headers.get("Location", "")
        parts = urlsplit(loc)
        assert parts.scheme == "http", f"Location {loc!r} is not absolute"
        assert parts.netloc, f"Location {loc!r} names no host"
        assert parts.path.startswith(JOB_LOCATION_PREFIX), f"Location {loc!r}"
        return parts.path

    def problem(self, status: int | set[int], *words: str) -> dict[str, Any]:
        """``assert_problem(self, status, *words)``."""
        return assert_problem(self, status, *words)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {dict(self.headers.items())!r}, {self.body[:300]!r})"


# -- assertions ------------------------------------------------------------------------------------------------------


def assert_no_traceback(body: bytes) -> None:
    for mark in TRACEBACK_MARKS:
        assert mark not in body, f"traceback text in a response body: {body[:500]!r}"


def assert_problem(reply: Reply, status: int | set[int], *words: str) -> dict[str, Any]:
    """``reply`` is an RFC 9457 ``application/problem+json`` document with ``status`` (one of them, for a set) and a
    non-empty detail that mentions every one of ``words`` (caseless), and no traceback. Returns the document."""
    statuses = {status} if isinstance(status, int) else status
    assert reply.status in statuses, reply
    assert reply.header("Content-Type").startswith(PROBLEM), reply
    assert_no_traceback(reply.body)
    doc: dict[str, Any] = reply.json()
    assert doc["status"] == reply.status, doc
    detail = doc.get("detail")
    assert isinstance(detail, str), doc
    assert detail, doc
    for word in words:
        assert word.lower() in detail.lower(), f"detail {detail!r} does not name {word!r}"
    return doc


# -- targets ---------------------------------------------------------------------------------------------------------


def fetch_target(url: str) -> str:
    """``/fetch?url=`` for ``url``, percent-encoded."""
    return "/fetch?url=" + quote(url, safe="")


def fetch_url(base: str, target: str) -> str:
    """The absolute URL of ``/fetch?url=<target>`` on the grenier at ``base``."""
    return base + fetch_target(target)


# -- an ordinary client (aiohttp) ----------------------------------------------------------------------------------


async def send(
    session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, str] | None = None, **kw: Any
) -> Reply:
    """One request, redirects not followed; ``kw`` goes to aiohttp (``proxy=``, ``data=``...)."""
    async with session.request(method, url, headers=headers, allow_redirects=False, **kw) as resp:
        return Reply(resp.status, resp.headers, await resp.read())


async def get(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Reply:
    return await send(session, "GET", url, headers, **kw)


async def poll_job(session: aiohttp.ClientSession, base: str, location: str, timeout: float = 20.0) -> Reply:
    """Poll a job until it answers something other than 202; every 202 on the way must be a proper status."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await get(session, base + location)
        if reply.status != 202:
            return reply
        assert reply.headers["Retry-After"] == "1"
        doc = reply.json()
        assert doc["state"] in {"queued", "running"}, doc
        if time.monotonic() > deadline:
            pytest.fail(f"job {location} still {doc['state']} after {timeout} s")
        await asyncio.sleep(0.05)


async def miss_then_done(session: aiohttp.ClientSession, base: str, target: str, timeout: float = 20.0) -> Reply:
    """Request ``target`` through ``/fetch`` (expecting a miss) and return the job's final answer."""
    first = await get(session, fetch_url(base, target))
    assert first.status == 202, (first.status, first.body[:300])
    return await poll_job(session, base, first.location, timeout)


# -- a raw HTTP/1.1 client (sockets) -------------------------------------------------------------------------------


def build(
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    host: str | None = "",
    close: bool = True,
) -> bytes:
    """A request's bytes. ``host=""`` derives Host from an absolute target; ``None`` sends no Host field."""
    raw_target = target if isinstance(target, bytes) else target.encode("utf-8", "surrogateescape")
    lines = [method.encode("latin-1", "replace") + b" " + raw_target + b" HTTP/1.1"]
    headers = list(headers)
    names = {k.lower() for k, _ in headers}
    if host == "" and "host" not in names:
        text = raw_target.decode("latin-1")
        host = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else "127.0.0.1"
    if host:
        lines.append(b"Host: " + host.encode("utf-8", "replace"))
    lines += [k.encode("latin-1", "replace") + b": " + v.encode("utf-8", "replace") for k, v in headers]
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def exchange(port: int, data: bytes, method: str = "GET", timeout: float = 30.0) -> Reply:
    """Send ``data`` to 127.0.0.1:``port`` and read one response with http.client's parser."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        body = resp.read()
        return Reply(resp.status, CIMultiDict(resp.headers.items()), body)


def request(
    port: int,
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    host: str | None = "",
    timeout: float = 30.0,
) -> Reply:
    """``build`` a request and ``exchange`` it."""
    return exchange(port, build(method, target, headers, body, host=host), method=method, timeout=timeout)


def raw_roundtrip(port: int, data: bytes, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``; read until the server closes or ``wait`` seconds pass. Returns (bytes, closed)."""
    received = b""
    deadline = time.monotonic() + wait
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
    return received, False


def parse_raw(data: bytes) -> Reply:
    """The first response in ``data`` (status line, fields, the rest as body up to its Content-Length)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith(b"HTTP/") else 0
    fields: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields.add(name.strip(), value.strip())
    length = fields.get("Content-Length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    return Reply(status, fields, body)
