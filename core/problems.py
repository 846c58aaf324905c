"""Rooted errors with a status hint, and the RFC 9457 document they become (rendered by ``proxy.refusals``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """A refusal the client should see: status, a short title and a ``detail`` that says what was wrong."""

    status = 400
    title = "Bad Request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.headers: Mapping[str, str] = dict(headers or {})
        """Fields the refusal carries (``Retry-After``, ``Allow``, an authentication challenge)."""
        self.extra = extra


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
    """A dependency (store, queue) is down or overloaded: always says when to come back."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **extra)


def problem_body(status: int, title: str, detail: str, instance: str | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        doc["instance"] = instance
    doc.update(extra)
    return json.dumps(doc).encode()
