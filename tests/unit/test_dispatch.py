"""Which requests may collapse onto one job: the claim key (proxy/dispatch.py ``flight``)."""

from __future__ import annotations

import pytest

from core.outcome import Failed, Fetched, Outcome
from core.policy import Headers, variant_key
from proxy.dispatch import flight, variant_flight

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


STORED = Fetched(200, key=f"{KEY}:gen1:{'a' * 32}", stored=True, vary=("foo",), variant="a" * 32)

VARIANT_FLIGHTS: list[tuple[str, Outcome | None, Headers, str | None]] = [
    ("§4.1 another variant: the key it is stored under", STORED, (("Foo", "2"),), f"{KEY}:gen1:"),
    ("§4.1 no Vary: nothing to say", Fetched(200, key=KEY, stored=True), (("Foo", "2"),), None),
    ("§4.1 Vary: * never matches", Fetched(200, key=KEY, vary=("*",)), (), None),
    ("an unstored response names no key", Fetched(200, response=None, vary=("foo",)), (), None),
    ("a failure", Failed("timeout", "slow"), (), None),
    ("RFC 9111 §3.5 credentials claim apart", STORED, (("Foo", "2"), ("Authorization", "Bearer a")), f"{KEY}:gen1:"),
]


@pytest.mark.parametrize(("section", "outcome", "sent", "prefix"), VARIANT_FLIGHTS, ids=[c[0] for c in VARIANT_FLIGHTS])
def test_variant_flight(section: str, outcome: Outcome | None, sent: Headers, prefix: str | None) -> None:
    found = variant_flight(outcome, sent)
    if prefix is None:
        assert found is None, section
        return
    assert found is not None, section
    assert found.startswith(prefix), section
    assert found.split(":")[2] == variant_key(("foo",), sent), "the key later misses of that variant claim"
    assert (":auth:" in found) is any(k.lower() == "authorization" for k, _ in sent), section


def test_variant_flight_is_the_same_for_requests_of_one_variant() -> None:
    assert variant_flight(STORED, (("Foo", "2"),)) == variant_flight(STORED, (("foo", "2"), ("Other", "x")))
    assert variant_flight(STORED, (("Foo", "2"),)) != variant_flight(STORED, (("Foo", "3"),))
