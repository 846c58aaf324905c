"""Rooted errors with a status hint, and the one place that turns them into RFC 9457 problem responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """A refusal the client should see: status, a short title and a ``detail`` that says what was wrong."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, status: int | None = None, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.extra = extra
        self.headers: dict[str, str] = {}


class BadTarget(Problem):
    """The target URL is missing, relative, of a foreign scheme or otherwise unusable."""

    title = "Bad target URL"


class TargetTooLong(Problem):
    status = 414
    title = "URI Too Long"


class NotFound(Problem):
    status = 404
    title = "Not Found"


class MethodNotAllowed(Problem):
    status = 405
    title = "Method Not Allowed"


class Unavailable(Problem):
    status = 503
    title = "Service Unavailable"


def problem_body(status: int, title: str, detail: str, instance: str | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        doc["instance"] = instance
    doc.update(extra)
    return json.dumps(doc).encode()


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
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
