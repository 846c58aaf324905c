"""What an operator may invalidate, as values, and the pure rules the stores apply to carry it out.

A purge names its targets one of four ways (:data:`Target`): one URL (every variant of it), every URL under an
absolute URL prefix (a host ban is the prefix ``scheme://host/``), every entry carrying a surrogate key (a *tag*),
or everything. It either removes them (a hard purge) or, ``soft``, marks them stale (:func:`soften`) so the next
request revalidates them with the origin (RFC 9111 §4.3) instead of fetching them whole, and a stale response may
still stand in for an origin error (RFC 5861) meanwhile.

Tags come from the response fields ``Surrogate-Key`` (space separated, as Fastly and Varnish's xkey read it) and
``Cache-Tag`` (comma separated, as Cloudflare reads it): :func:`tags_of`. The stores index every entry they write
by its URL and its tags, so a purge finds its targets without walking the whole store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, assert_never

from .policy import Headers, values
from .problems import Problem
from .records import StoredResponse
from .targets import normalize

#: The response fields whose values tag an entry, and how each separates its tags.
TAG_FIELDS: dict[str, str | None] = {"surrogate-key": None, "cache-tag": ","}

#: Tags an entry is indexed under at most, and the longest tag kept: a response cannot make the store index
#: without bound.
MAX_TAGS = 64
MAX_TAG_LENGTH = 256


class BadPurge(Problem):
    """A purge or inspection whose target is missing or malformed (400)."""

    title = "Bad purge request"


@dataclass(frozen=True)
class ByUrl:
    """One canonical URL, every stored variant of it."""

    url: str


@dataclass(frozen=True)
class ByPrefix:
    """Every canonical URL that starts with ``prefix`` (itself canonical up to its path: ``scheme://host/...``)."""

    prefix: str

    @property
    def origin(self) -> str:
        return origin_of(self.prefix)


@dataclass(frozen=True)
class ByTag:
    """Every entry whose response carried this surrogate key."""

    tag: str


@dataclass(frozen=True)
class Everything:
    """Every entry (a flush)."""


Target = ByUrl | ByPrefix | ByTag | Everything


def describe(target: Target) -> dict[str, Any]:
    """A target as purge answers and logs name it."""
    match target:
        case ByUrl(url=url):
            return {"url": url}
        case ByPrefix(prefix=prefix):
            return {"prefix": prefix}
        case ByTag(tag=tag):
            return {"tag": tag}
        case Everything():
            return {"all": True}
        case _:
            assert_never(target)


def tags_of(headers: Headers) -> tuple[str, ...]:
    """The surrogate keys a response carries, in order of first appearance, each once, within the bounds."""
    found: dict[str, None] = {}
    for name, separator in TAG_FIELDS.items():
        for value in values(headers, name):
            for raw in value.split(separator):
                tag = raw.strip()
                if tag and len(tag) <= MAX_TAG_LENGTH and len(found) < MAX_TAGS:
                    found[tag] = None
    return tuple(found)


def is_tag_field(name: str) -> bool:
    return name.lower() in TAG_FIELDS


def without_tag_fields(headers: Headers) -> Headers:
    """``headers`` as clients see them when ``cache.strip_tag_fields`` is on: tags are for the cache and its
    operators, not for every client (nor for a downstream cache that would index them again)."""
    return tuple((k, v) for k, v in headers if k.lower() not in TAG_FIELDS)


def origin_of(url: str) -> str:
    """``scheme://authority`` of a canonical URL: the index a prefix ban reads (one per origin)."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("/", 1)[0]


def index_member(url: str, url_hash: str) -> str:
    """How a URL is listed in its origin's index: sorted by the URL itself (so a prefix is one range of the sorted
    set), followed by its key. A canonical URL never holds a space (:func:`core.targets.normalize`)."""
    return f"{url} {url_hash}"


def soften(entry: StoredResponse) -> StoredResponse:
    """A soft purge: the entry as stale from now on. Its freshness lifetime becomes zero, so any age makes it stale
    (§4.2) and the next request revalidates it; its fields, validators and stale windows are kept."""
    return replace(entry, lifetime=0.0)


def prefix_target(raw: str | None) -> ByPrefix:
    """An operator's prefix, checked: an absolute http(s) URL (a host alone bans the whole host, never another host
    that merely starts with the same letters), spelt as canonical URLs are so that it matches them."""
    if raw is None or "://" not in raw:
        raise BadPurge(f"prefix {raw!r} is not an absolute URL prefix: give e.g. http://example.com/images/")
    return ByPrefix(normalize(raw))  # a bare host gets the path "/", which is the host ban


def tag_target(raw: str | None) -> ByTag:
    tag = (raw or "").strip()
    if not tag or len(tag) > MAX_TAG_LENGTH or any(c.isspace() or c == "," for c in tag):
        raise BadPurge(f"tag {raw!r} is not a surrogate key: one non-empty word without spaces or commas")
    return ByTag(tag)
