"""What a request handler can reach: one typed object under one ``web.AppKey``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .config import Settings
from .dispatch import Dispatcher
from .policy import Limits
from .stats import Counters
from .store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    dispatcher: Dispatcher
    counters: Counters
    broker_ping: Callable[[], None]
    """Blocking check that the job broker answers (run in a thread)."""
    session: aiohttp.ClientSession
    """For requests relayed straight upstream (unsafe methods, uncacheable ranges)."""

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def wait_default(self) -> float:
        return self.settings.cache.wait_default if self.settings.cache.miss == "wait" else 0.0


SERVICES: web.AppKey[Services] = web.AppKey("grenier_services", Services)
