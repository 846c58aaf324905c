"""Finding and saving a URL's stored response, variants included (RFC 9111 §4.1), over any :class:`Store`.

A URL whose responses carry no ``Vary`` keeps one value at its key, so a hit stays one store read. When they vary,
that key holds a :class:`VaryIndex` and each variant lives under ``<url hash>:<generation>:<variant digest>``: a
hit costs two reads, and only for such URLs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from . import policy
from .invalidation import ByUrl
from .outcome import Fetched
from .policy import Headers
from .records import StoredResponse, VaryIndex
from .store import Store
from .targets import cache_key


@dataclass(frozen=True)
class Found:
    entry: StoredResponse | None
    key: str
    """Where this request's response is (or would be) stored."""
    index: VaryIndex | None = None

    @property
    def vary_miss(self) -> bool:
        return self.entry is None and self.index is not None


async def find(store: Store, url: str, request_headers: Headers) -> Found:
    url_hash = cache_key(url)
    cached = await store.get_entry(url_hash)
    if isinstance(cached, VaryIndex):
        key = f"{url_hash}:{cached.generation}:{policy.variant_key(cached.fields, request_headers)}"
        variant = await store.get_entry(key)
        return Found(variant if isinstance(variant, StoredResponse) else None, key, cached)
    return Found(cached, url_hash)


async def save(
    store: Store, url: str, request_headers: Headers, entry: StoredResponse, *, expire: float, index_expire: float
) -> str:
    """Store ``entry`` as the response for this request; returns the key used."""
    url_hash = cache_key(url)
    fields = policy.vary_fields(entry.headers)
    if not fields:
        await store.put_entry(url_hash, entry, expire)
        return url_hash
    current = await store.get_entry(url_hash)
    if isinstance(current, VaryIndex) and current.fields == fields:
        index = current
    else:
        index = VaryIndex(fields, uuid.uuid4().hex[:12])
    await store.put_entry(url_hash, index, max(expire, index_expire))
    key = f"{url_hash}:{index.generation}:{policy.variant_key(fields, request_headers)}"
    await store.put_entry(key, entry, expire)
    return key


async def invalidate(store: Store, url: str) -> None:
    """§4.4: forget what is stored for ``url``, every variant with it (and unlist it from the purge indexes)."""
    await store.purge(ByUrl(url))


async def held_response(store: Store, outcome: Fetched) -> StoredResponse | None:
    """The response a job's outcome stands for: the one it carries, or the one the cache holds at its key (``None``
    once that has expired or been evicted)."""
    if outcome.response is not None:
        return outcome.response
    if outcome.key is None:
        return None
    cached = await store.get_entry(outcome.key)
    return cached if isinstance(cached, StoredResponse) else None
