"""Which client fields a cacheable fetch carries and sends (core/forwarding.py): transparent in forward and reverse
mode (RFC 9110 §7.6, RFC 9111 §4.1), an allow list for ``/fetch?url=``."""

from __future__ import annotations

import pytest

from core import forwarding
from core.policy import Headers
from core.settings import UpstreamSettings

DENY = UpstreamSettings().deny_fields
ALLOW = UpstreamSettings().forward_headers

PRESENTED: list[tuple[str, Headers, Headers]] = [
    (
        "RFC 9110 §7.6 end-to-end fields are presented",
        (("Foo", "1"), ("Accept", "a/b")),
        (("Foo", "1"), ("Accept", "a/b")),
    ),
    (
        "RFC 9110 §7.6.1 hop-by-hop fields are not",
        (("TE", "trailers"), ("Keep-Alive", "1"), ("Foo", "1")),
        (("Foo", "1"),),
    ),
    ("RFC 9110 §7.6.1 fields Connection names are not", (("Connection", "X-Secret"), ("X-Secret", "1")), ()),
    ("RFC 9110 §7.2 Host frames the message to grenier", (("Host", "o.test"), ("Foo", "1")), (("Foo", "1"),)),
    ("a request with a cookie is relayed, never cached", (("Cookie", "a=1"), ("Foo", "1")), (("Foo", "1"),)),
    (
        "RFC 9111 §3.5 Authorization is presented (its fetch sends it)",
        (("Authorization", "Bearer t"),),
        (("Authorization", "Bearer t"),),
    ),
    (
        "deny-listed fields are presented (they still tell variants apart)",
        (("X-Forwarded-Host", "evil"),),
        (("X-Forwarded-Host", "evil"),),
    ),
    ("an oversized value is dropped", (("Foo", "x" * 1025), ("Bar", "1")), (("Bar", "1"),)),
    ("RFC 9111 §4.1 conditionals are presented", (("If-None-Match", '"a"'),), (("If-None-Match", '"a"'),)),
]


@pytest.mark.parametrize(("section", "headers", "expected"), PRESENTED, ids=[c[0] for c in PRESENTED])
def test_presented(section: str, headers: Headers, expected: Headers) -> None:
    assert forwarding.presented(headers) == expected, section


def test_presented_fields_are_capped_in_total() -> None:
    """Fields past MAX_FORWARDED_BYTES are dropped: they travel in the job's message and a joiner's record."""
    many = tuple((f"X-F{i}", "v" * 1000) for i in range(40))
    kept = forwarding.presented(many)
    assert kept == many[: len(kept)]
    assert (
        sum(len(k) + len(v) for k, v in kept) <= forwarding.MAX_FORWARDED_BYTES < sum(len(k) + len(v) for k, v in many)
    )


OUTGOING: list[tuple[str, Headers, Headers]] = [
    (
        "RFC 9110 §7.6 transparent: end-to-end fields are sent",
        (("Foo", "1"), ("User-Agent", "ua")),
        (("Foo", "1"), ("User-Agent", "ua")),
    ),
    *[(f"deny list: {name}", ((name, "x"), ("Foo", "1")), (("Foo", "1"),)) for name in DENY],
    ("deny list is caseless", (("x-FORWARDED-host", "evil"),), ()),
    (
        "RFC 9111 §4.3.1 the client's conditionals are not sent",
        (("If-None-Match", '"a"'), ("If-Modified-Since", "x")),
        (),
    ),
    ("RFC 9110 §14.2 nor its range", (("Range", "bytes=0-1"), ("If-Range", '"a"')), ()),
    (
        "RFC 9111 §3.5 Authorization is sent on its own fetch",
        (("Authorization", "Bearer t"),),
        (("Authorization", "Bearer t"),),
    ),
    ("never a cookie", (("Cookie", "a=1"),), ()),
    ("RFC 7240 §2 Prefer is grenier's to apply", (("Prefer", "respond-async, wait=5"),), ()),
]


@pytest.mark.parametrize(("section", "headers", "expected"), OUTGOING, ids=[c[0] for c in OUTGOING])
def test_outgoing(section: str, headers: Headers, expected: Headers) -> None:
    assert forwarding.outgoing(headers, DENY) == expected, section


FOR_JOB: list[tuple[str, Headers, Headers]] = [
    ("/fetch: allow-listed fields only", (("Accept", "a/b"), ("Foo", "1")), (("Accept", "a/b"),)),
    (
        "/fetch: Authorization is for grenier",
        (("Authorization", "Bearer t"), ("Accept-Language", "fr")),
        (("Accept-Language", "fr"),),
    ),
    ("/fetch: an oversized value is dropped", (("Accept", "x" * 1025),), ()),
]


@pytest.mark.parametrize(("section", "headers", "expected"), FOR_JOB, ids=[c[0] for c in FOR_JOB])
def test_for_job(section: str, headers: Headers, expected: Headers) -> None:
    assert forwarding.for_job(headers, (*ALLOW, "authorization")) == expected, section
