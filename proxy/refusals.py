"""The one place refusals become responses: :class:`~core.problems.Problem` errors, aiohttp's own HTTP errors and
anything unexpected all leave as ``application/problem+json`` (RFC 9457), and no traceback ever reaches a client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from core.problems import PROBLEM_TYPE, Problem, problem_body

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


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal leaves as ``application/problem+json``; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except Problem as exc:
        response = from_problem(exc)
        if exc.status == 413:  # the unread body makes the connection useless: close it after the answer
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            detail = f"nothing here: {request.path!r} is not a grenier endpoint"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path!r}"
        else:
            detail = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(exc.status, exc.reason, detail, headers=headers or None)
    except asyncio.CancelledError:
        raise
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return problem_response(500, "Internal Server Error", f"an internal error occurred (incident {incident})")
