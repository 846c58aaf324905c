"""Proactive negotiation of grenier's own answers (RFC 9110 §12.5.1): does a client prefer HTML to JSON?

Only the ``202`` of a miss is negotiated: a browser (which asks for ``text/html`` first) gets a page that follows
the job for it; every other client, ``*/*`` included, the JSON status document.
"""

from __future__ import annotations

from collections.abc import Iterable


def _weights(raw_values: Iterable[str]) -> list[tuple[str, str, float]]:
    """(type, subtype, qvalue) of each media range; a range with an invalid qvalue counts as not acceptable."""
    ranges: list[tuple[str, str, float]] = []
    for raw in raw_values:
        for item in raw.split(","):
            media, *params = item.split(";")
            kind, _, sub = media.strip().lower().partition("/")
            if not kind or not sub:
                continue
            q = 1.0
            for param in params:
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(value.strip())
                    except ValueError:
                        q = 0.0
                    q = q if 0.0 <= q <= 1.0 else 0.0
            ranges.append((kind, sub.strip(), q))
    return ranges


def quality(raw_values: Iterable[str], media_type: str) -> float:
    """§12.5.1: the qvalue the most specific matching range gives ``media_type`` (no ``Accept``: 1)."""
    ranges = _weights(raw_values)
    if not ranges:
        return 1.0
    kind, _, sub = media_type.partition("/")
    best, specificity = 0.0, -1
    for r_kind, r_sub, q in ranges:
        if (r_kind, r_sub) == (kind, sub):
            rank = 2
        elif r_kind == kind and r_sub == "*":
            rank = 1
        elif (r_kind, r_sub) == ("*", "*"):
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = q, rank
    return best


def prefers_html(raw_values: Iterable[str]) -> bool:
    """Does this ``Accept`` rank ``text/html`` above ``application/json`` (ties go to JSON, the default)?"""
    values = tuple(raw_values)
    return quality(values, "text/html") > quality(values, "application/json")
