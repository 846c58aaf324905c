"""Inspection documents (core/inspection.py): the note a job leaves about storing its URL, and a stored response as
an operator reads it at one fixed ``now`` (RFC 9111 §4.2 age and freshness, RFC 5861 windows)."""

from __future__ import annotations

from typing import Any

import pytest

from core import policy
from core.inspection import describe, note_of
from core.outcome import Failed, Fetched, Outcome
from core.policy import STALE_IF_ERROR
from core.records import BodyRef, StoredResponse
from core.settings import CacheSettings

NOTES: list[tuple[str, Outcome, dict[str, Any]]] = [
    ("stored", Fetched(200, key="k", stored=True), {"status": 200, "decision": "stored"}),
    (
        "revalidated",
        Fetched(304, key="k", stored=True, detail="revalidated"),
        {"status": 304, "decision": "revalidated"},
    ),
    (
        "not stored, and why",
        Fetched(500, not_stored=policy.SERVER_ERROR_KEEPS_STORED),
        {"status": 500, "decision": "not stored", "reason": policy.SERVER_ERROR_KEEPS_STORED},
    ),
    (
        "a stale response stood in",
        Fetched(503, key="k", detail=STALE_IF_ERROR, error="upstream answered 503"),
        {"status": 503, "decision": "stale-if-error", "reason": "upstream answered 503"},
    ),
    ("failed", Failed("crashed", "it died"), {"decision": "failed", "reason": "it died", "kind": "crashed"}),
]


@pytest.mark.parametrize(("case", "outcome", "expected"), NOTES, ids=[n[0] for n in NOTES])
def test_note_of(case: str, outcome: Outcome, expected: dict[str, Any]) -> None:
    assert note_of("j1", outcome, 1000.0) == {"job": "j1", "at": 1000.0, **expected}, case


T = 1_800_000_000.0


def test_describe_reads_the_entry_as_decide_does() -> None:
    """§4.2.3 age from the stored times and Age field; ttl = lifetime - age, negative once stale."""
    entry = StoredResponse(
        "http://e.com/",
        200,
        (("Age", "10"), ("ETag", '"v1"'), ("Cache-Control", "max-age=100, stale-while-revalidate=30")),
        b"",
        T,
        T,
        100.0,
        BodyRef("h:v", 5000, 1000),
        ("a",),
    )
    doc = describe("h", entry, T + 20, CacheSettings(stale_if_error=7))
    assert {k: doc[k] for k in ("status", "size", "body", "age", "ttl", "fresh", "validators", "tags")} == {
        "status": 200,
        "size": 5000,
        "body": "chunked",
        "age": 30,
        "ttl": 70.0,
        "fresh": True,
        "validators": {"If-None-Match": '"v1"'},
        "tags": ["a"],
    }
    assert (doc["stale_while_revalidate"], doc["stale_if_error"]) == (30, 7), "the response's window, else the default"
    assert describe("h", entry, T + 200, CacheSettings())["ttl"] == -110.0
