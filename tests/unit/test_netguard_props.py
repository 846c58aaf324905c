"""Property tests of the SSRF guard: numbers in any spelling mean one address, and denied networks stay denied."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.netguard import DENIED_V4, DENIED_V6, Guard, TargetRefused, check_host, numeric_host

DEFAULT = Guard()
ipv4s = st.builds(IPv4Address, st.integers(0, 2**32 - 1))


@given(st.text())
@example("[")
@example("[::1%]")
@example("0x")
@example("." * 10)
@example("9" * 10_000)
@example("\uff10x\uff17\uff26.1")
def test_numeric_host_never_raises(text: str) -> None:
    numeric_host(text)


@given(st.text(alphabet="0123456789abcdefxX.[]:%"))
def test_numeric_host_never_raises_on_numberish_text(text: str) -> None:
    numeric_host(text)


def _part(value: int, style: str) -> str:
    if style == "hex":
        return f"0x{value:x}"
    if style == "HEX":
        return f"0X{value:X}"
    if style == "octal":
        return f"0{value:o}"
    return str(value)


styles = st.sampled_from(["decimal", "hex", "HEX", "octal"])


@st.composite
def spellings(draw: st.DrawFn, addr: IPv4Address) -> str:
    """One way to write ``addr``: 1 to 4 parts (the last fills the remaining bytes), each in its own radix."""
    octets = addr.packed
    count = draw(st.integers(1, 4))
    head = [_part(b, draw(styles)) for b in octets[: count - 1]]
    last = int.from_bytes(octets[count - 1 :], "big")
    text = ".".join([*head, _part(last, draw(styles))])
    return text + "." if draw(st.booleans()) else text


@given(st.data(), ipv4s)
def test_every_spelling_means_the_same_address(data: st.DataObject, addr: IPv4Address) -> None:
    assert numeric_host(str(addr)) == addr
    assert numeric_host(str(int(addr))) == addr
    assert numeric_host(f"0x{int(addr):08x}") == addr
    assert numeric_host(f"0{int(addr):o}") == addr
    assert numeric_host(data.draw(spellings(addr))) == addr


def _member(network: IPv4Network | IPv6Network) -> st.SearchStrategy[IPv4Address | IPv6Address]:
    first, last = int(network.network_address), int(network.broadcast_address)
    kind = IPv4Address if network.version == 4 else IPv6Address
    return st.integers(first, last).map(kind)


denied_addresses = st.sampled_from([row.network for row in (*DENIED_V4, *DENIED_V6)]).flatmap(_member)


def _literal(addr: IPv4Address | IPv6Address) -> str:
    return f"[{addr}]" if addr.version == 6 else str(addr)


@given(denied_addresses)
def test_denied_networks_are_always_refused(addr: IPv4Address | IPv6Address) -> None:
    with pytest.raises(TargetRefused):  # nothing else may escape
        check_host(_literal(addr), 80, DEFAULT)


@given(st.data(), st.sampled_from([row.network for row in DENIED_V4]).flatmap(_member))
def test_denied_ipv4_is_refused_in_any_spelling(data: st.DataObject, addr: IPv4Address) -> None:
    with pytest.raises(TargetRefused):
        check_host(data.draw(spellings(addr)), 443, DEFAULT)


def _embeddings(v4: IPv4Address) -> dict[str, str]:
    n = int(v4)
    return {
        "mapped": f"[{IPv6Address((0xFFFF << 32) | n)}]",
        "mapped dotted": f"[::ffff:{v4}]",
        "nat64": f"[{IPv6Address((0x0064FF9B << 96) | n)}]",
        "6to4": f"[{IPv6Address((0x2002 << 112) | (n << 80) | 1)}]",
    }


def _verdict(host: str) -> str | None:
    try:
        check_host(host, 80, DEFAULT)
    except TargetRefused as exc:
        return exc.rule
    return None


@given(st.one_of(ipv4s, st.sampled_from([row.network for row in DENIED_V4]).flatmap(_member)))
def test_embedded_ipv4_is_judged_like_the_bare_address(v4: IPv4Address) -> None:
    bare = _verdict(str(v4))
    for form, host in _embeddings(v4).items():
        assert _verdict(host) == bare, form
