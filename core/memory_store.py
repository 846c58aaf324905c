"""The embedded store: process memory shared by the server's event loop and the in-process worker threads, bounded
by bytes.

Plain dicts under a ``threading.Lock`` held only for dict operations, so a worker thread never stalls the event
loop. Memory is bounded two ways, neither waiting for a read of the key concerned:

* **by bytes**: every value is counted (bodies, header fields, URLs, job records, claims, counters, plus a fixed
  per-key overhead), and when a write takes the total over ``max_bytes`` the least recently used evictable values
  go first (cache entries and ended job records; never a pending job, a claim or a counter);
* **by expiry**: a heap of expiry times is swept on every write and by a background thread every
  ``sweep_interval`` seconds, so an idle store gives its expired entries back too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from .counts import Count
from .invalidation import ByPrefix, ByTag, ByUrl, Everything, Target, soften
from .outcome import Fetched
from .records import Cached, JobRecord, StoredResponse, VaryIndex
from .store import (
    CHUNK_PREFIX,
    COUNTERS,
    ENTRY_PREFIX,
    JOB_PREFIX,
    NOTE_PREFIX,
    RECENT_JOBS,
    chunk_key,
    entry_key,
    inflight_key,
    job_key,
    note_key,
    stat_key,
    untagged,
    url_hash_of,
)
from .targets import cache_key

#: Bytes counted per key beyond its payload: the dict slot, the tuple, the key string, the objects' headers. An
#: estimate that errs high, so the real footprint stays under what is counted.
KEY_OVERHEAD = 400


def _response_bytes(r: StoredResponse) -> int:
    return len(r.body) + len(r.url) + sum(len(k) + len(v) + 64 for k, v in r.headers) + 200


def size_of(value: Any) -> int:
    """What a stored value costs, payload and bookkeeping."""
    if isinstance(value, StoredResponse):
        return KEY_OVERHEAD + _response_bytes(value)
    if isinstance(value, VaryIndex):
        return KEY_OVERHEAD + sum(len(f) for f in value.fields) + len(value.generation)
    if isinstance(value, JobRecord):
        held = value.outcome.response if isinstance(value.outcome, Fetched) else None
        return KEY_OVERHEAD + len(value.url) + 300 + (_response_bytes(held) if held is not None else 0)
    if isinstance(value, str | bytes):
        return KEY_OVERHEAD + len(value)
    return KEY_OVERHEAD


@dataclass
class _Item:
    value: Any
    expires: float | None
    size: int


class MemoryStore:
    """See the module docstring; ``clock`` is monotonic seconds (tests pass their own)."""

    def __init__(
        self, max_bytes: int, clock: Callable[[], float] = time.monotonic, sweep_interval: float = 1.0
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Item] = OrderedDict()
        self._expiries: list[tuple[float, str]] = []
        self._bytes = 0
        self._evicted = 0
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        # The purge indexes (as in Redis, see core.store), kept only for entries held: dropping an entry unlists it.
        self._urls: dict[str, str] = {}
        """URL hash -> URL, for prefix bans."""
        self._variants: dict[str, set[str]] = {}
        self._tagged: dict[str, set[str]] = {}
        self._tags_of: dict[str, tuple[str, ...]] = {}
        """Entry key -> its tags, so that dropping it unlists it from each."""
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_JOBS)
        """Ended jobs' summaries, newest first (``remember_job``); not counted in the store's bytes: it is bounded."""
        self._closed = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_forever, args=(sweep_interval,), name="grenier-store-sweep", daemon=True
        )
        self._sweeper.start()

    # --- bookkeeping (call with the lock held) -------------------------------------------------------------------

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._bytes -= item.size
            if key.startswith(ENTRY_PREFIX):
                self._unlist(untagged(key, ENTRY_PREFIX))

    def _list(self, key: str, entry: StoredResponse) -> None:
        """Index a response's entry by URL, variant and tags (see ``core.store``'s key scheme)."""
        url_hash = url_hash_of(key)
        self._urls[url_hash] = entry.url
        if key != url_hash:
            self._variants.setdefault(url_hash, set()).add(key)
        tags = entry.tags
        if tags:
            self._tags_of[key] = tags
            for tag in tags:
                self._tagged.setdefault(tag, set()).add(key)

    def _unlist(self, key: str) -> None:
        url_hash = url_hash_of(key)
        if key == url_hash:
            self._urls.pop(url_hash, None)
        elif (variants := self._variants.get(url_hash)) is not None:
            variants.discard(key)
            if not variants:
                del self._variants[url_hash]
        for tag in self._tags_of.pop(key, ()):
            tagged = self._tagged.get(tag)
            if tagged is not None:
                tagged.discard(key)
                if not tagged:
                    del self._tagged[tag]

    def _live(self, key: str, now: float) -> _Item | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item.expires is not None and item.expires <= now:
            self._drop(key)
            return None
        return item

    def _sweep(self, now: float) -> None:
        """Forget every value whose expiry has passed."""
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            self._live(key, now)
        if len(heap) > 2 * len(self._data) + 1024:  # rows of overwritten keys pile up: rebuild from the live ones
            self._expiries = [(i.expires, k) for k, i in self._data.items() if i.expires is not None]
            heapq.heapify(self._expiries)

    @staticmethod
    def _evictable(key: str, value: Any) -> bool:
        if key.startswith((ENTRY_PREFIX, CHUNK_PREFIX, NOTE_PREFIX)):
            return True
        return key.startswith(JOB_PREFIX) and isinstance(value, JobRecord) and not value.pending

    def _evict(self) -> None:
        """Least recently used evictable values first, until the total fits."""
        skipped: list[str] = []
        while self._bytes > self.max_bytes and self._data:
            key, item = next(iter(self._data.items()))
            if self._evictable(key, item.value):
                self._drop(key)
                self._evicted += 1
            else:  # pinned (a pending job, a claim, a counter): keep it, look further
                self._data.move_to_end(key)
                skipped.append(key)
                if len(skipped) >= len(self._data):
                    break
        # the pinned values keep their place relative to each other; their recency does not matter

    def _get(self, key: str) -> Any:
        with self._lock:
            item = self._live(key, self._clock())
            if item is None:
                return None
            self._data.move_to_end(key)
            return item.value

    def _set(self, key: str, value: Any, expire: float | None) -> None:
        now = self._clock()
        expires = None if expire is None else now + expire
        with self._lock:
            self._drop(key)
            item = _Item(value, expires, size_of(value))
            self._data[key] = item
            self._bytes += item.size
            if expires is not None:
                heapq.heappush(self._expiries, (expires, key))
            self._sweep(now)
            if self._bytes > self.max_bytes:
                self._evict()

    def _sweep_forever(self, interval: float) -> None:
        while not self._closed.wait(interval):
            with self._lock:
                self._sweep(self._clock())

    # --- the Store protocol --------------------------------------------------------------------------------------

    async def get_entry(self, key: str) -> Cached | None:
        value: Cached | None = self._get(entry_key(key))
        return value

    def peek_entry(self, key: str) -> Cached | None:
        value: Cached | None = self._get(entry_key(key))  # everything here is in memory
        return value

    def peek_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        return [self._get(chunk_key(name, i)) for i in indexes]

    async def put_entry(self, key: str, entry: Cached, expire: float) -> None:
        self._set(entry_key(key), entry, expire)
        if isinstance(entry, StoredResponse):
            with self._lock:
                if entry_key(key) in self._data:  # not evicted the moment it was written
                    self._list(key, entry)

    async def delete_entry(self, key: str) -> None:
        with self._lock:
            self._drop(entry_key(key))

    def _groups(self, target: Target) -> list[list[str]]:
        """The entry keys ``target`` names, grouped by what a purge counts (call with the lock held)."""

        def url_group(url_hash: str) -> list[str]:
            return [url_hash, *sorted(self._variants.get(url_hash, ()))]

        match target:
            case ByUrl(url=url):
                return [url_group(cache_key(url))]
            case ByPrefix(prefix=prefix):
                return [url_group(h) for h, url in self._urls.items() if url.startswith(prefix)]
            case ByTag(tag=tag):
                return [[k] for k in sorted(self._tagged.get(tag, ()))]
            case Everything():
                by_url: dict[str, list[str]] = {}
                for k in self._data:
                    if k.startswith(ENTRY_PREFIX):
                        name = untagged(k, ENTRY_PREFIX)
                        by_url.setdefault(url_hash_of(name), []).append(name)
                return list(by_url.values())
            case _:
                assert_never(target)

    async def purge(self, target: Target, *, soft: bool = False) -> int:
        count = 0
        with self._lock:
            now = self._clock()
            for group in self._groups(target):
                affected = False
                for key in group:
                    item = self._live(entry_key(key), now)
                    if item is None:
                        continue
                    affected = True
                    if not soft:
                        self._drop(entry_key(key))
                    elif isinstance(item.value, StoredResponse):
                        item.value = soften(item.value)
                count += affected
        return count

    async def variants(self, url_hash: str) -> list[str]:
        with self._lock:
            return sorted(self._variants.get(url_hash, ()))

    async def put_note(self, url_hash: str, note: Mapping[str, Any], expire: float) -> None:
        self._set(note_key(url_hash), copy.deepcopy(dict(note)), expire)

    async def get_note(self, url_hash: str) -> dict[str, Any] | None:
        note: dict[str, Any] | None = self._get(note_key(url_hash))
        return copy.deepcopy(note) if note is not None else None

    async def put_chunk(self, name: str, index: int, data: bytes, expire: float) -> None:
        self._set(chunk_key(name, index), data, expire)

    async def get_chunks(self, name: str, indexes: Sequence[int], body_size: int) -> list[bytes | None]:
        return [self._get(chunk_key(name, i)) for i in indexes]

    async def keep_chunks(self, name: str, count: int, expire: float) -> None:
        now = self._clock()
        with self._lock:
            for i in range(count):
                key = chunk_key(name, i)
                item = self._live(key, now)
                if item is not None:
                    item.expires = now + expire
                    heapq.heappush(self._expiries, (item.expires, key))

    async def get_job(self, job_id: str) -> JobRecord | None:
        value: JobRecord | None = self._get(job_key(job_id))
        return value

    async def put_job(self, record: JobRecord, expire: float) -> None:
        self._set(job_key(record.id), record, expire)

    async def delete_job(self, job_id: str) -> None:
        with self._lock:
            self._drop(job_key(job_id))

    async def claim(self, url_hash: str, job_id: str, expire: float) -> str | None:
        key = inflight_key(url_hash)
        with self._lock:
            item = self._live(key, self._clock())
            if item is not None:
                prior: str = item.value
                return prior
        self._set(key, job_id, expire)
        return None

    async def take_over(self, url_hash: str, job_id: str, expire: float) -> None:
        self._set(inflight_key(url_hash), job_id, expire)

    async def release(self, url_hash: str, job_id: str, linger: float) -> None:
        key = inflight_key(url_hash)
        with self._lock:
            item = self._live(key, self._clock())
            if item is None or item.value != job_id:
                return
        self._set(key, job_id, linger)

    async def finish_job(self, record: JobRecord, expire: float) -> None:
        self._set(job_key(record.id), record, expire)
        with self._lock:
            waiters = self._waiters.pop(record.id, [])
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait_job(self, job_id: str, timeout: float) -> JobRecord | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.setdefault(job_id, []).append((loop, fut))
        try:
            record = await self.get_job(job_id)
            if record is None or not record.pending:
                return record
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout)
            return await self.get_job(job_id)
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id, [])
                if (loop, fut) in waiting:
                    waiting.remove((loop, fut))
                if not waiting:
                    self._waiters.pop(job_id, None)

    async def incr(self, counts: Mapping[Count, int]) -> None:
        with self._lock:
            for name, n in counts.items():
                key = stat_key(name)
                item = self._data.get(key)
                if item is None:
                    item = self._data[key] = _Item(0, None, size_of(0))
                    self._bytes += item.size
                item.value += n

    async def counters(self) -> dict[str, int]:
        with self._lock:
            return {n: int(i.value) if (i := self._data.get(stat_key(n))) else 0 for n in COUNTERS}

    async def remember_job(self, summary: Mapping[str, Any]) -> None:
        with self._lock:
            self._recent.appendleft(copy.deepcopy(dict(summary)))

    async def recent_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._recent))

    async def usage(self) -> dict[str, int]:
        with self._lock:
            return {
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "keys": len(self._data),
                "evicted": self._evicted,
            }

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._closed.set()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
