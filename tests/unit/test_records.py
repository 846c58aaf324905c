"""Stored responses and job records: one byte string each, raw body at the end (proxy/records.py)."""

from __future__ import annotations

import dataclasses
import json
import struct

import pytest

from core.outcome import Failed, Fetched
from core.records import CorruptRecord, JobRecord, StoredResponse, VaryIndex, decode_cached

ALL_BYTES = bytes(range(256))


def _response(body: bytes = b"hello", headers: tuple[tuple[str, str], ...] | None = None) -> StoredResponse:
    return StoredResponse(
        url="http://example.com/a?b=1",
        status=200,
        headers=(("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")) if headers is None else headers,
        body=body,
        request_time=1_700_000_000.125,
        response_time=1_700_000_000.5,
        lifetime=60.0,
    )


BODIES = [
    ("empty", b""),
    ("ascii", b"hello world"),
    ("all-256-byte-values", ALL_BYTES),
    ("all-256-twice-reversed", ALL_BYTES + ALL_BYTES[::-1]),
    ("looks-like-a-record", b"GRE1\x00\x00\x00\x02{}GRJ1"),
    ("gzip-magic", b"\x1f\x8b\x08\x00" + b"\x00" * 100),
    ("large", bytes(range(256)) * 4096),
]

HEADERS = [
    ("none", ()),
    ("plain", (("Content-Type", "text/html; charset=utf-8"),)),
    (
        "latin-1-value",
        (("X-Name", "caf\xe9 cr\xe8me \xff"), ("Content-Disposition", 'attachment; filename="\xe0.txt"')),
    ),
    ("repeated-names-order-kept", (("Set-Cookie", "a=1"), ("Vary", "Accept"), ("set-cookie", "b=2"))),
    ("quotes-and-backslashes", (("X-Json", '{"a": "b\\\\c"}'),)),
    ("empty-value", (("X-Empty", ""),)),
]


@pytest.mark.parametrize("body", [c[1] for c in BODIES], ids=[c[0] for c in BODIES])
def test_stored_response_round_trip_bodies(body: bytes) -> None:
    entry = _response(body)
    data = entry.encode()
    assert isinstance(data, bytes)
    assert StoredResponse.decode(data) == entry
    assert StoredResponse.decode(data).body == body


@pytest.mark.parametrize("headers", [c[1] for c in HEADERS], ids=[c[0] for c in HEADERS])
def test_stored_response_round_trip_headers(headers: tuple[tuple[str, str], ...]) -> None:
    entry = _response(headers=headers)
    back = StoredResponse.decode(entry.encode())
    assert back == entry
    assert back.headers == headers
    assert isinstance(back.headers, tuple)
    assert all(isinstance(h, tuple) for h in back.headers)


def test_stored_response_round_trips_its_tags() -> None:
    """Surrogate keys travel in the metadata (the fields that carried them may have been stripped)."""
    entry = dataclasses.replace(_response(), tags=("product-1", "caf\xe9"))
    assert StoredResponse.decode(entry.encode()).tags == ("product-1", "caf\xe9")
    assert b"tags" not in _response().encode(), "an untagged entry carries no tag list"


@pytest.mark.parametrize("body", [c[1] for c in BODIES], ids=[c[0] for c in BODIES])
def test_body_is_stored_raw_at_the_end(body: bytes) -> None:
    """The body is appended as is: never base64'd, never inside the JSON."""
    entry = _response(body)
    data = entry.encode()
    assert data.startswith(b"GRE1")
    assert data.endswith(body)
    (size,) = struct.unpack(">I", data[4:8])
    assert data[8 + size :] == body
    assert len(data) == 8 + size + len(body)
    meta = json.loads(data[8 : 8 + size])
    assert "body" not in meta


def test_stored_response_default_lifetime_and_times() -> None:
    entry = StoredResponse("http://e.com/", 404, (), b"", 10.0, 11.0)
    back = StoredResponse.decode(entry.encode())
    assert back.lifetime == 0.0
    assert back.times.request_time == 10.0
    assert back.times.response_time == 11.0
    assert back.times.headers == ()


JOBS = [
    ("queued-minimal", JobRecord(id="j1", url="http://e.com/", created=100.0)),
    (
        "running",
        JobRecord(id="j2", url="http://e.com/x", state="running", created=100.0, started=100.5, attempts=1),
    ),
    (
        "failed",
        JobRecord(
            id="j3",
            url="http://e.com/y",
            state="failed",
            created=100.0,
            started=100.5,
            finished=101.0,
            attempts=3,
            outcome=Failed("connect", "cannot reach upstream: refused \xe9"),
        ),
    ),
    (
        "joined",
        JobRecord(
            id="j4",
            url="http://e.com/z",
            created=100.0,
            joined="j1",
            sent=(("Accept-Language", "fr"), ("Accept", "*/*")),
        ),
    ),
]


@pytest.mark.parametrize("record", [c[1] for c in JOBS], ids=[c[0] for c in JOBS])
def test_job_record_round_trip_without_response(record: JobRecord) -> None:
    data = record.encode()
    assert data.startswith(b"GRJ1")
    back = JobRecord.decode(data)
    assert back == record
    for name in ("started", "finished", "attempts", "state", "outcome"):
        assert getattr(back, name) == getattr(record, name)


OUTCOMES = [
    ("stored", Fetched(200, key="h1", stored=True)),
    ("not-stored", Fetched(200, response=_response(), not_stored="response said no-store")),
    (
        "revalidated-variant",
        Fetched(304, key="h1:g:v", stored=True, detail="revalidated", vary=("accept",), variant="0123abcd"),
    ),
    ("stale-stands-in", Fetched(None, key="h1", detail="stale-if-error", error="upstream answered 503")),
]


@pytest.mark.parametrize("outcome", [c[1] for c in OUTCOMES], ids=[c[0] for c in OUTCOMES])
def test_job_record_round_trips_every_fetched_outcome(outcome: Fetched) -> None:
    record = JobRecord(id="j5", url="http://e.com/v", created=1.0).ended(outcome, 2.0)
    assert record.state == "done"
    assert record.finished == 2.0
    assert JobRecord.decode(record.encode()) == record


def test_ended_without_a_response_is_failed() -> None:
    record = JobRecord(id="j", url="http://e.com/", created=1.0).running(1.5).ended(Failed("timeout", "slow"), 9.0)
    assert (record.state, record.attempts, record.started, record.finished) == ("failed", 1, 1.5, 9.0)
    assert JobRecord.decode(record.encode()).outcome == Failed("timeout", "slow")


def test_failure_of_an_unknown_kind_reads_as_internal() -> None:
    """A record written by another version with a kind this one does not know still decodes, as ``internal``."""
    data = _framed(b"GRJ1", {"id": "j", "url": "http://e.com/", "state": "failed", "created": 1.0, "error_kind": "x"})
    assert JobRecord.decode(data).outcome == Failed("internal", "the fetch failed")


@pytest.mark.parametrize("body", [c[1] for c in BODIES], ids=[c[0] for c in BODIES])
def test_job_record_round_trip_with_response(body: bytes) -> None:
    entry = _response(body, headers=(("X-Name", "caf\xe9"), ("Content-Encoding", "gzip")))
    record = JobRecord(
        id="job-1",
        url=entry.url,
        state="done",
        created=1.0,
        started=2.0,
        finished=3.0,
        attempts=1,
        outcome=Fetched(200, response=entry, not_stored="response is private"),
    )
    data = record.encode()
    assert data.endswith(body)
    back = JobRecord.decode(data)
    assert back == record
    assert isinstance(back.outcome, Fetched)
    assert back.outcome.response is not None
    assert back.outcome.response.body == body


def test_job_record_pending_and_status_doc() -> None:
    record = JobRecord(id="j", url="http://e.com/", created=5.0)
    assert record.pending
    assert record.running(6.0).pending
    assert not record.ended(Fetched(200, response=_response()), 7.0).pending
    assert not record.ended(Failed("connect", "boom"), 7.0).pending
    assert record.status_doc("/jobs/j") == {
        "id": "j",
        "url": "http://e.com/",
        "state": "queued",
        "location": "/jobs/j",
        "created": 5.0,
        "started": None,
        "finished": None,
        "attempts": 0,
    }


def _framed(magic: bytes, meta: object, body: bytes = b"") -> bytes:
    head = json.dumps(meta).encode()
    return magic + struct.pack(">I", len(head)) + head + body


GOOD_ENTRY = _response().encode()
GOOD_JOB = JobRecord(id="j", url="http://e.com/", created=1.0).ended(Fetched(200, response=_response()), 2.0).encode()
ENTRY_META = _response().meta()

GARBAGE_ENTRIES = [
    ("empty", b""),
    ("random", b"\x00\x01not a record at all"),
    ("magic-only", b"GRE1"),
    ("short-length", b"GRE1\x00\x00"),
    ("job-record-as-entry", GOOD_JOB),
    ("length-past-end", b"GRE1\x00\x00\xff\xff{}"),
    ("meta-not-json", b"GRE1\x00\x00\x00\x05{nope"),
    ("meta-not-utf8", b"GRE1\x00\x00\x00\x02\xff\xfe"),
    ("meta-not-object", _framed(b"GRE1", [1, 2, 3])),
    ("meta-missing-status", _framed(b"GRE1", {k: v for k, v in ENTRY_META.items() if k != "status"})),
    ("meta-bad-status", _framed(b"GRE1", {**ENTRY_META, "status": "two hundred"})),
    ("meta-headers-not-pairs", _framed(b"GRE1", {**ENTRY_META, "headers": [["a"]]})),
    ("meta-headers-not-list", _framed(b"GRE1", {**ENTRY_META, "headers": 5})),
    ("meta-bad-time", _framed(b"GRE1", {**ENTRY_META, "request_time": "noon"})),
]


@pytest.mark.parametrize("data", [c[1] for c in GARBAGE_ENTRIES], ids=[c[0] for c in GARBAGE_ENTRIES])
def test_stored_response_decode_garbage(data: bytes) -> None:
    with pytest.raises(CorruptRecord):
        StoredResponse.decode(data)


JOB_META = json.loads(GOOD_JOB[8 : 8 + struct.unpack(">I", GOOD_JOB[4:8])[0]])

GARBAGE_JOBS = [
    ("empty", b""),
    ("random", b"\xde\xad\xbe\xef" * 4),
    ("entry-as-job", GOOD_ENTRY),
    ("meta-not-json", b"GRJ1\x00\x00\x00\x03abc"),
    ("meta-not-object", _framed(b"GRJ1", "a string")),
    ("missing-id", _framed(b"GRJ1", {k: v for k, v in JOB_META.items() if k != "id"})),
    ("missing-created", _framed(b"GRJ1", {k: v for k, v in JOB_META.items() if k != "created"})),
    ("unknown-state", _framed(b"GRJ1", {**JOB_META, "state": "exploded"})),
    ("bad-attempts", _framed(b"GRJ1", {**JOB_META, "attempts": "many"})),
    ("bad-response-meta", _framed(b"GRJ1", {**JOB_META, "response": {"url": "x"}})),
]


@pytest.mark.parametrize("data", [c[1] for c in GARBAGE_JOBS], ids=[c[0] for c in GARBAGE_JOBS])
def test_job_record_decode_garbage(data: bytes) -> None:
    with pytest.raises(CorruptRecord):
        JobRecord.decode(data)


@pytest.mark.parametrize(
    "index",
    [VaryIndex((), "g0"), VaryIndex(("accept-encoding",), "g1"), VaryIndex(("accept", "accept-language"), "\xe9")],
    ids=["no-fields", "one-field", "two-fields"],
)
def test_vary_index_round_trip(index: VaryIndex) -> None:
    data = index.encode()
    assert data.startswith(b"GRV1")
    assert VaryIndex.decode(data) == index
    assert decode_cached(data) == index


def test_decode_cached_tells_entries_from_indexes() -> None:
    entry = _response(ALL_BYTES)
    assert decode_cached(entry.encode()) == entry
    assert isinstance(decode_cached(VaryIndex(("accept",), "g").encode()), VaryIndex)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GRV1",
        GOOD_JOB,
        _framed(b"GRV1", {"generation": "g"}),
        _framed(b"GRV1", {"fields": 5, "generation": "g"}),
        _framed(b"GRV1", ["fields"]),
    ],
    ids=["empty", "magic-only", "job-record", "no-fields", "fields-not-list", "meta-not-object"],
)
def test_decode_cached_garbage(data: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_cached(data)


def test_corrupt_record_is_a_value_error() -> None:
    assert issubclass(CorruptRecord, ValueError)
