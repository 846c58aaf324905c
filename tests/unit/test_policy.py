"""Table-driven tests of the pure caching policy; each row names the RFC section it checks (RFC 9111 unless said)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from core import policy
from core.policy import CacheControl, Forward, Headers, Hit, ServeStale, StoredTimes
from core.settings import CacheSettings

T0 = 1_800_000_000.0  # a fixed "now" for every row
RULES = CacheSettings(default_ttl=30, max_ttl=86400, heuristic_fraction=0.1, heuristic_max=86400, stale_keep=86400)


def date(offset: float) -> str:
    """An HTTP-date ``offset`` seconds from T0."""
    return formatdate(T0 + offset, usegmt=True)


def h(*pairs: tuple[str, str]) -> Headers:
    return tuple(pairs)


# --- Cache-Control parsing (§5.2) ------------------------------------------------------------------------------

CC_CASES = [
    ("§5.2.2.1 max-age", ["max-age=60"], {"max_age": 60}),
    ("§5.2 directives are case-insensitive", ["MAX-AGE=60, No-Store"], {"max_age": 60, "no_store": True}),
    ("§5.2 values may be quoted", ['max-age="60"'], {"max_age": 60}),
    ("§4.2.1 first of duplicate directives wins", ["max-age=60, max-age=10"], {"max_age": 60}),
    ("§4.2.1 duplicates across field lines", ["max-age=5", "max-age=99"], {"max_age": 5}),
    ("§1.2.2 invalid delta-seconds reads as 0 (stale)", ["max-age=abc"], {"max_age": 0}),
    ("§1.2.2 negative delta-seconds reads as 0", ["max-age=-5"], {"max_age": 0}),
    ("§1.2.2 overflow is capped at 2^31", ["max-age=99999999999999"], {"max_age": 2**31}),
    ("§1.2.2 5,000 digits are capped, not converted", ["max-age=" + "9" * 5000], {"max_age": 2**31}),
    ("§1.2.2 leading zeros do not count", ["max-age=" + "0" * 5000 + "7"], {"max_age": 7}),
    ("§5.2.2.10 s-maxage", ["s-maxage=5, max-age=60"], {"s_maxage": 5, "max_age": 60}),
    ("§5.2.2.4 no-cache with field names", ['no-cache="Set-Cookie, X-A"'], {"no_cache_fields": ("set-cookie", "x-a")}),
    ("§5.2.2.7 private with field names", ['private="X-User"'], {"private": True, "private_fields": ("x-user",)}),
    ("§5.2.1.2 max-stale without value", ["max-stale"], {"max_stale_any": True, "max_stale": None}),
    ("§5.2.1.2 max-stale with value", ["max-stale=10"], {"max_stale_any": False, "max_stale": 10}),
    ("§5.2.1.3 min-fresh", ["min-fresh=20"], {"min_fresh": 20}),
    ("§5.2.1.7 only-if-cached", ["only-if-cached"], {"only_if_cached": True}),
    ("RFC 5861 stale-while-revalidate", ["max-age=1, stale-while-revalidate=30"], {"stale_while_revalidate": 30}),
    ("RFC 5861 stale-if-error", ["stale-if-error=600"], {"stale_if_error": 600}),
    ("RFC 8246 immutable", ["max-age=9, immutable"], {"immutable": True}),
    ("§5.2.2.3 must-understand", ["must-understand, no-store"], {"must_understand": True, "no_store": True}),
    ("§5.2 unknown extensions are ignored", ["foo=bar, max-age=3"], {"max_age": 3}),
    ("§5.2 empty members are ignored", [", ,max-age=3,"], {"max_age": 3}),
]


@pytest.mark.parametrize(("section", "raw", "expected"), CC_CASES, ids=[c[0] for c in CC_CASES])
def test_cache_control_parsing(section: str, raw: list[str], expected: dict[str, object]) -> None:
    cc = CacheControl.parse(raw)
    for name, value in expected.items():
        assert getattr(cc, name) == value, section


def test_cache_control_absent_is_all_none() -> None:
    """§5.2: no field, no directives."""
    assert CacheControl.of(()) == CacheControl()


# --- storability (§3) -------------------------------------------------------------------------------------------

STORE_CASES: list[tuple[str, str, int, Headers, Headers, str | None]] = [
    ("§3 200 without freshness is heuristically cacheable", "GET", 200, (), (), None),
    ("§3 HEAD is cacheable", "HEAD", 200, (), (), None),
    ("§3 POST is not", "POST", 200, (), h(("Cache-Control", "max-age=60")), "method POST is not cacheable"),
    ("§3.3 206 without Content-Range is not stored", "GET", 206, (), h(("Cache-Control", "max-age=60")), "206 with"),
    (
        "§3.3 206 with one Content-Range is stored as a part",
        "GET",
        206,
        (),
        h(("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-4/10")),
        None,
    ),
    ("§3.3 206 is heuristically cacheable", "GET", 206, (), h(("Content-Range", "bytes 0-4/10")), None),
    ("§3 304 is not stored itself", "GET", 304, (), h(("Cache-Control", "max-age=60")), "status 304"),
    ("§3 1xx is not final", "GET", 103, (), (), "status 103"),
    ("§5.2.1.5 request no-store", "GET", 200, h(("Cache-Control", "no-store")), (), "request said no-store"),
    ("§5.2.2.5 response no-store", "GET", 200, (), h(("Cache-Control", "no-store")), "response said no-store"),
    ("§5.2.2.7 private", "GET", 200, (), h(("Cache-Control", "private, max-age=60")), "response is private"),
    ("§5.2.2.7 private=fields is storable", "GET", 200, (), h(("Cache-Control", 'private="X-U"')), None),
    (
        "§3.5 Authorization without permission",
        "GET",
        200,
        h(("Authorization", "Bearer x")),
        h(("Cache-Control", "max-age=60")),
        "request carried Authorization",
    ),
    ("§3.5 Authorization with public", "GET", 200, h(("Authorization", "x")), h(("Cache-Control", "public")), None),
    (
        "§3.5 Authorization with s-maxage",
        "GET",
        200,
        h(("Authorization", "x")),
        h(("Cache-Control", "s-maxage=9")),
        None,
    ),
    (
        "§3.5 Authorization with must-revalidate",
        "GET",
        200,
        h(("Authorization", "x")),
        h(("Cache-Control", "must-revalidate")),
        None,
    ),
    ("§3 Set-Cookie is not shared by default", "GET", 200, (), h(("Set-Cookie", "a=b")), "response sets a cookie"),
    ("§4.1 Vary: * never matches", "GET", 200, (), h(("Vary", "*")), "Vary: * never matches"),
    ("§3 500 without freshness", "GET", 500, (), (), "status 500 has no explicit freshness"),
    ("§3 500 with max-age is storable", "GET", 500, (), h(("Cache-Control", "max-age=5")), None),
    ("§3 302 with Expires is storable", "GET", 302, (), h(("Expires", date(60)), ("Date", date(0))), None),
    ("§3 302 with public is storable", "GET", 302, (), h(("Cache-Control", "public")), None),
    ("§3 404 is heuristically cacheable", "GET", 404, (), (), None),
    ("§3 410 is heuristically cacheable", "GET", 410, (), (), None),
    # RFC 9110 §15.5: a 4xx (but 404/410, which describe the resource) and 414/431/501 may answer the request's own
    # fields; without explicit freshness they are not stored for everyone.
    ("§15.5 400 without freshness", "GET", 400, (), (), "status 400 may answer this request's own fields"),
    ("§15.5.6 405 without freshness", "GET", 405, (), (), "status 405 may answer this request's own fields"),
    ("§15.5.7 406 without freshness", "GET", 406, (), (), "status 406 may answer this request's own fields"),
    ("§15.5.15 414 without freshness", "GET", 414, (), (), "status 414 may answer this request's own fields"),
    ("RFC 6585 §5 431 without freshness", "GET", 431, (), (), "status 431 may answer this request's own fields"),
    ("§15.6.2 501 without freshness", "GET", 501, (), (), "status 501 may answer this request's own fields"),
    ("§15.5 400 public is still not", "GET", 400, (), h(("Cache-Control", "public")), "status 400 may answer"),
    ("§15.5.15 414 with max-age is storable", "GET", 414, (), h(("Cache-Control", "max-age=5")), None),
    ("§15.6.2 501 with Expires is storable", "GET", 501, (), h(("Expires", date(60)), ("Date", date(0))), None),
    # Cost caps: each hit replays the stored fields and keys on every Vary name.
    (
        "cap: more fields than cache.max_stored_fields",
        "GET",
        200,
        (),
        tuple((f"X-F{i}", "1") for i in range(65)),
        "response has 65 header fields, over cache.max_stored_fields (64)",
    ),
    ("cap: as many fields as allowed", "GET", 200, (), tuple((f"X-F{i}", "1") for i in range(64)), None),
    (
        "cap: field bytes over cache.max_stored_header_bytes",
        "GET",
        200,
        (),
        h(("X-A", "a" * 20000), ("X-B", "b" * 20000)),
        "response header fields total 40006 bytes, over cache.max_stored_header_bytes (32768)",
    ),
    (
        "cap: more Vary names than cache.max_vary_fields",
        "GET",
        200,
        (),
        h(("Vary", ", ".join(f"x-{i}" for i in range(33)))),
        "response Vary names 33 fields, over cache.max_vary_fields (32)",
    ),
    ("cap: as many Vary names as allowed", "GET", 200, (), h(("Vary", ", ".join(f"x-{i}" for i in range(32)))), None),
    ("§5.2.2.4 no-cache responses are stored", "GET", 200, (), h(("Cache-Control", "no-cache")), None),
    (
        "§5.2.2.3 must-understand overrides no-store for a known status",
        "GET",
        200,
        (),
        h(("Cache-Control", "must-understand, no-store")),
        None,
    ),
    (
        "§5.2.2.3 must-understand with an unknown status",
        "GET",
        299,
        (),
        h(("Cache-Control", "must-understand, no-store, max-age=9")),
        "must-understand and status 299",
    ),
]


@pytest.mark.parametrize(
    ("section", "method", "status", "req", "resp", "reason"), STORE_CASES, ids=[c[0] for c in STORE_CASES]
)
def test_storability(section: str, method: str, status: int, req: Headers, resp: Headers, reason: str | None) -> None:
    got = policy.not_storable_reason(method, status, req, resp, RULES)
    if reason is None:
        assert got is None, section
    else:
        assert got is not None, section
        assert got.startswith(reason), (section, got)


def test_set_cookie_shared_when_configured() -> None:
    """§3: sharing Set-Cookie responses is the operator's choice."""
    limits = CacheSettings(share_set_cookie=True)
    assert policy.not_storable_reason("GET", 200, (), h(("Set-Cookie", "a=b")), limits) is None


HOP_CASES = [
    ("RFC 9110 §7.6.1 hop-by-hop fields dropped", h(("Connection", "close"), ("Keep-Alive", "5"), ("X", "1")), ["X"]),
    (
        "RFC 9110 §7.6.1 fields named by Connection dropped",
        h(("Connection", "X-Hop"), ("X-Hop", "1"), ("Y", "2")),
        ["Y"],
    ),
    (
        "RFC 9110 §7.6.1 Transfer-Encoding, TE, Upgrade",
        h(("Transfer-Encoding", "chunked"), ("TE", "x"), ("Upgrade", "h2")),
        [],
    ),
    ("RFC 9110 §7.6.1 Proxy-* fields", h(("Proxy-Authenticate", "x"), ("Proxy-Connection", "x"), ("Z", "1")), ["Z"]),
    (
        "§5.2.2.7 private=field not stored",
        h(("Cache-Control", 'private="X-User"'), ("X-User", "bob")),
        ["Cache-Control"],
    ),
    ("§5.2.2.4 no-cache=field not stored", h(("Cache-Control", 'no-cache="X-T"'), ("X-T", "1")), ["Cache-Control"]),
]


@pytest.mark.parametrize(("section", "headers", "kept"), HOP_CASES, ids=[c[0] for c in HOP_CASES])
def test_storable_headers(section: str, headers: Headers, kept: list[str]) -> None:
    assert [k for k, _ in policy.storable_headers(headers)] == kept, section


# --- freshness lifetime (§4.2.1, §4.2.2) ---------------------------------------------------------------------------

LIFETIME_CASES: list[tuple[str, int, Headers, float]] = [
    ("§4.2.1 s-maxage first", 200, h(("Cache-Control", "s-maxage=5, max-age=60")), 5),
    (
        "§4.2.1 max-age over Expires",
        200,
        h(("Cache-Control", "max-age=60"), ("Expires", date(10)), ("Date", date(0))),
        60,
    ),
    ("§4.2.1 Expires minus Date", 200, h(("Expires", date(120)), ("Date", date(0))), 120),
    (
        "§4.2.1 Expires without Date uses the response time",
        200,
        h(
            ("Expires", date(45)),
        ),
        45,
    ),
    (
        "§5.3 invalid Expires means already expired",
        200,
        h(
            ("Expires", "0"),
        ),
        0,
    ),
    ("§5.3 Expires in the past", 200, h(("Expires", date(-10)), ("Date", date(0))), 0),
    (
        "§5.3 several Expires lines are invalid",
        200,
        h(("Expires", date(30)), ("Expires", date(90)), ("Date", date(0))),
        0,
    ),
    ("§5.3 an Expires list is invalid", 200, h(("Expires", f"{date(30)}, {date(90)}"), ("Date", date(0))), 0),
    ("§5.3 Expires in UTC is invalid", 200, h(("Expires", "Thu, 01 Dec 2050 16:00:00 UTC"), ("Date", date(0))), 0),
    ("§5.3 Expires with a 2-digit year", 200, h(("Expires", "Thu, 01 Dec 50 16:00:00 GMT"), ("Date", date(0))), 0),
    (
        "§5.3 Expires without the comma",
        200,
        h(("Expires", "Thu 01 Dec 2050 16:00:00 GMT"), ("Date", date(0))),
        0,
    ),
    (
        "RFC 9110 §5.6.7 several Date lines: the response time stands in",
        200,
        h(("Expires", date(45)), ("Date", date(-1000)), ("Date", date(-2000))),
        45,
    ),
    (
        "§4.2.2 several Last-Modified lines: no heuristic",
        200,
        h(("Date", date(0)), ("Last-Modified", date(-1000)), ("Last-Modified", date(-2000))),
        30,
    ),
    ("§4.2.2 heuristic: 10% of Date - Last-Modified", 200, h(("Date", date(0)), ("Last-Modified", date(-1000))), 100),
    ("§4.2.2 heuristic capped", 200, h(("Date", date(0)), ("Last-Modified", date(-(10**8)))), 86400),
    ("§4.2.2 no heuristic for 302: default_ttl", 302, h(("Date", date(0)), ("Last-Modified", date(-1000))), 30),
    (
        "§4.2.2 heuristic for public 302",
        302,
        h(("Cache-Control", "public"), ("Date", date(0)), ("Last-Modified", date(-1000))),
        100,
    ),
    ("default_ttl without explicit or heuristic", 200, (), 30),
    (
        "max_ttl caps explicit freshness",
        200,
        h(
            ("Cache-Control", "max-age=9999999"),
        ),
        86400,
    ),
    (
        "§4.2.1 invalid max-age is stale",
        200,
        h(
            ("Cache-Control", "max-age=x"),
        ),
        0,
    ),
]


@pytest.mark.parametrize(
    ("section", "status", "headers", "lifetime"), LIFETIME_CASES, ids=[c[0] for c in LIFETIME_CASES]
)
def test_freshness_lifetime(section: str, status: int, headers: Headers, lifetime: float) -> None:
    assert policy.freshness_lifetime(status, headers, T0, RULES) == pytest.approx(lifetime), section


def test_default_ttl_zero_means_validate_every_use() -> None:
    """Strict reading: no explicit or heuristic freshness and default_ttl 0 -> lifetime 0 (always stale)."""
    assert policy.freshness_lifetime(200, (), T0, CacheSettings(default_ttl=0)) == 0


# --- age (§4.2.3) ---------------------------------------------------------------------------------------------

AGE_CASES: list[tuple[str, Headers, float, float, float, float]] = [
    (
        "§4.2.3 resident time only",
        h(
            ("Date", date(0)),
        ),
        0,
        0,
        100,
        100,
    ),
    ("§4.2.3 upstream Age adds", h(("Date", date(0)), ("Age", "50")), 0, 0, 10, 60),
    ("§4.2.3 response delay corrects Age", h(("Date", date(0)), ("Age", "50")), -2, 0, 0, 52),
    (
        "§4.2.3 apparent age from an old Date",
        h(
            ("Date", date(-30)),
        ),
        0,
        0,
        0,
        30,
    ),
    (
        "§4.2.3 Date in the future gives no negative age",
        h(
            ("Date", date(30)),
        ),
        0,
        0,
        5,
        5,
    ),
    ("§4.2.3 invalid Age ignored", h(("Date", date(0)), ("Age", "abc")), 0, 0, 1, 1),
    ("§5.1 Age list: the largest member, not the last", h(("Date", date(0)), ("Age", "7200, 0")), 0, 0, 1, 7201),
    ("§5.1 Age list: the largest member, not the first", h(("Date", date(0)), ("Age", "0,7200")), 0, 0, 1, 7201),
    ("§5.1 Age lines: the largest", h(("Date", date(0)), ("Age", "7200"), ("Age", "0")), 0, 0, 1, 7201),
    ("§5.1 Age: invalid members are ignored", h(("Date", date(0)), ("Age", "x, 60, -9000")), 0, 0, 1, 61),
    ("§5.1 Age: a float is invalid", h(("Date", date(0)), ("Age", "7200.0")), 0, 0, 1, 1),
    ("§5.1 Age: a negative value is invalid", h(("Date", date(0)), ("Age", "-7200")), 0, 0, 1, 1),
    ("§4.2.3 no Date: resident time plus delay", (), -1, 0, 3, 4),
]


@pytest.mark.parametrize(("section", "headers", "req", "resp", "now", "age"), AGE_CASES, ids=[c[0] for c in AGE_CASES])
def test_current_age(section: str, headers: Headers, req: float, resp: float, now: float, age: float) -> None:
    assert policy.current_age(headers, T0 + req, T0 + resp, T0 + now) == pytest.approx(age), section


# --- decisions (§4, RFC 5861) ------------------------------------------------------------------------------------


def stored(lifetime: float, *pairs: tuple[str, str], stored_at: float = 0) -> StoredTimes:
    return StoredTimes(h(("Date", date(stored_at)), *pairs), T0 + stored_at, T0 + stored_at, lifetime)


DECIDE_CASES: list[tuple[str, Headers, StoredTimes | None, float, policy.Decision]] = [
    ("§4 nothing stored", (), None, 0, Forward("uri-miss")),
    ("§4.2 fresh", (), stored(60), 10, Hit(age=10, ttl=50)),
    ("§4.2 stale", (), stored(60), 61, Forward("stale")),
    (
        "§5.2.1.4 request no-cache",
        h(
            ("Cache-Control", "no-cache"),
        ),
        stored(60),
        1,
        Forward("request"),
    ),
    (
        "§5.2.1.1 request max-age=0",
        h(
            ("Cache-Control", "max-age=0"),
        ),
        stored(60),
        1,
        Forward("request"),
    ),
    (
        "§5.4 Pragma: no-cache without Cache-Control",
        h(
            ("Pragma", "no-cache"),
        ),
        stored(60),
        1,
        Forward("request"),
    ),
    (
        "§5.4 Pragma ignored beside Cache-Control",
        h(("Pragma", "no-cache"), ("Cache-Control", "max-stale")),
        stored(60),
        1,
        Hit(1, 59),
    ),
    (
        "§5.2.1.1 request max-age exceeded",
        h(
            ("Cache-Control", "max-age=5"),
        ),
        stored(60),
        10,
        Forward("request", "older than the request's max-age"),
    ),
    (
        "§5.2.1.1 request max-age satisfied",
        h(
            ("Cache-Control", "max-age=20"),
        ),
        stored(60),
        10,
        Hit(10, 50),
    ),
    (
        "§5.2.1.3 min-fresh not met",
        h(
            ("Cache-Control", "min-fresh=55"),
        ),
        stored(60),
        10,
        Forward("request", "fresh for less than the request's min-fresh"),
    ),
    (
        "§5.2.1.3 min-fresh met",
        h(
            ("Cache-Control", "min-fresh=30"),
        ),
        stored(60),
        10,
        Hit(10, 50),
    ),
    (
        "§5.2.1.2 max-stale=N within",
        h(
            ("Cache-Control", "max-stale=20"),
        ),
        stored(60),
        70,
        Hit(70, -10),
    ),
    (
        "§5.2.1.2 max-stale=N beyond",
        h(
            ("Cache-Control", "max-stale=5"),
        ),
        stored(60),
        70,
        Forward("stale"),
    ),
    (
        "§5.2.1.2 max-stale any",
        h(
            ("Cache-Control", "max-stale"),
        ),
        stored(60),
        5000,
        Hit(5000, -4940),
    ),
    (
        "§5.2.2.2 must-revalidate forbids stale",
        h(
            ("Cache-Control", "max-stale"),
        ),
        stored(60, ("Cache-Control", "max-age=60, must-revalidate")),
        70,
        Forward("stale"),
    ),
    (
        "§5.2.2.8 proxy-revalidate forbids stale (shared)",
        h(
            ("Cache-Control", "max-stale"),
        ),
        stored(60, ("Cache-Control", "proxy-revalidate")),
        70,
        Forward("stale"),
    ),
    (
        "§5.2.2.10 s-maxage implies proxy-revalidate",
        h(
            ("Cache-Control", "max-stale"),
        ),
        stored(60, ("Cache-Control", "s-maxage=60")),
        70,
        Forward("stale"),
    ),
    (
        "§5.2.2.4 response no-cache validates every use",
        (),
        stored(60, ("Cache-Control", "no-cache, max-age=60")),
        1,
        Forward("stale", "response requires validation on every use"),
    ),
    ("§5.2.2.4 no-cache=field does not", (), stored(60, ("Cache-Control", 'no-cache="X", max-age=60')), 1, Hit(1, 59)),
    (
        "RFC 5861 §3 within stale-while-revalidate",
        (),
        stored(60, ("Cache-Control", "max-age=60, stale-while-revalidate=30")),
        80,
        ServeStale(age=80, ttl=-20),
    ),
    (
        "RFC 5861 §3 beyond stale-while-revalidate",
        (),
        stored(60, ("Cache-Control", "max-age=60, stale-while-revalidate=30")),
        100,
        Forward("stale"),
    ),
    (
        "RFC 5861 §3 not with must-revalidate",
        (),
        stored(60, ("Cache-Control", "max-age=60, must-revalidate, stale-while-revalidate=30")),
        80,
        Forward("stale"),
    ),
    (
        "RFC 8246 immutable is fresh like any other",
        (),
        stored(60, ("Cache-Control", "max-age=60, immutable")),
        1,
        Hit(1, 59),
    ),
]


@pytest.mark.parametrize(("section", "req", "entry", "now", "expected"), DECIDE_CASES, ids=[c[0] for c in DECIDE_CASES])
def test_decide(section: str, req: Headers, entry: StoredTimes | None, now: float, expected: policy.Decision) -> None:
    assert policy.decide(req, entry, T0 + now, RULES) == expected, section


def test_operator_default_stale_while_revalidate() -> None:
    """RFC 5861 defaults from config apply when the response sets none (like Varnish grace)."""
    limits = CacheSettings(stale_while_revalidate=30)
    assert policy.decide((), stored(60), T0 + 80, limits) == ServeStale(age=80, ttl=-20)


SIE_CASES: list[tuple[str, Headers, StoredTimes, float, bool]] = [
    (
        "RFC 5861 §4 within stale-if-error",
        (),
        stored(60, ("Cache-Control", "max-age=60, stale-if-error=100")),
        100,
        RULES,
        True,
    ),
    (
        "RFC 5861 §4 beyond stale-if-error",
        (),
        stored(60, ("Cache-Control", "max-age=60, stale-if-error=10")),
        100,
        RULES,
        False,
    ),
    ("RFC 5861 §4 none given", (), stored(60), 100, RULES, False),
    ("RFC 5861 §4 operator default", (), stored(60), 100, CacheSettings(stale_if_error=60), True),
    (
        "RFC 5861 §4 request stale-if-error",
        h(
            ("Cache-Control", "stale-if-error=50"),
        ),
        stored(60),
        100,
        RULES,
        True,
    ),
    (
        "§5.2.2.2 must-revalidate wins over stale-if-error",
        (),
        stored(60, ("Cache-Control", "max-age=60, must-revalidate, stale-if-error=100")),
        100,
        RULES,
        False,
    ),
]


@pytest.mark.parametrize(
    ("section", "req", "entry", "now", "limits", "allowed"), SIE_CASES, ids=[c[0] for c in SIE_CASES]
)
def test_stale_if_error(
    section: str, req: Headers, entry: StoredTimes, now: float, limits: CacheSettings, allowed: bool
) -> None:
    assert policy.stale_if_error_allows(req, entry, T0 + now, limits) is allowed, section


# --- retention ---------------------------------------------------------------------------------------------------


def test_retention_keeps_entries_past_freshness() -> None:
    """§4.3: entries outlive freshness by stale_keep (or a longer RFC 5861 window) so they can be revalidated."""
    assert policy.retention((), 60, RULES) == 60 + 86400
    long_swr = h(("Cache-Control", "stale-while-revalidate=200000"))
    assert policy.retention(long_swr, 60, RULES) == 60 + 200000


# --- validation (§4.3) -------------------------------------------------------------------------------------------

VALIDATOR_CASES = [
    (
        "§4.3.1 ETag -> If-None-Match",
        h(
            ("ETag", '"a"'),
        ),
        h(
            ("If-None-Match", '"a"'),
        ),
    ),
    (
        "§4.3.1 Last-Modified -> If-Modified-Since",
        h(
            ("Last-Modified", date(-5)),
        ),
        h(
            ("If-Modified-Since", date(-5)),
        ),
    ),
    (
        "§4.3.1 both",
        h(("ETag", 'W/"a"'), ("Last-Modified", date(-5))),
        h(("If-None-Match", 'W/"a"'), ("If-Modified-Since", date(-5))),
    ),
    (
        "§4.3.1 invalid Last-Modified is not a validator",
        h(
            ("Last-Modified", "yesterday"),
        ),
        (),
    ),
    (
        "§4.3.1 none",
        h(
            ("Content-Type", "text/plain"),
        ),
        (),
    ),
]


@pytest.mark.parametrize(("section", "headers", "expected"), VALIDATOR_CASES, ids=[c[0] for c in VALIDATOR_CASES])
def test_validators(section: str, headers: Headers, expected: Headers) -> None:
    assert policy.validators(headers) == expected, section


def test_freshen_updates_fields_but_not_the_body_description() -> None:
    """§4.3.4 / §3.2: a 304's fields replace the stored ones, except those describing the stored body."""
    old = h(
        ("Content-Type", "text/html"),
        ("Content-Length", "10"),
        ("Cache-Control", "max-age=1"),
        ("ETag", '"a"'),
        ("Age", "11"),
    )
    new = h(
        ("Cache-Control", "max-age=60"),
        ("Content-Length", "0"),
        ("Content-Type", "x/y"),
        ("X-New", "1"),
        ("Connection", "close"),
    )
    merged = dict(policy.freshen(old, new))
    assert merged == {
        "Content-Type": "text/html",
        "Content-Length": "10",
        "ETag": '"a"',
        "Cache-Control": "max-age=60",
        "X-New": "1",
    }


NOT_MODIFIED_CASES: list[tuple[str, Headers, int, Headers, bool]] = [
    (
        "§4.3.2 If-None-Match matches",
        h(
            ("If-None-Match", '"a"'),
        ),
        200,
        h(
            ("ETag", '"a"'),
        ),
        True,
    ),
    (
        "§4.3.2 weak comparison",
        h(
            ("If-None-Match", 'W/"a"'),
        ),
        200,
        h(
            ("ETag", '"a"'),
        ),
        True,
    ),
    (
        "§4.3.2 one of a list",
        h(
            ("If-None-Match", '"x", "a"'),
        ),
        200,
        h(
            ("ETag", '"a"'),
        ),
        True,
    ),
    (
        "§4.3.2 If-None-Match: *",
        h(
            ("If-None-Match", "*"),
        ),
        200,
        h(
            ("ETag", '"a"'),
        ),
        True,
    ),
    (
        "§4.3.2 no match",
        h(
            ("If-None-Match", '"b"'),
        ),
        200,
        h(
            ("ETag", '"a"'),
        ),
        False,
    ),
    (
        "§4.3.2 If-None-Match wins over If-Modified-Since",
        h(("If-None-Match", '"b"'), ("If-Modified-Since", date(0))),
        200,
        h(("ETag", '"a"'), ("Last-Modified", date(-9))),
        False,
    ),
    (
        "§4.3.2 If-Modified-Since not modified",
        h(
            ("If-Modified-Since", date(0)),
        ),
        200,
        h(
            ("Last-Modified", date(-9)),
        ),
        True,
    ),
    (
        "§4.3.2 If-Modified-Since modified",
        h(
            ("If-Modified-Since", date(-20)),
        ),
        200,
        h(
            ("Last-Modified", date(-9)),
        ),
        False,
    ),
    (
        "§4.3.2 invalid If-Modified-Since ignored",
        h(
            ("If-Modified-Since", "nope"),
        ),
        200,
        h(
            ("Last-Modified", date(-9)),
        ),
        False,
    ),
    (
        "§4.3.2 only for 200",
        h(
            ("If-None-Match", '"a"'),
        ),
        404,
        h(
            ("ETag", '"a"'),
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("section", "req", "status", "stored_headers", "expected"),
    NOT_MODIFIED_CASES,
    ids=[c[0] for c in NOT_MODIFIED_CASES],
)
def test_not_modified(section: str, req: Headers, status: int, stored_headers: Headers, expected: bool) -> None:
    assert policy.not_modified(req, status, stored_headers) is expected, section


def test_not_modified_headers() -> None:
    """RFC 9110 §15.4.5: a 304 carries the validators and caching fields, not the body's."""
    stored_headers = h(
        ("ETag", '"a"'), ("Content-Type", "text/html"), ("Cache-Control", "max-age=9"), ("Vary", "Accept")
    )
    assert [k for k, _ in policy.not_modified_headers(stored_headers)] == ["ETag", "Cache-Control", "Vary"]


# --- Vary (§4.1) ---------------------------------------------------------------------------------------------------

VARY_FIELD_CASES = [
    (
        "§4.1 one field",
        h(
            ("Vary", "Accept-Encoding"),
        ),
        ("accept-encoding",),
    ),
    ("§4.1 lists and lines combine, sorted and unique", h(("Vary", "B, a"), ("Vary", "A")), ("a", "b")),
    (
        "§4.1 Vary: * ",
        h(
            ("Vary", "Accept, *"),
        ),
        ("*",),
    ),
    ("§4.1 no Vary", (), ()),
]


@pytest.mark.parametrize(("section", "headers", "fields"), VARY_FIELD_CASES, ids=[c[0] for c in VARY_FIELD_CASES])
def test_vary_fields(section: str, headers: Headers, fields: tuple[str, ...]) -> None:
    assert policy.vary_fields(headers) == fields, section


VARIANT_CASES: list[tuple[str, tuple[str, ...], Headers, Headers, bool]] = [
    (
        "§4.1 same value matches",
        ("accept-language",),
        h(
            ("Accept-Language", "fr"),
        ),
        h(
            ("accept-language", "fr"),
        ),
        True,
    ),
    (
        "§4.1 different value does not",
        ("accept-language",),
        h(
            ("Accept-Language", "fr"),
        ),
        h(
            ("Accept-Language", "en"),
        ),
        False,
    ),
    (
        "§4.1 whitespace after commas is normalised",
        ("accept",),
        h(
            ("Accept", "a/b,c/d"),
        ),
        h(
            ("Accept", "a/b, c/d"),
        ),
        True,
    ),
    (
        "§4.1 field lines combine",
        ("accept",),
        h(("Accept", "a/b"), ("Accept", "c/d")),
        h(
            ("Accept", "a/b, c/d"),
        ),
        True,
    ),
    (
        "§4.1 case-insensitive values of Accept-*",
        ("accept-encoding",),
        h(
            ("Accept-Encoding", "GZIP"),
        ),
        h(
            ("Accept-Encoding", "gzip"),
        ),
        True,
    ),
    (
        "§4.1 other values keep their case",
        ("x-mode",),
        h(
            ("X-Mode", "A"),
        ),
        h(
            ("X-Mode", "a"),
        ),
        False,
    ),
    (
        "§4.1 absent differs from empty",
        ("x-mode",),
        (),
        h(
            ("X-Mode", ""),
        ),
        False,
    ),
    (
        "§4.1 both absent match",
        ("x-mode",),
        (),
        h(
            ("Other", "1"),
        ),
        True,
    ),
    (
        "§4.1 Accept-Encoding: browser spellings of br+gzip share",
        ("accept-encoding",),
        h(("Accept-Encoding", "gzip, deflate, br")),
        h(("Accept-Encoding", "br,gzip")),
        True,
    ),
    (
        "§4.1 Accept-Encoding: x-gzip is gzip",
        ("accept-encoding",),
        h(("Accept-Encoding", "x-gzip")),
        h(("Accept-Encoding", "gzip")),
        True,
    ),
    (
        "§4.1 Accept-Encoding: zstd is its own variant",
        ("accept-encoding",),
        h(("Accept-Encoding", "gzip, deflate, br, zstd")),
        h(("Accept-Encoding", "gzip, deflate, br")),
        False,
    ),
    (
        "§4.1 Accept-Encoding: q=0 excludes a coding",
        ("accept-encoding",),
        h(("Accept-Encoding", "gzip;q=0, br")),
        h(("Accept-Encoding", "br")),
        True,
    ),
    (
        "§4.1 Accept-Encoding: gzip alone differs from br+gzip",
        ("accept-encoding",),
        h(("Accept-Encoding", "gzip")),
        h(("Accept-Encoding", "gzip, br")),
        False,
    ),
    (
        "§4.1 Accept-Encoding: absent differs from identity only",
        ("accept-encoding",),
        (),
        h(("Accept-Encoding", "")),
        False,
    ),
    (
        "§4.1 Accept-Encoding: an invalid qvalue compares as written",
        ("accept-encoding",),
        h(("Accept-Encoding", "gzip;q=x")),
        h(("Accept-Encoding", "gzip")),
        False,
    ),
    (
        "§4.1 presented fields other than Vary's do not matter",
        ("accept",),
        h(("Accept", "a/b"), ("Foo", "1")),
        h(("Accept", "a/b"), ("Foo", "2")),
        True,
    ),
    ("§4.1 a presented Foo: 1 and Foo: 2 differ", ("foo",), h(("Foo", "1")), h(("Foo", "2")), False),
]


@pytest.mark.parametrize(("section", "fields", "a", "b", "same"), VARIANT_CASES, ids=[c[0] for c in VARIANT_CASES])
def test_variant_key(section: str, fields: tuple[str, ...], a: Headers, b: Headers, same: bool) -> None:
    assert (policy.variant_key(fields, a) == policy.variant_key(fields, b)) is same, section


ACCEPTED_CODINGS: list[tuple[str, str, str | None]] = [
    ("RFC 9110 §12.5.3 Chrome", "gzip, deflate, br, zstd", "br,gzip,identity,zstd"),
    ("RFC 9110 §12.5.3 Firefox", "gzip, deflate, br", "br,gzip,identity"),
    ("RFC 9110 §12.5.3 Safari", "gzip, deflate, br", "br,gzip,identity"),
    ("RFC 9110 §12.5.3 curl --compressed", "deflate, gzip, br, zstd", "br,gzip,identity,zstd"),
    ("RFC 9110 §12.5.3 old clients", "gzip,deflate", "gzip,identity"),
    ("RFC 9110 §12.5.3 weights above zero accept", "br;q=1.0, gzip;q=0.8, *;q=0.1", "br,gzip,identity,zstd"),
    ("RFC 9110 §12.5.3 empty: identity only", "", "identity"),
    ("RFC 9110 §12.5.3 identity;q=0 refuses it", "gzip, identity;q=0", "gzip"),
    ("RFC 9110 §12.5.3 *;q=0 refuses what is not named", "br, *;q=0", "br"),
    ("RFC 9110 §12.5.3 * accepts every coding", "*", "br,gzip,identity,zstd"),
    ("RFC 9110 §8.4.1.3 x-gzip is gzip", "x-gzip", "gzip,identity"),
    ("RFC 9110 §12.4.2 the first weight of a coding counts", "gzip;q=0, gzip", "identity"),
    ("RFC 9110 §12.4.2 a qvalue over 1 is invalid", "gzip;q=2", None),
    ("RFC 9110 §12.4.2 a qvalue that is no number is invalid", "gzip;q=high", None),
    ("RFC 9110 §12.5.3 names are caseless", "GZIP, Br", "br,gzip,identity"),
]


@pytest.mark.parametrize(("section", "raw", "codings"), ACCEPTED_CODINGS, ids=[c[0] for c in ACCEPTED_CODINGS])
def test_accepted_codings(section: str, raw: str, codings: str | None) -> None:
    assert policy.accepted_codings(raw) == codings, section


SHARED_WITH_AUTHORIZED: list[tuple[str, Headers, bool]] = [
    ("§3.5 public", h(("Cache-Control", "public, max-age=60")), True),
    ("§3.5 s-maxage", h(("Cache-Control", "s-maxage=60")), True),
    ("§3.5 must-revalidate", h(("Cache-Control", "max-age=60, must-revalidate")), True),
    ("§3.5 max-age alone does not", h(("Cache-Control", "max-age=60")), False),
    ("§3.5 proxy-revalidate does not", h(("Cache-Control", "max-age=60, proxy-revalidate")), False),
    ("§3.5 Expires alone does not", h(("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")), False),
    ("§3.5 no Cache-Control does not", (), False),
]


@pytest.mark.parametrize(
    ("section", "headers", "shared"), SHARED_WITH_AUTHORIZED, ids=[c[0] for c in SHARED_WITH_AUTHORIZED]
)
def test_shared_with_authorized(section: str, headers: Headers, shared: bool) -> None:
    assert policy.shared_with_authorized(headers) is shared, section


# --- invalidation (§4.4) -------------------------------------------------------------------------------------------

INVALIDATION_CASES: list[tuple[str, str, int, Headers, list[str]]] = [
    ("§4.4 POST success invalidates the target", "POST", 201, (), ["http://o.test/a"]),
    (
        "§4.4 with same-origin Location",
        "POST",
        303,
        h(
            ("Location", "/b"),
        ),
        ["http://o.test/a", "http://o.test/b"],
    ),
    (
        "§4.4 with Content-Location",
        "PUT",
        200,
        h(
            ("Content-Location", "http://o.test/c"),
        ),
        ["http://o.test/a", "http://o.test/c"],
    ),
    (
        "§4.4 not a foreign-origin Location",
        "DELETE",
        200,
        h(
            ("Location", "http://evil.test/x"),
        ),
        ["http://o.test/a"],
    ),
    ("§4.4 unknown methods are unsafe", "PURGE", 200, (), ["http://o.test/a"]),
    ("§4.4 error responses invalidate nothing", "POST", 500, (), []),
    ("§4.4 safe methods invalidate nothing", "OPTIONS", 200, (), []),
]


@pytest.mark.parametrize(
    ("section", "method", "status", "headers", "urls"), INVALIDATION_CASES, ids=[c[0] for c in INVALIDATION_CASES]
)
def test_invalidation(section: str, method: str, status: int, headers: Headers, urls: list[str]) -> None:
    assert policy.invalidated_urls(method, status, "http://o.test/a", headers) == urls, section


# --- dates -------------------------------------------------------------------------------------------------------

DATE_CASES = [
    ("RFC 9110 §5.6.7 IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0),
    ("RFC 9110 §5.6.7 obsolete RFC 850", "Sunday, 06-Nov-94 08:49:37 GMT", 784111777.0),
    ("RFC 9110 §5.6.7 obsolete asctime", "Sun Nov  6 08:49:37 1994", 784111777.0),
    ("RFC 9110 §5.6.7 invalid", "not a date", None),
    ("RFC 9110 §5.6.7 zero", "0", None),
]


@pytest.mark.parametrize(("section", "raw", "epoch"), DATE_CASES, ids=[c[0] for c in DATE_CASES])
def test_http_date(section: str, raw: str, epoch: float | None) -> None:
    assert policy.http_date(raw) == epoch, section


# --- strict HTTP-dates (RFC 9110 §5.6.7) ----------------------------------------------------------------------

NOV_6_1994 = 784111777.0
STRICT_DATE_CASES: list[tuple[str, str, float | None]] = [
    ("RFC 9110 §5.6.7 IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", NOV_6_1994),
    ("RFC 9110 §5.6.7 RFC 850", "Sunday, 06-Nov-94 08:49:37 GMT", NOV_6_1994),
    ("RFC 9110 §5.6.7 asctime, one-digit day", "Sun Nov  6 08:49:37 1994", NOV_6_1994),
    ("RFC 9110 §5.6.7 asctime, two-digit day", "Sun Nov 16 08:49:37 1994", NOV_6_1994 + 10 * 86400),
    ("RFC 9110 §5.5 surrounding whitespace is not the value", "  Sun, 06 Nov 1994 08:49:37 GMT ", NOV_6_1994),
    ("RFC 9110 §5.6.7 a leap second", "Sat, 31 Dec 2016 23:59:60 GMT", 1483228800.0),
    ("RFC 9110 §5.6.7 RFC 850: within 50 years ahead", "Tuesday, 06-Nov-35 08:49:37 GMT", 2077951777.0),
    ("RFC 9110 §5.6.7 RFC 850: over 50 years ahead is the past", "Wednesday, 01-Dec-99 00:00:00 GMT", 944006400.0),
    ("RFC 9110 §5.6.7 zone UTC", "Sun, 06 Nov 1994 08:49:37 UTC", None),
    ("RFC 9110 §5.6.7 zone AEST", "Sun, 06 Nov 1994 08:49:37 AEST", None),
    ("RFC 9110 §5.6.7 numeric zone", "Sun, 06 Nov 1994 08:49:37 +0000", None),
    ("RFC 9110 §5.6.7 no zone", "Sun, 06 Nov 1994 08:49:37", None),
    ("RFC 9110 §5.6.7 lower-case zone", "Sun, 06 Nov 1994 08:49:37 gmt", None),
    ("RFC 9110 §5.6.7 two-digit year in IMF-fixdate", "Sun, 06 Nov 94 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 four-digit year in RFC 850", "Sunday, 06-Nov-1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 no comma after the day name", "Sun 06 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 several spaces", "Sun,  06 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 several spaces before the time", "Sun, 06 Nov 1994  08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 dashes in IMF-fixdate", "Sun, 06-Nov-1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 dots in the time", "Sun, 06 Nov 1994 08.49.37 GMT", None),
    ("RFC 9110 §5.6.7 one-digit hour", "Sun, 06 Nov 1994 8:49:37 GMT", None),
    ("RFC 9110 §5.6.7 one-digit day in IMF-fixdate", "Sun, 6 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 long day name in IMF-fixdate", "Sunday, 06 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 short day name in RFC 850", "Sun, 06-Nov-94 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 names are case-sensitive", "sun, 06 nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 month spelled out", "Sun, 06 November 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 hour 24", "Sun, 06 Nov 1994 24:00:00 GMT", None),
    ("RFC 9110 §5.6.7 minute 60", "Sun, 06 Nov 1994 08:60:00 GMT", None),
    ("RFC 9110 §5.6.7 30 February", "Tue, 30 Feb 2027 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 day 00", "Sun, 00 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 year 0000", "Sun, 06 Nov 0000 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 29 February of a leap year", "Tue, 29 Feb 2000 00:00:00 GMT", 951782400.0),
    ("RFC 9110 §5.6.7 29 February of 1900", "Thu, 29 Feb 1900 00:00:00 GMT", None),
    ("RFC 9110 §5.6.7 asctime with a zero-padded day", "Sun Nov 06 08:49:37 1994", NOV_6_1994),
    ("RFC 9110 §5.6.7 asctime with one space before a one-digit day", "Sun Nov 6 08:49:37 1994", None),
    ("RFC 9110 §5.6.7 asctime with GMT", "Sun Nov  6 08:49:37 1994 GMT", None),
    ("RFC 9110 §5.6.7 ISO 8601", "1994-11-06T08:49:37Z", None),
    ("RFC 9110 §5.6.7 a list of two dates", "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 non-ASCII digits", "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT", None),
    ("RFC 9110 §5.6.7 empty", "", None),
]


@pytest.mark.parametrize(("section", "raw", "epoch"), STRICT_DATE_CASES, ids=[c[0] for c in STRICT_DATE_CASES])
def test_strict_http_date(section: str, raw: str, epoch: float | None) -> None:
    assert policy.http_date(raw) == epoch, section


def test_rfc850_year_follows_the_reference_year() -> None:
    """RFC 9110 §5.6.7: "more than 50 years in the future" is judged from the message's own time when known."""
    assert policy.http_date("Wednesday, 01-Dec-99 00:00:00 GMT", 2060) == 4099766400.0
    assert policy.date_field(h(("Date", "Wednesday, 01-Dec-99 00:00:00 GMT")), "date", at=T0) == 944006400.0


DATE_FIELD_CASES: list[tuple[str, Headers, float | None]] = [
    ("RFC 9110 §5.6.7 one valid line", h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")), NOV_6_1994),
    ("RFC 9110 §5.5 absent", (), None),
    (
        "RFC 9110 §5.5 two lines of a singleton field",
        h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")),
        None,
    ),
]


@pytest.mark.parametrize(("section", "headers", "epoch"), DATE_FIELD_CASES, ids=[c[0] for c in DATE_FIELD_CASES])
def test_date_field(section: str, headers: Headers, epoch: float | None) -> None:
    assert policy.date_field(headers, "last-modified") == epoch, section


STRICT_CONDITIONAL_CASES: list[tuple[str, Headers, bool]] = [
    ("RFC 9110 §13.1.3 a valid If-Modified-Since after Last-Modified", h(("If-Modified-Since", date(10))), True),
    (
        "RFC 9110 §13.1.3 If-Modified-Since in UTC is ignored",
        h(("If-Modified-Since", date(10).replace("GMT", "UTC"))),
        False,
    ),
    (
        "RFC 9110 §13.1.3 two If-Modified-Since lines are ignored",
        h(("If-Modified-Since", date(10)), ("If-Modified-Since", date(20))),
        False,
    ),
]


@pytest.mark.parametrize(
    ("section", "req", "expected"), STRICT_CONDITIONAL_CASES, ids=[c[0] for c in STRICT_CONDITIONAL_CASES]
)
def test_strict_if_modified_since(section: str, req: Headers, expected: bool) -> None:
    assert policy.not_modified(req, 200, h(("Last-Modified", date(0)))) is expected, section


def test_validators_skip_a_malformed_last_modified() -> None:
    """§4.3.1 with RFC 9110 §5.6.7: a Last-Modified that is not a valid HTTP-date is no validator to send."""
    assert policy.validators(h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 UTC"))) == ()
    assert policy.validators(h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"))) == (
        ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
    )


# --- targeted cache control (RFC 9213) ------------------------------------------------------------------------

CDN = "CDN-Cache-Control"
OWN = "Grenier-Cache-Control"
TARGETED_LIFETIME_CASES: list[tuple[str, Headers, CacheSettings, float]] = [
    (
        "RFC 9213 §2.1 CDN-Cache-Control over Cache-Control",
        h(("Cache-Control", "max-age=5"), (CDN, "max-age=600")),
        RULES,
        600,
    ),
    ("RFC 9213 §2.1 own field over CDN-Cache-Control", h((CDN, "max-age=600"), (OWN, "max-age=900")), RULES, 900),
    (
        "RFC 9213 §2.1 the targeted field wins wholly: Cache-Control's s-maxage is ignored",
        h(("Cache-Control", "s-maxage=5"), (CDN, "max-age=600")),
        RULES,
        600,
    ),
    (
        "RFC 9213 §2.1 the targeted field wins wholly: Expires is ignored",
        h(("Expires", date(5)), ("Date", date(0)), (CDN, "stale-if-error=60")),
        RULES,
        30,
    ),
    (
        "RFC 9213 §2.1 own field name is configurable",
        h((CDN, "max-age=600"), ("X-Edge", "max-age=7")),
        CacheSettings(targeted_field="X-Edge"),
        7,
    ),
    (
        "RFC 9213 §2.1 no own field when unset",
        h((CDN, "max-age=600"), (OWN, "max-age=900")),
        CacheSettings(targeted_field=""),
        600,
    ),
    (
        "RFC 9213 §2.2 an invalid targeted field is ignored",
        h(("Cache-Control", "max-age=5"), (CDN, "max-age=60;;")),
        RULES,
        5,
    ),
    ("RFC 9213 §2.2 an empty targeted field is ignored", h(("Cache-Control", "max-age=5"), (CDN, "")), RULES, 5),
    (
        "RFC 9213 §2.2 an invalid own field falls back to CDN-Cache-Control",
        h(("Cache-Control", "max-age=5"), (CDN, "max-age=60"), (OWN, 'max-age="x')),
        RULES,
        60,
    ),
    (
        "RFC 9213 §2.1 a decimal max-age is not consumed",
        h(("Cache-Control", "max-age=5"), (CDN, "max-age=60.5")),
        RULES,
        30,
    ),
    (
        "RFC 9213 §2.2 upper-case keys do not parse (RFC 8941)",
        h(("Cache-Control", "max-age=5"), (CDN, "Max-Age=60")),
        RULES,
        5,
    ),
    ("RFC 9213 §2.2 lines combine into one dictionary", h((CDN, "public"), (CDN, "max-age=60")), RULES, 60),
]


@pytest.mark.parametrize(
    ("section", "headers", "rules", "lifetime"), TARGETED_LIFETIME_CASES, ids=[c[0] for c in TARGETED_LIFETIME_CASES]
)
def test_targeted_lifetime(section: str, headers: Headers, rules: CacheSettings, lifetime: float) -> None:
    assert policy.freshness_lifetime(200, headers, T0, rules) == lifetime, section


TARGETED_STORE_CASES: list[tuple[str, Headers, str | None]] = [
    (
        "RFC 9213 §2.1 CDN-Cache-Control no-store wins over Cache-Control",
        h(("Cache-Control", "max-age=60"), (CDN, "no-store")),
        "response said no-store",
    ),
    (
        "RFC 9213 §2.1 CDN-Cache-Control lets a no-store response be stored here",
        h(("Cache-Control", "no-store"), (CDN, "max-age=60")),
        None,
    ),
    (
        "RFC 9213 §2.1 a private Cache-Control is ignored here",
        h(("Cache-Control", "private"), (OWN, "max-age=60")),
        None,
    ),
    ("RFC 9213 §2.1 targeted private", h(("Cache-Control", "max-age=60"), (OWN, "private")), "response is private"),
    (
        "RFC 9213 §3.1 none: not a directive, but the field is valid",
        h(("Cache-Control", "no-store"), (CDN, "none")),
        None,
    ),
]


@pytest.mark.parametrize(("section", "resp", "reason"), TARGETED_STORE_CASES, ids=[c[0] for c in TARGETED_STORE_CASES])
def test_targeted_storability(section: str, resp: Headers, reason: str | None) -> None:
    got = policy.not_storable_reason("GET", 200, (), resp, RULES)
    assert (got if reason is None else (got or "")[: len(reason)]) == reason, section


TARGETED_DECIDE_CASES: list[tuple[str, Headers, float, policy.Decision]] = [
    (
        "RFC 9213 §2.1 targeted must-revalidate forbids serving stale",
        h(("Cache-Control", "max-age=10, stale-while-revalidate=600"), (CDN, "max-age=10, must-revalidate")),
        20,
        Forward("stale"),
    ),
    (
        "RFC 9213 §2.1 targeted stale-while-revalidate",
        h(("Cache-Control", "max-age=10, must-revalidate"), (CDN, "max-age=10, stale-while-revalidate=600")),
        20,
        ServeStale(age=20, ttl=-10),
    ),
    (
        "RFC 9213 §2.1 targeted no-cache validates every use",
        h(("Cache-Control", "max-age=600"), (OWN, "no-cache")),
        1,
        Forward("stale", "response requires validation on every use"),
    ),
]


@pytest.mark.parametrize(
    ("section", "resp", "now", "expected"), TARGETED_DECIDE_CASES, ids=[c[0] for c in TARGETED_DECIDE_CASES]
)
def test_targeted_decide(section: str, resp: Headers, now: float, expected: policy.Decision) -> None:
    assert policy.decide((), stored(10, *resp), T0 + now, RULES) == expected, section
