"""How a fetch job ended, as a value: :class:`Fetched` (a response, stored or not) or :class:`Failed` (no response,
with a kind from a closed set), and the one rule that says which waiting requests may use it.

Requests for the same URL collapse onto one job (request collapsing), so the outcome a job produced for the request
that started it may be handed to others. :func:`shareable` is the only place that decides whether it may: the
dispatcher asks it when a request joins a job that just ended and when a joiner's own job location is resolved
through the job it joined (a joiner that polls or waits alike); an outcome it refuses makes the joiner fetch its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from .policy import Headers, variant_key

if TYPE_CHECKING:  # records holds outcomes, so it imports this module; only the annotation needs it back
    from .records import StoredResponse

FailureKind = Literal[
    "timeout", "too_slow", "connect", "too_large", "protocol", "refused", "internal", "queue", "crashed"
]
"""Why no response: the upstream timed out, sent slower than the minimum rate, could not be reached, sent too much
or something invalid; the target was refused (SSRF guard); the job itself broke; the job could not be queued; or
its worker died every time it ran it (``jobs.max_deliveries`` times: a poison job, not tried again)."""

FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))


@dataclass(frozen=True)
class Fetched:
    """The job has a response for its request: the upstream's, the stored one freshened by a 304, or the stored one
    standing in for a failure (stale-if-error).

    A response the cache holds is referred to by its store ``key``, never copied: the job record stays small and a
    body is kept once. Only a response the cache may not hold (private, no-store) travels in the outcome itself, for
    the request that fetched it alone and for a short time (``jobs.unstored_result_ttl``).
    """

    fwd_status: int | None
    """What the upstream answered (a 304 when the stored response was revalidated; ``None`` when it never
    answered and a stale response stands in)."""
    key: str | None = None
    """Where the cache holds the response (stored now, or the stored one standing in)."""
    response: StoredResponse | None = None
    """The response itself, when the cache does not hold it, or holds it only as a part (RFC 9111 §3.3) that a
    fetch of another range may replace at the key before this job's requesters read it."""
    stored: bool = False
    not_stored: str | None = None
    """Why the response was not stored, when it was not."""
    detail: str | None = None
    """Why the outcome is what it is, for Cache-Status (``revalidated``, ``stale-if-error``)."""
    vary: tuple[str, ...] = ()
    """The request fields the response varies on (§4.1), and ``variant`` the digest of the fetching request's."""
    variant: str | None = None
    error: str | None = None
    """The failure a stale response stands in for."""

    @property
    def from_cache(self) -> bool:
        """Is this response one the cache holds (stored now, or the stored one standing in)?"""
        return self.key is not None


@dataclass(frozen=True)
class Failed:
    """The job has no response: ``kind`` says why in one word, ``detail`` in a sentence."""

    kind: FailureKind
    detail: str


Outcome = Fetched | Failed


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
    if not outcome.vary or outcome.variant is None:
        return True
    return outcome.vary != ("*",) and variant_key(outcome.vary, sent) == outcome.variant
