"""Shared counters: counted in memory on the hot path, flushed to the store with INCRBY about once a second.

A hit therefore stays one store command, and every process still sees the same totals (at most a flush late; the
stats endpoint flushes its own process first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from core import telemetry
from core.counts import Count
from core.store import Store

log = logging.getLogger(__name__)


class Counters:
    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self.pending: Counter[Count] = Counter()
        self._task: asyncio.Task[None] | None = None

    def add(self, name: Count, n: int = 1) -> None:
        self.pending[name] += n

    async def flush(self) -> None:
        if not self.pending:
            return
        counts, self.pending = dict(self.pending), Counter()
        try:
            await self.store.incr(counts)
        except Exception as exc:  # keep the counts for the next flush rather than lose them
            self.pending.update(counts)
            telemetry.REDIS_ERRORS.labels("counters").inc()
            log.warning("could not flush counters: %s", exc)

    async def totals(self) -> dict[str, int]:
        await self.flush()
        return await self.store.counters()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grenier-counters")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
