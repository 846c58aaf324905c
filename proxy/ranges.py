"""Single byte ranges (RFC 9110 §14) served from a complete stored response."""

from __future__ import annotations

from core.policy import bounded_digits

#: Positions beyond this are beyond any stored body; longer numbers are read as it, never converted in full.
_POSITION_MAX = 2**63


class Unsatisfiable(ValueError):
    """No part of the requested range lies within the representation (answer 416)."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte positions a ``Range`` field asks for, or ``None`` to ignore it.

    Only one range is served; several ranges, other units or a malformed field are ignored, which RFC 9110 §14.2
    allows (the whole representation is a valid answer).
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    start_s, dash, end_s = spec.strip().partition("-")
    start_s, end_s = start_s.strip(), end_s.strip()
    if not dash or (start_s and not start_s.isdigit()) or (end_s and not end_s.isdigit()):
        return None
    if not start_s:  # suffix range: the last N bytes
        if not end_s:
            return None
        n = bounded_digits(end_s, _POSITION_MAX)
        if n == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - n), size - 1
    start = bounded_digits(start_s, _POSITION_MAX)
    end = bounded_digits(end_s, _POSITION_MAX) if end_s else size - 1
    if end < start:
        return None
    if start >= size:
        raise Unsatisfiable(header)
    return start, min(end, size - 1)
