"""Partial content as pure rules: byte ranges (RFC 9110 §14), storing parts (RFC 9111 §3.3) and combining them
(RFC 9111 §3.4).

A stored response is either whole (a 200) or one *part*: a 206 with one ``Content-Range`` whose body is that
contiguous span of the representation. These rules say which span a request asks for, whether a stored response
holds all of it (then it is a hit), what a fetch for a range miss asks the origin (the client's range, or only the
bytes a stored part lacks, under ``If-Range``), and how a new part and a stored one combine: only under the same
strong validator and complete length, and only when they overlap or adjoin; when they cover the whole
representation the result is a complete 200. The store, the job and the handlers carry the answers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .policy import Headers, bounded_digits, values

#: Positions beyond this are beyond any stored body; longer numbers are read as it, never converted in full.
POSITION_MAX = 2**63


class Unsatisfiable(ValueError):
    """No part of the requested range lies within the representation (answer 416)."""


# --- what a request asks for (RFC 9110 §14.1.2, §14.2) ---------------------------------------------------------


def _spec(header: str) -> tuple[int | None, int | None] | None:
    """``(first, last)`` of a single ``bytes=`` range as written (``None`` where a bound is omitted), or ``None``
    when the field is to be ignored: several ranges, another unit, or malformed (§14.2 lets a server ignore it)."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    start_s, dash, end_s = spec.strip().partition("-")
    start_s, end_s = start_s.strip(), end_s.strip()
    if not dash or (start_s and not start_s.isdigit()) or (end_s and not end_s.isdigit()):
        return None
    if not start_s and not end_s:
        return None
    start = bounded_digits(start_s, POSITION_MAX) if start_s else None
    end = bounded_digits(end_s, POSITION_MAX) if end_s else None
    if start is not None and end is not None and end < start:
        return None
    return start, end


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte positions a ``Range`` field asks of a ``size``-byte representation, or
    ``None`` to ignore it (then the whole representation is a valid answer, §14.2); :class:`Unsatisfiable` when no
    byte of it lies within the representation (§15.5.17)."""
    spec = _spec(header)
    if spec is None:
        return None
    start, end = spec
    if start is None:  # suffix range: the last N bytes
        assert end is not None
        if end == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - end), size - 1
    if start >= size:
        raise Unsatisfiable(header)
    return start, size - 1 if end is None else min(end, size - 1)


def forwarded_range(request_headers: Headers) -> Headers:
    """The ``Range`` a fetch for this request forwards: the client's single byte range, unless the client made
    it conditional (``If-Range``: it then accepts the whole representation, which is what is fetched) or wrote
    something else (several ranges, another unit: ignored, §14.2, so the whole is fetched and served)."""
    ranges = values(request_headers, "range")
    if len(ranges) != 1 or values(request_headers, "if-range") or _spec(ranges[0]) is None:
        return ()
    return (("Range", ranges[0].strip()),)


# --- what a stored response holds (RFC 9110 §14.4, RFC 9111 §3.3) -----------------------------------------------


@dataclass(frozen=True)
class Part:
    """The span ``first``-``last`` (inclusive) of a representation of ``length`` bytes (``None``: unknown, ``*``)
    that a response holds, and its strong validator (a strong ``ETag``), which alone lets parts combine (§3.4)."""

    first: int
    last: int
    length: int | None
    validator: str | None

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.length is not None and self.last == self.length - 1


def content_range(raw: str) -> tuple[int, int, int | None] | None:
    """A ``Content-Range`` of a 206 (RFC 9110 §14.4): ``bytes first-last/length`` (``length`` may be ``*``), or
    ``None`` when it is invalid (including ``last`` before ``first``, or not within ``length``)."""
    unit, _, rest = raw.strip().partition(" ")
    span, slash, length_s = rest.strip().partition("/")
    first_s, dash, last_s = span.partition("-")
    if unit.lower() != "bytes" or not slash or not dash or not (first_s.isdigit() and last_s.isdigit()):
        return None
    first, last = bounded_digits(first_s, POSITION_MAX), bounded_digits(last_s, POSITION_MAX)
    if length_s == "*":
        length = None
    elif length_s.isdigit():
        length = bounded_digits(length_s, POSITION_MAX)
    else:
        return None
    if last < first or (length is not None and last >= length):
        return None
    return first, last, length


def strong_validator(headers: Headers) -> str | None:
    """The response's strong entity tag (RFC 9110 §8.8.3), or ``None`` when it has none or a weak one: only a
    strong validator says two parts are of the same representation (RFC 9111 §3.4, RFC 9110 §8.8.1)."""
    tags = values(headers, "etag")
    if len(tags) != 1:
        return None
    tag = tags[0].strip()
    if tag.startswith("W/") or len(tag) < 2 or tag[0] != '"' or tag[-1] != '"':
        return None
    return tag


def held(status: int, headers: Headers, size: int) -> Part | None:
    """What a stored response of ``size`` body bytes holds: the whole representation (any status but 206), or the
    part a 206's one ``Content-Range`` names when its body is exactly that span (else ``None``: not a part)."""
    if status != 206:
        return Part(0, size - 1, size, strong_validator(headers))
    ranges = values(headers, "content-range")
    parsed = content_range(ranges[0]) if len(ranges) == 1 else None
    if parsed is None or parsed[1] - parsed[0] + 1 != size:
        return None
    return Part(parsed[0], parsed[1], parsed[2], strong_validator(headers))


def wanted(request_headers: Headers, length: int | None) -> tuple[int, int] | None:
    """The span a request asks of a representation of ``length`` bytes: its single byte range, or the whole when it
    has none (or one that is ignored); ``None`` when that cannot be known (unknown length) or is unsatisfiable."""
    ranges = forwarded_range(request_headers)
    if not ranges:  # no range, a conditional one or one that is ignored: the whole is wanted
        return (0, length - 1) if length else None
    spec = _spec(ranges[0][1])
    assert spec is not None  # forwarded_range only keeps parseable ranges
    start, end = spec
    if length is None:
        return (start, end) if start is not None and end is not None else None
    try:
        return byte_range(ranges[0][1], length)
    except Unsatisfiable:
        return None


def covered(part: Part, request_headers: Headers) -> tuple[int, int] | None:
    """The span to serve when the stored ``part`` holds all the request asks for (a hit, RFC 9111 §3.4 / RFC 9110
    §14), else ``None`` (a miss: the rest must come from the origin). A request with ``If-Range`` is never served a
    part: it accepts the whole representation, and a part cannot say it is the one the client holds."""
    if values(request_headers, "if-range"):
        return None
    span = wanted(request_headers, part.length)
    if span is None or span[0] < part.first or span[1] > part.last:
        return None
    return span


def answers(status: int, headers: Headers, size: int, request_headers: Headers) -> bool:
    """Whether a stored response may answer this request: any whole one (a range is cut from it, RFC 9110 §14),
    and a part (a 206 of ``size`` bytes) only when it holds the range asked (RFC 9111 §3.4)."""
    if status != 206:
        return True
    part = held(status, headers, size)
    return part is not None and covered(part, request_headers) is not None


# --- a range miss: what the fetch asks (RFC 9111 §3.4, RFC 9110 §13.1.5) -----------------------------------------


@dataclass(frozen=True)
class Ask:
    """What a fetch sends upstream beyond the forwarded fields: ``fields`` (a ``Range``, perhaps with
    ``If-Range``), and whether the stored response takes part (revalidated with its validators, and the one a 304
    freshens or stale-if-error stands in): only when it holds all the request wants."""

    fields: Headers
    revalidate: bool
    why: str

    @property
    def completes(self) -> bool:
        """It asks only the bytes a stored part lacks (under ``If-Range``)."""
        return any(k.lower() == "if-range" for k, _ in self.fields)


def ask(request_headers: Headers, stored: Part | None) -> Ask:
    """What to ask the origin for a request (its fields as the job got them) when ``stored`` is what the cache
    holds for it: the origin is asked once, and for no more than is missing.

    * nothing stored: the client's range (or the whole);
    * a stored response holding everything asked (stale): the same request, made conditional on it;
    * a stored part with a strong validator that the wanted span overlaps or adjoins on one side: only the missing
      bytes, under ``If-Range`` so that a changed representation comes back whole (RFC 9110 §13.1.5);
    * otherwise the client's range (or the whole), leaving the stored part out.
    """
    forwarded = forwarded_range(request_headers)
    if stored is None:
        return Ask(forwarded, revalidate=False, why="nothing stored")
    if stored.whole:
        return Ask((), revalidate=True, why="whole response stored: revalidate it and cut the range from it")
    span = wanted(request_headers, stored.length)
    if span is not None and stored.first <= span[0] and span[1] <= stored.last:
        return Ask(forwarded, revalidate=True, why="the stored part holds the range: revalidate it")
    if span is not None and stored.validator is not None and stored.length is not None:
        missing: tuple[int, int] | None = None
        if stored.first <= span[0] <= stored.last + 1 and span[1] > stored.last:
            missing = (stored.last + 1, span[1])
        elif stored.first - 1 <= span[1] <= stored.last and span[0] < stored.first:
            missing = (span[0], stored.first - 1)
        if missing is not None:
            fields = (("Range", f"bytes={missing[0]}-{missing[1]}"), ("If-Range", stored.validator))
            return Ask(fields, revalidate=False, why="only the bytes the stored part lacks")
    return Ask(forwarded, revalidate=False, why="the stored part cannot be completed")


# --- combining a new part with a stored response (RFC 9111 §3.4) -----------------------------------------------


@dataclass(frozen=True)
class Piece:
    """Bytes ``first``-``last`` (positions in the representation) taken from the ``stored`` or the ``new`` body."""

    source: Literal["stored", "new"]
    first: int
    last: int


@dataclass(frozen=True)
class Combine:
    """The new part and the stored response make one span ``first``-``last`` of ``length`` bytes, assembled from
    ``pieces`` in order; ``whole`` when that is the complete representation (stored as a 200). ``fields_from``
    says whose header fields the combined response carries (§3.4: the stored 200's, else the new part's)."""

    first: int
    last: int
    length: int
    pieces: tuple[Piece, ...]
    fields_from: Literal["stored", "new"]

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.last == self.length - 1


@dataclass(frozen=True)
class Alone:
    """The new part is stored by itself, replacing what was stored, for ``reason``."""

    reason: str


Combination = Combine | Alone


def combine(stored: Part | None, new: Part) -> Combination:
    """Whether a new part combines with the stored response (§3.4): both must carry the same strong validator
    and complete length, and their spans must overlap or adjoin; the new part's bytes win where they overlap."""
    if stored is None:
        return Alone("nothing stored to combine with")
    if new.validator is None or stored.validator != new.validator:
        return Alone("no matching strong validator")
    if new.length is None or stored.length != new.length:
        return Alone("complete lengths differ or are unknown")
    if new.first > stored.last + 1 or stored.first > new.last + 1:
        return Alone("the parts neither overlap nor adjoin")
    pieces: list[Piece] = []
    if stored.first < new.first:
        pieces.append(Piece("stored", stored.first, new.first - 1))
    pieces.append(Piece("new", new.first, new.last))
    if stored.last > new.last:
        pieces.append(Piece("stored", new.last + 1, stored.last))
    return Combine(
        min(stored.first, new.first),
        max(stored.last, new.last),
        new.length,
        tuple(pieces),
        "stored" if stored.whole else "new",
    )


#: Fields that describe one part's body, recomputed for the combined response.
_PART_FIELDS = frozenset({"content-range", "content-length"})


def combined_fields(headers: Headers, combined: Combine) -> Headers:
    """The combined response's fields: ``headers`` (those §3.4 picks) without the part's ``Content-Range`` and
    ``Content-Length``, with the combined span's ``Content-Range`` unless it is the whole representation."""
    kept = tuple((k, v) for k, v in headers if k.lower() not in _PART_FIELDS)
    if combined.whole:
        return kept
    return (*kept, ("Content-Range", f"bytes {combined.first}-{combined.last}/{combined.length}"))
