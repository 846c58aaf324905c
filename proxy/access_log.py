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

import functools
import logging
from time import gmtime, strftime
from time import time as wall_clock
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.logs import ACCESS_LOGGER, scrub
from core.settings import Settings

from .client_address import ProxyTrust

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


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook, writing grenier's lines (the class attributes are set by :func:`access_logger`)."""

    trust: ClassVar[ProxyTrust] = ProxyTrust()
    pseudonym: ClassVar[str] = "grenier"
    as_json: ClassVar[bool] = False

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = self.trust.client(request)
        cache, upstream = cache_fields(response.headers.get("Cache-Status"), self.pseudonym)
        job = request.get(JOB_ID_KEY)
        if job is None and isinstance(request, web.Request):
            job = request.match_info.get("job_id")
        target = scrub(request.raw_path)
        referer = request.headers.get("Referer")
        agent = request.headers.get("User-Agent")
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        if self.as_json:
            fields = {
                "client": str(client) if client is not None else None,
                "method": request.method,
                "target": target,
                "version": version,
                "status": response.status,
                "bytes": response.body_length,
                "duration": round(time, 3),
                "cache": cache,
                "upstream_status": int(upstream) if upstream.isdigit() else None,
                "job": job,
                "referer": scrub(referer) if referer else None,
                "user_agent": agent,
            }
            self.logger.info("%s %s %d", request.method, target, response.status, extra={"fields": fields})
            return
        self.logger.info(
            '%s - - [%s] "%s %s %s" %d %d "%s" "%s" cache=%s upstream=%s duration=%.3f job=%s',
            client if client is not None else "-",
            _Clock.stamp(wall_clock()),
            request.method,
            _quoted(target),
            version,
            response.status,
            response.body_length,
            _quoted(scrub(referer)) if referer else "-",
            _quoted(agent) if agent else "-",
            cache,
            upstream,
            time,
            job or "-",
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
