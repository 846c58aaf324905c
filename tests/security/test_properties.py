"""Property tests for the parsers and the policy: on arbitrary input they never raise (except the documented refusal)
and their invariants hold. Deterministic: derandomized, a fixed number of examples."""

from __future__ import annotations

import string
from email.utils import formatdate

from hypothesis import given, settings
from hypothesis import strategies as st

from core import policy, targets
from core.problems import Problem
from core.settings import CacheSettings
from proxy import prefer

PROPS = settings(max_examples=300, deadline=None, derandomize=True)

# --- generators ------------------------------------------------------------------------------------------------------

url_chars = st.sampled_from(
    [
        *(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=% \t\r\n\x00\x7f"),
        "\u00e9",
        "\u2603",
        "\uff11",
        "\u3002",
        "\U0001f600",
        "\ud800",
        "\u0130",
        "\u212a",
    ]
)
hosts = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "127.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "localhost.",
            "EXAMPLE.com.",
            "\uff11\uff12\uff17.0.0.1",
            "[fe80::1%25eth0]",
            "999.1.1.1",
            "xn--e1afmkfd.xn--p1ai",
            "a..b",
            "[v1.x]",
            "[::1",
            "0x",
            "1.2.3.4.5",
            "\u0130stanbul.tr",
        ]
    ),
    st.text(url_chars, max_size=20),
)
urls = st.one_of(
    st.text(url_chars, max_size=80),
    st.builds(
        lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
        st.sampled_from(["http", "https", "HTTP", "HtTpS", "ftp", "file", ""]),
        hosts,
        st.sampled_from(["", ":80", ":443", ":8080", ":0", ":65536", ":-1", ":abc", ":"]),
        st.text(url_chars, max_size=30).map(lambda p: "/" + p),
        st.one_of(st.just(""), st.text(url_chars, max_size=20).map(lambda q: "?" + q)),
    ),
)

directive_names = st.sampled_from(
    [
        "max-age",
        "s-maxage",
        "no-cache",
        "no-store",
        "private",
        "public",
        "must-revalidate",
        "proxy-revalidate",
        "must-understand",
        "immutable",
        "only-if-cached",
        "max-stale",
        "min-fresh",
        "stale-while-revalidate",
        "stale-if-error",
        "no-transform",
        "MAX-AGE",
        "x-ext",
    ]
)
directive_args = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=12),
    st.sampled_from(['"60"', '"no"', "", "1e3", "0x10", "\u0661\u0662", "99999999999999999999999999"]),
)
directives = st.builds(
    lambda name, arg, has_arg: f"{name}={arg}" if has_arg else name, directive_names, directive_args, st.booleans()
)
cache_control_values = st.one_of(st.lists(directives, max_size=6).map(", ".join), st.text(max_size=60))

dates = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "0",
            "-1",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 0001 00:00:00 GMT",
            "Tue, 99 Foo 2020 99:99:99 GMT",
            "Thu, 01 Jan 1970 00:00:00 +9999",
        ]
    ),
)
field_names = st.sampled_from(
    [
        "Cache-Control",
        "Age",
        "Date",
        "Expires",
        "Last-Modified",
        "ETag",
        "Vary",
        "Pragma",
        "Set-Cookie",
        "Authorization",
        "Cookie",
        "If-None-Match",
        "If-Modified-Since",
        "Connection",
        "Content-Type",
        "Accept-Language",
    ]
)
field_values = st.one_of(cache_control_values, dates, st.integers(-(2**40), 2**40).map(str))
header_lists = st.lists(st.tuples(field_names, field_values), max_size=8).map(tuple)
times = st.floats(min_value=-1e10, max_value=1e11, allow_nan=False, allow_infinity=False)
limits = st.builds(
    CacheSettings,
    default_ttl=st.floats(0, 1e6),
    max_ttl=st.floats(0, 1e7),
    heuristic_fraction=st.floats(0, 1),
    heuristic_max=st.floats(0, 1e7),
    stale_while_revalidate=st.floats(0, 1e6),
    stale_if_error=st.floats(0, 1e6),
    stale_keep=st.floats(0, 1e6),
    share_set_cookie=st.booleans(),
)

# --- targets ---------------------------------------------------------------------------------------------------------


@PROPS
@given(urls)
def test_normalize_refuses_only_with_a_problem_and_is_a_fixpoint(raw: str) -> None:
    refusal: Problem | None = None
    try:
        once = targets.normalize(raw)
    except Problem as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.detail
        assert 400 <= refusal.status < 500
        return
    assert targets.normalize(once) == once
    assert once.split("://", 1)[0] in targets.SCHEMES
    assert "#" not in once


# --- Cache-Control and dates -----------------------------------------------------------------------------------------

DELTA_FIELDS = ("max_age", "s_maxage", "max_stale", "min_fresh", "stale_while_revalidate", "stale_if_error")


@PROPS
@given(st.lists(cache_control_values, max_size=4))
def test_cache_control_parse_never_raises_and_deltas_are_bounded(raw_values: list[str]) -> None:
    cc = policy.CacheControl.parse(raw_values)
    for name in DELTA_FIELDS:
        value = getattr(cc, name)
        assert value is None or (isinstance(value, int) and 0 <= value <= 2**31), (name, value)


@PROPS
@given(dates)
def test_http_date_never_raises(raw: str) -> None:
    parsed = policy.http_date(raw)
    assert parsed is None or isinstance(parsed, float)


# --- the policy ------------------------------------------------------------------------------------------------------

stored_times = st.one_of(
    st.none(),
    st.builds(
        policy.StoredTimes,
        headers=header_lists,
        request_time=times,
        response_time=times,
        lifetime=st.floats(min_value=-1e6, max_value=1e7, allow_nan=False),
    ),
)


@PROPS
@given(header_lists, stored_times, times, limits)
def test_decide_never_raises_and_hits_have_a_non_negative_age(
    request_headers: policy.Headers, stored: policy.StoredTimes | None, now: float, lim: CacheSettings
) -> None:
    decision = policy.decide(request_headers, stored, now, lim)
    assert isinstance(decision, policy.Hit | policy.ServeStale | policy.Forward)
    if isinstance(decision, policy.Hit | policy.ServeStale):
        assert stored is not None
        assert decision.age >= 0


@PROPS
@given(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "get", "FOO", ""]),
    st.integers(min_value=-1, max_value=1000),
    header_lists,
    header_lists,
    limits,
)
def test_not_storable_reason_never_raises(
    method: str, status: int, request_headers: policy.Headers, response_headers: policy.Headers, lim: CacheSettings
) -> None:
    reason = policy.not_storable_reason(method, status, request_headers, response_headers, lim)
    assert reason is None or (isinstance(reason, str) and reason)
    if any(k.lower() == "set-cookie" for k, _ in response_headers) and not lim.share_set_cookie:
        assert reason is not None


# --- Prefer ----------------------------------------------------------------------------------------------------------

prefer_values = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda v, extra: f"wait={v}{extra}",
        st.one_of(
            st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "", '"5"', "0x10", "5;x=1"]),
            st.floats(allow_nan=True).map(repr),
            st.integers(-(2**80), 2**80).map(str),
        ),
        st.sampled_from(["", ", respond-async", "; a=b", ",wait=1"]),
    ),
)


@PROPS
@given(
    st.lists(prefer_values, max_size=3),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_prefer_wait_is_within_zero_and_the_cap(raw_values: list[str], default: float, cap: float) -> None:
    wait = prefer.wait_seconds(raw_values, default, cap)
    assert 0.0 <= wait <= cap


@PROPS
@given(st.integers(min_value=-62135596800, max_value=253402300799))
def test_http_date_reads_back_every_imf_fixdate(epoch: int) -> None:
    """RFC 9110 §5.6.7: every IMF-fixdate a sender can write (years 0001 to 9999) is read back to the second."""
    raw = formatdate(epoch, usegmt=True)
    assert policy.http_date(raw) == float(epoch), raw
