"""Client responses built from records: each at the one ``now`` its caller passes, so a response's ``Age``
(RFC 9111 §4.2.3) and its Cache-Status ``ttl`` (RFC 9211 §2.3) agree."""

from __future__ import annotations

from core.memory_store import MemoryStore
from core.outcome import Fetched
from core.records import JobRecord, StoredResponse
from proxy import responses

STORE = MemoryStore(1 << 20)
T0 = 1_000_000.0  # long past: a response built from the wall clock instead of ``now`` would be decades old


def entry() -> StoredResponse:
    return StoredResponse("http://e.com/", 200, (("Cache-Control", "max-age=60"),), b"hello", T0, T0, 60.0)


async def test_outcome_age_and_ttl_come_from_one_instant() -> None:
    stored = Fetched(200, key="k", stored=True)
    record = JobRecord(id="a" * 32, url="http://e.com/", created=T0).ended(stored, T0)
    response = await responses.outcome(
        (), record, entry(), pseudonym="edge-7", now=T0 + 10.5, store=STORE, fwd="uri-miss"
    )
    assert response.headers["Age"] == "10"
    assert response.headers["Cache-Status"] == "edge-7;fwd=uri-miss;fwd-status=200;ttl=49;stored"
    assert response.headers["Via"] == "1.1 edge-7"


async def test_stored_entry_age_is_read_at_the_given_now() -> None:
    response = await responses.from_entry((), entry(), "edge-7;hit", pseudonym="edge-7", now=T0 + 59, store=STORE)
    assert response.headers["Age"] == "59"
    assert response.body == b"hello"
