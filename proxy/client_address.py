"""Who the client is when grenier sits behind proxies: ``server.trusted_proxies`` and the field they append to.

A proxy in front of grenier connects from its own address, so every client would share one address (one miss-rate
bucket, one line in the log, one verdict of the access rules). Proxies say whom they serve by appending that peer's
address to ``X-Forwarded-For`` (or an RFC 7239 ``Forwarded`` element); whatever a client wrote there itself comes
first. So the field is read from the right: while the address in hand is a trusted proxy's, the hop it names is
believed; the first address that is no trusted proxy is the client. A hop that cannot be read (``unknown``, an
obfuscated name, garbage) stops the walk at the last address believed.

Only one field is read (``server.client_address_field``): a proxy that appends to one passes the other on as the
client wrote it, so reading both would let a client choose its own address.

:func:`client_address` is the pure rule; :class:`ProxyTrust` reads it from a request once and keeps the answer
in the request.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Field = Literal["x-forwarded-for", "forwarded"]

#: Where a request keeps its client address once it is known (a list: empty until then, as None is an answer).
_CLIENT: web.RequestKey[list[Address | None]] = web.RequestKey("grenier_client_address", list)


@functools.lru_cache(maxsize=4096)
def parse_address(raw: str) -> Address | None:
    """An address as peers and proxies write it: ``192.0.2.1``, ``2001:db8::1``, with a zone, a port
    (``192.0.2.1:4711``, ``[2001:db8::1]:4711``) or brackets; IPv4-mapped IPv6 read as IPv4. ``None`` otherwise."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)
def is_in(addr: Address, nets: tuple[IPNetwork, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def hops(field: Field, values: Iterable[str]) -> list[str]:
    """The addresses a field's lines name, leftmost (the farthest from grenier) first, as written.

    ``X-Forwarded-For: a, b``; ``Forwarded: for=a;proto=http, for="[b]:1"`` (RFC 7239 §4). An element of
    ``Forwarded`` without ``for`` names no one: it stays as an unreadable hop (the empty string)."""
    items = [item.strip() for value in values for item in value.split(",")]
    if field == "x-forwarded-for":
        return [item for item in items if item]
    found = []
    for element in items:
        if not element:
            continue
        name = ""
        for pair in element.split(";"):
            key, _, value = pair.partition("=")
            if key.strip().lower() == "for":
                name = value.strip()
        found.append(name)
    return found


def client_address(peer: Address | None, named: Sequence[str], trusted: tuple[IPNetwork, ...]) -> Address | None:
    """The client's address: ``peer`` unless it is a trusted proxy, then the rightmost hop of ``named`` that is not
    one (the leftmost when all are; the last one believed when a hop cannot be read)."""
    if peer is None or not trusted or not is_in(peer, trusted):
        return peer
    client = peer
    for raw in reversed(named):
        addr = parse_address(raw)
        if addr is None:
            return client
        client = addr
        if not is_in(addr, trusted):
            return addr
    return client


def peer_address(request: web.BaseRequest) -> Address | None:
    """The connected socket's address."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return parse_address(str(peer[0])) if peer else None


@dataclass(frozen=True)
class ProxyTrust:
    """``server.trusted_proxies`` and ``server.client_address_field``, applied to requests."""

    networks: tuple[IPNetwork, ...] = ()
    field: Field = "x-forwarded-for"

    @classmethod
    def build(cls, networks: Iterable[str], field: Field = "x-forwarded-for") -> ProxyTrust:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks), field)

    def client(self, request: web.BaseRequest) -> Address | None:
        """The request's client address, worked out once per request (access rules, miss rate and log share it)."""
        known: list[Address | None] | None = request.get(_CLIENT)
        if known:
            return known[0]
        peer = peer_address(request)
        if not self.networks or peer is None:
            addr = peer
        else:
            addr = client_address(peer, hops(self.field, request.headers.getall(self.field, ())), self.networks)
        request[_CLIENT] = [addr]
        return addr
