"""Prometheus metrics for one ``grenier serve`` process, at ``GET /_grenier/metrics`` (an admin endpoint).

Counts and times every response by what the cache did, read from its ``Cache-Status``, so the metric and the field
a client sees can never disagree. Shared totals across processes stay in ``/_grenier/stats``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from .services import SERVICES


class Metrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        self.responses = Counter(
            "grenier_responses",
            "Responses by what the cache did (Cache-Status: hit, or the fwd reason) and status class.",
            ["cache", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "grenier_response_seconds",
            "Time to answer, by what the cache did.",
            ["cache"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def observe(self, cache_status: str, status: int, seconds: float) -> None:
        outcome = outcome_of(cache_status)
        key = (outcome, status // 100)
        series = self._series.get(key)
        if series is None:  # the label lookup costs more than the count: do it once per pair
            series = self._series[key] = (
                self.responses.labels(outcome, f"{status // 100}xx"),
                self.seconds.labels(outcome),
            )
        series[0].inc()
        series[1].observe(seconds)


METRICS: web.AppKey[Metrics] = web.AppKey("grenier_metrics", Metrics)


@functools.lru_cache(maxsize=4096)
def outcome_of(cache_status: str) -> str:
    """``hit``, ``stale-hit`` or the ``fwd`` reason of a ``Cache-Status`` value written by grenier."""
    params = dict(p.partition("=")[::2] for p in cache_status.split(";")[1:])
    if "hit" in params:
        return "stale-hit" if params.get("ttl", "0").startswith("-") else "hit"
    return params.get("fwd", "none").strip('"') or "none"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    request.app[METRICS].observe(
        response.headers.get("Cache-Status", "grenier;fwd=bypass"), response.status, time.perf_counter() - started
    )
    return response


async def endpoint(request: web.Request) -> web.Response:
    request.app[SERVICES].access.check_admin(request)
    return web.Response(
        body=generate_latest(request.app[METRICS].registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
