"""Redis clients from the settings: one server named by ``redis.url``, or the primary that Sentinel names.

The store (asyncio) and Dramatiq's Redis broker (blocking) connect through here, so both follow the same primary.
Through Sentinel, every new connection asks the sentinels for the current primary's address, and a connection still
open to a primary that was demoted (``READONLY``) or is gone fails once and reconnects: a failover is followed by
the next command after it, without a restart. ``redis.url`` then only carries the database and the credentials.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.connection import parse_url

from .settings import RedisSettings

#: How long asking one sentinel may take before the next one is asked.
SENTINEL_TIMEOUT = 1.0


def sentinel_addresses(sentinels: tuple[str, ...]) -> list[tuple[str, int]]:
    """``"host:port"`` strings (validated with the settings) as (host, port) pairs."""
    pairs = []
    for address in sentinels:
        host, _, port = address.rpartition(":")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def url_options(url: str) -> dict[str, Any]:
    """The database and credentials a Redis URL carries (its host and port are Sentinel's to say)."""
    if not url:
        return {}
    options = dict(parse_url(url))  # type: ignore[no-untyped-call]
    for key in ("host", "port", "path", "connection_class"):
        options.pop(key, None)
    return options


def async_client(settings: RedisSettings, **options: Any) -> aioredis.Redis:
    """An asyncio client of the primary the sentinels name; ``options`` go to each connection (timeouts)."""
    sentinel = aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT},
    )
    client: aioredis.Redis = sentinel.master_for(
        settings.sentinel_service, redis_class=aioredis.Redis, **url_options(settings.url), **options
    )
    return client


def sync_client(settings: RedisSettings, **options: Any) -> redis.Redis:
    """A blocking client of the primary the sentinels name (for Dramatiq's Redis broker)."""
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.sentinel_service, redis_class=redis.Redis, **url_options(settings.url), **options
    )
    return client
