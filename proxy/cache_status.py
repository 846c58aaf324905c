"""The ``Cache-Status`` response field (RFC 9211), serialised as the structured-field list it is."""

from __future__ import annotations

import functools
from typing import Any

import http_sf
from http_sf import Token


@functools.lru_cache(maxsize=4096)
def cache_status(
    name: str,
    *,
    hit: bool = False,
    fwd: str | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    """One list member naming this cache (``server.pseudonym``) with the parameters that explain the answer (§2)."""
    params: dict[str, Any] = {}
    if hit:
        params["hit"] = True
    if fwd:
        params["fwd"] = Token(fwd)
    if fwd_status is not None:
        params["fwd-status"] = fwd_status
    if ttl is not None:
        params["ttl"] = int(ttl)
    if stored:
        params["stored"] = True
    if collapsed:
        params["collapsed"] = True
    if detail:
        params["detail"] = detail
    return str(http_sf.ser([(Token(name), params)]))
