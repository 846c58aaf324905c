"""The pure half of purges (core/invalidation.py): which tags a response carries, how an operator's prefix and tag
are read, what a soft purge does to an entry."""

from __future__ import annotations

import pytest

from core import policy
from core.invalidation import (
    MAX_TAGS,
    BadPurge,
    ByPrefix,
    ByTag,
    origin_of,
    prefix_target,
    soften,
    tag_target,
    tags_of,
    without_tag_fields,
)
from core.problems import Problem
from core.records import StoredResponse
from core.settings import CacheSettings

TAGS = [
    ("Surrogate-Key is space separated", (("Surrogate-Key", "a  b\tc"),), ("a", "b", "c")),
    ("Cache-Tag is comma separated", (("Cache-Tag", "a, b c,,d"),), ("a", "b c", "d")),
    ("both fields, each tag once", (("Surrogate-Key", "a b"), ("cache-tag", "b,c")), ("a", "b", "c")),
    ("repeated fields add up", (("Surrogate-Key", "a"), ("Surrogate-Key", "b")), ("a", "b")),
    ("no tag fields: no tags", (("Cache-Control", "max-age=60"),), ()),
    ("a tag longer than allowed is dropped", (("Surrogate-Key", "x" * 257 + " ok"),), ("ok",)),
]


@pytest.mark.parametrize(("rule", "headers", "expected"), TAGS, ids=[t[0] for t in TAGS])
def test_tags_of(rule: str, headers: policy.Headers, expected: tuple[str, ...]) -> None:
    assert tags_of(headers) == expected, rule


def test_a_response_cannot_tag_without_bound() -> None:
    many = " ".join(f"t{i}" for i in range(MAX_TAGS * 2))
    assert len(tags_of((("Surrogate-Key", many),))) == MAX_TAGS


def test_tag_fields_are_stripped_and_others_kept() -> None:
    headers = (("Surrogate-Key", "a"), ("Content-Type", "text/plain"), ("CACHE-TAG", "b"))
    assert without_tag_fields(headers) == (("Content-Type", "text/plain"),)


PREFIXES = [
    ("a bare host bans the host (its path /), never a longer host name", "http://Example.COM", "http://example.com/"),
    ("a path prefix is kept as written", "http://example.com/img", "http://example.com/img"),
    ("the default port is dropped, as in cache keys", "https://example.com:443/a/", "https://example.com/a/"),
]


@pytest.mark.parametrize(("rule", "raw", "expected"), PREFIXES, ids=[p[0] for p in PREFIXES])
def test_prefix_target(rule: str, raw: str, expected: str) -> None:
    assert prefix_target(raw) == ByPrefix(expected), rule


@pytest.mark.parametrize("raw", [None, "", "/img/", "example.com/img", "ftp://example.com/"])
def test_a_prefix_must_be_an_absolute_http_url(raw: str | None) -> None:
    with pytest.raises(Problem) as info:
        prefix_target(raw)
    assert info.value.status == 400


def test_origin_of() -> None:
    assert origin_of("http://example.com:8080/a/b?c") == "http://example.com:8080"
    assert ByPrefix("https://example.com/x").origin == "https://example.com"


@pytest.mark.parametrize("raw", [None, "", "  ", "a b", "a,b", "x" * 257])
def test_a_tag_is_one_word(raw: str | None) -> None:
    with pytest.raises(BadPurge):
        tag_target(raw)


def test_tag_target() -> None:
    assert tag_target(" product-1 ") == ByTag("product-1")


def test_a_soft_purged_entry_is_stale_at_once_and_keeps_its_validators() -> None:
    """RFC 9111 §4.2: freshness lifetime 0, so any age is stale and the next request revalidates (§4.3)."""
    t = 1_800_000_000.0
    entry = StoredResponse("http://e.com/", 200, (("ETag", '"v1"'), ("Cache-Control", "max-age=600")), b"b", t, t, 600)
    softened = soften(entry)
    assert policy.decide((), entry.times, t + 1, CacheSettings()) == policy.Hit(age=1, ttl=599)
    assert isinstance(policy.decide((), softened.times, t + 1, CacheSettings()), policy.Forward)
    assert softened.headers == entry.headers
    assert softened.body == entry.body
