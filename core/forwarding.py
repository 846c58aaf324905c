"""Which header fields cross the proxy, in each direction (RFC 9110 §7.6), and loop marks (RFC 8586).

In forward and reverse mode grenier is a transparent intermediary: a cacheable fetch carries the client's
end-to-end fields (:func:`presented`), all but the deny list of override fields (``upstream.deny_fields``) and
those that frame the client's own message (:func:`outgoing`), and the fields the client presented select the
stored variant (RFC 9111 §4.1). ``/fetch?url=`` is grenier's own API: its request's fields are meant for grenier,
and only an explicit allow list of them (``upstream.forward_headers``) reaches the target (:func:`for_job`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .policy import HOP_BY_HOP, Headers, values

#: Never forwarded on a cacheable fetch, whatever the settings say: the cookie (a request with one is relayed, not
#: cached), the fields that frame the client's own message, its preferences (``Prefer``: grenier applies ``wait``
#: and ``respond-async`` itself, and an origin must not answer a shared fetch asynchronously), and its conditionals
#: and range: the fetch asks for the whole response, conditionally only with the stored response's own validators
#: (RFC 9111 §4.3.1).
NEVER_ON_FETCH = frozenset(
    {
        "cookie",
        "proxy-authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "expect",
        "prefer",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    }
)

#: Never forwarded by ``/fetch?url=``: its ``Authorization`` is for grenier, not the target.
NEVER_ON_API_FETCH = NEVER_ON_FETCH | {"authorization"}

#: Not part of what a client presents for a cacheable fetch: the fields that frame its message to grenier.
_NOT_PRESENTED = frozenset({"host", "content-length", "transfer-encoding", "cookie"})


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

#: Most bytes (names and values) of a client's fields a fetch job carries: they travel in its message, and a
#: joiner's record keeps them. Fields past it are dropped, like an oversized one.
MAX_FORWARDED_BYTES = 16 * 1024


def _capped(headers: Iterable[tuple[str, str]]) -> Headers:
    kept: list[tuple[str, str]] = []
    total = 0
    for k, v in headers:
        size = len(v.encode("utf-8", "surrogateescape"))
        if size > MAX_FORWARDED_FIELD_BYTES or total + len(k) + size > MAX_FORWARDED_BYTES:
            continue
        total += len(k) + size
        kept.append((k, v))
    return tuple(kept)


def for_job(headers: Iterable[tuple[str, str]], allowed: Iterable[str]) -> Headers:
    """``/fetch?url=``: the client's allow-listed fields (they also select a Vary variant), each at most
    :data:`MAX_FORWARDED_FIELD_BYTES` long; never its credentials, which are for grenier."""
    allow = {a.lower() for a in allowed} - NEVER_ON_API_FETCH
    return _capped((k, v) for k, v in end_to_end(headers) if k.lower() in allow)


def presented(headers: Iterable[tuple[str, str]]) -> Headers:
    """Forward and reverse mode: the end-to-end fields the client presented for its target (under the caps).

    They select the stored variant (RFC 9111 §4.1) and travel with the fetch job, which sends :func:`outgoing` of
    them; so a field the origin is never sent still keeps the requests that differ in it apart.
    """
    return _capped((k, v) for k, v in end_to_end(headers) if k.lower() not in _NOT_PRESENTED)


def outgoing(headers: Iterable[tuple[str, str]], deny: Iterable[str]) -> Headers:
    """What a fetch job sends of the fields it carries: all but :data:`NEVER_ON_FETCH` and the ``deny`` list."""
    drop = NEVER_ON_FETCH | {d.lower() for d in deny}
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


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
