"""The client's address behind trusted proxies (``server.trusted_proxies``): the forwarding field read from the right.

RFC 7239 §5.2 (``for``) and §7.4 (the field is only as good as the proxies that wrote it); X-Forwarded-For's de-facto
rule: each proxy appends the address of the peer it served.
"""

from __future__ import annotations

import ipaddress

import pytest

from proxy.client_address import Field, client_address, hops, parse_address

TRUSTED = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.168.1.0/24", "fd00::/8"))
CLIENT = "203.0.113.7"

WALKS: list[tuple[str, str, list[str], tuple[str, ...], str | None]] = [
    # id, peer, field values (X-Forwarded-For), trusted networks, expected client
    ("no trusted proxies: the peer, whatever the field says", "10.0.0.1", ["1.2.3.4"], (), "10.0.0.1"),
    ("untrusted peer: its field is not believed", "198.51.100.9", ["1.2.3.4"], ("t",), "198.51.100.9"),
    ("trusted peer names the client", "10.0.0.1", [CLIENT], ("t",), CLIENT),
    ("client-written entries left of the proxy's are ignored", "10.0.0.1", [f"6.6.6.6, {CLIENT}"], ("t",), CLIENT),
    ("two trusted hops are skipped", "10.0.0.1", [f"6.6.6.6, {CLIENT}, 192.168.1.5"], ("t",), CLIENT),
    ("several field lines read as one list", "10.0.0.1", ["6.6.6.6", f"{CLIENT}, 10.2.2.2"], ("t",), CLIENT),
    ("every hop trusted: the leftmost", "10.0.0.1", ["10.9.9.9, 192.168.1.5"], ("t",), "10.9.9.9"),
    ("trusted peer without the field: the peer", "10.0.0.1", [], ("t",), "10.0.0.1"),
    ("unreadable hop stops at the last believed", "10.0.0.1", [f"{CLIENT}, unknown"], ("t",), "10.0.0.1"),
    ("unreadable hop beyond a trusted one", "10.0.0.1", ["garbage, 10.3.3.3"], ("t",), "10.3.3.3"),
    ("hop with a port", "10.0.0.1", [f"{CLIENT}:4711"], ("t",), CLIENT),
    ("IPv6 hop", "10.0.0.1", ["2001:db8::7"], ("t",), "2001:db8::7"),
    ("bracketed IPv6 hop with a port", "10.0.0.1", ["[2001:db8::7]:4711"], ("t",), "2001:db8::7"),
    ("IPv6 trusted peer", "fd00::1", [CLIENT], ("t",), CLIENT),
    ("IPv4-mapped peer read as IPv4", "::ffff:10.0.0.1", [CLIENT], ("t",), CLIENT),
]


@pytest.mark.parametrize(("case", "peer", "values", "trusted", "expected"), WALKS, ids=[w[0] for w in WALKS])
def test_x_forwarded_for_walk(
    case: str, peer: str, values: list[str], trusted: tuple[str, ...], expected: str | None
) -> None:
    nets = TRUSTED if trusted else ()
    got = client_address(parse_address(peer), hops("x-forwarded-for", values), nets)
    assert str(got) == expected, case


FORWARDED: list[tuple[str, list[str], str]] = [
    ("for with other parameters", [f"for={CLIENT};proto=http;by=10.0.0.1"], CLIENT),
    ("quoted IPv6 with a port (RFC 7239 §6)", ['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
    ("rightmost untrusted of two elements", [f"for=6.6.6.6, for={CLIENT}"], CLIENT),
    ("trusted element skipped", [f"for={CLIENT}, for=10.4.4.4"], CLIENT),
    ("case-insensitive parameter name", [f"For={CLIENT}"], CLIENT),
    ("obfuscated identifier stops the walk (§6.3)", ["for=_hidden"], "10.0.0.1"),
    ("element without for stops the walk", [f"for={CLIENT}, proto=https"], "10.0.0.1"),
]


@pytest.mark.parametrize(("case", "values", "expected"), FORWARDED, ids=[f[0] for f in FORWARDED])
def test_forwarded_walk(case: str, values: list[str], expected: str) -> None:
    got = client_address(parse_address("10.0.0.1"), hops("forwarded", values), TRUSTED)
    assert str(got) == expected, case


@pytest.mark.parametrize("field", ["x-forwarded-for", "forwarded"])
def test_only_the_configured_field_is_read(field: Field) -> None:
    """A proxy that appends to X-Forwarded-For passes a client's own Forwarded on untouched, and the reverse."""
    other: Field = "forwarded" if field == "x-forwarded-for" else "x-forwarded-for"
    written_by_client = "for=6.6.6.6" if other == "forwarded" else "6.6.6.6"
    assert hops(field, []) == []
    assert client_address(parse_address("10.0.0.1"), hops(field, []), TRUSTED) == parse_address("10.0.0.1")
    assert hops(other, [written_by_client]) == ["6.6.6.6"]


@pytest.mark.parametrize("raw", ["", "unknown", "_hidden", "300.1.1.1", "[2001:db8::1", "example.com"])
def test_unreadable_addresses(raw: str) -> None:
    assert parse_address(raw) is None
