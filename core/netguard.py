"""The outbound SSRF guard: which targets a client may make the proxy connect to.

A client names the target, so without a guard it could make grenier fetch ``http://169.254.169.254/`` (cloud
credentials), ``http://127.0.0.1:6379/`` (our own Redis) or anything else behind the firewall. The rules:

* Every address a host resolves to (A and AAAA) is judged, and the connection goes only to an address that was judged:
  the host is resolved once, by ``GuardedResolver``, and aiohttp's ``TCPConnector`` connects to exactly the list the
  resolver returned. There is no second lookup a rebinding DNS server could answer differently.
* Addresses are denied by an explicit table (``DENIED``) with a reason per row, then by ``is_global`` as a safety net.
  IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are also judged by that address.
* A host written as a number is judged by the address it means, read the way browsers and curl read it (the WHATWG
  URL IPv4 parser: ``2130706433``, ``0x7f.1``, ``0177.0.0.1`` are all 127.0.0.1). ``localhost`` names are loopback by
  name (RFC 6761), before any lookup.
* Only listed ports (80, 443, 8080, 8443 by default) may be named.

Operators opt in explicitly: ``allow_networks`` overrides the table (e.g. 127.0.0.0/8 for local development),
``allow_hosts`` lets named hosts resolve anywhere, ``deny_hosts`` refuses names outright (deny wins over allow).

Everything but ``GuardedResolver.resolve`` and ``resolve_and_check`` is pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import socket
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from errno import EACCES
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult

from .problems import Problem

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: Where each kind of refusal can be lifted, named as in ``config.toml``.
NETWORKS_HINT = "allow it with security.allow_networks"
HOSTS_HINT = "allow it with security.allow_hosts"

# --- The refusal -----------------------------------------------------------------------------------------------------


class TargetRefused(Problem, OSError):
    """The target is one the proxy must not connect to; ``rule`` names the rule that fired.

    It is an ``OSError`` as well as a ``Problem`` because that is the failure aiohttp expects from a resolver or a
    socket factory: it wraps it in ``ClientConnectorDNSError`` / ``ClientConnectorError`` (the original is their
    ``os_error`` and ``__cause__``), so code that handles connection errors handles a refusal too instead of meeting
    a foreign exception type. ``refusal_of`` digs it back out. ``strerror`` is the detail, so the wrapped message says
    why as well.
    """

    status = 403
    title = "Forbidden target"

    def __init__(
        self,
        detail: str,
        *,
        rule: str = "refused",
        host: str | None = None,
        address: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(detail, rule=rule)
        self.rule = rule
        self.host = host
        self.address = address
        self.port = port
        self.errno = EACCES
        self.strerror = detail

    def __str__(self) -> str:
        return self.detail


class Unresolvable(Problem):
    """A target whose name cannot be looked up: the upstream cannot be reached, which is the gateway's failure."""

    status = 502
    title = "Bad Gateway"


def refusal_of(exc: BaseException) -> TargetRefused | None:
    """The ``TargetRefused`` behind an exception from ``session.get()`` (or the exception itself), else ``None``.

    Follows ``os_error`` (aiohttp's ``ClientConnectorError``), ``__cause__`` and ``__context__``, guarding cycles.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TargetRefused):
            return current
        inner = getattr(current, "os_error", None)
        for nxt in (inner, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


# --- The table of denied networks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denied:
    """A network no target may be in (unless ``allow_networks`` says so); ``what`` completes "X is ..."."""

    network: Network
    rule: str
    what: str


@dataclass(frozen=True)
class Embedding:
    """An IPv6 network whose addresses carry IPv4 addresses, each judged like the bare IPv4 address.

    ``transparent`` forms reach the embedded IPv4 host (mapped, NAT64 well-known prefix, 6to4), so a public embedded
    address makes them acceptable. Opaque forms are refused even then: they are deprecated or local-use, not global.
    """

    network: IPv6Network
    rule: str
    what: str
    embedded: Callable[[IPv6Address], tuple[IPv4Address, ...]]
    transparent: bool


def _n(text: str) -> Network:
    return ip_network(text)


def _low32(addr: IPv6Address) -> tuple[IPv4Address, ...]:
    return (IPv4Address(int(addr) & 0xFFFFFFFF),)


def _sixtofour(addr: IPv6Address) -> tuple[IPv4Address, ...]:
    return (IPv4Address((int(addr) >> 80) & 0xFFFFFFFF),)


def _teredo(addr: IPv6Address) -> tuple[IPv4Address, ...]:
    # Bits 32-63 are the Teredo server; the client is the inverted last 32 bits (RFC 4380 §4).
    return (IPv4Address((int(addr) >> 64) & 0xFFFFFFFF), IPv4Address(~int(addr) & 0xFFFFFFFF))


#: IPv4 networks refused by default, most specific first: the first row that matches is the reason given.
DENIED_V4: tuple[Denied, ...] = (
    Denied(_n("0.0.0.0/32"), "unspecified", "the unspecified address"),
    Denied(_n("0.0.0.0/8"), "this_network", "a 'this network' address (RFC 1122), which reaches the local host"),
    Denied(_n("10.0.0.0/8"), "private", "a private address"),
    Denied(_n("100.64.0.0/10"), "shared", "a carrier-grade NAT shared address (RFC 6598)"),
    Denied(_n("127.0.0.0/8"), "loopback", "a loopback address"),
    Denied(_n("169.254.169.254/32"), "metadata", "the cloud metadata address"),
    Denied(_n("169.254.0.0/16"), "link_local", "a link-local address"),
    Denied(_n("172.16.0.0/12"), "private", "a private address"),
    Denied(_n("192.0.0.0/24"), "reserved", "an IETF protocol assignment (RFC 6890)"),
    Denied(_n("192.0.2.0/24"), "documentation", "a documentation address (TEST-NET-1)"),
    Denied(_n("192.88.99.0/24"), "reserved", "a deprecated 6to4 relay anycast address (RFC 7526)"),
    Denied(_n("192.168.0.0/16"), "private", "a private address"),
    Denied(_n("198.18.0.0/15"), "benchmarking", "a benchmarking address (RFC 2544)"),
    Denied(_n("198.51.100.0/24"), "documentation", "a documentation address (TEST-NET-2)"),
    Denied(_n("203.0.113.0/24"), "documentation", "a documentation address (TEST-NET-3)"),
    Denied(_n("224.0.0.0/4"), "multicast", "a multicast address"),
    Denied(_n("255.255.255.255/32"), "broadcast", "the broadcast address"),
    Denied(_n("240.0.0.0/4"), "reserved", "a reserved address"),
)

#: IPv6 networks refused by default, most specific first (loopback and unspecified before the ::/96 they sit in).
DENIED_V6: tuple[Denied, ...] = (
    Denied(_n("::/128"), "unspecified", "the unspecified address"),
    Denied(_n("::1/128"), "loopback", "the loopback address"),
    Denied(_n("100::/64"), "discard", "a discard-only address (RFC 6666)"),
    Denied(_n("2001:db8::/32"), "documentation", "a documentation address"),
    Denied(_n("3fff::/20"), "documentation", "a documentation address (RFC 9637)"),
    Denied(_n("fc00::/7"), "unique_local", "a unique-local address"),
    Denied(_n("fe80::/10"), "link_local", "a link-local address"),
    Denied(_n("fec0::/10"), "site_local", "a site-local address"),
    Denied(_n("ff00::/8"), "multicast", "a multicast address"),
)

#: IPv6 forms that embed IPv4, checked after ``DENIED_V6`` (whose ::/128 and ::1 rows sit inside ::/96).
EMBEDDINGS: tuple[Embedding, ...] = (
    Embedding(IPv6Network("::ffff:0:0/96"), "ipv4_mapped", "an IPv4-mapped address", _low32, transparent=True),
    Embedding(IPv6Network("::/96"), "ipv4_compatible", "a deprecated IPv4-compatible address", _low32, False),
    Embedding(
        IPv6Network("::ffff:0:0:0/96"), "ipv4_translated", "an IPv4-translated address (RFC 2765)", _low32, False
    ),
    Embedding(IPv6Network("64:ff9b::/96"), "nat64", "a NAT64 address", _low32, transparent=True),
    Embedding(IPv6Network("64:ff9b:1::/48"), "nat64_local", "a local-use NAT64 address (RFC 8215)", _low32, False),
    Embedding(IPv6Network("2002::/16"), "6to4", "a 6to4 address", _sixtofour, transparent=True),
    Embedding(IPv6Network("2001::/32"), "teredo", "a Teredo address", _teredo, transparent=False),
)

#: IPv6 space that is no global unicast, checked after ``EMBEDDINGS`` (which carve their forms out of ``::/8``):
#: everything outside ``2000::/3`` that ``DENIED_V6`` does not already name is reserved by the IETF (RFC 4291 §2.4,
#: the IANA IPv6 address space registry). Nothing routes there on purpose; a stack may still map it somewhere local.
RESERVED_V6: tuple[Denied, ...] = tuple(
    Denied(_n(net), "reserved", "a reserved address (RFC 4291)")
    for net in (
        "::/8",
        "100::/8",
        "200::/7",
        "400::/6",
        "800::/5",
        "1000::/4",
        "4000::/3",
        "6000::/3",
        "8000::/3",
        "a000::/3",
        "c000::/3",
        "e000::/4",
        "f000::/5",
        "f800::/6",
        "fe00::/9",
    )
)

#: Names that mean this host (RFC 6761 §6.3 and the usual /etc/hosts entries); ``*.localhost`` is matched too.
LOCALHOST_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6", "ip6-localhost", "ip6-loopback"}
)

DEFAULT_PORTS = frozenset({80, 443, 8080, 8443})


# --- Settings --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """The operator's opt-ins; everything not opted into is judged by the tables above.

    Host patterns are an exact name, or ``.example.com`` / ``*.example.com`` for any subdomain (not the apex itself).
    Names are compared lowercased without a trailing dot; write internationalised names in their ``xn--`` form.
    """

    allow_networks: tuple[Network, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    deny_hosts: frozenset[str] = frozenset()
    allow_ports: frozenset[int] = field(default=DEFAULT_PORTS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_hosts", frozenset(_host_pattern("allow_hosts", h) for h in self.allow_hosts))
        object.__setattr__(self, "deny_hosts", frozenset(_host_pattern("deny_hosts", h) for h in self.deny_hosts))

    @classmethod
    def from_lists(
        cls, allow_networks: list[str], allow_hosts: list[str], deny_hosts: list[str], allow_ports: list[int]
    ) -> Guard:
        """Build from the ``[security]`` settings; a ``ValueError`` names the first bad item."""
        networks: list[Network] = []
        for i, raw in enumerate(allow_networks):
            try:
                networks.append(ip_network(raw, strict=False))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"security.allow_networks[{i}]: {raw!r} is not a network: {exc}") from None
        for i, port in enumerate(allow_ports):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"security.allow_ports[{i}]: {port!r} is not a port number (1..65535)")
        for key, items in (("allow_hosts", allow_hosts), ("deny_hosts", deny_hosts)):
            for i, raw in enumerate(items):
                _host_pattern(f"{key}[{i}]", raw)
        return cls(tuple(networks), frozenset(allow_hosts), frozenset(deny_hosts), frozenset(allow_ports))


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _host_pattern(key: str, raw: str) -> str:
    """A host pattern normalised to ``name`` or ``.suffix``; numbers are refused because spellings would dodge them."""
    if not isinstance(raw, str):
        raise ValueError(f"security.{key}: {raw!r} is not a host name")
    text = _fold(raw.strip())
    if text.startswith("*."):
        text = text[1:]
    name = text.removesuffix(".")
    bare = name.removeprefix(".")
    if not bare or bare.startswith(".") or ".." in bare or not set(bare) <= _NAME_CHARS:
        raise ValueError(f"security.{key}: {raw!r} is not a host name or .suffix / *.suffix pattern")
    if numeric_host(bare) is not None or _ends_in_number(bare):
        raise ValueError(f"security.{key}: {raw!r} is an address, not a name; use security.allow_networks")
    return name


def _matching(host: str, patterns: frozenset[str]) -> str | None:
    """The pattern ``host`` (already normalised) matches, if any: the host itself or a ``.suffix`` of it."""
    if host in patterns:
        return host
    dot = host.find(".")
    while dot != -1:
        if host[dot:] in patterns:
            return host[dot:]
        dot = host.find(".", dot + 1)
    return None


# --- Reading numeric hosts -------------------------------------------------------------------------------------------

_DIGITS = {8: frozenset("01234567"), 10: frozenset("0123456789"), 16: frozenset("0123456789abcdef")}
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _fold(host: str) -> str:
    """What a URL parser would make of the host before reading it: NFKC (fullwidth digits), ideographic dots, case."""
    return unicodedata.normalize("NFKC", host).translate(_FULL_STOPS).lower()


def _ipv4_number(part: str) -> int | None:
    """WHATWG "IPv4 number parser": ``0x`` hex, a leading ``0`` octal, else decimal; ``None`` if not a number."""
    if not part:
        return None
    if part.startswith("0x"):
        radix, digits = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        radix, digits = 8, part[1:]
    else:
        radix, digits = 10, part
    if not digits:
        return 0
    if not set(digits) <= _DIGITS[radix]:
        return None
    if radix == 10 and len(digits) > 12:
        return 1 << 40  # too big for any part; int() of a huge decimal string is slow or refused
    return int(digits, radix)


def _ends_in_number(host: str) -> bool:
    """WHATWG "ends in a number checker": such a host is an IPv4 address or invalid, never a DNS name."""
    parts = host.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    return (bool(last) and set(last) <= _DIGITS[10]) or _ipv4_number(last) is not None


def _ipv4(host: str) -> IPv4Address | None:
    """WHATWG "IPv4 parser" (what browsers and, via inet_aton, curl do): 1 to 4 parts, the last one fills the rest."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def numeric_host(host: str) -> Address | None:
    """The address a host written as a number means, or ``None`` for a DNS name (or an invalid number).

    IPv6 literals may be bracketed and keep their zone id (``scope_id``) so the caller can refuse it. Never raises.
    """
    text = _fold(host)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return IPv6Address(text)
        except ValueError:
            return None
    if not text or not _ends_in_number(text):
        return None
    return _ipv4(text)


# --- Judging ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    rule: str
    predicate: str  # completes "<address> ..."


def _verdict(addr: Address, guard: Guard) -> _Verdict | None:
    """Why ``addr`` is refused, or ``None``; ``allow_networks`` first, then the tables, then ``is_global``."""
    if isinstance(addr, IPv6Address) and addr.scope_id:
        return _Verdict("zone_id", f"carries a zone id (%{addr.scope_id}), which picks a local interface")
    if any(addr in net for net in guard.allow_networks):
        return None
    if isinstance(addr, IPv4Address):
        table: tuple[Denied, ...] = DENIED_V4
    else:
        table = DENIED_V6
    for row in table:
        if addr in row.network:
            return _Verdict(row.rule, f"is {row.what} ({row.network})")
    if isinstance(addr, IPv6Address):
        for form in EMBEDDINGS:
            if addr in form.network:
                return _embedded_verdict(addr, form, guard)
        for row in RESERVED_V6:
            if addr in row.network:
                return _Verdict(row.rule, f"is {row.what} ({row.network})")
    if not addr.is_global:
        return _Verdict("not_global", "is not a global unicast address")
    return None


def _embedded_verdict(addr: IPv6Address, form: Embedding, guard: Guard) -> _Verdict | None:
    for inner in form.embedded(addr):
        why = _verdict(inner, guard)
        if why is not None:
            return _Verdict(why.rule, f"is {form.what} ({form.network}) embedding {inner}, which {why.predicate}")
    if form.transparent:
        return None
    return _Verdict(form.rule, f"is {form.what} ({form.network}), not a global unicast address")


def _refuse_address(addr: Address, guard: Guard, origin: str, port: int | None, host: str | None) -> None:
    why = _verdict(addr, guard)
    if why is None:
        return
    hint = "" if why.rule == "zone_id" else f"; {NETWORKS_HINT}"
    raise TargetRefused(
        f"refused: {addr}{origin} {why.predicate}{hint}", rule=why.rule, host=host, address=str(addr), port=port
    )


def check_address(addr: Address, guard: Guard, host: str | None = None, port: int | None = None) -> None:
    """Raise ``TargetRefused`` unless a resolved address may be connected to; ``host`` is the name it came from."""
    origin = f" (resolved from {host})" if host else ""
    _refuse_address(addr, guard, origin, port, host)


def _normal_name(host: str) -> str:
    return _fold(host).removesuffix(".")


def check_host(host: str, port: int, guard: Guard) -> None:
    """Refuse what can be refused from the URL alone, before any lookup or connection (no I/O).

    The verdict depends only on its arguments, and every request asks it: it is memoised (a fresh exception is
    raised each time, so tracebacks never pile up on a shared instance).
    """
    refusal = _host_verdict(host, port, guard)
    if refusal is not None:
        detail, extra = refusal
        raise TargetRefused(detail, **extra)


@functools.lru_cache(maxsize=4096)
def _host_verdict(host: str, port: int, guard: Guard) -> tuple[str, dict[str, Any]] | None:
    try:
        _check_host(host, port, guard)
    except TargetRefused as exc:
        return exc.detail, {"rule": exc.rule, "host": exc.host, "address": exc.address, "port": exc.port}
    return None


def _check_host(host: str, port: int, guard: Guard) -> None:
    """The rules of :func:`check_host`.

    In order: ``deny_hosts``, the port, numbers (judged by the address they mean, whatever ``allow_hosts`` says),
    then ``allow_hosts`` (which ends the check: the name is allowed whatever it resolves to), then ``localhost``
    names. Any other name still has to pass ``check_address`` for every address it resolves to.
    """
    name = _normal_name(host)
    denied = _matching(name, guard.deny_hosts)
    if denied is not None:
        raise TargetRefused(
            f"refused: {host} matches security.deny_hosts entry {denied!r}", rule="deny_hosts", host=host
        )
    if port not in guard.allow_ports:
        allowed = ", ".join(str(p) for p in sorted(guard.allow_ports))
        raise TargetRefused(
            f"refused: port {port} of {host} is not in security.allow_ports ({allowed})",
            rule="port",
            host=host,
            port=port,
        )
    addr = numeric_host(host)
    if addr is not None:
        origin = "" if str(addr) == name.strip("[]") else f" (written {host})"
        _refuse_address(addr, guard, origin, port, host)
        return
    if ":" in name or "[" in name or "]" in name:
        raise TargetRefused(f"refused: {host} is not a valid IPv6 address literal", rule="malformed", host=host)
    if _ends_in_number(name):
        raise TargetRefused(
            f"refused: {host} ends in a number but is not a valid IPv4 address", rule="malformed", host=host
        )
    if _matching(name, guard.allow_hosts) is not None:
        return
    if (name in LOCALHOST_NAMES or name.endswith(".localhost")) and _verdict(IPv4Address("127.0.0.1"), guard):
        raise TargetRefused(
            f"refused: {host} is a loopback name (RFC 6761); {HOSTS_HINT}", rule="localhost", host=host, port=port
        )


# --- Resolving once ---------------------------------------------------------------------------------------------------


def _result(host: str, addr: Address, port: int) -> ResolveResult:
    family = socket.AF_INET if isinstance(addr, IPv4Address) else socket.AF_INET6
    return {"hostname": host, "host": str(addr), "port": port, "family": family, "proto": 0, "flags": 0}


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that resolves once through ``inner`` and returns only a list it has checked in full.

    If any address is refused the whole lookup fails with ``TargetRefused``: a name with one public and one private
    address is refused rather than trimmed, since its owner evidently points it inward. Numeric hosts aiohttp does not
    recognise (``0x7f000001``) are judged and returned as the address they mean, never handed to ``getaddrinfo``.

    aiohttp skips the resolver for hosts it sees as IP literals (dotted-quad and anything with a colon; other numeric
    spellings it rejects as invalid URLs). Those literals are checked by ``socket_factory`` instead, which
    ``connector()`` installs: it sees every address aiohttp is about to connect to. Addresses the resolver returned for
    an ``allow_hosts`` name are remembered so that the factory lets them through, for the life of this resolver.
    """

    def __init__(self, guard: Guard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner: AbstractResolver = inner if inner is not None else aiohttp.ThreadedResolver()
        self._vouched: set[Address] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        check_host(host, port, self.guard)
        addr = numeric_host(host)
        if addr is not None:
            return [_result(host, addr, port)]
        results = await self.inner.resolve(host, port, family)
        allowed_by_name = _matching(_normal_name(host), self.guard.allow_hosts) is not None
        for result in results:
            try:
                resolved = ip_address(result["host"])
            except ValueError:
                raise TargetRefused(
                    f"refused: {host} resolved to {result['host']!r}, which is not an IP address",
                    rule="malformed",
                    host=host,
                ) from None
            if allowed_by_name:
                self._vouched.add(resolved)
            else:
                check_address(resolved, self.guard, host=host, port=port)
        return results

    async def close(self) -> None:
        await self.inner.close()

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """Last check before ``connect()``: the address and port aiohttp is about to use (covers IP literals)."""
        family, type_, proto, _, sockaddr = addr_info
        host, port = str(sockaddr[0]), int(sockaddr[1])
        if port not in self.guard.allow_ports:
            allowed = ", ".join(str(p) for p in sorted(self.guard.allow_ports))
            raise TargetRefused(
                f"refused: port {port} of {host} is not in security.allow_ports ({allowed})", rule="port", port=port
            )
        try:
            addr = ip_address(host)
        except ValueError:
            raise TargetRefused(f"refused: {host!r} is not an IP address", rule="malformed", host=host) from None
        if addr not in self._vouched:
            _refuse_address(addr, self.guard, "", port, None)
        return socket.socket(family=family, type=type_, proto=proto)


def connector(guard: Guard, resolver: AbstractResolver | None = None, **options: Any) -> aiohttp.TCPConnector:
    """A ``TCPConnector`` that only connects where ``guard`` allows; ``options`` go to ``TCPConnector``.

    The DNS cache is off so that each connection resolves (and is checked) once, right before it is made. A refusal
    surfaces from ``session.get()`` as ``aiohttp.ClientConnectorDNSError`` (refused by the resolver) or
    ``aiohttp.ClientConnectorError`` (refused by the socket factory: IP literals), both of them
    ``ClientConnectionError``; ``refusal_of(exc)`` returns the ``TargetRefused`` inside. ``resolver`` (default
    ``ThreadedResolver``) is the inner, real lookup; the caller owns a resolver it passes in.
    """
    guarded = GuardedResolver(guard, resolver)
    return aiohttp.TCPConnector(resolver=guarded, use_dns_cache=False, socket_factory=guarded.socket_factory, **options)


async def resolve_and_check(host: str, port: int, guard: Guard, resolver: AbstractResolver | None = None) -> list[str]:
    """Resolve ``host`` once and check every address, for refusing with a 403 before a fetch job is enqueued.

    Returns the checked addresses. The fetch itself must still go through ``connector()``: a later lookup may differ.
    """
    guarded = GuardedResolver(guard, resolver)
    try:
        results = await guarded.resolve(host, port, socket.AF_UNSPEC)
    except TargetRefused:
        raise
    except (OSError, UnicodeError) as exc:  # no such name, no answer, or a name the resolver cannot encode
        raise Unresolvable(f"cannot resolve {host}: {exc}", host=host) from None
    finally:
        if resolver is None:
            await guarded.close()
    return [r["host"] for r in results]
