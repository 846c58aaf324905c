"""Client responses built from records: each at the one ``now`` its caller passes, so a response's ``Age``
(RFC 9111 §4.2.3) and its Cache-Status ``ttl`` (RFC 9211 §2.3) agree."""

from __future__ import annotations

from aiohttp.payload import AsyncIterablePayload

from core.memory_store import MemoryStore
from core.outcome import Fetched
from core.records import BodyRef, JobRecord, StoredResponse
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


def part(first: int, last: int, length: int, body: bytes, ref: BodyRef | None = None) -> StoredResponse:
    fields = (("Cache-Control", "max-age=60"), ("ETag", '"v1"'), ("Content-Range", f"bytes {first}-{last}/{length}"))
    return StoredResponse("http://e.com/", 206, fields, body, T0, T0, 60.0, ref)


async def test_a_range_is_cut_from_a_stored_part_at_its_place_in_the_representation() -> None:
    """RFC 9111 §3.4: a part of bytes 10-19 answers bytes 12-14 with those bytes and their own Content-Range."""
    stored = part(10, 19, 100, b"abcdefghij")
    response = await responses.from_entry(
        (("Range", "bytes=12-14"),), stored, "edge-7;hit", pseudonym="edge-7", now=T0, store=STORE
    )
    assert response.status == 206
    assert response.body == b"cde"
    assert response.headers["Content-Range"] == "bytes 12-14/100"


async def test_a_range_is_cut_from_a_chunked_part() -> None:
    """RFC 9111 §3.4: a part stored in chunks is read from the chunks that hold the range, offset by its start."""
    store = MemoryStore(1 << 20)
    data = bytes(range(200))
    for i in range(0, len(data), 64):
        await store.put_chunk("part", i // 64, data[i : i + 64], 60)
    stored = part(1000, 1199, 5000, b"", BodyRef("part", len(data), 64))
    response = await responses.from_entry(
        (("Range", "bytes=1060-1130"),), stored, "edge-7;hit", pseudonym="edge-7", now=T0, store=store
    )
    assert response.status == 206
    assert response.headers["Content-Range"] == "bytes 1060-1130/5000"
    assert isinstance(response.body, AsyncIterablePayload)
    sent = b"".join([piece async for piece in response.body._value])
    assert sent == data[60:131]


async def test_a_part_that_does_not_hold_the_range_is_served_as_fetched() -> None:
    """RFC 9110 §15.3.7: a job's part answers its requester as the origin sent it (the range its fetch asked)."""
    stored = part(10, 19, 100, b"abcdefghij")
    response = await responses.from_entry((), stored, "edge-7;fwd=uri-miss", pseudonym="edge-7", now=T0, store=STORE)
    assert response.status == 206
    assert response.body == b"abcdefghij"
    assert response.headers["Content-Range"] == "bytes 10-19/100"
