"""The access log: one line per request, written by aiohttp's request handler once the response is sent.

``log.format = "combined"`` writes the combined log format (what nginx and Apache write, so existing parsers read
it) followed by grenier's own fields::

    203.0.113.7 - - [30/Nov/2026:23:50:01 +0000] "GET /fetch?url=http://a.example/ HTTP/1.1" 200 512 "-" "curl/8"
        cache=uri-miss upstream=200 duration=0.0123 job=6f1c...

(one line); ``"json"`` writes the same as one JSON object. The bytes are those written on the connection for the
response, its head included (nginx's ``$bytes_sent``: aiohttp counts them anyway, so they cost nothing). ``cache``
is what the cache did, read from the response's own ``Cache-Status`` (``hit``, ``stale-hit`` when served stale, or
the ``fwd`` reason: ``uri-miss``, ``stale``, ``bypass``...), ``upstream`` the status the origin answered
(``fwd-status``), ``job`` the fetch job the request started, joined or polled. The client is the address after
``server.trusted_proxies`` (:mod:`proxy.client_address`). Credentials in the request target or the Referer
(``user:password@``, raw or percent-encoded) are masked.

With ``log.access = false`` aiohttp is given no access logger at all, so a request costs nothing here; with it on, a
line is one string built per request, its timestamp formatted once per second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from time import gmtime, strftime
from time import time as wall_clock
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.logs import ACCESS_LOGGER, scrub
from core.settings import Settings

from .client_address import Address, ProxyTrust, parse_address

#: Where a request that starts or joins a fetch job keeps its id, for its line.
JOB_ID_KEY = web.RequestKey("grenier_job_id", str)


@functools.lru_cache(maxsize=1024)
def cache_fields(cache_status: str | None, name: str) -> tuple[str, str]:
    """What grenier's member of a ``Cache-Status`` value says: (what the cache did, the upstream's status), ``-``
    for what it does not say. grenier's member is the last one naming it (RFC 9211 §2: each cache appends)."""
    if not cache_status:
        return "-", "-"
    member = ""
    for candidate in cache_status.split(","):
        if candidate.strip().split(";", 1)[0] == name:
            member = candidate
    params = dict(p.strip().partition("=")[::2] for p in member.split(";")[1:])
    upstream = params.get("fwd-status") or "-"
    if "hit" in params:
        return ("stale-hit" if params.get("ttl", "0").startswith("-") else "hit"), upstream
    return (params.get("fwd", "").strip('"') or "-"), upstream


def _quoted(value: str) -> str:
    """A client-written value made safe inside the line's double quotes (no quote, backslash or control byte)."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in value)


class _Clock:
    """``[day/Mon/year:H:M:S +0000]``, formatted once per second."""

    second = -1
    text = ""

    @classmethod
    def stamp(cls, now: float) -> str:
        second = int(now)
        if second != cls.second:
            cls.text = strftime("%d/%b/%Y:%H:%M:%S +0000", gmtime(second))
            cls.second = second
        return cls.text


def emit(
    logger: logging.Logger,
    as_json: bool,
    *,
    client: Address | None,
    method: str,
    target: str,
    version: str,
    status: int,
    sent: int,
    seconds: float,
    referer: str | None,
    agent: str | None,
    cache: str,
    upstream: str,
    job: str | None,
) -> None:
    """Write one access line (``target`` and ``referer`` as received: they are scrubbed here)."""
    target = scrub(target)
    referer = scrub(referer) if referer else None
    if as_json:
        fields = {
            "client": str(client) if client is not None else None,
            "method": method,
            "target": target,
            "version": version,
            "status": status,
            "bytes": sent,
            "duration": round(seconds, 3),
            "cache": cache,
            "upstream_status": int(upstream) if upstream.isdigit() else None,
            "job": job,
            "referer": referer,
            "user_agent": agent,
        }
        logger.info("%s %s %d", method, target, status, extra={"fields": fields})
        return
    logger.info(
        '%s - - [%s] "%s %s %s" %d %d "%s" "%s" cache=%s upstream=%s duration=%.3f job=%s',
        client if client is not None else "-",
        _Clock.stamp(wall_clock()),
        method,
        _quoted(target),
        version,
        status,
        sent,
        _quoted(referer) if referer else "-",
        _quoted(agent) if agent else "-",
        cache,
        upstream,
        seconds,
        job or "-",
    )


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook, writing grenier's lines (the class attributes are set by :func:`access_logger`)."""

    trust: ClassVar[ProxyTrust] = ProxyTrust()
    pseudonym: ClassVar[str] = "grenier"
    as_json: ClassVar[bool] = False

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        cache, upstream = cache_fields(response.headers.get("Cache-Status"), self.pseudonym)
        job = request.get(JOB_ID_KEY)
        if job is None and isinstance(request, web.Request):
            job = request.match_info.get("job_id")
        emit(
            self.logger,
            self.as_json,
            client=self.trust.client(request),
            method=request.method,
            target=request.raw_path,
            version=f"HTTP/{request.version.major}.{request.version.minor}",
            status=response.status,
            sent=response.body_length,
            seconds=time,
            referer=request.headers.get("Referer"),
            agent=request.headers.get("User-Agent"),
            cache=cache,
            upstream=upstream,
            job=job,
        )


class LeanAccessLog:
    """The access lines of hits the lean path answers (``proxy/lean.py``) without aiohttp, so without its hook: the
    same line, read from the request head's bytes and the answer's."""

    def __init__(self, logger: logging.Logger, as_json: bool) -> None:
        self.logger = logger
        self.as_json = as_json

    @classmethod
    def build(cls, settings: Settings) -> LeanAccessLog | None:
        """``None`` when ``log.access`` is off: the lean path then does nothing more per hit."""
        return cls(logging.getLogger(ACCESS_LOGGER), settings.log.format == "json") if settings.log.access else None

    def hit(self, transport: asyncio.BaseTransport, head: bytes, answer: list[bytes], seconds: float) -> None:
        """A hit answered from ``head`` (``GET <target> HTTP/1.1`` and harmless fields) with ``answer``'s bytes.

        The client is the socket's peer: a request naming forwarding fields never takes the lean path."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        lines = head.split(b"\r\n")
        referer = agent = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lower = name.lower()
            if lower == b"referer":
                referer = value.strip(b" \t").decode("latin-1")
            elif lower == b"user-agent":
                agent = value.strip(b" \t").decode("latin-1")
        peer = transport.get_extra_info("peername")
        emit(
            self.logger,
            self.as_json,
            client=parse_address(str(peer[0])) if peer else None,
            method="GET",
            target=lines[0][4:-9].decode("latin-1"),
            version="HTTP/1.1",
            status=int(answer[0][9:12]),
            sent=sum(len(piece) for piece in answer),
            seconds=seconds,
            referer=referer,
            agent=agent,
            cache="hit",
            upstream="-",
            job=None,
        )


def access_logger(settings: Settings, trust: ProxyTrust) -> dict[str, object]:
    """The runner's keyword arguments for the access log: none at all when ``log.access`` is off."""
    if not settings.log.access:
        return {"access_log": None}
    cls = type(
        "GrenierAccessLogger",
        (AccessLogger,),
        {"trust": trust, "pseudonym": settings.server.pseudonym, "as_json": settings.log.format == "json"},
    )
    return {"access_log": logging.getLogger(ACCESS_LOGGER), "access_log_class": cls}
