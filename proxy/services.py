"""What a request handler can reach: one typed object under one ``web.AppKey``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from core.netguard import Guard
from core.policy import Limits
from core.problems import Unavailable
from core.settings import Settings
from core.store import Store
from core.targets import on_origin

from .access import AccessRules
from .dispatch import Dispatcher
from .limits import MissRateLimiter
from .stats import Counters


@dataclass
class Services:
    settings: Settings
    store: Store
    dispatcher: Dispatcher
    counters: Counters
    broker_ping: Callable[[], None]
    """Blocking check that the job broker answers (run in a thread)."""
    pending_jobs: Callable[[], int]
    """Blocking count of queued fetch jobs (run in a thread)."""
    guarded_session: aiohttp.ClientSession
    """For requests relayed straight to client-chosen targets (SSRF guard on every connection)."""
    origin_session: aiohttp.ClientSession
    """For requests relayed to the configured reverse-proxy origin, which the operator trusts."""
    access: AccessRules
    limiter: MissRateLimiter

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def guard(self) -> Guard:
        return self.settings.guard

    @property
    def pseudonym(self) -> str:
        return self.settings.server.pseudonym

    @property
    def wait_default(self) -> float:
        return self.settings.cache.wait_default if self.settings.cache.miss == "wait" else 0.0

    def trusted(self, url: str) -> bool:
        """Is ``url`` on the operator's reverse-proxy origin (exempt from the SSRF guard)?"""
        return on_origin(url, self.settings.upstream.origin)

    def session_for(self, url: str) -> aiohttp.ClientSession:
        return self.origin_session if self.trusted(url) else self.guarded_session

    async def check_backlog(self) -> None:
        """503 + Retry-After when more jobs are queued than ``jobs.max_pending`` (backpressure)."""
        pending = await asyncio.to_thread(self.pending_jobs)
        if pending >= self.settings.jobs.max_pending:
            problem = Unavailable(
                f"{pending} fetch jobs are queued (jobs.max_pending is {self.settings.jobs.max_pending}); retry later"
            )
            problem.headers["Retry-After"] = "5"
            raise problem


SERVICES: web.AppKey[Services] = web.AppKey("grenier_services", Services)
