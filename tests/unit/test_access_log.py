"""What an access line says the cache did: grenier's member of ``Cache-Status`` (RFC 9211 §2), read back."""

from __future__ import annotations

import pytest

from proxy.access_log import cache_fields
from proxy.cache_status import cache_status

ROWS: list[tuple[str, str | None, tuple[str, str]]] = [
    ("§2.1 hit", cache_status("grenier", hit=True, ttl=30), ("hit", "-")),
    ("§2.1 hit served stale (negative ttl, §2.5)", cache_status("grenier", hit=True, ttl=-3), ("stale-hit", "-")),
    ("§2.2 fwd with fwd-status (§2.3)", cache_status("grenier", fwd="uri-miss", fwd_status=200), ("uri-miss", "200")),
    ("§2.2 fwd=stale revalidated", cache_status("grenier", fwd="stale", fwd_status=304), ("stale", "304")),
    ("bypass", cache_status("grenier", fwd="bypass"), ("bypass", "-")),
    ("a quoted detail", cache_status("grenier", fwd="uri-miss", detail="not stored; private"), ("uri-miss", "-")),
    (
        "an upstream cache's member before ours",
        "upstream-cdn; hit, " + cache_status("grenier", fwd="stale", fwd_status=200),
        ("stale", "200"),
    ),
    ("only another cache's member", "upstream-cdn; hit", ("-", "-")),
    ("no field", None, ("-", "-")),
]


@pytest.mark.parametrize(("case", "field", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_cache_fields(case: str, field: str | None, expected: tuple[str, str]) -> None:
    assert cache_fields(field, "grenier") == expected, case
