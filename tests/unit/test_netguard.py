"""Table-driven tests of the SSRF guard: each address class, each numeric spelling, the opt-ins, and one real fetch."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, ip_network

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.pytest_plugin import AiohttpServer

from core.netguard import (
    DENIED_V4,
    DENIED_V6,
    RESERVED_V6,
    Denied,
    Guard,
    GuardedResolver,
    TargetRefused,
    check_address,
    check_host,
    connector,
    numeric_host,
    refusal_of,
    resolve_and_check,
)
from core.problems import Problem

DEFAULT = Guard()
LOCAL = Guard(allow_networks=(ip_network("127.0.0.0/8"),))

# A Teredo address (RFC 4380): server 65.54.227.120 in bits 32-63, client in the inverted last 32 bits.
TEREDO_CLIENT_LOOPBACK = "[2001:0:4136:e378:8000:63bf:80ff:fffe]"  # ~0x80fffffe == 127.0.0.1
TEREDO_SERVER_PRIVATE = "[2001:0:a00:1:8000:63bf:3fff:fdd2]"  # server 10.0.0.1, client 192.0.2.45

# (host, rule that must fire); every row is refused at port 80 by the default guard.
REFUSED = [
    # loopback, in every spelling
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("127.0.1", "loopback"),
    ("2130706433", "loopback"),
    ("0x7f000001", "loopback"),
    ("0X7F000001", "loopback"),
    ("017700000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("0x7f.1", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0x7f.0.0x0.01", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("0x7f000001.", "loopback"),
    ("\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11", "loopback"),  # fullwidth, ideographic full stops
    ("localhost", "localhost"),
    ("LOCALHOST.", "localhost"),
    ("foo.localhost", "localhost"),
    ("localhost.localdomain", "localhost"),
    ("[::1]", "loopback"),
    ("::1", "loopback"),
    ("[0:0:0:0:0:0:0:1]", "loopback"),
    # IPv6 forms embedding IPv4, judged by the embedded address
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    ("[::127.0.0.1]", "loopback"),
    ("[64:ff9b::7f00:1]", "loopback"),
    ("[64:ff9b::10.0.0.1]", "private"),
    ("[64:ff9b:1::a9fe:a9fe]", "metadata"),
    ("[2002:7f00:1::]", "loopback"),
    ("[2002:a9fe:a9fe::1]", "metadata"),
    (TEREDO_CLIENT_LOOPBACK, "loopback"),
    (TEREDO_SERVER_PRIVATE, "private"),
    ("[::ffff:169.254.169.254]", "metadata"),
    # opaque embedding forms are refused even with a public address inside
    ("[::8.8.8.8]", "ipv4_compatible"),
    ("[64:ff9b:1::808:808]", "nat64_local"),
    ("[2001:0:4136:e378:8000:63bf:f7f7:f7f7]", "teredo"),  # server 65.54.227.120, client 8.8.8.8
    # IPv4-translated (RFC 2765, ::ffff:0:0:0/96): judged by the embedded address, refused even when public
    ("[::ffff:0:7f00:1]", "loopback"),
    ("[::ffff:0:127.0.0.1]", "loopback"),
    ("[::ffff:0:a9fe:a9fe]", "metadata"),
    ("[::ffff:0:808:808]", "ipv4_translated"),
    # the rest of ::/8 and every other range outside 2000::/3 that no row names: reserved
    ("[::1:0:0:1]", "reserved"),
    ("[::fffe:0:0:1]", "reserved"),
    ("[0:1::1]", "reserved"),
    ("[ff::1]", "reserved"),
    ("[101::1]", "reserved"),
    ("[4000::1]", "reserved"),
    ("[fe00::1]", "reserved"),
    # IPv4 classes
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("169.254.169.254", "metadata"),
    ("0xa9fea9fe", "metadata"),
    ("169.254.1.1", "link_local"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("0.1.2.3", "this_network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    # IPv6 classes
    ("[::]", "unspecified"),
    ("[fc00::1]", "unique_local"),
    ("[fd12::1]", "unique_local"),
    ("[fd00:ec2::254]", "unique_local"),
    ("[fe80::1]", "link_local"),
    ("[fe80::1%25eth0]", "zone_id"),
    ("[fe80::1%eth0]", "zone_id"),
    ("[2606:4700::1111%251]", "zone_id"),
    ("[fec0::1]", "site_local"),
    ("[ff02::1]", "multicast"),
    ("[2001:db8::1]", "documentation"),
    ("[3fff::1]", "documentation"),
    ("[100::1]", "discard"),
    ("[2001:2::1]", "not_global"),
    # hosts that are neither a name nor a valid address
    ("1.2.3.4.5", "malformed"),
    ("256.0.0.1", "malformed"),
    ("0x100000000", "malformed"),
    ("08.0.0.1", "malformed"),
    ("foo.0x7f", "malformed"),
    ("1..1", "malformed"),
    ("[zz]", "malformed"),
    ("[::ffff:127.1]", "malformed"),
]


@pytest.mark.parametrize(("host", "rule"), REFUSED, ids=[h for h, _ in REFUSED])
def test_refused_by_default(host: str, rule: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_host(host, 80, DEFAULT)
    assert info.value.rule == rule
    assert info.value.detail.startswith("refused: ")


ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "0x08080808",  # 8.8.8.8 in hex is still 8.8.8.8
    "134744072",  # and in decimal
    "1.1.1.1.",
    "[2606:4700::1111]",
    "[2a00:1450:4001:82a::200e]",
    "[::ffff:8.8.8.8]",  # mapped, NAT64 and 6to4 reach the embedded public address
    "[64:ff9b::808:808]",
    "[2002:808:808::1]",
    "example.com",
    "example.com.",
    "localhost.example.com",  # only *.localhost and the listed names are loopback by name
    "sub.example",
]


@pytest.mark.parametrize("host", ALLOWED, ids=ALLOWED)
def test_allowed_by_default(host: str) -> None:
    try:
        check_host(host, 443, DEFAULT)
    except TargetRefused as exc:
        pytest.fail(f"{host} was refused: {exc.detail}")


SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),  # WHATWG: a bare 0x prefix is zero
    ("1.0x10.0300", "1.16.0.192"),
    ("192.168.257", "192.168.1.1"),
    ("4294967295", "255.255.255.255"),
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[fe80::1%25eth0]", "fe80::1%25eth0"),
    ("example.com", None),
    ("localhost", None),
    ("4294967296", None),
    ("1.2.3.4.5", None),
    ("08", None),
    ("0x7g", None),
    ("1.2.3.-4", None),
    ("1.2.3.+4", None),
    ("1_000", None),
    ("\u0661\u0662\u0667.0.0.1", None),  # Arabic-Indic digits are not ASCII digits
    ("", None),
    (".", None),
    ("[]", None),
    ("9" * 5000, None),
]


@pytest.mark.parametrize(("host", "expected"), SPELLINGS, ids=[h[:20] or "empty" for h, _ in SPELLINGS])
def test_numeric_host(host: str, expected: str | None) -> None:
    """WHATWG URL §3.5 IPv4 parser: the address a number means, ``None`` for a name."""
    parsed = numeric_host(host)
    assert (None if parsed is None else str(parsed)) == expected


@pytest.mark.parametrize("row", [*DENIED_V4, *DENIED_V6], ids=lambda row: str(row.network))
def test_each_table_row_is_its_own_reason(row: Denied) -> None:
    """The first address past a row's network address is refused with that row's words and network."""
    net = row.network
    addr = net.network_address if net.num_addresses == 1 else net.network_address + 1
    with pytest.raises(TargetRefused) as info:
        check_address(addr, DEFAULT)
    assert f"{addr} is {row.what} ({net})" in info.value.detail
    assert info.value.rule == row.rule


@pytest.mark.parametrize("row", RESERVED_V6, ids=lambda row: str(row.network))
def test_each_reserved_ipv6_range_is_refused(row: Denied) -> None:
    """RFC 4291 §2.4: the middle of each reserved range (clear of the rows and embedding forms carved out of it)."""
    addr = row.network.network_address + row.network.num_addresses // 2
    with pytest.raises(TargetRefused) as info:
        check_address(addr, DEFAULT)
    assert f"{addr} is {row.what} ({row.network})" in info.value.detail
    assert info.value.rule == "reserved"


def test_detail_names_address_origin_rule_and_remedy() -> None:
    with pytest.raises(TargetRefused) as info:
        check_address(IPv4Address("10.0.0.5"), DEFAULT, host="internal.example")
    refusal = info.value
    assert refusal.detail == (
        "refused: 10.0.0.5 (resolved from internal.example) is a private address (10.0.0.0/8); "
        "allow it with security.allow_networks"
    )
    assert (refusal.status, refusal.title, refusal.rule) == (403, "Forbidden target", "private")
    assert isinstance(refusal, Problem)
    assert refusal.extra == {"rule": "private"}


def test_detail_names_the_spelling() -> None:
    with pytest.raises(TargetRefused, match=r"127\.0\.0\.1 \(written 0x7f\.1\) is a loopback address"):
        check_host("0x7f.1", 80, DEFAULT)


# --- ports and host lists ---------------------------------------------------------------------------------------------

PORTS = [(80, True), (443, True), (8080, True), (8443, True), (22, False), (6379, False), (0, False), (65535, False)]


@pytest.mark.parametrize(("port", "ok"), PORTS, ids=[str(p) for p, _ in PORTS])
def test_default_ports(port: int, ok: bool) -> None:
    if ok:
        check_host("example.com", port, DEFAULT)
    else:
        with pytest.raises(TargetRefused, match=rf"port {port} of example\.com is not in security\.allow_ports") as e:
            check_host("example.com", port, DEFAULT)
        assert e.value.rule == "port"


def test_allow_ports_replaces_the_default() -> None:
    guard = Guard(allow_ports=frozenset({8000}))
    check_host("example.com", 8000, guard)
    with pytest.raises(TargetRefused, match="port"):
        check_host("example.com", 443, guard)


HOST_LISTS = [
    # (allow_hosts, deny_hosts, host, refused rule or None)
    ((), ("evil.example",), "evil.example", "deny_hosts"),
    ((), ("evil.example",), "EVIL.example.", "deny_hosts"),
    ((), ("evil.example",), "sub.evil.example", None),  # exact entries do not cover subdomains
    ((), (".evil.example",), "sub.evil.example", "deny_hosts"),
    ((), ("*.evil.example",), "a.b.evil.example", "deny_hosts"),
    ((), ("*.evil.example",), "evil.example", None),  # nor do suffix entries cover the apex
    (("evil.example",), ("evil.example",), "evil.example", "deny_hosts"),  # deny wins over allow
    ((".example",), ("bad.example",), "bad.example", "deny_hosts"),
    (("localhost",), (), "localhost", None),  # an explicit allow lifts the name rule
    (("*.localhost",), (), "app.localhost", None),
    (("internal.example",), (), "internal.example", None),
    (("internal.example",), (), "127.0.0.1", "loopback"),  # allow_hosts never covers numbers
]


@pytest.mark.parametrize(
    ("allow", "deny", "host", "rule"), HOST_LISTS, ids=[f"{a}-{d}-{h}" for a, d, h, _ in HOST_LISTS]
)
def test_host_lists(allow: tuple[str, ...], deny: tuple[str, ...], host: str, rule: str | None) -> None:
    guard = Guard(allow_hosts=frozenset(allow), deny_hosts=frozenset(deny))
    if rule is None:
        check_host(host, 80, guard)
    else:
        with pytest.raises(TargetRefused) as info:
            check_host(host, 80, guard)
        assert info.value.rule == rule


OVERRIDES = [
    ("127.0.0.0/8", "127.0.0.1", True),
    ("127.0.0.0/8", "2130706433", True),
    ("127.0.0.0/8", "[::ffff:127.0.0.1]", True),  # the embedded address is judged, with the same opt-ins
    ("127.0.0.0/8", "localhost", True),
    ("127.0.0.0/8", "10.0.0.1", False),
    ("10.1.0.0/16", "10.1.2.3", True),
    ("10.1.0.0/16", "10.2.0.1", False),
    ("::1/128", "[::1]", True),
    ("::1/128", "127.0.0.1", False),
    ("fe80::/10", "[fe80::1%25eth0]", False),  # zone ids are refused whatever is allowed
]


@pytest.mark.parametrize(("network", "host", "ok"), OVERRIDES, ids=[f"{n}-{h}" for n, h, _ in OVERRIDES])
def test_allow_networks_override_the_table(network: str, host: str, ok: bool) -> None:
    guard = Guard(allow_networks=(ip_network(network),))
    if ok:
        check_host(host, 80, guard)
    else:
        with pytest.raises(TargetRefused):
            check_host(host, 80, guard)


def test_from_lists() -> None:
    guard = Guard.from_lists(["127.0.0.0/8", "10.0.0.1/8"], ["Internal.Example.", "*.corp"], ["bad.corp"], [8000])
    assert guard.allow_networks == (ip_network("127.0.0.0/8"), ip_network("10.0.0.0/8"))
    assert guard.allow_hosts == frozenset({"internal.example", ".corp"})
    assert guard.deny_hosts == frozenset({"bad.corp"})
    assert guard.allow_ports == frozenset({8000})


BAD_LISTS = [
    (["127.0.0.0/8", "not-a-net"], [], [], [80], r"security\.allow_networks\[1\]: 'not-a-net'"),
    (["10.0.0.0/33"], [], [], [80], r"security\.allow_networks\[0\]: '10\.0\.0\.0/33'"),
    ([], ["ok.example", "bad host"], [], [80], r"security\.allow_hosts\[1\]: 'bad host'"),
    ([], ["127.0.0.1"], [], [80], r"security\.allow_hosts\[0\]: '127\.0\.0\.1' is an address.*allow_networks"),
    ([], [], ["0x7f000001"], [80], r"security\.deny_hosts\[0\]: '0x7f000001' is an address"),
    ([], [], ["*"], [80], r"security\.deny_hosts\[0\]: '\*'"),
    ([], [], ["a..b"], [80], r"security\.deny_hosts\[0\]: 'a\.\.b'"),
    ([], [], ["http://x"], [80], r"security\.deny_hosts\[0\]"),
    ([], [], [], [80, 0], r"security\.allow_ports\[1\]: 0"),
    ([], [], [], [65536], r"security\.allow_ports\[0\]: 65536"),
]


@pytest.mark.parametrize(("nets", "allow", "deny", "ports", "message"), BAD_LISTS, ids=[m for *_, m in BAD_LISTS])
def test_from_lists_names_the_bad_item(
    nets: list[str], allow: list[str], deny: list[str], ports: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Guard.from_lists(nets, allow, deny, ports)


# --- refusal_of -------------------------------------------------------------------------------------------------------


def test_refusal_of_digs_through_chains() -> None:
    refusal = TargetRefused("refused: x", rule="loopback")
    assert refusal_of(refusal) is refusal
    by_cause = RuntimeError("wrapped")
    by_cause.__cause__ = refusal
    by_context = ValueError("during handling")
    by_context.__context__ = by_cause
    assert refusal_of(by_context) is refusal
    cycle = RuntimeError("a")
    cycle.__context__ = RuntimeError("b")
    cycle.__context__.__context__ = cycle
    assert refusal_of(cycle) is None
    assert refusal_of(ValueError("unrelated")) is None
    assert isinstance(refusal, OSError)
    assert str(refusal) == "refused: x"


# --- GuardedResolver with a fake DNS ---------------------------------------------------------------------------------


class FakeDNS(AbstractResolver):
    """Our test double of the DNS: each name resolves to the addresses given, and every lookup is counted."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        results: list[ResolveResult] = []
        for text in self.table[host.rstrip(".")]:
            fam = socket.AF_INET6 if ":" in text else socket.AF_INET
            results.append({"hostname": host, "host": text, "port": port, "family": fam, "proto": 0, "flags": 0})
        return results

    async def close(self) -> None:
        pass


DNS = FakeDNS(
    {
        "mixed.example": ["93.184.216.34", "10.0.0.5"],
        "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
        "aaaa-only-bad.example": ["93.184.216.34", "::ffff:169.254.169.254"],
        "internal.example": ["10.0.0.5"],
        "junk.example": ["not-an-ip"],
    }
)

RESOLVED = [
    ("mixed.example", Guard(), "private"),
    ("aaaa-only-bad.example", Guard(), "metadata"),
    ("internal.example", Guard(), "private"),
    ("junk.example", Guard(), "malformed"),
    ("public.example", Guard(), None),
    ("internal.example", Guard(allow_hosts=frozenset({"internal.example"})), None),
    ("internal.example", Guard(allow_networks=(ip_network("10.0.0.0/8"),)), None),
]


@pytest.mark.parametrize(("host", "guard", "rule"), RESOLVED, ids=[f"{h}-{r}" for h, _, r in RESOLVED])
async def test_resolver_checks_every_address(host: str, guard: Guard, rule: str | None) -> None:
    resolver = GuardedResolver(guard, DNS)
    if rule is None:
        results = await resolver.resolve(host, 443, socket.AF_UNSPEC)
        assert [r["host"] for r in results] == DNS.table[host]
    else:
        with pytest.raises(TargetRefused) as info:
            await resolver.resolve(host, 443, socket.AF_UNSPEC)
        assert info.value.rule == rule
        assert f"(resolved from {host})" in info.value.detail or rule == "malformed"


async def test_resolver_judges_numbers_without_a_lookup() -> None:
    dns = FakeDNS({})
    resolver = GuardedResolver(DEFAULT, dns)
    with pytest.raises(TargetRefused, match="written 0x7f000001"):
        await resolver.resolve("0x7f000001", 80)
    results = await resolver.resolve("0x08080808", 80)
    assert [r["host"] for r in results] == ["8.8.8.8"]
    assert dns.lookups == []


async def test_resolver_refuses_names_before_a_lookup() -> None:
    dns = FakeDNS({})
    resolver = GuardedResolver(Guard(deny_hosts=frozenset({"x.example"})), dns)
    for host, port in [("localhost", 80), ("x.example", 80), ("public.example", 22)]:
        with pytest.raises(TargetRefused):
            await resolver.resolve(host, port)
    assert dns.lookups == []


async def test_resolve_and_check_resolves_once() -> None:
    dns = FakeDNS(DNS.table)
    assert await resolve_and_check("public.example", 443, DEFAULT, dns) == DNS.table["public.example"]
    assert dns.lookups == ["public.example"]
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5 \(resolved from mixed\.example\) is a private address"):
        await resolve_and_check("mixed.example", 443, DEFAULT, dns)


async def test_resolve_and_check_refuses_before_the_default_resolver() -> None:
    """With the system resolver as default, ``localhost`` is refused by name and a number judged by its value."""
    with pytest.raises(TargetRefused, match="loopback name"):
        await resolve_and_check("localhost", 80, DEFAULT)
    assert await resolve_and_check("0x08080808", 80, DEFAULT) == ["8.8.8.8"]


def test_socket_factory_checks_literals() -> None:
    resolver = GuardedResolver(DEFAULT, DNS)
    for sockaddr in [("127.0.0.1", 80), ("::1", 80, 0, 0), ("fe80::1%lo", 80, 0, 1)]:
        family = socket.AF_INET6 if ":" in str(sockaddr[0]) else socket.AF_INET
        with pytest.raises(TargetRefused):
            resolver.socket_factory((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
    with pytest.raises(TargetRefused, match="port 22"):
        resolver.socket_factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("8.8.8.8", 22)))
    sock = resolver.socket_factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("8.8.8.8", 80)))
    sock.close()


# --- end to end: a real ClientSession through connector(guard) to a real server on 127.0.0.1 ------------------------


@pytest.fixture
async def origin(aiohttp_server: AiohttpServer) -> tuple[int, list[str]]:
    """A real origin on 127.0.0.1 that records every request it receives."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    assert server.port is not None
    return server.port, seen


async def _get(guard: Guard, url: str, resolver: AbstractResolver | None = None) -> str:
    async with (
        aiohttp.ClientSession(connector=connector(guard, resolver)) as session,
        session.get(url, allow_redirects=False) as resp,
    ):
        return await resp.text()


def _guard(port: int, *networks: str) -> Guard:
    return Guard(allow_networks=tuple(ip_network(n) for n in networks), allow_ports=frozenset({port}))


async def test_end_to_end_ip_literal_refused_by_default(origin: tuple[int, list[str]]) -> None:
    """aiohttp skips the resolver for 127.0.0.1; the socket factory refuses it before any connect()."""
    port, seen = origin
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await _get(_guard(port), f"http://127.0.0.1:{port}/literal")
    refusal = refusal_of(info.value)
    assert refusal is not None
    assert refusal.rule == "loopback"
    assert "127.0.0.1 is a loopback address (127.0.0.0/8)" in str(info.value)
    assert seen == []


async def test_end_to_end_name_refused_by_the_resolver(origin: tuple[int, list[str]]) -> None:
    port, seen = origin
    dns = FakeDNS({"origin.test": ["127.0.0.1"]})
    with pytest.raises(aiohttp.ClientConnectorDNSError) as info:
        await _get(_guard(port), f"http://origin.test:{port}/name", dns)
    refusal = refusal_of(info.value)
    assert refusal is not None
    assert refusal.detail.startswith("refused: 127.0.0.1 (resolved from origin.test) is a loopback address")
    assert seen == []


async def test_end_to_end_hex_spelling_refused(origin: tuple[int, list[str]]) -> None:
    """``0x7f000001`` is not an IP literal to aiohttp, so it reaches the resolver, which judges the number itself."""
    port, seen = origin
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await _get(_guard(port), f"http://0x7f000001:{port}/hex")
    refusal = refusal_of(info.value)
    assert refusal is not None
    assert refusal.rule == "loopback"
    assert seen == []


async def test_end_to_end_port_refused(origin: tuple[int, list[str]]) -> None:
    port, seen = origin
    guard = Guard(allow_networks=(ip_network("127.0.0.0/8"),))  # default ports: the test server's is not one
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await _get(guard, f"http://127.0.0.1:{port}/port")
    refusal = refusal_of(info.value)
    assert refusal is not None
    assert refusal.rule == "port"
    assert seen == []


async def test_end_to_end_allowed_with_allow_networks(origin: tuple[int, list[str]]) -> None:
    port, seen = origin
    guard = _guard(port, "127.0.0.0/8")
    assert await _get(guard, f"http://127.0.0.1:{port}/literal") == "hello"
    assert await _get(guard, f"http://origin.test:{port}/name", FakeDNS({"origin.test": ["127.0.0.1"]})) == "hello"
    assert seen == ["/literal", "/name"]


async def test_end_to_end_allowed_by_host_name(origin: tuple[int, list[str]]) -> None:
    """An ``allow_hosts`` name may resolve anywhere; the socket factory lets through what the resolver vouched for."""
    port, seen = origin
    guard = Guard(allow_hosts=frozenset({"origin.test"}), allow_ports=frozenset({port}))
    assert await _get(guard, f"http://origin.test:{port}/vouched", FakeDNS({"origin.test": ["127.0.0.1"]})) == "hello"
    assert seen == ["/vouched"]
