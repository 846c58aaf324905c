"""The store: cache entries, job records, in-flight markers and shared counters, behind one narrow interface.

Two implementations honour the same contract (``tests/unit/test_store_contract.py`` runs over both):

* :class:`RedisStore` for Redis mode (and over fakeredis in unit tests).
* :class:`~core.memory_store.MemoryStore` for the embedded mode, bounded by bytes (``cache.memory_bytes``).

Redis key scheme (``<p>`` is ``grenier``, ``<h>`` the SHA-256 of the canonical URL). ``{<h>}`` is a Redis Cluster
hash tag: every key of one URL (its entry, variants, chunks and in-flight claim) hashes to the slot of ``<h>``
alone, so on a cluster they live on one node and no command on them spans two slots:

================================  =====================================================  ==========================
key                               value                                                  expiry
================================  =====================================================  ==========================
``<p>:entry:{<h>}``               :class:`StoredResponse` bytes (one value: a hit is one  freshness + ``stale_keep``
                                  ``GET``), or a :class:`VaryIndex` when responses vary
``<p>:entry:{<h>}:<gen>:<v>``     one variant's :class:`StoredResponse` (``<v>`` digests   as above
                                  the request's values of the Vary fields)
``<p>:chunk:{<h>}:<ver>:<i>``     chunk ``i`` of a body too large to be inline (an         its entry's, plus a
                                  entry's :class:`BodyRef` names ``<h>:<ver>``)           minute
``<p>:job:<id>``                  :class:`JobRecord` bytes (with the fetched response)    ``jobs.result_ttl``
``<p>:inflight:{<h>}...``         id of the job fetching that key now (``<k>:<range>``   job time limit; a few
                                  for a range miss: only the same range collapses)       seconds after it ends
``<p>:stats:<name>``              integer counter (``INCRBY``); on a cluster             none
                                  ``<p>:stats:<name>:<shard>``, summed on read
``<p>:urls:<origin>``             sorted set, every score 0, of ``<url> <h>`` for each    the longest of its
                                  URL of ``<origin>`` (``scheme://host[:port]``) with an  entries' (``PEXPIRE NX``,
                                  entry: a prefix or host ban is one ``ZRANGEBYLEX``      then ``GT``)
``<p>:variants:<h>``              set of the variant keys ``<h>:<gen>:<v>`` written for   as above
                                  a URL (purge and inspection find them without SCAN)
``<p>:tag:<tag>``                 set of the entry keys (``<h>`` or a variant's) whose    as above
                                  response carried the surrogate key ``<tag>``
``<p>:note:<h>``                  JSON: the last fetch job's decision about storing the   ``jobs.result_ttl``
                                  URL (job id, time, status, stored or why not)
channel ``<p>:job-done``          job id, published when a job ends                      -
channel ``<p>:entry-changed``     an entry key, published when any process writes,       -
                                  soft-purges or deletes it (hot tiers drop it)
================================  =====================================================  ==========================

The indexes are written in the same pipeline as the entry. Purges read them, never ``KEYS``: a URL, a prefix (one
origin's sorted set, by lexical range) or a tag is removed by one Lua script, atomically, publishing every key it
deletes; a soft purge rewrites the entries as stale inside a ``WATCH``/``MULTI`` transaction over the same index. An
index member whose entry has expired is harmless (deleting it finds nothing and counts nothing); only a flush walks
the entry keys with ``SCAN`` (bounded batches), since it must find everything, indexed or not.

On a cluster (``redis.cluster``) the indexes live in slots of their own, so a script may not touch them and the
entries together: a purge there reads the index, then deletes (or rewrites) each URL's entries in its own slot,
notifying each; every entry named when it began goes, but the purge as a whole is not atomic. Notifications are
plain pub/sub, which the cluster carries to every node, so a subscriber on any node hears every job that ends and
every entry that changes.

Only entries carry a TTL that ``volatile-lru`` may evict early; Dramatiq's queues carry none, so a full Redis
evicts cache entries, never queued jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, assert_never

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import WatchError

from .breaker import PROBE_TIMEOUT, Breaker, GuardedRetry
from .counts import Count
from .hot_tier import HotTier
from .invalidation import ByPrefix, ByTag, ByUrl, Everything, Target, index_member, origin_of, soften
from .records import Cached, CorruptRecord, JobRecord, StoredResponse, decode_cached
from .redis_clients import async_client
from .redis_reads import RedisReads
from .settings import RedisSettings
from .targets import cache_key

log = logging.getLogger(__name__)

PREFIX = "grenier"
DONE_CHANNEL = f"{PREFIX}:job-done"
ENTRY_CHANNEL = f"{PREFIX}:entry-changed"
COUNTERS: tuple[Count, ...] = tuple(Count)


ENTRY_PREFIX = f"{PREFIX}:entry:"
CHUNK_PREFIX = f"{PREFIX}:chunk:"
JOB_PREFIX = f"{PREFIX}:job:"
NOTE_PREFIX = f"{PREFIX}:note:"
RECENT_JOBS_KEY = f"{PREFIX}:recent-jobs"
#: Ended jobs the store remembers for the operator's page (a list capped with LTRIM, a bounded deque embedded).
RECENT_JOBS = 50


_URL_HASH = re.compile(r"[0-9a-f]{64}")


def tagged(key: str) -> str:
    """``key`` with its URL hash as the Redis Cluster hash tag: ``<h>[:rest]`` becomes ``{<h>}[:rest]``, so every
    key of one URL shares a slot; a key that does not start with a URL hash (a joiner's ``own:<id>``) is its own
    tag."""
    head, sep, rest = key.partition(":")
    if _URL_HASH.fullmatch(head):
        return f"{{{head}}}{sep}{rest}"
    return f"{{{key}}}"


def untagged(full: str, prefix: str) -> str:
    """The key a store caller names (``<h>[:rest]``) of a full entry key ``<prefix>{<h>}[:rest]``."""
    return full[len(prefix) :].replace("{", "", 1).replace("}", "", 1)


def entry_key(url_hash: str) -> str:
    return f"{ENTRY_PREFIX}{tagged(url_hash)}"


def chunk_key(name: str, index: int) -> str:
    return f"{CHUNK_PREFIX}{tagged(name)}:{index}"


def job_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def inflight_key(url_hash: str) -> str:
    return f"{PREFIX}:inflight:{tagged(url_hash)}"


def stat_key(name: Count) -> str:
    return f"{PREFIX}:stats:{name}"


def urls_key(origin: str) -> str:
    return f"{PREFIX}:urls:{origin}"


def variants_key(url_hash: str) -> str:
    return f"{PREFIX}:variants:{url_hash}"


def tag_key(tag: str) -> str:
    return f"{PREFIX}:tag:{tag}"


def note_key(url_hash: str) -> str:
    return f"{NOTE_PREFIX}{url_hash}"


def url_hash_of(key: str) -> str:
    """The URL hash an entry key (a URL's own, or one of its variants') belongs to."""
    return key.split(":", 1)[0]


class Store(Protocol):
    async def get_entry(self, key: str) -> Cached | None:
        """The response (or variant index) stored under ``key``: a URL hash, or a variant's key."""
        ...

    def peek_entry(self, key: str) -> Cached | None:
        """What :meth:`get_entry` would return, if this process holds it in memory; ``None`` when answering would
        take any I/O. The lean hit path (``proxy/lean.py``) reads through this, on the event loop, without waiting."""
        ...

    def peek_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        """What :meth:`get_chunks` would return, as far as this process holds the chunks in memory (``None`` for
        each it does not)."""
        ...

    async def put_entry(self, key: str, entry: Cached, expire: float) -> None: ...

    async def delete_entry(self, key: str) -> None: ...

    async def put_chunk(self, name: str, index: int, data: bytes, expire: float) -> None:
        """Store chunk ``index`` of the body ``name`` (see :class:`~core.records.BodyRef`)."""
        ...

    async def get_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        """Those chunks of body ``name`` (``body_size`` bytes in all), in one round trip; ``None`` for any that is
        gone (expired, evicted)."""
        ...

    async def keep_chunks(self, name: str, count: int, expire: float) -> None:
        """Let the ``count`` chunks of body ``name`` live ``expire`` seconds from now (an entry that a 304 freshened
        points at the same body for longer)."""
        ...

    async def purge(self, target: Target, *, soft: bool = False) -> int:
        """Remove the entries ``target`` names (every variant of each URL), or with ``soft`` mark them stale so
        the next request revalidates them; every process's hot tier drops them. Returns how many were affected:
        URLs for a URL, a prefix or a flush, entries (each variant on its own) for a tag."""
        ...

    async def variants(self, url_hash: str) -> list[str]:
        """The keys of the variants written for a URL whose responses vary (some may have expired since)."""
        ...

    async def put_note(self, url_hash: str, note: Mapping[str, Any], expire: float) -> None:
        """Keep the last fetch's decision about storing a URL, for inspection."""
        ...

    async def get_note(self, url_hash: str) -> dict[str, Any] | None: ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def put_job(self, record: JobRecord, expire: float) -> None: ...

    async def delete_job(self, job_id: str) -> None: ...

    async def claim(self, url_hash: str, job_id: str, expire: float) -> str | None:
        """Mark ``job_id`` as fetching ``url_hash`` unless another job is; return that other job's id."""
        ...

    async def take_over(self, url_hash: str, job_id: str, expire: float) -> None:
        """Make ``job_id`` the in-flight job for ``url_hash`` unconditionally (a forced refresh)."""
        ...

    async def release(self, url_hash: str, job_id: str, linger: float) -> None:
        """Let the marker of ``job_id`` expire after ``linger`` seconds (if it is still that job's)."""
        ...

    async def finish_job(self, record: JobRecord, expire: float) -> None:
        """Write a terminal job record and wake whoever waits for it."""
        ...

    async def wait_job(self, job_id: str, timeout: float) -> JobRecord | None:
        """The job's record once it has ended, or its latest record when ``timeout`` runs out."""
        ...

    async def incr(self, counts: Mapping[Count, int]) -> None: ...

    async def counters(self) -> dict[str, int]: ...

    async def remember_job(self, summary: Mapping[str, Any]) -> None:
        """Keep an ended job's summary among the last :data:`RECENT_JOBS` (oldest dropped), for the operator."""
        ...

    async def recent_jobs(self) -> list[dict[str, Any]]:
        """The summaries :meth:`remember_job` kept, newest first."""
        ...

    async def usage(self) -> dict[str, int]:
        """What the store holds, for operators: bytes (and its bound), keys; what each backend can tell."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class _Unwatched:
    """A client read as if it were a watching pipeline (``watch`` does nothing): the reads of a purge on a cluster,
    where nothing is watched (see ``RedisStore._purge_key_by_key``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def watch(self, *keys: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _decode_entry(data: bytes | str | None) -> Cached | None:
    if not isinstance(data, bytes):
        return None
    try:
        return decode_cached(data)
    except CorruptRecord as exc:
        log.warning("ignoring unreadable cache entry: %s", exc)
        return None


def _decode_job(data: bytes | str | None) -> JobRecord | None:
    if not isinstance(data, bytes):
        return None
    try:
        return JobRecord.decode(data)
    except CorruptRecord as exc:
        log.warning("ignoring unreadable job record: %s", exc)
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode_note(data: bytes | str | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        note = json.loads(data)
    except ValueError:
        return None
    return note if isinstance(note, dict) else None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


#: Lua: removes one URL's entry and its variants (``drop(h)``), publishing each key, and returns whether its
#: entry existed; the scripts below are built on it. Only the index sets name keys it touches beyond KEYS, so a
#: purge stays one atomic step on one Redis server.
_DROP_URL = """
local P, CH = ARGV[1], ARGV[2]
local dropped = {}
local function ek(k)
  local h, rest = string.match(k, '^(%x+)(.*)$')
  if h and #h == 64 and (rest == '' or string.sub(rest, 1, 1) == ':') then return P .. 'entry:{' .. h .. '}' .. rest end
  return P .. 'entry:{' .. k .. '}'
end
local function drop(h)
  local e = ek(h)
  local n = redis.call('DEL', e)
  redis.call('PUBLISH', CH, e)
  table.insert(dropped, e)
  local vs = P .. 'variants:' .. h
  for _, v in ipairs(redis.call('SMEMBERS', vs)) do
    local ve = ek(v)
    redis.call('DEL', ve)
    redis.call('PUBLISH', CH, ve)
    table.insert(dropped, ve)
  end
  redis.call('DEL', vs)
  return n
end
"""

#: KEYS[1]: the origin's URL index; ARGV[3], ARGV[4]: the lexical range of members; returns the URLs affected and
#: the list of keys deleted (so the calling process drops them from its own hot tier at once).
_PURGE_RANGE = (
    _DROP_URL
    + """
local n = 0
for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[3], ARGV[4])) do
  local h = string.match(m, ' (%x+)$')
  if h then n = n + drop(h) end
  redis.call('ZREM', KEYS[1], m)
end
return {n, dropped}
"""
)

#: KEYS[1]: the origin's URL index; ARGV[3]: the URL's member; ARGV[4]: its hash. Drops it, indexed or not.
_PURGE_URL = (
    _DROP_URL
    + """
local n = drop(ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[3])
return {n, dropped}
"""
)

#: KEYS[1]: a tag's set; deletes every entry key in it (each counted), then the set.
_PURGE_TAG = """
local P, CH = ARGV[1], ARGV[2]
local function ek(k)
  local h, rest = string.match(k, '^(%x+)(.*)$')
  if h and #h == 64 and (rest == '' or string.sub(rest, 1, 1) == ':') then return P .. 'entry:{' .. h .. '}' .. rest end
  return P .. 'entry:{' .. k .. '}'
end
local n, dropped = 0, {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local e = ek(k)
  n = n + redis.call('DEL', e)
  redis.call('PUBLISH', CH, e)
  table.insert(dropped, e)
end
redis.call('DEL', KEYS[1])
return {n, dropped}
"""

#: Entry keys a flush deletes per round trip.
FLUSH_BATCH = 500

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


#: Connections one process keeps to Redis at most, and how long a request waits for one when all are busy.
POOL_SIZE = 256
POOL_WAIT = 5.0
#: Tries of a read on a cluster whose client fails inside itself (see ``RedisStore._read``).
CLUSTER_READ_TRIES = 3
#: Keys each counter is spread over on a cluster (summed on read).
COUNTER_SHARDS = 8
#: How long one Redis command may take before it fails (a paused or wedged server must not hold requests forever;
#: every command here is a key or a few, answered in well under a millisecond when Redis is well).
COMMAND_TIMEOUT = 2.0
#: Seconds the notification listener waits before subscribing again after its connection failed.
LISTENER_RETRY = 0.5
#: Connections the hit path's reads are pipelined over, per process.
READ_CONNECTIONS = 4


class RedisStore:
    """The store on a Redis server (any number of proxies and workers share it)."""

    #: How often a waiter re-reads its job even without a notification (a lost PUBLISH costs this much).
    poll_fallback = 0.5

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        hot: HotTier[Any] | None = None,
        reads: RedisReads | None = None,
        *,
        counter_shards: int = 1,
        breaker: Breaker | None = None,
    ) -> None:
        """``hot``: the server's hot tier (see :mod:`core.hot_tier`); workers read through to Redis always.
        ``reads``: the hit path's fast reads (see :mod:`core.redis_reads`); without it, reads go through ``client``.
        ``counter_shards``: keys each counter is spread over (on a cluster, so no one node takes every increment);
        this process adds to one of them, chosen at random, and a read sums them all.
        ``breaker``: the circuit breaker ``client``'s connections consult (see :mod:`core.breaker`), closed with the
        store."""
        self.breaker = breaker
        self.redis: Any = client  # redis-py types a cluster client and a plain one apart; both speak these commands
        self.cluster = isinstance(client, aioredis.RedisCluster)
        self.counter_shards = counter_shards
        self._shard = random.randrange(counter_shards)
        self.hot = hot
        self.reads = reads
        self._release = client.register_script(_RELEASE)
        self._purge_range = client.register_script(_PURGE_RANGE)
        self._purge_url = client.register_script(_PURGE_URL)
        self._purge_tag = client.register_script(_PURGE_TAG)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        """Are notifications flowing? Nothing is put in the hot tier unless they are."""

    @classmethod
    def open(cls, settings: RedisSettings, hot: HotTier[Any] | None = None) -> RedisStore:
        """The store on the Redis the settings name: ``redis.url``, or the primary its sentinels name (followed
        through failovers; see :mod:`core.redis_clients`)."""
        timeouts = {"socket_timeout": COMMAND_TIMEOUT, "socket_connect_timeout": COMMAND_TIMEOUT}
        if settings.cluster:
            # redis-py's cluster client keeps a pool per node that fails a command at once (MaxConnectionsError, a
            # 503) when all its connections are busy, and has no waiting pool: at its default of 100, a burst of
            # concurrent misses on one process was refused. POOL_SIZE per node is the single server's bound.
            client = aioredis.RedisCluster.from_url(settings.url, max_connections=POOL_SIZE, **timeouts)
            return cls(client, hot, counter_shards=COUNTER_SHARDS)
        if not settings.sentinels:
            return cls.from_url(settings.url, hot)
        return cls.through_sentinels(settings, hot)

    @classmethod
    def through_sentinels(cls, settings: RedisSettings, hot: HotTier[Any] | None = None) -> RedisStore:
        """The primary the sentinels name, behind the same circuit breaker as :meth:`from_url`: its probe asks the
        sentinels for the primary afresh each time, so a failover mends it as soon as the new primary answers."""

        async def probe() -> None:
            client = async_client(
                settings,
                socket_timeout=PROBE_TIMEOUT,
                socket_connect_timeout=PROBE_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            try:
                await client.ping()
            finally:
                await client.aclose()

        breaker = Breaker(probe)
        client = async_client(
            settings,
            health_check_interval=30,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=GuardedRetry(breaker),
        )
        return cls(client, hot, breaker=breaker)

    @classmethod
    def from_url(cls, url: str, hot: HotTier[Any] | None = None) -> RedisStore:
        """A client whose pool makes a request wait for a free connection (up to ``POOL_WAIT`` seconds) instead of
        failing at once when ``POOL_SIZE`` are busy, as redis-py's default pool does past 100; behind a circuit
        breaker (:mod:`core.breaker`) that fails every command at once while Redis is known to be down, and that
        retries a command once on a fresh connection when its pooled one died with a restarted Redis."""

        async def probe() -> None:
            client = aioredis.Redis.from_url(
                url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT, retry=Retry(NoBackoff(), 0)
            )
            try:
                await client.ping()
            finally:
                await client.aclose()

        breaker = Breaker(probe)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            health_check_interval=30,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=GuardedRetry(breaker),
        )
        reads = RedisReads(url, READ_CONNECTIONS, COMMAND_TIMEOUT, breaker) if RedisReads.serves(url) else None
        return cls(aioredis.Redis.from_pool(pool), hot, reads, breaker=breaker)  # closing the client closes its pool

    async def _read(self, command: Callable[[Any], Awaitable[Any]], arg: Any) -> Any:
        """A read, tried again (up to :data:`CLUSTER_READ_TRIES` times) on a cluster when the client fails inside
        itself: redis-py's asyncio cluster client, under concurrent load, now and then runs a command on a
        connection another command has just closed (an ``AttributeError`` or ``RuntimeError`` from inside it, not a
        ``RedisError``; about 1 % of hits at 64 connections in ``python -m bench.scaling``, 0.2 % with the tries).
        A read is safe to repeat; a write is never retried."""
        for _ in range(CLUSTER_READ_TRIES - 1):
            try:
                return await command(arg)
            except (AttributeError, RuntimeError):
                if not self.cluster:
                    raise
        return await command(arg)

    async def get_entry(self, key: str) -> Cached | None:
        full = entry_key(key)
        if self.hot is not None:
            self._ensure_listener()  # the hot tier is only as coherent as its subscription
            held: Cached | None = self.hot.get(full)
            if held is not None:
                return held
        data = await (self.reads.get(full) if self.reads is not None else self._read(self.redis.get, full))
        found = _decode_entry(data)
        if found is not None and self.hot is not None and self._subscribed and isinstance(data, bytes):
            self.hot.put(full, found, len(data))
        return found

    def peek_entry(self, key: str) -> Cached | None:
        if self.hot is None or not self._subscribed:
            return None
        held: Cached | None = self.hot.get(entry_key(key), count_miss=False)
        return held

    def peek_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        hot = self.hot
        if hot is None or not self._subscribed or body_size > hot.max_item_bytes:
            return [None] * len(indexes)
        return [hot.get(chunk_key(name, i), count_miss=False) for i in indexes]

    async def put_entry(self, key: str, entry: Cached, expire: float) -> None:
        full = entry_key(key)
        if self.hot is not None:
            self.hot.drop(full)

        def write(pipe: Any) -> None:
            pipe.set(full, entry.encode(), px=_ms(expire))
            if isinstance(entry, StoredResponse):
                self._index(pipe, key, entry, expire)

        await self._write_and_notify(write, ENTRY_CHANNEL, full)

    @staticmethod
    def _index(pipe: Any, key: str, entry: StoredResponse, expire: float) -> None:
        """List a response's entry under its URL's origin, its URL (a variant) and its tags (see the key scheme);
        each index lives as long as its longest-lived entry."""
        url_hash = url_hash_of(key)
        indexes = [urls_key(origin_of(entry.url))]
        pipe.zadd(indexes[0], {index_member(entry.url, url_hash): 0})
        if key != url_hash:
            indexes.append(variants_key(url_hash))
            pipe.sadd(indexes[-1], key)
        for tag in entry.tags:
            indexes.append(tag_key(tag))
            pipe.sadd(indexes[-1], key)
        for index in indexes:  # NX gives a new index a lifetime; GT only ever lengthens it
            pipe.pexpire(index, _ms(expire), nx=True)
            pipe.pexpire(index, _ms(expire), gt=True)

    async def purge(self, target: Target, *, soft: bool = False) -> int:
        if self.cluster:
            return await self._purge_key_by_key(target, soft=soft)
        if soft:
            return await self._soft_purge(target)
        args = [PREFIX + ":", ENTRY_CHANNEL]
        match target:
            case ByUrl(url=url):
                url_hash = cache_key(url)
                index = urls_key(origin_of(url))
                result = await self._purge_url(keys=[index], args=[*args, index_member(url, url_hash), url_hash])
            case ByPrefix(prefix=prefix):
                low, high = b"[" + prefix.encode(), b"[" + prefix.encode() + b"\xff"
                result = await self._purge_range(keys=[urls_key(target.origin)], args=[*args, low, high])
            case ByTag(tag=tag):
                result = await self._purge_tag(keys=[tag_key(tag)], args=args)
            case Everything():
                return await self._flush()
            case _:
                assert_never(target)
        count, dropped = result
        self._drop_hot(_text(k) for k in dropped)
        return int(count)

    def _drop_hot(self, keys: Any) -> None:
        """Drop at once from this process's hot tier what it just changed (the others hear of it by notification)."""
        if self.hot is not None:
            for key in keys:
                self.hot.drop(key)

    async def _flush(self) -> int:
        """Every entry key, found with ``SCAN`` in bounded batches, and every index with them."""
        count = 0
        for pattern in (f"{ENTRY_PREFIX}*", f"{PREFIX}:urls:*", f"{PREFIX}:variants:*", f"{PREFIX}:tag:*"):
            batch: list[bytes] = []
            async for key in self.redis.scan_iter(match=pattern, count=FLUSH_BATCH):
                batch.append(key)
                if len(batch) >= FLUSH_BATCH:
                    count += await self._flush_batch(batch)
                    batch = []
            count += await self._flush_batch(batch)
        if self.hot is not None:
            self.hot.clear()
        return count

    async def _flush_batch(self, keys: list[bytes]) -> int:
        """Unlink ``keys``, publishing the entries among them; returns how many were URLs' own entries."""
        if not keys:
            return 0
        names = [k.decode() for k in keys]
        entries = [n for n in names if n.startswith(ENTRY_PREFIX)]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.unlink(*names)
            for name in entries:
                pipe.publish(ENTRY_CHANNEL, name)
            await pipe.execute()
        return sum(1 for n in entries if ":" not in untagged(n, ENTRY_PREFIX))

    async def _soft_purge(self, target: Target) -> int:
        """Rewrite each entry ``target`` names as stale (:func:`core.invalidation.soften`), keeping its expiry,
        in one transaction that starts over if the index it read from changes meanwhile."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    groups = await self._soft_groups(pipe, target)
                    keys = [k for group in groups for k in group]
                    if keys:
                        await pipe.watch(*(entry_key(k) for k in keys))
                    raw = await pipe.mget([entry_key(k) for k in keys]) if keys else []
                    found = dict(zip(keys, (_decode_entry(r) for r in raw), strict=True))
                    pipe.multi()
                    for key, entry in found.items():
                        if isinstance(entry, StoredResponse):
                            pipe.set(entry_key(key), soften(entry).encode(), keepttl=True)
                            pipe.publish(ENTRY_CHANNEL, entry_key(key))
                    await pipe.execute()
                except WatchError:
                    continue
                self._drop_hot(entry_key(k) for k in keys)
                return sum(1 for group in groups if any(found[k] is not None for k in group))

    async def _soft_groups(self, pipe: Any, target: Target) -> list[list[str]]:
        """The entry keys a soft purge rewrites, grouped by what it counts (a URL and its variants; or one entry
        of a tag); read on ``pipe`` after watching the index they come from."""

        async def url_group(url_hash: str) -> list[str]:
            await pipe.watch(variants_key(url_hash))
            return [url_hash, *sorted(_text(v) for v in await pipe.smembers(variants_key(url_hash)))]

        match target:
            case ByUrl(url=url):
                return [await url_group(cache_key(url))]
            case ByPrefix(prefix=prefix):
                await pipe.watch(urls_key(target.origin))
                low, high = b"[" + prefix.encode(), b"[" + prefix.encode() + b"\xff"
                members = await pipe.zrangebylex(urls_key(target.origin), low, high)
                return [await url_group(_text(m).rsplit(" ", 1)[1]) for m in members]
            case ByTag(tag=tag):
                await pipe.watch(tag_key(tag))
                return [[_text(k)] for k in await pipe.smembers(tag_key(tag))]
            case Everything():  # a flush walks the entries (not watched: it is not atomic, see the key scheme)
                by_url: dict[str, list[str]] = {}
                async for key in self.redis.scan_iter(match=f"{ENTRY_PREFIX}*", count=FLUSH_BATCH):
                    name = untagged(_text(key), ENTRY_PREFIX)
                    by_url.setdefault(url_hash_of(name), []).append(name)
                return list(by_url.values())
            case _:
                assert_never(target)

    async def _purge_key_by_key(self, target: Target, *, soft: bool) -> int:
        """A purge on a cluster: a script or a transaction may touch one slot only, and one URL's keys share a slot
        but its origin's and its tags' indexes do not. So the entries are found from the indexes first, then
        deleted (or rewritten stale) one URL at a time, each notified: every entry named when the purge began goes,
        but the purge as a whole is not atomic (an entry written meanwhile may stay)."""
        groups = await self._soft_groups(_Unwatched(self.redis), target)
        count = 0
        for group in groups:
            affected = False
            for key in group:
                full = entry_key(key)
                if soft:
                    entry = _decode_entry(await self.redis.get(full))
                    if isinstance(entry, StoredResponse):
                        await self.redis.set(full, soften(entry).encode(), keepttl=True)
                        affected = True
                else:
                    affected = bool(await self.redis.delete(full)) or affected
                await self.redis.publish(ENTRY_CHANNEL, full)
                self._drop_hot([full])
            if not soft and group and url_hash_of(group[0]) == group[0]:
                await self.redis.delete(variants_key(group[0]))
            count += affected
        if isinstance(target, ByTag) and not soft:
            await self.redis.delete(tag_key(target.tag))
        return count

    async def variants(self, url_hash: str) -> list[str]:
        return sorted(_text(v) for v in await self.redis.smembers(variants_key(url_hash)))

    async def put_note(self, url_hash: str, note: Mapping[str, Any], expire: float) -> None:
        await self.redis.set(note_key(url_hash), json.dumps(dict(note)), px=_ms(expire))

    async def get_note(self, url_hash: str) -> dict[str, Any] | None:
        return _decode_note(await self.redis.get(note_key(url_hash)))

    async def delete_entry(self, key: str) -> None:
        full = entry_key(key)
        if self.hot is not None:
            self.hot.drop(full)
        await self._write_and_notify(lambda pipe: pipe.delete(full), ENTRY_CHANNEL, full)

    async def put_chunk(self, name: str, index: int, data: bytes, expire: float) -> None:
        await self.redis.set(chunk_key(name, index), data, px=_ms(expire))

    async def get_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        if not indexes:
            return []
        keys = [chunk_key(name, i) for i in indexes]
        # Only the chunks of a body small enough to be hot as a whole are held: a large body streams through.
        hot = self.hot if self.hot is not None and body_size <= self.hot.max_item_bytes else None
        if hot is not None:  # a version's chunks never change: they are held without any notification
            held: list[bytes | None] = [hot.get(k) for k in keys]
            if all(h is not None for h in held):
                return held
        values = await (self.reads.mget(keys) if self.reads is not None else self._read(self.redis.mget, keys))
        found = [v if isinstance(v, bytes) else None for v in values]
        if hot is not None and self._subscribed:
            for k, v in zip(keys, found, strict=True):
                if v is not None:
                    hot.put(k, v, len(v))
        return found

    async def keep_chunks(self, name: str, count: int, expire: float) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(count):
                pipe.pexpire(chunk_key(name, i), _ms(expire))
            await pipe.execute()

    async def get_job(self, job_id: str) -> JobRecord | None:
        return _decode_job(await self.redis.get(job_key(job_id)))

    async def put_job(self, record: JobRecord, expire: float) -> None:
        await self.redis.set(job_key(record.id), record.encode(), px=_ms(expire))

    async def delete_job(self, job_id: str) -> None:
        await self.redis.delete(job_key(job_id))

    async def claim(self, url_hash: str, job_id: str, expire: float) -> str | None:
        prior = await self.redis.set(inflight_key(url_hash), job_id, nx=True, get=True, px=_ms(expire))
        if isinstance(prior, bytes):
            return prior.decode()
        return prior if isinstance(prior, str) else None

    async def take_over(self, url_hash: str, job_id: str, expire: float) -> None:
        await self.redis.set(inflight_key(url_hash), job_id, px=_ms(expire))

    async def release(self, url_hash: str, job_id: str, linger: float) -> None:
        await self._release(keys=[inflight_key(url_hash)], args=[job_id, _ms(linger)])

    async def finish_job(self, record: JobRecord, expire: float) -> None:
        data = record.encode()
        await self._write_and_notify(
            lambda pipe: pipe.set(job_key(record.id), data, px=_ms(expire)), DONE_CHANNEL, record.id
        )

    async def _write_and_notify(self, write: Callable[[Any], object], channel: str, message: str) -> None:
        """One write, then its notification: in one round trip on a server, one after the other on a cluster (a
        cluster pipeline carries no ``PUBLISH``; the cluster still delivers it to subscribers on every node)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            write(pipe)
            if not self.cluster:
                pipe.publish(channel, message)
            await pipe.execute()
        if self.cluster:
            await self.redis.publish(channel, message)

    async def wait_job(self, job_id: str, timeout: float) -> JobRecord | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._ensure_listener()
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, []).append(fut)
            try:
                record = await self.get_job(job_id)
                remaining = deadline - loop.time()
                if record is None or not record.pending or remaining <= 0:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, min(remaining, self.poll_fallback))
            finally:
                waiting = self._waiters.get(job_id, [])
                if fut in waiting:
                    waiting.remove(fut)
                if not waiting:
                    self._waiters.pop(job_id, None)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="grenier-job-done-listener")

    async def _listen(self) -> None:
        """One subscription per process: it wakes the waiters of each job that ends, and drops from the hot tier
        each entry that any process writes or deletes."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(DONE_CHANNEL, ENTRY_CHANNEL)
                    if self.hot is not None:  # what changed while we were not listening is unknown: forget it all
                        self.hot.clear()
                    self._subscribed = True
                    while True:
                        msg = await pubsub.get_message(timeout=5.0)
                        if not msg or msg.get("type") != "message":
                            continue
                        if msg["channel"] == ENTRY_CHANNEL.encode():
                            if self.hot is not None:
                                self.hot.drop(msg["data"].decode())
                        else:
                            self._wake(msg["data"].decode())
            except asyncio.CancelledError:
                self._subscribed = False
                raise
            except Exception as exc:  # the poll fallback keeps waiters going meanwhile
                self._subscribed = False
                # An outage is logged once, by the breaker; only a failure of the subscription alone is news.
                outage = self.breaker is not None and self.breaker.is_open
                log.log(logging.DEBUG if outage else logging.WARNING, "job notification listener failed (%s)", exc)
                await asyncio.sleep(LISTENER_RETRY)

    def _wake(self, job_id: str) -> None:
        for fut in self._waiters.get(job_id, []):
            if not fut.done():
                fut.set_result(None)

    async def incr(self, counts: Mapping[Count, int]) -> None:
        if not counts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, n in counts.items():
                pipe.incrby(self._counter_key(name, self._shard), n)
            await pipe.execute()

    def _counter_key(self, name: Count, shard: int) -> str:
        return stat_key(name) if self.counter_shards == 1 else f"{stat_key(name)}:{shard}"

    async def counters(self) -> dict[str, int]:
        # One GET per key, pipelined: an MGET over keys of different slots is refused by a cluster.
        shards = range(self.counter_shards)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in COUNTERS:
                for shard in shards:
                    pipe.get(self._counter_key(name, shard))
            raw = iter(await pipe.execute())
        return {n: sum(int(next(raw) or 0) for _ in shards) for n in COUNTERS}

    async def remember_job(self, summary: Mapping[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:  # one key: one slot, on a cluster too
            pipe.lpush(RECENT_JOBS_KEY, json.dumps(dict(summary)))
            pipe.ltrim(RECENT_JOBS_KEY, 0, RECENT_JOBS - 1)
            await pipe.execute()

    async def recent_jobs(self) -> list[dict[str, Any]]:
        return [d for raw in await self.redis.lrange(RECENT_JOBS_KEY, 0, RECENT_JOBS - 1) if (d := _decode_note(raw))]

    async def usage(self) -> dict[str, int]:
        if self.cluster:  # one INFO per primary, summed
            per_node = await self.redis.info("memory", target_nodes=aioredis.RedisCluster.PRIMARIES)
            nodes = list(per_node.values())
            infos = nodes if all(isinstance(i, dict) for i in nodes) else [per_node]  # one primary: its own INFO
        else:
            infos = [await self.redis.info("memory")]
        hot = self.hot
        return {
            "bytes": sum(int(i.get("used_memory", 0)) for i in infos),
            "max_bytes": sum(int(i.get("maxmemory", 0)) for i in infos),
            "keys": int(await self.redis.dbsize()),
            **({"hot_bytes": hot.bytes, "hot_hits": hot.hits, "hot_misses": hot.misses} if hot is not None else {}),
        }

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            while not task.done():  # redis-py can swallow a cancel while the subscription connects: insist
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.reads is not None:
            await self.reads.close()
        if self.breaker is not None:
            await self.breaker.close()
        await self.redis.aclose()
