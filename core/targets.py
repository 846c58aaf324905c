"""Target URLs: validate what a client names and normalise it into the one spelling that keys the cache.

Pure functions; every refusal is a :class:`~proxy.problems.BadTarget` (or ``TargetTooLong``) whose detail says what
was wrong, so handlers never have to guess.
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import unicodedata
from ipaddress import ip_address
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import idna

from .netguard import numeric_host
from .problems import BadTarget, TargetTooLong

MAX_URL_BYTES = 8192
#: Unicode categories refused anywhere in a target: controls, separators, format characters (invisible).
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
SCHEMES = {"http": 80, "https": 443}
#: An ASCII DNS label (RFC 1123 §2.1: letters, digits, hyphens, not at either end); ``_`` is allowed too, because
#: real names carry it (RFC 2181 §11) and resolvers look them up.
_ASCII_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MAX_HOST_BYTES = 253


def normalize(raw: str | None) -> str:
    """See :func:`_normalize`; memoised, since every request names its target again (refusals are not cached)."""
    return _normalize(raw)


@functools.lru_cache(maxsize=8192)
def _normalize(raw: str | None) -> str:
    """Return the canonical absolute URL for ``raw`` or raise a problem naming the fault.

    Canonical: scheme and host lower-cased, default port and fragment dropped, empty path written ``/``; the path
    and query are kept byte for byte because origins may treat any other spelling as a different resource.
    """
    if raw is None or not raw.strip():
        raise BadTarget("the url parameter is missing: pass an absolute http(s) URL, e.g. ?url=http://example.com/")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise TargetTooLong(f"the target URL is longer than {MAX_URL_BYTES} bytes")
    raw = raw.strip()
    if any(ord(c) < 0x21 or ord(c) == 0x7F or unicodedata.category(c) in _INVISIBLE for c in raw):
        raise BadTarget("the target URL contains whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"the target URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if (scheme and scheme not in SCHEMES and "://" in raw) or scheme in {"javascript", "data", "file", "mailto"}:
        raise BadTarget(f"the scheme {scheme!r} is not supported: only http and https are")
    if scheme in SCHEMES and raw[len(scheme) :].startswith("://") and not parts.netloc:
        raise BadTarget("the target URL has no host")
    if not scheme or not parts.netloc:
        raise BadTarget(f"the target URL {raw!r} is relative: give an absolute http or https URL")
    if scheme not in SCHEMES:
        raise BadTarget(f"the scheme {scheme!r} is not supported: only http and https are")
    host = parts.hostname
    if not host:
        raise BadTarget("the target URL has no host")
    if port == 0:
        raise BadTarget("the target URL names port 0")
    if parts.username is not None or parts.password is not None:
        raise BadTarget("the target URL carries credentials (user@host); send them as headers instead")
    host = host.lower().rstrip(".")
    if not host:
        raise BadTarget("the target URL has no host")
    if "%" in host:
        raise BadTarget(f"the target URL's host {host!r} is percent-encoded: write the host name itself")
    numeric = numeric_host(host)
    if numeric is not None:  # 0x7f.1, 2130706433 and 127.0.0.1 are one host: one cache key
        host = str(numeric)
    elif ":" not in host:  # an IPv6 literal numeric_host refused is refused by the SSRF guard, which names it
        host = host_name(host)
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port in (None, SCHEMES[scheme]) else f"{host}:{port}"
    # The origin is sent exactly the path and query the key holds (core/upstream.py: ``wire_url``), so the key keeps
    # them byte for byte but for what the request line cannot carry: non-ASCII characters are sent as their UTF-8
    # escapes, so they are keyed so too, and an empty query's "?" is dropped (the client library cannot send it).
    try:
        path, query = _escape_non_ascii(parts.path or "/"), _escape_non_ascii(parts.query)
    except UnicodeError:
        raise BadTarget("the target URL is not valid UTF-8 text") from None
    return urlunsplit((scheme, netloc, path, query, ""))


#: Every printable ASCII character: escaping with this as ``safe`` touches only what is not ASCII.
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def _escape_non_ascii(text: str) -> str:
    return text if text.isascii() else quote(text, safe=_PRINTABLE_ASCII, errors="strict")


def host_name(host: str) -> str:
    """The ASCII spelling (A-labels) of a lower-cased DNS name, or a :class:`BadTarget` saying why it cannot be one.

    Decided from the spelling alone, before any lookup: a name no resolver could look up must not reach one (nor the
    client library, whose IDNA codec raises on it deep inside a connection), and a Unicode name and its A-label
    spelling are one host, so they key one cache entry.
    """
    labels = []
    for label in host.split("."):
        if not label:
            raise BadTarget(f"the target URL's host {host!r} has an empty label")
        if label.isascii():
            if not _ASCII_LABEL.fullmatch(label):
                raise BadTarget(
                    f"the target URL's host {host!r} has an invalid label {label!r}: a label is 1 to 63 letters, "
                    "digits, hyphens or underscores, not beginning or ending with a hyphen"
                )
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError, ValueError) as exc:
                    raise BadTarget(
                        f"the target URL's host {host!r} has an invalid IDNA label {label!r}: {exc}"
                    ) from None
            labels.append(label)
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise BadTarget(f"the target URL's host {host!r} is not a valid international name: {exc}") from None
    ascii_host = ".".join(labels)
    if len(ascii_host) > MAX_HOST_BYTES:
        raise BadTarget(f"the target URL's host is longer than {MAX_HOST_BYTES} octets")
    return ascii_host


#: Escapes a server may decode before it resolves dot-segments: ``.``, ``/`` and ``\`` (which some treat as ``/``).
_DOT_OR_SEPARATOR = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


def join_origin(origin: str, raw_path: str) -> str:
    r"""The absolute URL a reverse-proxied request stands for: the configured origin plus the request's raw path.

    The path is sent upstream as written, so one whose dot-segments climb out of the origin's path prefix
    (``/../x``, ``/%2e%2e/x`` under ``http://o/app``) would reach resources the operator never exposed: it is
    refused. Dot-segments are resolved as the most lenient server would (escaped dots and separators decoded,
    ``\`` a separator); staying inside the prefix they are kept, byte for byte.
    """
    url = normalize(origin.rstrip("/") + raw_path)
    prefix = urlsplit(normalize(origin)).path.rstrip("/")
    if prefix:
        path = urlsplit(url).path
        lenient = _DOT_OR_SEPARATOR.sub(lambda m: unquote(m.group(0)), path).replace("\\", "/")
        resolved = remove_dot_segments(lenient)
        if resolved != prefix and not resolved.startswith(prefix + "/"):
            raise BadTarget(
                f"the request path {raw_path.split('?', 1)[0]!r} leaves the origin's path {prefix!r} through "
                "dot-segments ('..', also escaped as %2e%2e)"
            )
    return url


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path: ``.`` and ``..`` segments resolved (``..`` above the root stays at it)."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def same_origin(url: str, origin: str) -> bool:
    """RFC 6454 origin equality (scheme, host, port), on canonical URLs."""
    a, b = urlsplit(normalize(url)), urlsplit(normalize(origin))
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


@functools.lru_cache(maxsize=8192)
def on_origin(url: str, origin: str) -> bool:
    """Is ``url`` on the configured reverse-proxy ``origin`` (empty: no origin, so never)?"""
    return bool(origin) and same_origin(url, origin)


@functools.lru_cache(maxsize=8192)
def host_port(url: str) -> tuple[str, int]:
    """Host (IPv6 without brackets) and port of a canonical URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or SCHEMES[parts.scheme]


@functools.lru_cache(maxsize=8192)
def cache_key(url: str) -> str:
    """A fixed-length key for a canonical URL, so any URL length fits the store's key scheme."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


@functools.lru_cache(maxsize=1)
def _own_names() -> frozenset[str]:
    """This machine's own host name: a wildcard listener answers to it."""
    name = socket.gethostname().lower().rstrip(".")
    return frozenset({name, name.split(".", 1)[0]} - {""})


@functools.lru_cache(maxsize=8192)
def names_self(url: str, listen_host: str, listen_port: int) -> bool:
    """Does the canonical ``url`` name this grenier itself (it listens on ``listen_host``:``listen_port``)?

    A request for such a URL would come straight back in: an admin operation run with grenier's own (loopback)
    authority, or a fetch that starts another fetch. Named by its listening address and port; when that is loopback
    or a wildcard, also by every loopback spelling (``127.0.0.0/8``, ``localhost``, ``[::1]``, ``0.0.0.0``) with
    its port; when it is a wildcard, also by this machine's own name.
    """
    host, port = host_port(url)
    if port != listen_port:
        return False
    listen = listen_host.lower().strip("[]").rstrip(".")
    if host == listen:
        return True
    wildcard = listen in {"", "0.0.0.0", "::"}
    try:
        listen_loopback = ip_address(listen).is_loopback
    except ValueError:
        listen_loopback = listen == "localhost"
    if not (wildcard or listen_loopback):
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ip_address(host)
    except ValueError:
        return wildcard and host in _own_names()
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or addr.is_unspecified or (mapped is not None and mapped.is_loopback)
