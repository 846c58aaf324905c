"""Which requests may collapse onto one job: the claim key (proxy/dispatch.py ``flight``)."""

from __future__ import annotations

import pytest

from core.policy import Headers
from proxy.dispatch import flight

KEY = "0" * 64
A, B = (("Authorization", "Bearer a"),), (("Authorization", "Bearer b"),)

SAME_FLIGHT: list[tuple[str, Headers, Headers, bool]] = [
    ("§4.1 requests without credentials share the stored key's claim", (("Foo", "1"),), (("Foo", "2"),), True),
    ("RFC 9111 §3.5 with Authorization never joins a job without", A, (), False),
    (
        "RFC 9111 §3.5 nor another requester's",
        (("Authorization", "Bearer a"),),
        (("Authorization", "Bearer b"),),
        False,
    ),
    (
        "RFC 9111 §3.5 the same credentials collapse",
        (("Authorization", "Bearer a"),),
        (("authorization", "Bearer a"),),
        True,
    ),
]


@pytest.mark.parametrize(("section", "a", "b", "same"), SAME_FLIGHT, ids=[c[0] for c in SAME_FLIGHT])
def test_flight(section: str, a: Headers, b: Headers, same: bool) -> None:
    assert (flight(KEY, a) == flight(KEY, b)) is same, section
    assert flight(KEY, a).startswith(KEY)
