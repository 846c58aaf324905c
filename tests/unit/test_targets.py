"""Target URLs: validation and the one canonical spelling that keys the cache (proxy/targets.py)."""

from __future__ import annotations

import hashlib
import re

import pytest

from core.problems import BadTarget, Problem, TargetTooLong
from core.targets import MAX_URL_BYTES, cache_key, join_origin, normalize

# RFC 9110 §4.2.3 (http normalisation) and RFC 3986 §6.2.2-6.2.3: case of scheme and host, default port, empty path.
ACCEPTED = [
    ("lowercase-scheme-host", "HTTP://Example.COM/Path", "http://example.com/Path"),
    ("https-upper", "HTTPS://E.com:443", "https://e.com/"),
    ("default-http-port", "http://example.com:80/a", "http://example.com/a"),
    ("default-https-port", "https://example.com:443/a", "https://example.com/a"),
    ("empty-port", "http://example.com:/a", "http://example.com/a"),
    ("other-port-kept", "http://example.com:8080", "http://example.com:8080/"),
    ("http-port-on-https-kept", "https://example.com:80/", "https://example.com:80/"),
    ("empty-path", "http://example.com", "http://example.com/"),
    ("empty-path-with-query", "http://example.com?x=1", "http://example.com/?x=1"),
    ("fragment-dropped", "http://example.com/a#frag", "http://example.com/a"),
    ("fragment-after-query", "http://e.com/a?b=%2F&c=d%20e#frag", "http://e.com/a?b=%2F&c=d%20e"),
    ("ipv6", "http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("ipv6-lowercased", "http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
    ("ipv6-default-port", "http://[2001:db8::1]:80/", "http://[2001:db8::1]/"),
    ("ipv6-compressed", "http://[2001:DB8:0:0:0:0:0:1]/", "http://[2001:db8::1]/"),
    # one host, one key: numeric spellings of an IPv4 address are written dotted-quad
    ("ipv4-hex", "http://0x7f.1/", "http://127.0.0.1/"),
    ("ipv4-integer", "http://2130706433:8080/a", "http://127.0.0.1:8080/a"),
    ("ipv4-short", "http://127.1/", "http://127.0.0.1/"),
    ("ipv4", "http://127.0.0.1:9000/a", "http://127.0.0.1:9000/a"),
    ("path-case-and-escapes-kept", "http://e.com/A/%7e/%7E", "http://e.com/A/%7e/%7E"),
    ("dot-segments-kept", "http://e.com/a/../b/./c", "http://e.com/a/../b/./c"),
    ("query-kept", "http://e.com/?b=2&a=1&a=1", "http://e.com/?b=2&a=1&a=1"),
    ("query-escapes-kept", "http://e.com/?q=%2f%2F+x&=&&", "http://e.com/?q=%2f%2F+x&=&&"),
    # The key holds what the origin is sent: the request line cannot carry an empty query's "?" (aiohttp drops it),
    # and non-ASCII characters go out as their UTF-8 escapes.
    ("empty-query-dropped", "http://e.com/a?", "http://e.com/a"),
    ("non-ascii-escaped", "http://e.com/\u00e9?q=\u00fc&r=%C3%A9", "http://e.com/%C3%A9?q=%C3%BC&r=%C3%A9"),
    ("unicode-host-as-a-label", "http://B\u00fccher.example/", "http://xn--bcher-kva.example/"),
    ("surrounding-space-trimmed", "  http://e.com/  ", "http://e.com/"),
    ("trailing-dot-host-dropped", "http://E.com.:80/", "http://e.com/"),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_normalize_accepts(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_normalize_is_idempotent(raw: str, expected: str) -> None:
    assert normalize(expected) == expected


# id, raw, Problem subclass, status, regex the detail must match
REFUSED: list[tuple[str, str | None, type[Problem], int, str]] = [
    ("none", None, BadTarget, 400, r"missing"),
    ("empty", "", BadTarget, 400, r"missing"),
    ("blank", "   \t ", BadTarget, 400, r"missing"),
    ("relative-path", "/relative/path", BadTarget, 400, r"relative"),
    ("no-scheme", "example.com/x", BadTarget, 400, r"relative"),
    ("scheme-relative", "//example.com/x", BadTarget, 400, r"relative"),
    ("ftp", "ftp://example.com/file", BadTarget, 400, r"scheme 'ftp' is not supported"),
    ("ws", "ws://example.com/", BadTarget, 400, r"scheme 'ws' is not supported"),
    ("file", "file:///etc/passwd", BadTarget, 400, r"scheme 'file' is not supported"),
    ("javascript", "javascript:alert(1)", BadTarget, 400, r"scheme 'javascript' is not supported"),
    ("no-host-port-only", "http://:80/", BadTarget, 400, r"no host"),
    ("no-host-empty-authority", "http:///path", BadTarget, 400, r"no host"),
    ("user-password", "http://user:pw@example.com/", BadTarget, 400, r"credentials"),
    ("user-only", "http://user@example.com/", BadTarget, 400, r"credentials"),
    ("space-inside", "http://example.com/a b", BadTarget, 400, r"whitespace or control"),
    ("tab-inside", "http://example.com/a\tb", BadTarget, 400, r"whitespace or control"),
    ("newline-inside", "http://example.com/a\r\nX-Injected: 1", BadTarget, 400, r"whitespace or control"),
    ("nul", "http://example.com/\x00", BadTarget, 400, r"whitespace or control"),
    ("del", "http://example.com/\x7f", BadTarget, 400, r"whitespace or control"),
    ("zero-width-space", "http://example.com/a\u200bb", BadTarget, 400, r"whitespace or control"),
    ("line-separator", "http://example.com/a\u2028b", BadTarget, 400, r"whitespace or control"),
    ("c1-control-nel", "http://example.com/a\x85b", BadTarget, 400, r"whitespace or control"),
    ("no-break-space", "http://example.com/a\u00a0b", BadTarget, 400, r"whitespace or control"),
    ("port-not-number", "http://example.com:abc/", BadTarget, 400, r"[Pp]ort"),
    ("port-out-of-range", "http://example.com:99999/", BadTarget, 400, r"[Pp]ort"),
    ("port-zero", "http://example.com:0/", BadTarget, 400, r"port 0"),
    ("host-only-dot", "http://./", BadTarget, 400, r"no host"),
    ("bad-ipv6", "http://[::1/", BadTarget, 400, r"cannot be parsed"),
    ("idna-not-punycode", "http://xn--zz.example/", BadTarget, 400, r"invalid IDNA label"),
    ("idna-not-ending-in-hyphen", "http://xn--a-/", BadTarget, 400, r"invalid label"),
    ("idna-empty", "http://xn--.example/", BadTarget, 400, r"invalid label"),
    ("idna-disallowed", "http://ex\u00e4mple\u2488.com/", BadTarget, 400, r"not a valid international name"),
    ("host-percent-encoded", "http://%41.example/", BadTarget, 400, r"percent-encoded"),
    ("host-empty-label", "http://a..b/", BadTarget, 400, r"empty label"),
    ("host-hyphen-end", "http://a-.example/", BadTarget, 400, r"invalid label"),
    ("host-label-too-long", "http://" + "a" * 64 + ".example/", BadTarget, 400, r"invalid label"),
    ("host-punctuation", "http://=(\u00e9/", BadTarget, 400, r"host"),
    ("too-long", "http://e.com/" + "a" * (MAX_URL_BYTES - len("http://e.com/") + 1), TargetTooLong, 414, r"8192"),
    (
        "too-long-in-utf8-bytes",
        "http://e.com/" + "é" * ((MAX_URL_BYTES - len("http://e.com/")) // 2 + 1),
        TargetTooLong,
        414,
        r"8192 bytes",
    ),
]


@pytest.mark.parametrize(("raw", "kind", "status", "detail"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_normalize_refuses(raw: str | None, kind: type[Problem], status: int, detail: str) -> None:
    with pytest.raises(Problem) as info:
        normalize(raw)
    assert type(info.value) is kind
    assert info.value.status == status
    assert re.search(detail, info.value.detail), info.value.detail


def test_max_length_is_inclusive() -> None:
    head = "http://e.com/"
    exact = head + "a" * (MAX_URL_BYTES - len(head))
    assert len(exact.encode()) == MAX_URL_BYTES
    assert normalize(exact) == exact
    with pytest.raises(TargetTooLong):
        normalize(exact + "a")


def test_too_long_problem_title() -> None:
    with pytest.raises(TargetTooLong) as info:
        normalize("http://e.com/" + "a" * MAX_URL_BYTES)
    assert info.value.title == "URI Too Long"


@pytest.mark.parametrize(
    ("origin", "raw_path", "expected"),
    [
        ("http://127.0.0.1:9000", "/a?b=1", "http://127.0.0.1:9000/a?b=1"),
        ("http://127.0.0.1:9000/", "/a?b=1", "http://127.0.0.1:9000/a?b=1"),
        ("HTTP://Origin.Example:80", "/", "http://origin.example/"),
        ("https://origin.example/base/", "/x/y", "https://origin.example/base/x/y"),
        ("http://origin.example", "/%7e?q=%2F", "http://origin.example/%7e?q=%2F"),
    ],
    ids=["plain", "origin-trailing-slash", "normalised", "origin-with-path", "raw-path-kept"],
)
def test_join_origin(origin: str, raw_path: str, expected: str) -> None:
    assert join_origin(origin, raw_path) == expected


def test_join_origin_refuses_bad_path() -> None:
    with pytest.raises(BadTarget):
        join_origin("http://origin.example", "/a b")


@pytest.mark.parametrize(
    "raw_path",
    ["/../x", "/%2e%2e/x", "/.%2E/x", "/a/../../x", "/..", "/..%2fx", "/..%5Cx", "/..\\x", "/a/%2e%2e/%2e%2e?q=/app/"],
)
def test_join_origin_refuses_leaving_the_prefix(raw_path: str) -> None:
    """Dot-segments (escaped or not, with escaped separators) that resolve outside the origin's path prefix."""
    with pytest.raises(BadTarget, match="leaves the origin's path '/app'"):
        join_origin("http://origin.example/app/", raw_path)


@pytest.mark.parametrize("raw_path", ["/a/../x", "/./x", "/%2e/x", "/../app/x", "/", "/x?q=../../.."])
def test_join_origin_keeps_dot_segments_inside_the_prefix(raw_path: str) -> None:
    assert join_origin("http://origin.example/app", raw_path) == "http://origin.example/app" + raw_path


@pytest.mark.parametrize(
    "url",
    ["http://example.com/", "http://e.com/é?q=ü", "http://e.com/" + "a" * 8000],
    ids=["ascii", "non-ascii", "long"],
)
def test_cache_key_is_stable_sha256_hex(url: str) -> None:
    key = cache_key(url)
    assert key == hashlib.sha256(url.encode("utf-8")).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert cache_key(url) == key


def test_cache_key_known_value() -> None:
    assert cache_key("http://example.com/") == "2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067"


def test_cache_key_differs_per_url() -> None:
    assert cache_key("http://e.com/a") != cache_key("http://e.com/b")
    assert cache_key("http://e.com/a?") != cache_key("http://e.com/a")
