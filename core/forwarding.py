"""Which header fields cross the proxy, in each direction (RFC 9110 §7.6), and loop marks (RFC 8586).

A cacheable fetch forwards only an explicit allow list of the client's fields (``upstream.forward_headers``): a
field either reaches the upstream, and then can only matter through ``Vary`` (part of the key), or does not reach
it at all. Credentials are never on that list.
"""

from __future__ import annotations

from collections.abc import Iterable

from .policy import HOP_BY_HOP, Headers, values

#: Never forwarded on a cacheable fetch, whatever the allow list says: credentials, and fields that let a client
#: rewrite what the origin thinks was asked (classic cache-poisoning vectors).
NEVER_ON_FETCH = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "host",
        "x-forwarded-host",
        "forwarded",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "content-length",
        "transfer-encoding",
    }
)


#: Fields that act on the origin serving a response rather than on the response itself: its cookies (``Set-Cookie``,
#: even for a parent ``Domain=``), its transport (``Strict-Transport-Security``, ``Alt-Svc``), its stored data
#: (``Clear-Site-Data``), navigation (``Refresh``), who may read it (CORS), where its errors are reported and what
#: its service workers may control. An upstream's page served from grenier's own origin (``/fetch``, job results,
#: the form's frame) must not carry them, or the upstream would act as grenier; in forward and reverse mode the
#: response is served as the upstream's own host and keeps them.
ORIGIN_SCOPED = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "strict-transport-security",
        "clear-site-data",
        "refresh",
        "alt-svc",
        "nel",
        "report-to",
        "reporting-endpoints",
        "service-worker-allowed",
        "origin-agent-cluster",
        "timing-allow-origin",
    }
)
#: Name prefixes of further origin-scoped fields (all of CORS).
ORIGIN_SCOPED_PREFIXES = ("access-control-",)


def origin_scoped(name: str) -> bool:
    """Is ``name`` one of :data:`ORIGIN_SCOPED` (or of its prefixes)?"""
    lower = name.lower()
    return lower in ORIGIN_SCOPED or lower.startswith(ORIGIN_SCOPED_PREFIXES)


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {n.strip().lower() for v in values(headers, "connection") for n in v.split(",") if n.strip()}


def end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """The fields that are not hop-by-hop (nor named by ``Connection``)."""
    headers = tuple(headers)
    drop = HOP_BY_HOP | _connection_named(headers)
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


def marks(pseudonym: str) -> Headers:
    """What grenier adds to every request it sends upstream, so that it can recognise its own requests."""
    return (("Via", f"1.1 {pseudonym}"), ("CDN-Loop", pseudonym))


#: Longest value (bytes) of a client's field a fetch job forwards. A longer one is dropped, not sent: an origin may
#: answer an oversized field with an error (400, 414, 431, 501...) that would otherwise be fetched on a shared key
#: and served to everyone; no real Accept, Accept-Encoding or Accept-Language needs more.
MAX_FORWARDED_FIELD_BYTES = 1024


def for_job(headers: Iterable[tuple[str, str]], allowed: Iterable[str]) -> Headers:
    """The client's fields a fetch job forwards (they also select a Vary variant), each at most
    :data:`MAX_FORWARDED_FIELD_BYTES` long."""
    allow = {a.lower() for a in allowed} - NEVER_ON_FETCH
    return tuple(
        (k, v)
        for k, v in end_to_end(headers)
        if k.lower() in allow and len(v.encode("utf-8", "surrogateescape")) <= MAX_FORWARDED_FIELD_BYTES
    )


def for_passthrough(headers: Iterable[tuple[str, str]], pseudonym: str) -> Headers:
    """The client's fields relayed with a request that goes straight upstream, plus our marks."""
    kept = tuple(
        (k, v) for k, v in end_to_end(headers) if k.lower() not in {"host", "content-length", "proxy-authorization"}
    )
    return (*kept, *marks(pseudonym))


def with_via(headers: Iterable[tuple[str, str]], pseudonym: str) -> list[tuple[str, str]]:
    """Response fields with grenier appended to ``Via`` (RFC 9110 §7.6.3)."""
    return [*headers, ("Via", f"1.1 {pseudonym}")]


def is_loop(request_headers: Iterable[tuple[str, str]], pseudonym: str) -> bool:
    """RFC 8586 / RFC 9110 §7.6.3: the request already passed through this cache."""
    name = pseudonym.lower()
    for member in (m for v in values(request_headers, "cdn-loop") for m in v.split(",")):
        if member.split(";", 1)[0].strip().lower() == name:
            return True
    for hop in (m for v in values(request_headers, "via") for m in v.split(",")):
        parts = hop.split()
        if len(parts) >= 2 and parts[1].lower() == name:
            return True
    return False
