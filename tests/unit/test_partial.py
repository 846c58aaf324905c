"""Table-driven tests of the partial-content rules (core/partial.py); each row names the section it checks:
RFC 9110 §14 (ranges), RFC 9111 §3.3 (storing incomplete responses) and §3.4 (combining partial content)."""

from __future__ import annotations

import pytest

from core import partial
from core.partial import Alone, Ask, Combine, Part, Piece
from core.policy import Headers

ETAG = '"v1"'


def h(*pairs: tuple[str, str]) -> Headers:
    return tuple(pairs)


def rng(spec: str) -> Headers:
    return (("Range", spec),)


# --- what a request asks for (RFC 9110 §14.1.2, §14.2) ------------------------------------------------------------

BYTE_RANGE_CASES: list[tuple[str, str, int, tuple[int, int] | type[partial.Unsatisfiable] | None]] = [
    ("RFC 9110 §14.1.2 first-last", "bytes=0-4", 10, (0, 4)),
    ("RFC 9110 §14.1.2 last beyond the end is clipped", "bytes=5-99", 10, (5, 9)),
    ("RFC 9110 §14.1.2 open-ended", "bytes=3-", 10, (3, 9)),
    ("RFC 9110 §14.1.2 suffix", "bytes=-3", 10, (7, 9)),
    ("RFC 9110 §14.1.2 suffix longer than the body is the whole", "bytes=-30", 10, (0, 9)),
    ("RFC 9110 §14.1.1 unit is caseless", "BYTES=0-0", 10, (0, 0)),
    ("RFC 9110 §14.2 several ranges are ignored", "bytes=0-1,3-4", 10, None),
    ("RFC 9110 §14.2 another unit is ignored", "items=0-1", 10, None),
    ("RFC 9110 §14.2 last before first is ignored", "bytes=5-1", 10, None),
    ("RFC 9110 §14.2 garbage is ignored", "bytes=a-b", 10, None),
    ("RFC 9110 §14.2 no bounds is ignored", "bytes=-", 10, None),
    ("RFC 9110 §15.5.17 first beyond the end", "bytes=10-", 10, partial.Unsatisfiable),
    ("RFC 9110 §15.5.17 empty suffix", "bytes=-0", 10, partial.Unsatisfiable),
    ("RFC 9110 §15.5.17 huge first position", f"bytes={'9' * 500}-", 10, partial.Unsatisfiable),
]


@pytest.mark.parametrize(
    ("section", "field", "size", "expected"), BYTE_RANGE_CASES, ids=[c[0] for c in BYTE_RANGE_CASES]
)
def test_byte_range(
    section: str, field: str, size: int, expected: tuple[int, int] | type[partial.Unsatisfiable] | None
) -> None:
    if expected is partial.Unsatisfiable:
        with pytest.raises(partial.Unsatisfiable):
            partial.byte_range(field, size)
    else:
        assert partial.byte_range(field, size) == expected, section


FORWARDED_CASES: list[tuple[str, Headers, Headers]] = [
    ("RFC 9110 §14.2 a single byte range is forwarded", rng("bytes=0-4"), rng("bytes=0-4")),
    ("RFC 9110 §14.2 no Range, nothing forwarded", (), ()),
    ("RFC 9110 §13.1.5 If-Range: the whole is fetched", h(("Range", "bytes=0-4"), ("If-Range", ETAG)), ()),
    ("RFC 9110 §14.2 several ranges: the whole is fetched", rng("bytes=0-1,5-6"), ()),
    ("RFC 9110 §14.2 two Range lines: the whole is fetched", h(("Range", "bytes=0-1"), ("Range", "bytes=2-3")), ()),
]


@pytest.mark.parametrize(
    ("section", "request_headers", "expected"), FORWARDED_CASES, ids=[c[0] for c in FORWARDED_CASES]
)
def test_forwarded_range(section: str, request_headers: Headers, expected: Headers) -> None:
    assert partial.forwarded_range(request_headers) == expected, section


# --- what a stored response holds (RFC 9110 §14.4, RFC 9111 §3.3) --------------------------------------------------

CONTENT_RANGE_CASES: list[tuple[str, str, tuple[int, int, int | None] | None]] = [
    ("RFC 9110 §14.4 first-last/length", "bytes 0-4/10", (0, 4, 10)),
    ("RFC 9110 §14.4 unknown length", "bytes 5-9/*", (5, 9, None)),
    ("RFC 9110 §14.4 unsatisfied-range form is not a part", "bytes */10", None),
    ("RFC 9110 §14.4 last before first is invalid", "bytes 5-4/10", None),
    ("RFC 9110 §14.4 last beyond the length is invalid", "bytes 5-10/10", None),
    ("RFC 9110 §14.4 another unit", "items 0-4/10", None),
    ("RFC 9110 §14.4 garbage", "bytes x-y/z", None),
]


@pytest.mark.parametrize(("section", "raw", "expected"), CONTENT_RANGE_CASES, ids=[c[0] for c in CONTENT_RANGE_CASES])
def test_content_range(section: str, raw: str, expected: tuple[int, int, int | None] | None) -> None:
    assert partial.content_range(raw) == expected, section


HELD_CASES: list[tuple[str, int, Headers, int, Part | None]] = [
    ("§3.3 a 200 holds the whole", 200, h(("ETag", ETAG)), 10, Part(0, 9, 10, ETAG)),
    (
        "§3.3 a 206 holds its Content-Range",
        206,
        h(("Content-Range", "bytes 2-4/10"), ("ETag", ETAG)),
        3,
        Part(2, 4, 10, ETAG),
    ),
    (
        "RFC 9110 §8.8.3 a weak ETag is no strong validator",
        206,
        h(("Content-Range", "bytes 2-4/10"), ("ETag", 'W/"v1"')),
        3,
        Part(2, 4, 10, None),
    ),
    ("RFC 9110 §8.8.3 an unquoted ETag is no validator", 200, h(("ETag", "v1")), 10, Part(0, 9, 10, None)),
    (
        "§3.3 a 206 whose body is not its Content-Range holds nothing",
        206,
        h(
            ("Content-Range", "bytes 2-4/10"),
        ),
        2,
        None,
    ),
    (
        "§3.3 a 206 with two Content-Range lines holds nothing",
        206,
        h(("Content-Range", "bytes 0-1/10"), ("Content-Range", "bytes 0-1/10")),
        2,
        None,
    ),
    ("§3.3 a 206 without Content-Range holds nothing", 206, (), 2, None),
]


@pytest.mark.parametrize(
    ("section", "status", "headers", "size", "expected"), HELD_CASES, ids=[c[0] for c in HELD_CASES]
)
def test_held(section: str, status: int, headers: Headers, size: int, expected: Part | None) -> None:
    assert partial.held(status, headers, size) == expected, section


COVERED_CASES: list[tuple[str, Part, Headers, tuple[int, int] | None]] = [
    ("§3.4 a part holding the range is a hit", Part(0, 4, 10, ETAG), rng("bytes=0-4"), (0, 4)),
    ("§3.4 a smaller range within the part", Part(0, 4, 10, ETAG), rng("bytes=1-2"), (1, 2)),
    ("§3.4 a suffix within the part", Part(5, 9, 10, ETAG), rng("bytes=-3"), (7, 9)),
    ("§3.4 a range past the part is a miss", Part(0, 4, 10, ETAG), rng("bytes=3-6"), None),
    ("§3.4 a range before the part is a miss", Part(5, 9, 10, ETAG), rng("bytes=0-5"), None),
    ("§3.4 the whole is not held by a part", Part(0, 4, 10, ETAG), (), None),
    (
        "RFC 9110 §13.1.5 If-Range is never answered from a part",
        Part(0, 4, 10, ETAG),
        h(("Range", "bytes=0-4"), ("If-Range", ETAG)),
        None,
    ),
    ("RFC 9110 §14.4 unknown length: an explicit range within", Part(0, 4, None, None), rng("bytes=1-3"), (1, 3)),
    ("RFC 9110 §14.4 unknown length: a suffix cannot be placed", Part(0, 4, None, None), rng("bytes=-2"), None),
    ("RFC 9110 §15.5.17 unsatisfiable is not held", Part(0, 9, 10, ETAG), rng("bytes=20-"), None),
]


@pytest.mark.parametrize(
    ("section", "part", "request_headers", "expected"), COVERED_CASES, ids=[c[0] for c in COVERED_CASES]
)
def test_covered(section: str, part: Part, request_headers: Headers, expected: tuple[int, int] | None) -> None:
    assert partial.covered(part, request_headers) == expected, section


# --- a range miss: what the fetch asks (RFC 9111 §3.4, RFC 9110 §13.1.5) -----------------------------------------

ASK_CASES: list[tuple[str, Headers, Part | None, Ask]] = [
    (
        "§3.3 range miss, nothing stored: the client's range",
        rng("bytes=0-4"),
        None,
        Ask(rng("bytes=0-4"), False, "nothing stored"),
    ),
    ("§3.3 plain miss, nothing stored: the whole", (), None, Ask((), False, "nothing stored")),
    (
        "§4.3.1 a whole stored response is revalidated, the range cut from it",
        rng("bytes=0-4"),
        Part(0, 9, 10, ETAG),
        Ask((), True, "whole response stored: revalidate it and cut the range from it"),
    ),
    (
        "§4.3.1 a stale part holding the range is revalidated with it",
        rng("bytes=0-4"),
        Part(0, 4, 10, ETAG),
        Ask(rng("bytes=0-4"), True, "the stored part holds the range: revalidate it"),
    ),
    (
        "§3.4 the whole wanted, a prefix stored: ask only the rest under If-Range",
        (),
        Part(0, 4, 10, ETAG),
        Ask(h(("Range", "bytes=5-9"), ("If-Range", ETAG)), False, "only the bytes the stored part lacks"),
    ),
    (
        "§3.4 a range running past the part: ask only the rest",
        rng("bytes=3-7"),
        Part(0, 4, 10, ETAG),
        Ask(h(("Range", "bytes=5-7"), ("If-Range", ETAG)), False, "only the bytes the stored part lacks"),
    ),
    (
        "§3.4 a range adjoining the part's start: ask only the head",
        rng("bytes=0-4"),
        Part(5, 9, 10, ETAG),
        Ask(h(("Range", "bytes=0-4"), ("If-Range", ETAG)), False, "only the bytes the stored part lacks"),
    ),
    (
        "§3.4 a range apart from the part: the client's range",
        rng("bytes=7-9"),
        Part(0, 4, 10, ETAG),
        Ask(rng("bytes=7-9"), False, "the stored part cannot be completed"),
    ),
    (
        "§3.4 no strong validator: the part cannot be completed",
        (),
        Part(0, 4, 10, None),
        Ask((), False, "the stored part cannot be completed"),
    ),
    (
        "§3.4 a range on both sides of the part: the client's range",
        rng("bytes=0-9"),
        Part(3, 5, 10, ETAG),
        Ask(rng("bytes=0-9"), False, "the stored part cannot be completed"),
    ),
    (
        "RFC 9110 §13.1.5 If-Range: the whole, apart from the part",
        h(("Range", "bytes=0-4"), ("If-Range", ETAG)),
        Part(0, 4, 10, ETAG),
        Ask(h(("Range", "bytes=5-9"), ("If-Range", ETAG)), False, "only the bytes the stored part lacks"),
    ),
]


@pytest.mark.parametrize(("section", "request_headers", "stored", "expected"), ASK_CASES, ids=[c[0] for c in ASK_CASES])
def test_ask(section: str, request_headers: Headers, stored: Part | None, expected: Ask) -> None:
    assert partial.ask(request_headers, stored) == expected, section


# --- combining (RFC 9111 §3.4) -----------------------------------------------------------------------------------

COMBINE_CASES: list[tuple[str, Part | None, Part, Combine | Alone]] = [
    ("§3.3 nothing stored: the part alone", None, Part(0, 4, 10, ETAG), Alone("nothing stored to combine with")),
    (
        "§3.4 adjoining parts add up to the whole",
        Part(0, 4, 10, ETAG),
        Part(5, 9, 10, ETAG),
        Combine(0, 9, 10, (Piece("stored", 0, 4), Piece("new", 5, 9)), "new"),
    ),
    (
        "§3.4 a new head before the stored tail",
        Part(5, 9, 10, ETAG),
        Part(0, 4, 10, ETAG),
        Combine(0, 9, 10, (Piece("new", 0, 4), Piece("stored", 5, 9)), "new"),
    ),
    (
        "§3.4 overlapping parts: the new bytes win where they overlap",
        Part(0, 5, 10, ETAG),
        Part(3, 7, 10, ETAG),
        Combine(0, 7, 10, (Piece("stored", 0, 2), Piece("new", 3, 7)), "new"),
    ),
    (
        "§3.4 a new part inside the stored one",
        Part(0, 9, 20, ETAG),
        Part(2, 3, 20, ETAG),
        Combine(0, 9, 20, (Piece("stored", 0, 1), Piece("new", 2, 3), Piece("stored", 4, 9)), "new"),
    ),
    (
        "§3.4 a stored 200 keeps its fields",
        Part(0, 9, 10, ETAG),
        Part(2, 3, 10, ETAG),
        Combine(0, 9, 10, (Piece("stored", 0, 1), Piece("new", 2, 3), Piece("stored", 4, 9)), "stored"),
    ),
    (
        "§3.4 different strong validators do not combine",
        Part(0, 4, 10, '"v0"'),
        Part(5, 9, 10, ETAG),
        Alone("no matching strong validator"),
    ),
    (
        "§3.4 a weak (absent) validator does not combine",
        Part(0, 4, 10, None),
        Part(5, 9, 10, None),
        Alone("no matching strong validator"),
    ),
    (
        "§3.4 different lengths do not combine",
        Part(0, 4, 11, ETAG),
        Part(5, 9, 10, ETAG),
        Alone("complete lengths differ or are unknown"),
    ),
    (
        "§3.4 unknown lengths do not combine",
        Part(0, 4, None, ETAG),
        Part(5, 9, None, ETAG),
        Alone("complete lengths differ or are unknown"),
    ),
    (
        "§3.4 parts with a gap do not combine",
        Part(0, 3, 10, ETAG),
        Part(5, 9, 10, ETAG),
        Alone("the parts neither overlap nor adjoin"),
    ),
]


@pytest.mark.parametrize(("section", "stored", "new", "expected"), COMBINE_CASES, ids=[c[0] for c in COMBINE_CASES])
def test_combine(section: str, stored: Part | None, new: Part, expected: Combine | Alone) -> None:
    assert partial.combine(stored, new) == expected, section


FIELDS_CASES: list[tuple[str, Combine, Headers]] = [
    (
        "§3.4 the whole: no Content-Range, no stale Content-Length",
        Combine(0, 9, 10, (), "new"),
        h(("ETag", ETAG), ("Content-Type", "text/plain")),
    ),
    (
        "§3.4 still a part: the combined span's Content-Range",
        Combine(0, 7, 10, (), "new"),
        h(("ETag", ETAG), ("Content-Type", "text/plain"), ("Content-Range", "bytes 0-7/10")),
    ),
]


@pytest.mark.parametrize(("section", "combined", "expected"), FIELDS_CASES, ids=[c[0] for c in FIELDS_CASES])
def test_combined_fields(section: str, combined: Combine, expected: Headers) -> None:
    part_fields = h(
        ("ETag", ETAG), ("Content-Range", "bytes 5-7/10"), ("Content-Length", "3"), ("Content-Type", "text/plain")
    )
    assert partial.combined_fields(part_fields, combined) == expected, section


ANSWERS_CASES: list[tuple[str, int, Headers, int, Headers, bool]] = [
    ("RFC 9110 §14 a whole response answers a range", 200, (), 10, rng("bytes=0-4"), True),
    ("§4 a whole response answers the whole", 200, (), 10, (), True),
    (
        "§3.4 a part answers a range it holds",
        206,
        h(
            ("Content-Range", "bytes 0-4/10"),
        ),
        5,
        rng("bytes=1-3"),
        True,
    ),
    (
        "§3.4 a part does not answer a range it lacks",
        206,
        h(
            ("Content-Range", "bytes 0-4/10"),
        ),
        5,
        rng("bytes=4-5"),
        False,
    ),
    (
        "§3.4 a part does not answer the whole",
        206,
        h(
            ("Content-Range", "bytes 0-4/10"),
        ),
        5,
        (),
        False,
    ),
    ("§3.3 a broken part answers nothing", 206, (), 5, rng("bytes=0-1"), False),
]


@pytest.mark.parametrize(
    ("section", "status", "headers", "size", "request_headers", "expected"),
    ANSWERS_CASES,
    ids=[c[0] for c in ANSWERS_CASES],
)
def test_answers(
    section: str, status: int, headers: Headers, size: int, request_headers: Headers, expected: bool
) -> None:
    assert partial.answers(status, headers, size, request_headers) is expected, section
