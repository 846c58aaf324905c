"""``shareable``: the one rule for which requests may use the outcome of a job another request started (RFC 9111
§4.1 for variants, §3 for what a shared cache may hand out), and ``joinable``, the dispatcher's use of it."""

from __future__ import annotations

import pytest

from core.outcome import Failed, Fetched, Outcome, shareable
from core.policy import Headers, variant_key
from core.records import JobRecord, StoredResponse
from proxy.dispatch import joinable


def response(*pairs: tuple[str, str]) -> StoredResponse:
    return StoredResponse("http://e.com/", 200, tuple(pairs), b"body", 1.0, 1.0, 60.0)


GZIP: Headers = (("Accept-Encoding", "gzip"),)
BR: Headers = (("Accept-Encoding", "br"),)
ENCODING = ("accept-encoding",)
GZIP_VARIANT = variant_key(ENCODING, GZIP)

CASES: list[tuple[str, Outcome, Headers, bool]] = [
    ("a failure is shared: every joiner would have failed the same way", Failed("connect", "refused"), (), True),
    ("§3 a stored response is shared", Fetched(200, key="h", stored=True), (), True),
    (
        "§3 an unstored response belongs to its requester",
        Fetched(200, response=response(), not_stored="private"),
        (),
        False,
    ),
    (
        "RFC 5861 §4 a stored response standing in for an error is shared",
        Fetched(None, key="h", detail="stale-if-error", error="upstream answered 503"),
        (),
        True,
    ),
    (
        "§4.1 a variant is shared with requests that select it",
        Fetched(200, key="h:g:v", stored=True, vary=ENCODING, variant=GZIP_VARIANT),
        GZIP,
        True,
    ),
    (
        "§4.1 a variant is not shared with requests that select another",
        Fetched(200, key="h:g:v", stored=True, vary=ENCODING, variant=GZIP_VARIANT),
        BR,
        False,
    ),
    ("§4.1 Vary: * matches no other request", Fetched(200, key="h", vary=("*",), variant="x"), (), False),
]


@pytest.mark.parametrize(("rule", "outcome", "sent", "expected"), CASES, ids=[c[0] for c in CASES])
def test_shareable(rule: str, outcome: Outcome, sent: Headers, expected: bool) -> None:
    assert shareable(outcome, sent) is expected, rule


QUEUED = JobRecord(id="j" * 32, url="http://e.com/", created=10.0)
STORED = Fetched(200, key="h", stored=True)
PRIVATE = Fetched(200, response=response(), not_stored="response is private")
STALE = Fetched(None, key="h", detail="stale-if-error")

JOIN_CASES: list[tuple[str, JobRecord, bool]] = [
    ("a pending job is joined", QUEUED, True),
    ("a running job is joined", QUEUED.running(11.0), True),
    ("a job that ended after the store was read, stored, is joined", QUEUED.ended(STORED, 21.0), True),
    ("... and one whose stale response stood in", QUEUED.ended(STALE, 21.0), True),
    ("... and one that failed", QUEUED.ended(Failed("timeout", "slow"), 21.0), True),
    ("a job that ended after, not stored, is not joined", QUEUED.ended(PRIVATE, 21.0), False),
    ("a job that ended before the store was read is not joined", QUEUED.ended(STORED, 19.0), False),
]


@pytest.mark.parametrize(("rule", "prior", "expected"), JOIN_CASES, ids=[c[0] for c in JOIN_CASES])
def test_joinable(rule: str, prior: JobRecord, expected: bool) -> None:
    assert joinable(prior, since=20.0, sent=()) is expected, rule
