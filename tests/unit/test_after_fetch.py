"""``policy.after_fetch``, the twin of ``decide``: what a fetch job does with what came back. One row per rule, named
by the RFC section it checks (RFC 9111 unless said); fixed times, exact decisions."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from core import policy
from core.policy import DoNotStore, Fail, Freshen, Headers, Received, StandIn, Store, StoredTimes
from core.settings import CacheSettings

T0 = 1_800_000_000.0
RULES = CacheSettings()
KEEP = RULES.stale_keep
NO_KEEP = CacheSettings(default_ttl=0, stale_keep=0)


def date(offset: float) -> str:
    return formatdate(T0 + offset, usegmt=True)


def stored(*pairs: tuple[str, str], lifetime: float = 60, status: int = 200) -> StoredTimes:
    """A response stored at T0 (its Date), fresh for ``lifetime``."""
    return StoredTimes((("Date", date(0)), *pairs), T0, T0, lifetime, status)


def received(status: int, *pairs: tuple[str, str], at: float = 100) -> Received:
    """What the upstream answered ``at`` seconds after T0."""
    return Received(status, (("Date", date(at)), *pairs), T0 + at, T0 + at)


def fields(*pairs: tuple[str, str], at: float = 100) -> Headers:
    return (("Date", date(at)), *pairs)


ETAG = ("ETag", '"v1"')
MAX_AGE_60 = ("Cache-Control", "max-age=60")
MAX_AGE_120 = ("Cache-Control", "max-age=120")

CASES: list[tuple[str, StoredTimes | None, Received | None, CacheSettings, policy.AfterFetch]] = [
    (
        "§3 a storable response is stored for its freshness plus the stale window",
        None,
        received(200, MAX_AGE_60),
        RULES,
        Store(200, fields(MAX_AGE_60), 60, 60 + KEEP),
    ),
    (
        "§3 hop-by-hop fields are not stored (RFC 9110 §7.6.1)",
        None,
        received(200, MAX_AGE_60, ("Connection", "close"), ("Keep-Alive", "timeout=5")),
        RULES,
        Store(200, fields(MAX_AGE_60), 60, 60 + KEEP),
    ),
    (
        "§5.2.2.5 no-store: given to its requester only",
        None,
        received(200, ("Cache-Control", "no-store")),
        RULES,
        DoNotStore(200, fields(("Cache-Control", "no-store")), 30, "response said no-store"),
    ),
    (
        "§5.2.2.7 private: given to its requester only",
        None,
        received(200, ("Cache-Control", "private, max-age=60")),
        RULES,
        DoNotStore(200, fields(("Cache-Control", "private, max-age=60")), 60, "response is private"),
    ),
    (
        "§4.3.4 a 304 freshens the stored response: its fields updated, a new lifetime",
        stored(ETAG, MAX_AGE_60),
        received(304, ETAG, MAX_AGE_120),
        RULES,
        Freshen(200, fields(ETAG, MAX_AGE_120), 120, 120 + KEEP),
    ),
    (
        "§4.3.4 a 304 keeps the stored fields it does not carry",
        stored(ETAG, MAX_AGE_60, ("Content-Type", "text/plain")),
        received(304, ETAG),
        RULES,
        Freshen(200, (MAX_AGE_60, ("Content-Type", "text/plain"), ("Date", date(100)), ETAG), 60, 60 + KEEP),
    ),
    (
        "§4.3.4 a 304 that says no-store confirms the body for its requester but is not stored",
        stored(ETAG, MAX_AGE_60),
        received(304, ETAG, ("Cache-Control", "no-store")),
        RULES,
        DoNotStore(200, fields(ETAG, ("Cache-Control", "no-store")), 30, "response said no-store", freshened=True),
    ),
    (
        "§4.3.1 a 304 to a request that carried no validators freshens nothing",
        stored(MAX_AGE_60),
        received(304),
        RULES,
        DoNotStore(304, fields(), 30, "status 304 is not a complete final response"),
    ),
    (
        "RFC 5861 §4 stale-if-error: the stale response stands in for no answer",
        stored(("Cache-Control", "max-age=60, stale-if-error=600")),
        None,
        RULES,
        StandIn("the upstream gave no response"),
    ),
    (
        "RFC 5861 §4 stale-if-error: the stale response stands in for a 5xx",
        stored(("Cache-Control", "max-age=60, stale-if-error=600")),
        received(503),
        RULES,
        StandIn("upstream answered 503"),
    ),
    (
        "RFC 5861 §4 the operator's default stale-if-error window counts too",
        stored(MAX_AGE_60),
        received(500),
        CacheSettings(stale_if_error=600),
        StandIn("upstream answered 500"),
    ),
    (
        "RFC 5861 §4 past its stale-if-error window nothing stands in",
        stored(("Cache-Control", "max-age=60, stale-if-error=10")),
        None,
        RULES,
        Fail(),
    ),
    (
        "§4.2.4 / §5.2.2.2 must-revalidate: a stale response never stands in",
        stored(("Cache-Control", "max-age=60, must-revalidate, stale-if-error=600")),
        None,
        RULES,
        Fail(),
    ),
    ("no answer and nothing stored: the job fails", None, None, RULES, Fail()),
    (
        "poisoning guard: an error without explicit freshness never replaces a stored success",
        stored(MAX_AGE_60),
        received(404),
        RULES,
        DoNotStore(404, fields(), 30, policy.ERROR_KEEPS_STORED),
    ),
    (
        "poisoning guard: an error with explicit freshness does replace it",
        stored(MAX_AGE_60),
        received(404, MAX_AGE_60),
        RULES,
        Store(404, fields(MAX_AGE_60), 60, 60 + KEEP),
    ),
    (
        "poisoning guard: a 5xx never replaces a stored success, even with explicit freshness",
        stored(MAX_AGE_60),
        received(500, MAX_AGE_60),
        RULES,
        DoNotStore(500, fields(MAX_AGE_60), 60, policy.SERVER_ERROR_KEEPS_STORED),
    ),
    (
        "poisoning guard: a 5xx never replaces a stored 4xx either",
        stored(MAX_AGE_60, status=404),
        received(503, MAX_AGE_60),
        RULES,
        DoNotStore(503, fields(MAX_AGE_60), 60, policy.SERVER_ERROR_KEEPS_STORED),
    ),
    (
        "§3 a 5xx with explicit freshness may replace a stored 5xx",
        stored(MAX_AGE_60, status=500),
        received(500, MAX_AGE_60),
        RULES,
        Store(500, fields(MAX_AGE_60), 60, 60 + KEEP),
    ),
    (
        "§3 a 5xx with explicit freshness is stored when nothing is",
        None,
        received(500, MAX_AGE_60),
        RULES,
        Store(500, fields(MAX_AGE_60), 60, 60 + KEEP),
    ),
    (
        "a 5xx without stale-if-error is an ordinary response (not stored without explicit freshness)",
        stored(MAX_AGE_60),
        received(503),
        RULES,
        DoNotStore(503, fields(), 30, "status 503 has no explicit freshness and is not heuristically cacheable"),
    ),
    (
        "§4.2.1 an already stale response with stale_keep 0 is not kept",
        None,
        received(200),
        NO_KEEP,
        DoNotStore(200, fields(), 0, "response is already stale and stale_keep is 0"),
    ),
]


@pytest.mark.parametrize(("rule", "was", "got", "rules", "expected"), CASES, ids=[c[0] for c in CASES])
def test_after_fetch(
    rule: str, was: StoredTimes | None, got: Received | None, rules: CacheSettings, expected: policy.AfterFetch
) -> None:
    assert policy.after_fetch((), was, got, T0 + 100, rules) == expected, rule


def test_after_fetch_reads_the_request_directives() -> None:
    """§5.2.1.5: a request's no-store keeps even a storable response out of the cache."""
    request = (("Cache-Control", "no-store"),)
    decision = policy.after_fetch(request, None, received(200, MAX_AGE_60), T0 + 100, RULES)
    assert decision == DoNotStore(200, fields(MAX_AGE_60), 60, "request said no-store")


def test_request_stale_if_error_widens_the_window() -> None:
    """RFC 5861 §4: the request's own stale-if-error may accept an older stale response than the origin's."""
    request = (("Cache-Control", "stale-if-error=3600"),)
    decision = policy.after_fetch(request, stored(MAX_AGE_60), None, T0 + 100, RULES)
    assert decision == StandIn("the upstream gave no response")


UNREACHABLE = StandIn("the origin could not be reached", policy.STALE_IF_UNREACHABLE)
ON = CacheSettings(stale_if_unreachable=600)

UNREACHABLE_CASES: list[tuple[str, StoredTimes | None, CacheSettings, policy.AfterFetch]] = [
    ("§4.2.4 disconnected: the stale response stands in", stored(MAX_AGE_60), ON, UNREACHABLE),
    ("§4.2.4 the default window is a day", stored(MAX_AGE_60), RULES, UNREACHABLE),
    (
        "§4.2.4 beyond cache.stale_if_unreachable: no stand-in",
        stored(MAX_AGE_60),
        CacheSettings(stale_if_unreachable=39),
        Fail(),
    ),
    (
        "§4.2.4 at the edge of the window it still stands in",
        stored(MAX_AGE_60),
        CacheSettings(stale_if_unreachable=40),
        UNREACHABLE,
    ),
    ("§4.2.4 stale_if_unreachable = 0 disables it", stored(MAX_AGE_60), CacheSettings(stale_if_unreachable=0), Fail()),
    (
        "§5.2.2.2 must-revalidate forbids it",
        stored(("Cache-Control", "max-age=60, must-revalidate")),
        ON,
        Fail(),
    ),
    ("§5.2.2.8 proxy-revalidate forbids it", stored(("Cache-Control", "max-age=60, proxy-revalidate")), ON, Fail()),
    ("§5.2.2.10 s-maxage forbids it", stored(("Cache-Control", "s-maxage=60")), ON, Fail()),
    ("§5.2.2.4 no-cache forbids it", stored(("Cache-Control", "no-cache")), ON, Fail()),
    (
        "RFC 9213 §2.1 a targeted must-revalidate forbids it too",
        stored(MAX_AGE_60, ("CDN-Cache-Control", "max-age=60, must-revalidate")),
        ON,
        Fail(),
    ),
    (
        "RFC 5861 §4 stale-if-error, when it allows, stands in first",
        stored(("Cache-Control", "max-age=60, stale-if-error=600")),
        ON,
        StandIn("the upstream gave no response"),
    ),
    ("§4.2.4 nothing stored: the job fails", None, ON, Fail()),
]


@pytest.mark.parametrize(("rule", "was", "rules", "expected"), UNREACHABLE_CASES, ids=[c[0] for c in UNREACHABLE_CASES])
def test_after_fetch_origin_unreachable(
    rule: str, was: StoredTimes | None, rules: CacheSettings, expected: policy.AfterFetch
) -> None:
    assert policy.after_fetch((), was, None, T0 + 100, rules, unreachable=True) == expected, rule


def test_a_timeout_is_not_unreachable() -> None:
    """§4.2.4 is for a disconnected cache: an origin that answered too slowly is no reason to serve stale."""
    assert policy.after_fetch((), stored(MAX_AGE_60), None, T0 + 100, ON) == Fail()


# --- §4.3.5: a HEAD response about the stored GET response ---------------------------------------------------------

LM = ("Last-Modified", date(-1000))
HEAD_CASES: list[tuple[str, Headers, StoredTimes | None, Received, policy.AfterHead]] = [
    (
        "§4.3.5 matching ETag: the stored fields are updated, freshness anew",
        (),
        stored(ETAG, MAX_AGE_60, ("X-V", "1")),
        received(200, ETAG, MAX_AGE_120, ("X-V", "2"), ("Content-Length", "5")),
        Freshen(200, fields(ETAG, MAX_AGE_120, ("X-V", "2")), 120, 120 + KEEP),
    ),
    (
        "§4.3.5 matching Last-Modified alone is enough",
        (),
        stored(LM, MAX_AGE_60),
        received(200, LM, MAX_AGE_120),
        Freshen(200, fields(LM, MAX_AGE_120), 120, 120 + KEEP),
    ),
    (
        "§4.3.5 another ETag: the stored response is stale",
        (),
        stored(ETAG, MAX_AGE_60),
        received(200, ("ETag", '"v2"'), MAX_AGE_60),
        policy.MarkStale("the HEAD response's validators or length differ from the stored response's"),
    ),
    (
        "§4.3.5 a matching ETag but another Last-Modified: stale",
        (),
        stored(ETAG, LM, MAX_AGE_60),
        received(200, ETAG, ("Last-Modified", date(-10)), MAX_AGE_60),
        policy.MarkStale("the HEAD response's validators or length differ from the stored response's"),
    ),
    (
        "§4.3.5 another Content-Length: stale",
        (),
        stored(ETAG, MAX_AGE_60),
        received(200, ETAG, MAX_AGE_60, ("Content-Length", "6")),
        policy.MarkStale("the HEAD response's validators or length differ from the stored response's"),
    ),
    (
        "§4.3.5 no validator to compare: stale",
        (),
        stored(ETAG, MAX_AGE_60),
        received(200, MAX_AGE_60),
        policy.MarkStale("the HEAD response's validators or length differ from the stored response's"),
    ),
    (
        "§4.3.5 only a 200 says anything",
        (),
        stored(ETAG, MAX_AGE_60),
        received(404, ("ETag", '"v2"')),
        policy.LeaveStored("HEAD answered 404, not 200"),
    ),
    ("§4.3.5 nothing stored", (), None, received(200, ETAG), policy.LeaveStored("nothing stored for this request")),
    (
        "§3.5 a HEAD relayed with Authorization updates no shared fields",
        (("Authorization", "Bearer x"),),
        stored(ETAG, MAX_AGE_60),
        received(200, ETAG, MAX_AGE_120),
        policy.LeaveStored("request carried Authorization and the response did not allow sharing"),
    ),
    (
        "§5.2.2.7 a private HEAD response updates no shared fields",
        (),
        stored(ETAG, MAX_AGE_60),
        received(200, ETAG, ("Cache-Control", "private")),
        policy.LeaveStored("response is private"),
    ),
]


@pytest.mark.parametrize(("rule", "req", "was", "got", "expected"), HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_after_head(
    rule: str, req: Headers, was: StoredTimes | None, got: Received, expected: policy.AfterHead
) -> None:
    assert policy.after_head(req, was, 5, got, RULES) == expected, rule
