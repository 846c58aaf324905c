"""Who may use grenier: client networks, proxy users (Basic), and admins (a bearer token, else loopback peers).

Decisions use the client's address: the socket's peer, or, when that peer is one of ``server.trusted_proxies``, the
address those proxies name (:mod:`proxy.client_address`); never a field a client alone can write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from core.problems import Problem

from .client_address import Field, ProxyTrust, is_in, parse_address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class Forbidden(Problem):
    status = 403
    title = "Forbidden"


class ProxyAuthRequired(Problem):
    status = 407
    title = "Proxy Authentication Required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Proxy-Authenticate": 'Basic realm="grenier", charset="UTF-8"'})


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="grenier-admin"'})


def peer_address(request: web.Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The connected socket's address (IPv4-mapped IPv6 peers are read as IPv4)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return parse_address(str(peer[0])) if peer else None


def loopback_name(host: str) -> bool:
    """Does a ``Host`` value (name or literal, with or without a port) name this machine's loopback?"""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    addr = parse_address(name)
    return addr is not None and addr.is_loopback


def in_networks(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, nets: Iterable[IPNetwork]) -> bool:
    return addr is not None and is_in(addr, tuple(nets))


@dataclass(frozen=True)
class AccessRules:
    clients: tuple[IPNetwork, ...]
    users: dict[str, str]
    """user -> sha256 hex of the password."""
    admin_token: str
    trust: ProxyTrust = field(default_factory=ProxyTrust)

    @classmethod
    def build(
        cls,
        clients: Iterable[str],
        users: Iterable[str],
        admin_token: str,
        trusted_proxies: Iterable[str] = (),
        client_field: Field = "x-forwarded-for",
    ) -> AccessRules:
        nets = tuple(ipaddress.ip_network(c, strict=False) for c in clients)
        trust = ProxyTrust.build(trusted_proxies, client_field)
        return cls(nets, dict(u.split(":", 1) for u in users), admin_token, trust)

    def client(self, request: web.BaseRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The request's client address (after trusted proxies)."""
        return self.trust.client(request)

    def check_client(self, request: web.Request) -> None:
        """Forward-proxy, ``/fetch`` and form users: an allowed network, and a proxy user when users are set."""
        addr = self.client(request)
        if not in_networks(addr, self.clients):
            raise Forbidden(f"client {addr} is not in server.allow_clients; this proxy does not serve it")
        if self.users:
            self._check_user(request.headers.get("Proxy-Authorization", ""))

    def _check_user(self, field: str) -> None:
        scheme, _, token = field.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise ProxyAuthRequired("this proxy requires Proxy-Authorization: Basic credentials")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ProxyAuthRequired("Proxy-Authorization is not valid Basic credentials") from None
        expected = self.users.get(user, "0" * 64)
        digest = hashlib.sha256(password.encode()).hexdigest()
        if not (sep and hmac.compare_digest(digest, expected) and user in self.users):
            raise ProxyAuthRequired("unknown proxy user or wrong password")

    def check_admin(self, request: web.Request) -> None:
        """Admin operations: the bearer token when one is configured, else only loopback peers that name grenier
        by a loopback name and are not a web page acting cross-site.

        Without a token the peer address alone would trust any page in a browser on grenier's host: a page from
        ``evil.example`` whose name is rebound to 127.0.0.1 reaches grenier from a loopback peer, as the same origin
        for the browser. Its requests name ``evil.example`` in ``Host``, and browsers mark cross-site requests with
        ``Sec-Fetch-Site``; either refuses it.
        """
        if not self.admin_token:
            # Behind a trusted proxy on this host, the peer is loopback for every client: judge the client.
            if not in_networks(self.client(request), LOOPBACK):
                raise Forbidden("admin operations answer only loopback peers while admin.token is unset")
            if not loopback_name(request.host):
                raise Forbidden(
                    f"admin operations without admin.token answer only requests that name grenier by a loopback"
                    f" name (Host {request.host!r} is not one); set admin.token to administer it by another name"
                )
            if request.headers.get("Sec-Fetch-Site", "none") not in {"none", "same-origin"}:
                raise Forbidden(
                    "admin operations refuse cross-site requests from a web page while admin.token is unset"
                )
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("admin operations need Authorization: Bearer <admin.token>")
        if not hmac.compare_digest(token.strip().encode(), self.admin_token.encode()):
            raise Forbidden("wrong admin token")
