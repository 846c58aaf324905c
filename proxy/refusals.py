"""The one place refusals become responses: :class:`~core.problems.Problem` errors, aiohttp's own HTTP errors and
anything unexpected all leave as ``application/problem+json`` (RFC 9457), and no traceback ever reaches a client."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import telemetry
from core.problems import PROBLEM_TYPE, Problem, Unavailable, problem_body

log = logging.getLogger("grenier")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.Response(
        status=status,
        body=problem_body(status, title, detail, instance, **extra),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def from_problem(exc: Problem, instance: str | None = None) -> web.Response:
    return problem_response(
        exc.status, exc.title, exc.detail, instance=instance, headers=exc.headers or None, **exc.extra
    )


class ResponseCutShort(ConnectionResetError):
    """A response failed after its first bytes were sent: the only honest end is to close the connection.

    Anything written after a partial body would be read by the client as the rest of that body, or as the answer
    to its next request (a desynchronised stream). As a ``ConnectionError`` it makes aiohttp drop the connection
    without writing anything more."""


def _started(request: web.Request) -> bool:
    """Whether any byte of a response has been written on this request's connection."""
    return request.writer.output_size > 0


def _cut(request: web.Request, exc: BaseException) -> ResponseCutShort:
    """Close the connection once what was already written is flushed; the error to end the handler with."""
    transport = request.transport
    if transport is not None:
        transport.close()
    if isinstance(exc, ResponseCutShort):  # its raiser said why, with what it knew
        return exc
    log.error("response to %s %s failed once started, connection closed", request.method, request.path, exc_info=exc)
    return ResponseCutShort(str(exc))


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal leaves as ``application/problem+json``; no traceback ever reaches a client. A failure after a
    response has started cannot be answered at all: the connection is closed (:class:`ResponseCutShort`)."""
    try:
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if _started(request):
            raise _cut(request, exc) from exc
        return _refusal(request, exc)


def _refusal(request: web.Request, exc: Exception) -> web.Response:
    """The problem document for an error raised before any byte of a response was written."""
    if isinstance(exc, Problem):
        response = from_problem(exc)
        # An unread body (408, 413) or an unknown protocol version (505) leaves the connection useless: close it.
        if exc.status in {408, 413, 505}:
            response.force_close()
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        if exc.status == 404:
            detail = f"nothing here: {request.path!r} is not a grenier endpoint"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path!r}"
        else:
            detail = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(exc.status, exc.reason, detail, headers=headers or None)
    if isinstance(exc, RedisError):
        # A dependency that is down is not a bug: say so, briefly, and tell the client when to come back. An outage
        # (no connection, a timeout) is logged once per change by the store's breaker (core/breaker.py), not here
        # per request; any other store error is news.
        outage = isinstance(exc, RedisConnectionError | RedisTimeoutError)
        log.log(
            logging.DEBUG if outage else logging.WARNING,
            "store unavailable on %s %s: %s",
            request.method,
            request.path,
            exc,
        )
        telemetry.REDIS_ERRORS.labels("server").inc()
        return from_problem(Unavailable(f"the cache store is unreachable ({type(exc).__name__}); retry shortly"))
    if _inside_redis_client(exc):
        # redis-py's cluster client can fail with a plain AttributeError or RuntimeError on a connection closed
        # under a command while a node fails over: the store is what failed, and the client is told to come back.
        log.warning("store client failed on %s %s", request.method, request.path, exc_info=exc)
        telemetry.REDIS_ERRORS.labels("server").inc()
        return from_problem(Unavailable(f"the cache store failed ({type(exc).__name__}); retry shortly"))
    incident = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", incident, request.method, request.path, exc_info=exc)
    return problem_response(500, "Internal Server Error", f"an internal error occurred (incident {incident})")


_REDIS_PACKAGE = f"{os.sep}redis{os.sep}"


def _inside_redis_client(exc: BaseException) -> bool:
    """Did ``exc`` come out of redis-py (any frame of its traceback in the ``redis`` package), rather than from
    grenier's own code? redis-py calls nothing of grenier's, so an exception that passed through it is the store
    client's: seen as an ``AttributeError`` from redis-py itself, or a ``RuntimeError`` from the event loop's closed
    transport under it, on a cluster connection closed under a command."""
    tb = exc.__traceback__
    while tb is not None:
        if _REDIS_PACKAGE in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False
