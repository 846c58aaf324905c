"""HTTP caching rules (RFC 9111) as pure functions over plain data.

Nothing here does I/O or reads the clock: callers pass ``now`` (epoch seconds), so tests state exact numbers. The
handlers, the store and the fetch actor only carry out what these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from werkzeug.http import parse_date, parse_list_header, unquote_header_value

Headers = tuple[tuple[str, str], ...]
"""Header fields in arrival order, names as received; lookups are case-insensitive."""

#: RFC 9111 §1.2.2: delta-seconds that overflow are taken as 2^31.
DELTA_MAX = 2**31

#: RFC 9110 §15.1: codes that are heuristically cacheable (may be stored without explicit freshness).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

#: RFC 9110 §7.6.1: fields that concern one connection only and are never stored or forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


def values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of field ``name``, in order."""
    lname = name.lower()
    return [v for k, v in headers if k.lower() == lname]


def first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    found = values(headers, name)
    return found[0] if found else None


def _delta_seconds(raw: str | None) -> int | None:
    """RFC 9111 §1.2.2: a non-negative integer; anything else is invalid (``None``)."""
    if raw is None or not raw.isdigit():
        return None
    return min(int(raw), DELTA_MAX)


@dataclass(frozen=True)
class CacheControl:
    """Cache-Control directives (RFC 9111 §5.2), parsed once; ``None``/``False`` mean absent.

    A directive that appears twice keeps its first value (§4.2.1). A delta-seconds directive whose argument is not
    a valid number is kept as ``0``: the most restrictive reading, which makes a response stale rather than fresh
    for longer than its origin meant.
    """

    max_age: int | None = None
    s_maxage: int | None = None
    no_cache: bool = False
    no_cache_fields: tuple[str, ...] = ()
    no_store: bool = False
    private: bool = False
    private_fields: tuple[str, ...] = ()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    max_stale: int | None = None
    max_stale_any: bool = False
    min_fresh: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None

    @classmethod
    def parse(cls, raw_values: Iterable[str]) -> CacheControl:
        seen: dict[str, str | None] = {}
        for raw in raw_values:
            for item in parse_list_header(raw):
                name, sep, arg = item.partition("=")
                key = name.strip().lower()
                if not key or key in seen:
                    continue
                seen[key] = unquote_header_value(arg.strip()) if sep else None

        def delta(key: str) -> int | None:
            if key not in seen:
                return None
            parsed = _delta_seconds(seen[key])
            return 0 if parsed is None else parsed

        def field_names(key: str) -> tuple[str, ...]:
            arg = seen.get(key)
            return tuple(n.strip().lower() for n in arg.split(",") if n.strip()) if arg else ()

        max_stale_arg = seen.get("max-stale")
        return cls(
            max_age=delta("max-age"),
            s_maxage=delta("s-maxage"),
            no_cache="no-cache" in seen,
            no_cache_fields=field_names("no-cache"),
            no_store="no-store" in seen,
            private="private" in seen,
            private_fields=field_names("private"),
            public="public" in seen,
            must_revalidate="must-revalidate" in seen,
            proxy_revalidate="proxy-revalidate" in seen,
            must_understand="must-understand" in seen,
            immutable="immutable" in seen,
            no_transform="no-transform" in seen,
            only_if_cached="only-if-cached" in seen,
            max_stale=_delta_seconds(max_stale_arg) if max_stale_arg is not None else None,
            max_stale_any="max-stale" in seen and max_stale_arg is None,
            min_fresh=delta("min-fresh"),
            stale_while_revalidate=delta("stale-while-revalidate"),
            stale_if_error=delta("stale-if-error"),
        )

    @classmethod
    def of(cls, headers: Iterable[tuple[str, str]]) -> CacheControl:
        return cls.parse(values(headers, "cache-control"))


def http_date(raw: str | None) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7, all three historic forms) as epoch seconds, or ``None`` when invalid."""
    if raw is None:
        return None
    parsed = parse_date(raw)
    return parsed.timestamp() if parsed is not None else None


@dataclass(frozen=True)
class Limits:
    """Operator settings the rules depend on."""

    default_ttl: float = 30.0
    max_ttl: float = 86400.0


# --- storing (RFC 9111 §3) -----------------------------------------------------------------------------------


def not_storable_reason(method: str, status: int, request_headers: Headers, response_headers: Headers) -> str | None:
    """Why a response must not be stored by a shared cache, or ``None`` when it may be (§3)."""
    if method not in {"GET", "HEAD"}:
        return f"method {method} is not cacheable"
    if status < 200 or status == 206:
        return f"status {status} is not a complete final response"
    req = CacheControl.of(request_headers)
    resp = CacheControl.of(response_headers)
    if req.no_store:
        return "request said no-store"
    if resp.no_store:
        return "response said no-store"
    if resp.private and not resp.private_fields:
        return "response is private"
    if values(request_headers, "authorization") and not (
        resp.public or resp.s_maxage is not None or resp.must_revalidate
    ):
        return "request carried Authorization and the response did not allow sharing"
    if explicit_lifetime(response_headers) is None and status not in HEURISTIC_STATUSES:
        return f"status {status} has no explicit freshness and is not heuristically cacheable"
    return None


# --- freshness and age (RFC 9111 §4.2) ------------------------------------------------------------------------


def explicit_lifetime(headers: Headers) -> float | None:
    """§4.2.1 for a shared cache: s-maxage, then max-age, then Expires minus Date; ``None`` when none is given."""
    cc = CacheControl.of(headers)
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    expires_values = values(headers, "expires")
    if expires_values:
        expires = http_date(expires_values[0])
        if expires is None:
            return 0.0  # §5.3: an invalid Expires (e.g. "0") means already expired
        date = http_date(first(headers, "date"))
        if date is None:
            return None
        return max(0.0, expires - date)
    return None


def freshness_lifetime(headers: Headers, limits: Limits) -> float:
    """How long a stored response stays fresh: explicit when given, else the operator's default; capped."""
    lifetime = explicit_lifetime(headers)
    if lifetime is None:
        lifetime = limits.default_ttl
    return min(lifetime, limits.max_ttl)


def current_age(headers: Headers, request_time: float, response_time: float, now: float) -> float:
    """§4.2.3: apparent age, upstream Age and the response delay, plus time resident here."""
    date = http_date(first(headers, "date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    age_value = _delta_seconds((first(headers, "age") or "").strip()) or 0
    response_delay = max(0.0, response_time - request_time)
    corrected_initial_age = max(apparent_age, age_value + response_delay)
    return corrected_initial_age + max(0.0, now - response_time)


# --- using a stored response (RFC 9111 §4) -------------------------------------------------------------------

Fwd = Literal["uri-miss", "vary-miss", "miss", "request", "stale", "method", "bypass"]


@dataclass(frozen=True)
class Hit:
    age: int
    ttl: int


@dataclass(frozen=True)
class Forward:
    """The stored response (if any) cannot be used; the request goes upstream. ``fwd`` feeds Cache-Status."""

    fwd: Fwd
    detail: str | None = None


Decision = Hit | Forward


@dataclass(frozen=True)
class StoredTimes:
    """What the freshness rules need to know about a stored response."""

    headers: Headers
    request_time: float
    response_time: float
    lifetime: float


def forces_refresh(request_headers: Headers) -> bool:
    """§5.2.1.4/§5.2.1.1: ``no-cache`` or ``max-age=0`` (or HTTP/1.0 ``Pragma: no-cache``) on the request."""
    cc = CacheControl.of(request_headers)
    if cc.no_cache or cc.max_age == 0:
        return True
    if not values(request_headers, "cache-control"):
        return any("no-cache" in v.lower() for v in values(request_headers, "pragma"))
    return False


def decide(request_headers: Headers, stored: StoredTimes | None, now: float) -> Decision:
    """Serve the stored response, or forward and say why."""
    if forces_refresh(request_headers):
        return Forward("request")
    if stored is None:
        return Forward("uri-miss")
    age = current_age(stored.headers, stored.request_time, stored.response_time, now)
    ttl = stored.lifetime - age
    req = CacheControl.of(request_headers)
    if ttl <= 0:
        return Forward("stale")
    if CacheControl.of(stored.headers).no_cache and not CacheControl.of(stored.headers).no_cache_fields:
        return Forward("stale", "response requires validation on every use")
    if req.max_age is not None and age > req.max_age:
        return Forward("request", "older than the request's max-age")
    if req.min_fresh is not None and ttl < req.min_fresh:
        return Forward("request", "fresh for less than the request's min-fresh")
    return Hit(age=int(age), ttl=int(ttl))


def storable_headers(headers: Sequence[tuple[str, str]]) -> Headers:
    """Drop hop-by-hop fields, including those that ``Connection`` names (RFC 9110 §7.6.1)."""
    named = {n.strip().lower() for v in values(headers, "connection") for n in v.split(",")}
    drop = HOP_BY_HOP | named
    return tuple((k, v) for k, v in headers if k.lower() not in drop)
