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
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .counts import Count
from .outcome import Fetched
from .records import Cached, JobRecord, StoredResponse, VaryIndex
from .store import (
    CHUNK_PREFIX,
    COUNTERS,
    ENTRY_PREFIX,
    JOB_PREFIX,
    chunk_key,
    entry_key,
    inflight_key,
    job_key,
    stat_key,
)

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
        if key.startswith((ENTRY_PREFIX, CHUNK_PREFIX)):
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

    async def delete_entry(self, key: str) -> None:
        with self._lock:
            self._drop(entry_key(key))

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
