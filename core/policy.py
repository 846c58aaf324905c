"""HTTP caching rules (RFC 9111, RFC 5861) as pure functions over plain data.

Nothing here does I/O or reads the clock: callers pass ``now`` (epoch seconds), so tests state exact numbers. The
handlers, the store and the fetch actor only carry out what these functions decide. Section numbers refer to
RFC 9111 unless another RFC is named.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

import http_sf
from werkzeug.http import parse_list_header, unquote_header_value

from .settings import CacheSettings

Headers = tuple[tuple[str, str], ...]
"""Header fields in arrival order, names as received; lookups are case-insensitive."""

#: §1.2.2: delta-seconds that overflow are taken as 2^31.
DELTA_MAX = 2**31

#: RFC 9110 §15.1: codes that are heuristically cacheable (may be stored without explicit freshness).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

#: Status codes whose semantics grenier implements, for ``must-understand`` (§5.2.2.3).
UNDERSTOOD_STATUSES = frozenset(
    {200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 451, 500, 501, 502, 503, 504}
)

#: RFC 9110 §9.2.1: methods that do not change the target; any other one invalidates (§4.4).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

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

#: §3.2 / §4.3.4: fields a 304 must not overwrite in the stored response (they describe its stored body).
_NOT_UPDATED = frozenset({"content-length", "content-encoding", "content-range", "content-type"})

#: Request fields whose values compare case-insensitively when matching Vary (§4.1 allows normalising them).
_CASELESS_VALUES = frozenset({"accept", "accept-encoding", "accept-language", "accept-charset"})

#: RFC 9110 §15.4.5: fields a 304 carries when the 200 would have.
_NOT_MODIFIED_FIELDS = ("cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified")


def values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of field ``name``, in order."""
    lname = name.lower()
    return [v for k, v in headers if k.lower() == lname]


def first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    found = values(headers, name)
    return found[0] if found else None


def bounded_digits(raw: str, cap: int) -> int:
    """The value of the ASCII digits ``raw``, at most ``cap``, in time bounded by the cap's length.

    A field may carry thousands of digits; ``int()`` of more than 4,300 raises (and of fewer is slow), so a number
    longer than the cap's own digits is the cap without being converted.
    """
    digits = raw.lstrip("0") or "0"
    return cap if len(digits) > len(str(cap)) else min(int(digits), cap)


def _delta_seconds(raw: str | None) -> int | None:
    """§1.2.2: a non-negative integer (over ``DELTA_MAX``, that); anything else is invalid (``None``)."""
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return bounded_digits(raw, DELTA_MAX)


@dataclass(frozen=True)
class CacheControl:
    """Cache-Control directives (§5.2), parsed once; ``None``/``False`` mean absent.

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
        return _parse_cache_control(tuple(raw_values))

    @classmethod
    def _parse(cls, raw_values: tuple[str, ...]) -> CacheControl:
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
        if isinstance(headers, tuple):
            return _cache_control_of(headers)
        return cls.parse(values(headers, "cache-control"))

    @property
    def validate_every_use(self) -> bool:
        """§5.2.2.4: an unqualified ``no-cache`` response is stored but never served without validation."""
        return self.no_cache and not self.no_cache_fields

    @property
    def never_stale(self) -> bool:
        """§5.2.2.2, §5.2.2.8, §5.2.2.10: a shared cache must not serve this response stale."""
        return self.must_revalidate or self.proxy_revalidate or self.s_maxage is not None


@functools.lru_cache(maxsize=4096)
def _cache_control_of(headers: Headers) -> CacheControl:
    """A stored response's fields are asked for their Cache-Control on every hit: remember the answer per field
    set (the fields are immutable, and so is the result)."""
    return CacheControl.parse(values(headers, "cache-control"))


@functools.lru_cache(maxsize=4096)
def _parse_cache_control(raw_values: tuple[str, ...]) -> CacheControl:
    """The hit path parses the same few field values over and over: remember them (the result is immutable)."""
    return CacheControl._parse(raw_values)


# --- targeted cache control (RFC 9213) ------------------------------------------------------------------------

# The target list itself (grenier's own field, then CDN-Cache-Control) is ``CacheSettings.targets``.

_DELTA_DIRECTIVES = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
}
_FLAG_DIRECTIVES = {
    "no-store": "no_store",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "must-understand": "must_understand",
    "immutable": "immutable",
    "no-transform": "no_transform",
}
_LISTING_DIRECTIVES = {"no-cache": ("no_cache", "no_cache_fields"), "private": ("private", "private_fields")}


def targeted_directives(raw_values: Sequence[str]) -> CacheControl | None:
    """RFC 9213 §2.2: a targeted field's value, a Structured Fields Dictionary (RFC 8941 §3.2), as directives; or
    ``None`` when it is empty or does not parse, so the field is ignored as if absent.

    Its lines are combined as one dictionary (a later key wins, RFC 8941). A directive whose value has the wrong
    type (``max-age=1.5``, ``max-age="60"``, a negative number) is not consumed (§2.1 asks implementations not to
    coerce them); field-name arguments of ``private`` and ``no-cache`` are an sf-string of comma-separated names.
    """
    joined = ", ".join(raw_values).strip()
    if not joined:
        return None
    try:
        parsed = http_sf.parse(joined.encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    found: dict[str, object] = {}
    for key, member in parsed.items():
        value = member[0] if isinstance(member, tuple) else None  # an inner list (a list) is never a directive value
        if key in _DELTA_DIRECTIVES:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                found[_DELTA_DIRECTIVES[key]] = min(value, DELTA_MAX)
        elif key in _FLAG_DIRECTIVES:
            if value is True:
                found[_FLAG_DIRECTIVES[key]] = True
        elif key in _LISTING_DIRECTIVES:
            flag, names = _LISTING_DIRECTIVES[key]
            if value is True:
                found[flag] = True
            elif isinstance(value, str):
                found[flag] = True
                found[names] = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    return CacheControl(**found)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def response_directives(headers: Headers, targets: tuple[str, ...] = ()) -> tuple[CacheControl, str | None]:
    """The directives that govern this cache for a response, and the targeted field they came from (``None``:
    ``Cache-Control``).

    RFC 9213 §2.1: the first field of the target list that is present with a valid, non-empty value wins wholly;
    ``Cache-Control`` (and ``Expires``, see :func:`explicit_lifetime`) and the other targeted fields are then
    ignored for this cache's storing and freshness, although they are still stored and passed on. Memoised per
    field set, like :meth:`CacheControl.of`.
    """
    for name in targets:
        found = values(headers, name)
        if found:
            directives = targeted_directives(found)
            if directives is not None:
                return directives, name
    return CacheControl.of(headers), None


def response_cc(headers: Headers, targets: tuple[str, ...] = ()) -> CacheControl:
    """The directives governing this cache for a response (RFC 9213 precedence over ``Cache-Control``)."""
    return response_directives(headers, targets)[0]


# --- HTTP-dates (RFC 9110 §5.6.7) -----------------------------------------------------------------------------

_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_LONG = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = f"(?P<month>{'|'.join(_MONTHS)})"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

#: RFC 9110 §5.6.7: the three spellings a recipient accepts, each exactly: case-sensitive names, single spaces,
#: two-digit day and time parts, ``GMT`` and nothing else. ``Sun, 06 Nov 1994 08:49:37 GMT`` (IMF-fixdate),
#: ``Sunday, 06-Nov-94 08:49:37 GMT`` (RFC 850), ``Sun Nov  6 08:49:37 1994`` (asctime).
_IMF_FIXDATE = re.compile(f"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(f"{_DAY_LONG}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT")
_ASCTIME_DATE = re.compile(f"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})")
_DATE_FORMATS = (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE)

#: Without a clock to compare with, a two-digit RFC 850 year is read against this year (RFC 9110 §5.6.7's
#: "more than 50 years in the future" rule); callers that know the message's time pass its year instead.
RFC850_REFERENCE_YEAR = 2026


@functools.lru_cache(maxsize=4096)
def http_date(raw: str | None, reference_year: int = RFC850_REFERENCE_YEAR) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as epoch seconds, or ``None`` when it is not exactly one of the three forms.

    Nothing is guessed: another zone (``UTC``, ``+0000``), a missing comma, extra spaces, a one-digit hour, a
    two-digit year outside RFC 850, dashes or dots where they do not belong all make the value invalid, and the
    caller's rule for an invalid date applies (RFC 9111 §5.3: an invalid ``Expires`` is already expired). The
    surrounding whitespace a field value may carry (RFC 9110 §5.5) is not part of it. The day name is not checked
    against the date (the grammar does not ask it). A leap second (``:60``) is accepted; year 0000 is not (no
    calendar has it). Memoised: stored responses ask for the same few dates on every hit.
    """
    if raw is None:
        return None
    text = raw.strip(" \t")
    for form in _DATE_FORMATS:
        match = form.fullmatch(text)
        if match is not None:
            break
    else:
        return None
    year = int(match["year"])
    if form is _RFC850_DATE:
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the most recent past year with those digits.
        year += reference_year // 100 * 100
        if year > reference_year + 50:
            year -= 100
    month = _MONTHS.index(match["month"]) + 1
    day, hour, minute, second = (int(match[part]) for part in ("day", "hour", "minute", "second"))
    if year < 1 or not (1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60 and second <= 60):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))


def date_field(headers: Iterable[tuple[str, str]], name: str, at: float | None = None) -> float | None:
    """The one HTTP-date a field carries, or ``None`` when it is absent, invalid, or sent more than once (a
    singleton field; one with a list or several lines says nothing reliable, RFC 9110 §5.5). ``at`` (the message's
    time, when known) anchors two-digit years."""
    found = values(headers, name)
    if len(found) != 1:
        return None
    return http_date(found[0], RFC850_REFERENCE_YEAR if at is None else _year_of(at))


def _year_of(epoch: float) -> int:
    try:
        return time.gmtime(epoch).tm_year
    except (OverflowError, OSError, ValueError):
        return RFC850_REFERENCE_YEAR


# --- storing (§3) ---------------------------------------------------------------------------------------------


def not_storable_reason(
    method: str, status: int, request_headers: Headers, response_headers: Headers, rules: CacheSettings
) -> str | None:
    """Why a shared cache must not store this response, or ``None`` when it may (§3)."""
    if method not in {"GET", "HEAD"}:
        return f"method {method} is not cacheable"
    if status < 200 or status == 304:
        return f"status {status} is not a complete final response"
    if status == 206 and len(values(response_headers, "content-range")) != 1:  # §3.3: stored as one part
        return "206 without one Content-Range is not stored"
    req = CacheControl.of(request_headers)
    resp = response_cc(response_headers, rules.targets)
    if req.no_store:
        return "request said no-store"
    if resp.must_understand:
        if status not in UNDERSTOOD_STATUSES:
            return f"must-understand and status {status} is not understood"
    elif resp.no_store:
        return "response said no-store"
    if resp.private and not resp.private_fields:
        return "response is private"
    if values(request_headers, "authorization") and not (
        resp.public or resp.s_maxage is not None or resp.must_revalidate
    ):
        return "request carried Authorization and the response did not allow sharing"
    if values(response_headers, "set-cookie") and not rules.share_set_cookie:
        return "response sets a cookie"
    varies = vary_fields(response_headers)
    if varies == ("*",):
        return "Vary: * never matches"
    too_costly = _too_costly(response_headers, varies, rules)
    if too_costly is not None:
        return too_costly
    explicit = explicit_lifetime(response_headers, 0.0, rules.targets) is not None
    if not explicit and _caused_by_request(status):
        return f"status {status} may answer this request's own fields, and has no explicit freshness"
    if status not in HEURISTIC_STATUSES and not explicit and not resp.public:
        return f"status {status} has no explicit freshness and is not heuristically cacheable"
    return None


def shared_with_authorized(response_headers: Headers) -> bool:
    """§3.5: may a shared cache store a response to a request with ``Authorization``, and answer such a request
    with a stored response? Only when it says ``public``, ``s-maxage`` or ``must-revalidate``."""
    cc = CacheControl.of(response_headers)
    return cc.public or cc.s_maxage is not None or cc.must_revalidate


def _caused_by_request(status: int) -> bool:
    """Statuses that may say more about the request than about the resource (RFC 9110 §15.5: a 4xx is the client's
    error; 414 URI Too Long, 431 Request Header Fields Too Large and 501 Not Implemented answer its form): stored for
    everyone only when the origin gives them explicit freshness. 404 and 410 describe the resource itself."""
    return (400 <= status < 500 and status not in {404, 410}) or status == 501


def _too_costly(headers: Headers, varies: tuple[str, ...], rules: CacheSettings) -> str | None:
    """Why a response's field section is too large to store (each hit replays it and keys on its Vary), or
    ``None``: ``cache.max_stored_fields``, ``cache.max_stored_header_bytes``, ``cache.max_vary_fields``."""
    if len(headers) > rules.max_stored_fields:
        return f"response has {len(headers)} header fields, over cache.max_stored_fields ({rules.max_stored_fields})"
    size = sum(len(k) + len(v) for k, v in headers)
    if size > rules.max_stored_header_bytes:
        return (
            f"response header fields total {size} bytes, over cache.max_stored_header_bytes "
            f"({rules.max_stored_header_bytes})"
        )
    if len(varies) > rules.max_vary_fields:
        return f"response Vary names {len(varies)} fields, over cache.max_vary_fields ({rules.max_vary_fields})"
    return None


def may_replace(stored_status: int, status: int, headers: Headers, targets: tuple[str, ...] = ()) -> bool:
    """Poisoning guard: an error without explicit freshness never replaces a stored non-error response, and a
    server error (5xx) never replaces a stored response that is not one, whatever freshness it claims: a passing
    origin failure must not evict a good entry (it still reaches the request that fetched it)."""
    if status >= 500 and stored_status < 500:
        return False
    return not (status >= 400 and stored_status < 400 and explicit_lifetime(headers, 0.0, targets) is None)


def storable_headers(headers: Sequence[tuple[str, str]], targets: tuple[str, ...] = ()) -> Headers:
    """Fields to keep: no hop-by-hop ones (RFC 9110 §7.6.1) nor those ``private=``/``no-cache=`` name (§5.2.2)."""
    named = {n.strip().lower() for v in values(headers, "connection") for n in v.split(",")}
    cc = response_cc(tuple(headers), targets)
    drop = HOP_BY_HOP | named | set(cc.private_fields) | set(cc.no_cache_fields)
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


# --- freshness and age (§4.2) ---------------------------------------------------------------------------------


def explicit_lifetime(headers: Headers, response_time: float, targets: tuple[str, ...] = ()) -> float | None:
    """§4.2.1 for a shared cache: s-maxage, then max-age, then Expires minus Date; ``None`` when none is given.

    A targeted field in use (RFC 9213 §2.1) replaces Cache-Control and Expires both. §5.3: an Expires that is not
    one valid HTTP-date (malformed, a list, or several lines) means already expired.
    """
    cc, targeted = response_directives(headers, targets)
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    if targeted is None and values(headers, "expires"):
        expires = date_field(headers, "expires", response_time)
        if expires is None:
            return 0.0
        date = date_field(headers, "date", response_time)
        return max(0.0, expires - (response_time if date is None else date))
    return None


def heuristic_lifetime(status: int, headers: Headers, response_time: float, rules: CacheSettings) -> float | None:
    """§4.2.2: a fraction of the time since Last-Modified, for heuristically cacheable (or public) responses."""
    if status not in HEURISTIC_STATUSES and not response_cc(headers, rules.targets).public:
        return None
    last_modified = date_field(headers, "last-modified", response_time)
    if last_modified is None:
        return None
    date = date_field(headers, "date", response_time)
    since = (response_time if date is None else date) - last_modified
    if since <= 0:
        return None
    return min(since * rules.heuristic_fraction, rules.heuristic_max)


def freshness_lifetime(status: int, headers: Headers, response_time: float, rules: CacheSettings) -> float:
    """Explicit freshness, else heuristic, else the operator's ``default_ttl``; never over ``max_ttl``."""
    lifetime = explicit_lifetime(headers, response_time, rules.targets)
    if lifetime is None:
        lifetime = heuristic_lifetime(status, headers, response_time, rules)
    if lifetime is None:
        lifetime = rules.default_ttl
    return min(lifetime, rules.max_ttl)


def current_age(headers: Headers, request_time: float, response_time: float, now: float) -> float:
    """§4.2.3: apparent age, upstream Age and the response delay, plus time resident here."""
    return initial_age(headers, request_time, response_time) + max(0.0, now - response_time)


@functools.lru_cache(maxsize=4096)
def initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """§4.2.3 ``corrected_initial_age``: how old the response was when it arrived. It depends on the stored
    response alone, which every hit on it asks again: memoised (the answer is a number)."""
    date = date_field(headers, "date", response_time)
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    age_value = age_field(headers)
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, age_value + response_delay)


def age_field(headers: Headers) -> int:
    """§5.1 ``Age`` read conservatively: the largest valid delta-seconds among all its lines and list members, so
    that a list (``7200, 0``) or a second line never makes a response younger than one of its members says; 0 when
    none is valid (a member that is not a non-negative integer, like ``-1`` or ``7.5``, is ignored)."""
    ages = [_delta_seconds(member.strip()) for raw in values(headers, "age") for member in raw.split(",")]
    return max((a for a in ages if a is not None), default=0)


def _window(directive: int | None, default: float) -> float:
    return float(directive) if directive is not None else default


def retention(headers: Headers, lifetime: float, rules: CacheSettings) -> float:
    """How long the store keeps an entry: its freshness plus time to be revalidated or served stale."""
    cc = response_cc(headers, rules.targets)
    extra = max(
        rules.stale_keep,
        _window(cc.stale_while_revalidate, rules.stale_while_revalidate),
        _window(cc.stale_if_error, rules.stale_if_error),
    )
    return lifetime + extra


# --- using a stored response (§4) -----------------------------------------------------------------------------

Fwd = Literal["uri-miss", "vary-miss", "miss", "request", "stale", "partial", "method", "bypass"]


@dataclass(frozen=True)
class StoredTimes:
    """What the freshness rules need to know about a stored response."""

    headers: Headers
    request_time: float
    response_time: float
    lifetime: float
    status: int = 200


@dataclass(frozen=True)
class Hit:
    """Serve the stored response. ``ttl`` is negative when it is served stale (allowed by ``max-stale``)."""

    age: int
    ttl: int


@dataclass(frozen=True)
class ServeStale:
    """RFC 5861 §3: serve the stale response now and refresh it in the background."""

    age: int
    ttl: int


@dataclass(frozen=True)
class Forward:
    """The stored response (if any) cannot be used as is; the request goes upstream. ``fwd`` feeds Cache-Status."""

    fwd: Fwd
    detail: str | None = None


Decision = Hit | ServeStale | Forward


def forces_refresh(request_headers: Headers) -> bool:
    """§5.2.1.4, §5.2.1.1, §5.4: ``no-cache``, ``max-age=0``, or (without Cache-Control) ``Pragma: no-cache``."""
    cc = CacheControl.of(request_headers)
    if cc.no_cache or cc.max_age == 0:
        return True
    if not values(request_headers, "cache-control"):
        return any("no-cache" in v.lower() for v in values(request_headers, "pragma"))
    return False


def decide(request_headers: Headers, stored: StoredTimes | None, now: float, rules: CacheSettings) -> Decision:
    """Serve the stored response, serve it stale while refreshing, or forward and say why (§4, RFC 5861)."""
    if forces_refresh(request_headers):
        return Forward("request")
    if stored is None:
        return Forward("uri-miss")
    req = CacheControl.of(request_headers)
    resp = response_cc(stored.headers, rules.targets)
    age = current_age(stored.headers, stored.request_time, stored.response_time, now)
    ttl = stored.lifetime - age
    if resp.validate_every_use:
        return Forward("stale", "response requires validation on every use")
    if req.max_age is not None and age > req.max_age:
        return Forward("request", "older than the request's max-age")
    if ttl > 0:
        if req.min_fresh is not None and ttl < req.min_fresh:
            return Forward("request", "fresh for less than the request's min-fresh")
        return Hit(age=int(age), ttl=int(ttl))
    staleness = -ttl
    if resp.never_stale:
        return Forward("stale")
    if req.max_stale_any or (req.max_stale is not None and staleness <= req.max_stale):
        return Hit(age=int(age), ttl=int(ttl) if int(ttl) < 0 else -1)
    if staleness <= _window(resp.stale_while_revalidate, rules.stale_while_revalidate):
        return ServeStale(age=int(age), ttl=min(-1, int(ttl)))
    return Forward("stale")


def stale_if_unreachable_allows(stored: StoredTimes, now: float, rules: CacheSettings) -> bool:
    """§4.2.4: a cache that is disconnected from the origin (it refused or dropped the connection, no response at
    all) may serve a stale response, within ``cache.stale_if_unreachable`` seconds of staleness (0: never), unless
    the response forbids it: ``must-revalidate``, ``proxy-revalidate``, ``s-maxage`` (§5.2.2.2, §5.2.2.8,
    §5.2.2.10) or ``no-cache`` (§5.2.2.4, never used without validation)."""
    if rules.stale_if_unreachable <= 0:
        return False
    resp = response_cc(stored.headers, rules.targets)
    if resp.never_stale or resp.validate_every_use:
        return False
    staleness = current_age(stored.headers, stored.request_time, stored.response_time, now) - stored.lifetime
    return staleness <= rules.stale_if_unreachable


def stale_if_error_allows(request_headers: Headers, stored: StoredTimes, now: float, rules: CacheSettings) -> bool:
    """RFC 5861 §4: may this stale response stand in for a failed refresh (network error or 5xx)?"""
    resp = response_cc(stored.headers, rules.targets)
    if resp.never_stale or resp.validate_every_use:
        return False
    staleness = current_age(stored.headers, stored.request_time, stored.response_time, now) - stored.lifetime
    req = CacheControl.of(request_headers)
    window = max(_window(resp.stale_if_error, rules.stale_if_error), float(req.stale_if_error or 0))
    return staleness <= window


# --- after a fetch: what to do with what came back (§3, §4.3.4, RFC 5861 §4) -------------------------------------


@dataclass(frozen=True)
class Received:
    """What the upstream answered (the body is not a rule's business)."""

    status: int
    headers: Headers
    request_time: float
    response_time: float


@dataclass(frozen=True)
class Freshen:
    """§4.3.4: the 304 confirms the stored response; store it again with these fields and a new lifetime."""

    status: int
    headers: Headers
    lifetime: float
    keep: float
    """Seconds the store keeps it (freshness plus the stale window, :func:`retention`)."""


@dataclass(frozen=True)
class Store:
    """§3: store the received response (its storable fields) for ``keep`` seconds."""

    status: int
    headers: Headers
    lifetime: float
    keep: float


@dataclass(frozen=True)
class DoNotStore:
    """The response goes to the request that fetched it only; ``reason`` says why the cache keeps none of it.
    ``freshened``: it is the stored response as a 304 updated it (the stored body), not the received one."""

    status: int
    headers: Headers
    lifetime: float
    reason: str
    freshened: bool = False


#: ``StandIn.detail`` (and Cache-Status's): why a stale response stands in for a failure.
STALE_IF_ERROR = "stale-if-error"
STALE_IF_UNREACHABLE = "stale (origin unreachable)"


@dataclass(frozen=True)
class StandIn:
    """The stale stored response stands in for the failure ``reason``: allowed by stale-if-error (RFC 5861 §4),
    or, when the origin could not be reached at all, by §4.2.4 (``detail`` says which)."""

    reason: str
    detail: str = STALE_IF_ERROR


@dataclass(frozen=True)
class Fail:
    """No response to give: the fetch failed and nothing stored may stand in."""


AfterFetch = Freshen | Store | DoNotStore | StandIn | Fail

#: Why a stored non-error response is kept when an error without explicit freshness comes back (poisoning guard).
ERROR_KEEPS_STORED = "an error without explicit freshness does not replace the stored response"
#: Why a stored response is kept when a server error (5xx) comes back, whatever freshness the error claims.
SERVER_ERROR_KEEPS_STORED = "a server error does not replace the stored response"


def after_fetch(
    request_headers: Headers,
    stored: StoredTimes | None,
    received: Received | None,
    now: float,
    rules: CacheSettings,
    *,
    unreachable: bool = False,
) -> AfterFetch:
    """What the fetch job does with what came back, ``decide``'s twin for the other half of a miss.

    ``request_headers`` are the fields the job sent (they select the variant and carry the request's directives);
    ``stored`` the response the cache held for them, if any; ``received`` the upstream's answer, ``None`` when it
    gave none (connection error, timeout, refusal); ``unreachable`` when that was because the origin refused or
    dropped the connection before any response (§4.2.4: the cache is disconnected).
    """
    if received is None:
        if stored is not None and stale_if_error_allows(request_headers, stored, now, rules):
            return StandIn("the upstream gave no response")
        if unreachable and stored is not None and stale_if_unreachable_allows(stored, now, rules):
            return StandIn("the origin could not be reached", STALE_IF_UNREACHABLE)
        return Fail()
    freshened = received.status == 304 and stored is not None and bool(validators(stored.headers))
    if stored is not None and freshened:
        status, headers = stored.status, freshen(stored.headers, received.headers)
    elif received.status >= 500 and stored is not None and stale_if_error_allows(request_headers, stored, now, rules):
        return StandIn(f"upstream answered {received.status}")
    else:
        status, headers = received.status, storable_headers(received.headers, rules.targets)
    lifetime = freshness_lifetime(status, headers, received.response_time, rules)
    reason = not_storable_reason("GET", status, request_headers, headers, rules)
    if reason is None and stored is not None and not may_replace(stored.status, status, headers, rules.targets):
        reason = SERVER_ERROR_KEEPS_STORED if status >= 500 and stored.status < 500 else ERROR_KEEPS_STORED
    keep = retention(headers, lifetime, rules)
    if reason is None and keep <= 0:
        reason = "response is already stale and stale_keep is 0"
    if reason is not None:
        return DoNotStore(status, headers, lifetime, reason, freshened)
    return Freshen(status, headers, lifetime, keep) if freshened else Store(status, headers, lifetime, keep)


# --- a HEAD response about a stored GET response (§4.3.5) ----------------------------------------------------


@dataclass(frozen=True)
class MarkStale:
    """§4.3.5: the HEAD response describes another representation than the stored one: consider it stale."""

    reason: str


@dataclass(frozen=True)
class LeaveStored:
    """The HEAD response says nothing grenier may apply to the stored response; ``reason`` says why."""

    reason: str


AfterHead = Freshen | MarkStale | LeaveStored


def head_matches(stored_headers: Headers, stored_size: int, received: Headers) -> bool:
    """§4.3.5: does a HEAD response describe the stored response? Every validator it carries (``ETag``,
    ``Last-Modified``) equals the stored one, it carries at least one, and its ``Content-Length``, if any, is the
    stored body's size."""
    carried = [name for name in ("etag", "last-modified") if values(received, name)]
    if not carried:
        return False
    if any(values(received, name) != values(stored_headers, name) for name in carried):
        return False
    length = values(received, "content-length")
    return not length or length == [str(stored_size)]


def after_head(
    request_headers: Headers, stored: StoredTimes | None, stored_size: int, received: Received, rules: CacheSettings
) -> AfterHead:
    """§4.3.5: what a 200 answering grenier's own inbound HEAD request does to the stored GET response that could
    have answered that request: its fields updated like a 304's (§3.2, :func:`freshen`) when the validators match,
    else it is considered stale. Fields are updated only from a response grenier may share (a HEAD relayed with
    credentials, or answered ``private``, ``no-store`` or with ``Set-Cookie``, updates nothing): a requester's own
    answer must not rewrite what everyone is served. A mismatch marks stale all the same: that costs a
    revalidation, never a wrong answer."""
    if stored is None:
        return LeaveStored("nothing stored for this request")
    if received.status != 200:
        return LeaveStored(f"HEAD answered {received.status}, not 200")
    if not head_matches(stored.headers, stored_size, received.headers):
        return MarkStale("the HEAD response's validators or length differ from the stored response's")
    headers = freshen(stored.headers, received.headers)
    reason = not_storable_reason("GET", stored.status, request_headers, storable_headers(received.headers), rules)
    if reason is not None:
        return LeaveStored(reason)
    lifetime = freshness_lifetime(stored.status, headers, received.response_time, rules)
    return Freshen(stored.status, headers, lifetime, retention(headers, lifetime, rules))


# --- validation (§4.3) ----------------------------------------------------------------------------------------


def validators(headers: Headers) -> Headers:
    """§4.3.1: the conditional fields that ask the origin whether the stored response is still current."""
    found: list[tuple[str, str]] = []
    etag = first(headers, "etag")
    if etag:
        found.append(("If-None-Match", etag))
    last_modified = first(headers, "last-modified")
    if last_modified and date_field(headers, "last-modified") is not None:
        found.append(("If-Modified-Since", last_modified))
    return tuple(found)


def freshen(stored: Headers, not_modified: Headers) -> Headers:
    """§4.3.4 / §3.2: the stored fields updated with those of a 304, except the ones that describe the body."""
    update = [(k, v) for k, v in storable_headers(not_modified) if k.lower() not in _NOT_UPDATED]
    names = {k.lower() for k, _ in update} | {"age"}  # the old Age described the old message
    return tuple((k, v) for k, v in stored if k.lower() not in names) + tuple(update)


def _etags(raw: str) -> list[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]


def _weak_match(a: str, b: str) -> bool:
    """RFC 9110 §8.8.3.2: weak comparison ignores the ``W/`` prefix."""
    return a.removeprefix("W/") == b.removeprefix("W/")


def not_modified(request_headers: Headers, status: int, stored: Headers) -> bool:
    """§4.3.2: may a client's conditional GET/HEAD be answered 304 from this stored response?"""
    if status != 200:
        return False
    inm = values(request_headers, "if-none-match")
    if inm:
        etag = first(stored, "etag")
        tags = [t for v in inm for t in _etags(v)]
        return "*" in tags or (etag is not None and any(_weak_match(t, etag) for t in tags))
    # RFC 9110 §13.1.3: an If-Modified-Since that is not exactly one valid HTTP-date is ignored.
    ims = date_field(request_headers, "if-modified-since")
    if ims is None:
        return False
    modified = date_field(stored, "last-modified") or date_field(stored, "date")
    return modified is not None and modified <= ims


def not_modified_headers(stored: Headers) -> Headers:
    """RFC 9110 §15.4.5: what a 304 built from a stored 200 carries."""
    return tuple((k, v) for k, v in stored if k.lower() in _NOT_MODIFIED_FIELDS)


# --- secondary keys (§4.1) ------------------------------------------------------------------------------------


def vary_fields(headers: Headers) -> tuple[str, ...]:
    """The request fields a response varies on, lower-cased and sorted; ``("*",)`` for ``Vary: *``."""
    names = {n.strip().lower() for v in values(headers, "vary") for n in v.split(",") if n.strip()}
    if "*" in names:
        return ("*",)
    return tuple(sorted(names))


#: RFC 9110 §8.4.1: the content codings an ``Accept-Encoding`` variant is told apart by; other codings (deflate,
#: compress) are not served by the origins grenier is built for, and would split every browser into its own variant.
_VARIANT_CODINGS = ("br", "gzip", "identity", "zstd")


def accepted_codings(raw: str) -> str | None:
    """RFC 9110 §12.5.3: which of :data:`_VARIANT_CODINGS` an ``Accept-Encoding`` value accepts (``x-gzip`` is
    ``gzip``, ``*`` stands for every coding not named, ``identity`` is acceptable unless excluded), as one sorted
    list, so that the many browser spellings of the same wish share a variant (§4.1 allows normalising). ``None``
    when a weight is not a valid qvalue: the value is then compared as written."""
    weights: dict[str, float] = {}
    for item in raw.split(","):
        name, *params = item.split(";")
        coding = name.strip().lower()
        if not coding:
            continue
        coding = "gzip" if coding == "x-gzip" else coding
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    return None
                if not 0.0 <= weight <= 1.0:
                    return None
        weights.setdefault(coding, weight)
    star = weights.get("*")
    default = {c: (1.0 if c == "identity" else 0.0) if star is None else star for c in _VARIANT_CODINGS}
    return ",".join(c for c in _VARIANT_CODINGS if weights.get(c, default[c]) > 0)


def _normal_value(name: str, found: list[str]) -> str:
    """§4.1: combine field lines and drop whitespace that does not change the meaning; Accept-Encoding as the set
    of codings it accepts."""
    joined = ",".join(part.strip() for v in found for part in v.split(","))
    if name == "accept-encoding":
        codings = accepted_codings(joined)
        if codings is not None:
            return codings
    return joined.lower() if name in _CASELESS_VALUES else joined


def variant_key(fields: Sequence[str], request_headers: Headers) -> str:
    """A digest of the request's values for the nominated fields: requests that match share it (§4.1)."""
    parts = []
    for name in fields:
        found = values(request_headers, name)
        parts.append(f"{name}\x00{_normal_value(name, found)}" if found else f"{name}\x01")
    return hashlib.sha256("\x02".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- invalidation (§4.4) --------------------------------------------------------------------------------------


def invalidated_urls(method: str, status: int, target: str, response_headers: Headers) -> list[str]:
    """After an unsafe request's non-error response: the target and same-origin Location/Content-Location."""
    if method in SAFE_METHODS or not 200 <= status < 400:
        return []
    origin = urlsplit(target)[:2]
    found = [target]
    for name in ("location", "content-location"):
        raw = first(response_headers, name)
        if not raw:
            continue
        try:
            absolute = urljoin(target, raw.strip())
            if urlsplit(absolute)[:2] == origin:
                found.append(absolute)
        except ValueError:
            continue
    return found
