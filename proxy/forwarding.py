"""Which header fields cross the proxy, in each direction (RFC 9110 §7.6)."""

from __future__ import annotations

from collections.abc import Iterable

from .policy import HOP_BY_HOP, Headers, values

VIA = "1.1 grenier"

#: Request fields a fetch job does not send upstream: the connection's own, grenier's controls, and the client's
#: conditionals and ranges (the job fetches a whole response to store; the proxy answers those itself).
_JOB_DROPPED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "prefer",
        "cache-control",
        "pragma",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    }
)


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {n.strip().lower() for v in values(headers, "connection") for n in v.split(",") if n.strip()}


def end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """The fields that are not hop-by-hop (nor named by ``Connection``)."""
    headers = tuple(headers)
    drop = HOP_BY_HOP | _connection_named(headers)
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


def for_job(headers: Iterable[tuple[str, str]]) -> Headers:
    """The client's fields a fetch job forwards (they also select a Vary variant)."""
    return tuple((k, v) for k, v in end_to_end(headers) if k.lower() not in _JOB_DROPPED)


def for_passthrough(headers: Iterable[tuple[str, str]]) -> Headers:
    """The client's fields relayed with a request that goes straight upstream, plus our ``Via``."""
    kept = tuple((k, v) for k, v in end_to_end(headers) if k.lower() not in {"host", "content-length"})
    return (*kept, ("Via", VIA))


def with_via(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response fields with grenier appended to ``Via`` (RFC 9110 §7.6.3)."""
    return [*headers, ("Via", VIA)]
