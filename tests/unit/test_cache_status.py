"""The ``Cache-Status`` response field, RFC 9211 (proxy/cache_status.py)."""

from __future__ import annotations

from typing import Any

import http_sf
import pytest
from http_sf import Token

from proxy.cache_status import cache_status

CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    # id, arguments, serialised field, parsed parameters
    ("bare", {}, "grenier", {}),
    ("hit-ttl", {"hit": True, "ttl": 120}, "grenier;hit;ttl=120", {"hit": True, "ttl": 120}),
    ("ttl-truncated-to-integer", {"hit": True, "ttl": 12.9}, "grenier;hit;ttl=12", {"hit": True, "ttl": 12}),
    ("ttl-zero", {"hit": True, "ttl": 0}, "grenier;hit;ttl=0", {"hit": True, "ttl": 0}),
    ("ttl-negative-stale", {"hit": True, "ttl": -30}, "grenier;hit;ttl=-30", {"hit": True, "ttl": -30}),
    ("uri-miss", {"fwd": "uri-miss"}, "grenier;fwd=uri-miss", {"fwd": Token("uri-miss")}),
    (
        "miss-fetched-stored",
        {"fwd": "uri-miss", "fwd_status": 200, "stored": True},
        "grenier;fwd=uri-miss;fwd-status=200;stored",
        {"fwd": Token("uri-miss"), "fwd-status": 200, "stored": True},
    ),
    (
        "stale-revalidated",
        {"fwd": "stale", "fwd_status": 304},
        "grenier;fwd=stale;fwd-status=304",
        {"fwd": Token("stale"), "fwd-status": 304},
    ),
    (
        "collapsed",
        {"fwd": "uri-miss", "collapsed": True},
        "grenier;fwd=uri-miss;collapsed",
        {"fwd": Token("uri-miss"), "collapsed": True},
    ),
    (
        "detail",
        {"fwd": "uri-miss", "detail": "only-if-cached"},
        'grenier;fwd=uri-miss;detail="only-if-cached"',
        {"fwd": Token("uri-miss"), "detail": "only-if-cached"},
    ),
    (
        "detail-escaped",
        {"detail": 'say "no" \\ twice'},
        'grenier;detail="say \\"no\\" \\\\ twice"',
        {"detail": 'say "no" \\ twice'},
    ),
    (
        "everything",
        {
            "hit": True,
            "fwd": "request",
            "fwd_status": 503,
            "ttl": 5,
            "stored": True,
            "collapsed": True,
            "detail": "timeout",
        },
        'grenier;hit;fwd=request;fwd-status=503;ttl=5;stored;collapsed;detail="timeout"',
        {
            "hit": True,
            "fwd": Token("request"),
            "fwd-status": 503,
            "ttl": 5,
            "stored": True,
            "collapsed": True,
            "detail": "timeout",
        },
    ),
    ("false-flags-omitted", {"hit": False, "stored": False, "collapsed": False}, "grenier", {}),
    ("empty-strings-omitted", {"fwd": "", "detail": ""}, "grenier", {}),
    ("fwd-status-zero-kept", {"fwd_status": 0}, "grenier;fwd-status=0", {"fwd-status": 0}),
]


@pytest.mark.parametrize(("kwargs", "field", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cache_status_serialisation(kwargs: dict[str, Any], field: str, params: dict[str, Any]) -> None:
    """RFC 9211 §2: one list member, the cache's name as a token, its parameters in order."""
    assert cache_status("grenier", **kwargs) == field


@pytest.mark.parametrize(("kwargs", "field", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cache_status_is_a_structured_field_list(kwargs: dict[str, Any], field: str, params: dict[str, Any]) -> None:
    """RFC 9211 §2: the field is an RFC 8941 List whose member is a Token naming the cache."""
    parsed: Any = http_sf.parse(cache_status("grenier", **kwargs).encode("ascii"), tltype="list")
    assert isinstance(parsed, list)
    assert len(parsed) == 1
    name, got = parsed[0]
    assert name == Token("grenier")
    assert isinstance(name, Token)
    assert got == params
    assert list(got) == list(params)  # parameter order is as serialised
    for key in ("hit", "stored", "collapsed"):
        if key in got:
            assert got[key] is True  # a bare key is Boolean true
    if "fwd" in got:
        assert isinstance(got["fwd"], Token)
    if "detail" in got:
        assert isinstance(got["detail"], str)
        assert not isinstance(got["detail"], Token)


def test_cache_status_names_the_configured_cache() -> None:
    """RFC 9211 §2: the member names this cache, which is ``server.pseudonym`` (also its Via and CDN-Loop name)."""
    assert cache_status("edge-7", hit=True, ttl=5) == "edge-7;hit;ttl=5"
