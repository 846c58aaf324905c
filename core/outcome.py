"""How a fetch job ended, as a value: :class:`Fetched` (a response, stored or not) or :class:`Failed` (no response,
with a kind from a closed set), and the one rule that says which waiting requests may use it.

Requests for the same URL collapse onto one job (request collapsing), so the outcome a job produced for the request
that started it may be handed to others. :func:`shareable` is the only place that decides whether it may: the
dispatcher (joining a job that just ended), the handler (a joiner that waited) and the response builder all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from .policy import Headers, variant_key, vary_fields

if TYPE_CHECKING:  # records holds outcomes, so it imports this module; only the annotation needs it back
    from .records import StoredResponse

FailureKind = Literal["timeout", "connect", "too_large", "protocol", "refused", "internal", "queue"]
"""Why no response: the upstream timed out, could not be reached, sent too much or something invalid; the target
was refused (SSRF guard); the job itself broke; or the job could not be queued."""

FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))


@dataclass(frozen=True)
class Fetched:
    """The job has a response for its request: the upstream's, the stored one freshened by a 304, or the stored one
    standing in for a failure (stale-if-error)."""

    response: StoredResponse
    fwd_status: int | None
    """What the upstream answered (a 304 when the stored response was revalidated; ``None`` when it never
    answered and a stale response stands in)."""
    stored: bool = False
    not_stored: str | None = None
    """Why the response was not stored, when it was not."""
    detail: str | None = None
    """Why the outcome is what it is, for Cache-Status (``revalidated``, ``stale-if-error``)."""
    variant: str | None = None
    """The variant digest of the request the job fetched for, when the response varies (§4.1)."""
    error: str | None = None
    """The failure a stale response stands in for."""

    @property
    def from_cache(self) -> bool:
        """Is this response one the cache holds (stored now, or the stored one standing in)?"""
        return self.stored or self.detail == STALE_IF_ERROR


@dataclass(frozen=True)
class Failed:
    """The job has no response: ``kind`` says why in one word, ``detail`` in a sentence."""

    kind: FailureKind
    detail: str


Outcome = Fetched | Failed

#: ``Fetched.detail`` when a stale response stands in for a failed refresh (RFC 5861 §4).
STALE_IF_ERROR = "stale-if-error"


def shareable(outcome: Outcome, sent: Headers) -> bool:
    """May a request that sends ``sent`` upstream use this outcome of a job another request started?

    A failure is shared (every joiner would have failed the same way). A response is shared only when the cache
    holds it (stored, or the stored response standing in), since an unstored one (private, no-store, Set-Cookie)
    belongs to the request that fetched it; and a variant only with the requests it matches (RFC 9111 §4.1).
    """
    if isinstance(outcome, Failed):
        return True
    if not outcome.from_cache:
        return False
    fields = vary_fields(outcome.response.headers)
    if not fields or outcome.variant is None:
        return True
    return fields != ("*",) and variant_key(fields, sent) == outcome.variant
