"""What the benchmark reads besides hit rates: miss-to-ready latency and Redis memory per stored entry."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from bench.processes import PHASE_LIMIT
from core.store import CHUNK_PREFIX, tagged

#: grenier's Redis keys for stored responses (see core/store.py's key scheme).
ENTRY_PATTERN = "grenier:entry:*"
#: An entry's metadata, URL included, comes before its body: this many leading bytes are enough to find the URL.
ENTRY_HEAD_BYTES = 8192


@dataclass(frozen=True)
class Latency:
    samples: Sequence[float]  # seconds, one per answered URL
    errors: int

    def pct(self, p: float) -> float:
        """The ``p``-th percentile in milliseconds (nearest rank); NaN when nothing was answered."""
        if not self.samples:
            return math.nan
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


async def latency(urls: Sequence[str], size: int, headers: Mapping[str, str] | None = None) -> Latency:
    """Time to the whole answer for each URL, one after another; only a 200 with ``size`` bytes counts."""
    samples: list[float] = []
    errors = 0
    async with aiohttp.ClientSession() as session, asyncio.timeout(len(urls) * 11 + PHASE_LIMIT):
        for url in urls:
            start = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                got = await resp.read()
                elapsed = time.perf_counter() - start
            if resp.status == 200 and len(got) == size:
                samples.append(elapsed)
            else:
                errors += 1
    return Latency(samples, errors)


async def entry_memory(redis_url: str, target: str) -> int | None:
    """``MEMORY USAGE`` (bytes) of the grenier entry that stores ``target``, found by SCAN, plus that of the chunks
    its body is stored in when it is too large to be inline (the entry names them: ``"body_ref": [name, ...]``);
    ``None`` if no entry stores ``target``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        wanted = f'"{target}"'.encode()  # the URL as a JSON string in the entry's metadata
        async for key in client.scan_iter(match=ENTRY_PATTERN, count=1000):
            head = await client.getrange(key, 0, ENTRY_HEAD_BYTES - 1)
            if isinstance(head, bytes) and wanted in head:
                usage = int(await client.memory_usage(key, samples=0) or 0)
                ref = re.search(rb'"body_ref":\["([^"]+)"', head)
                if ref is not None:
                    pattern = f"{CHUNK_PREFIX}{tagged(ref[1].decode())}:*"  # the store's key scheme (hash-tagged)
                    async for chunk in client.scan_iter(match=pattern, count=1000):
                        usage += int(await client.memory_usage(chunk, samples=0) or 0)
                return usage
        return None
    finally:
        await client.aclose()


async def key_memory(redis_url: str, key: str) -> int | None:
    """``MEMORY USAGE`` (bytes) of one key."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        usage: int | None = await client.memory_usage(key, samples=0)
        return usage
    finally:
        await client.aclose()
