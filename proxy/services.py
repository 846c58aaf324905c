"""What a request handler can reach: one typed object under one ``web.AppKey``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from core.problems import Unavailable
from core.queue import JobQueue
from core.settings import Settings
from core.store import Store
from core.upstream import Upstream

from .access import AccessRules
from .dispatch import Dispatcher
from .miss_rate import MissRateLimiter
from .stats import Counters


@dataclass
class Services:
    settings: Settings
    store: Store
    queue: JobQueue
    upstream: Upstream
    """The relay's sessions and the target check (the same ``Upstream`` type the jobs fetch through)."""
    dispatcher: Dispatcher
    counters: Counters
    access: AccessRules
    miss_rate: MissRateLimiter

    @property
    def pseudonym(self) -> str:
        """This cache's name: in Via, CDN-Loop and Cache-Status."""
        return self.settings.server.pseudonym

    @property
    def wait_default(self) -> float:
        return self.settings.cache.wait_default if self.settings.cache.miss == "wait" else 0.0

    async def check_backlog(self) -> None:
        """503 + Retry-After when more jobs are queued than ``jobs.max_pending`` (backpressure)."""
        pending = await self.queue.pending()
        limit = self.settings.jobs.max_pending
        if pending >= limit:
            raise Unavailable(f"{pending} fetch jobs are queued (jobs.max_pending is {limit}); retry later")


SERVICES: web.AppKey[Services] = web.AppKey("grenier_services", Services)
