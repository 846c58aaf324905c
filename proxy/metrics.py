"""Prometheus metrics of ``grenier serve``, at ``GET /_grenier/metrics`` (an admin endpoint).

Counts, times and sizes every response by what the cache did, read from its ``Cache-Status``, so the metric and the
field a client sees can never disagree; grenier's own endpoints (health probes, scrapes, the operator's page, purges)
are ``control``, never ``bypass``. A scrape also reads the queue's depth and what the store holds, and reports the
metrics every process shares (:mod:`core.telemetry`: upstream, jobs, Redis errors, the hot tier, ``process_*``),
across every server process when several share the port. Shared totals across processes stay in
``/_grenier/stats``.

Per response the cost is what it was: one label lookup per (outcome, status class) pair, memoised, then a count, a
time and a byte count on the series found; the lean hit path (``proxy/lean.py``) pays the same through
:meth:`Metrics.observe`.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from core import telemetry

from .services import SERVICES

log = logging.getLogger(__name__)

CONTROL = "control"
CONTROL_PREFIX = "/_grenier"
#: Endpoints under ``/_grenier`` that serve cached content: their responses carry their own ``Cache-Status``.
_CONTENT_PATHS = ("/_grenier/fetch", "/_grenier/jobs/")


class Metrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self.registry = CollectorRegistry()
        self.responses = Counter(
            "grenier_responses",
            "Responses by what the cache did (Cache-Status: hit, or the fwd reason; control: grenier's own"
            " endpoints) and status class.",
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
        self.bytes = Counter(
            "grenier_served_bytes",
            "Body bytes served, by what the cache did.",
            ["cache"],
            registry=self.registry,
        )

    def observe(self, cache_status: str, status: int, seconds: float, size: int = 0) -> None:
        self.observe_outcome(outcome_of(cache_status), status, seconds, size)

    def observe_outcome(self, outcome: str, status: int, seconds: float, size: int) -> None:
        key = (outcome, status // 100)
        series = self._series.get(key)
        if series is None:  # the label lookup costs more than the count: do it once per pair
            series = self._series[key] = (
                self.responses.labels(outcome, f"{status // 100}xx"),
                self.seconds.labels(outcome),
                self.bytes.labels(outcome),
            )
        series[0].inc()
        series[1].observe(seconds)
        if size:
            series[2].inc(size)


METRICS: web.AppKey[Metrics] = web.AppKey("grenier_metrics", Metrics)


@functools.lru_cache(maxsize=4096)
def outcome_of(cache_status: str) -> str:
    """``hit``, ``stale-hit`` or the ``fwd`` reason of a ``Cache-Status`` value written by grenier."""
    params = dict(p.partition("=")[::2] for p in cache_status.split(";")[1:])
    if "hit" in params:
        return "stale-hit" if params.get("ttl", "0").startswith("-") else "hit"
    return params.get("fwd", "none").strip('"') or "none"


def label_of(cache_status: str | None, raw_path: str) -> str:
    """The ``cache`` label of a response: what its ``Cache-Status`` says, else ``control`` for grenier's own
    endpoints (``/_grenier/...``: probes, scrapes, the operator's page, purges) and ``bypass`` for anything else."""
    if cache_status is not None:
        return outcome_of(cache_status)
    if raw_path.startswith(CONTROL_PREFIX) and not raw_path.startswith(_CONTENT_PATHS):
        return CONTROL
    return "bypass"


def _size(response: web.StreamResponse) -> int:
    """Body bytes: what a streamed response wrote, else what a prepared one will (its ``Content-Length``)."""
    return response.body_length or response.content_length or 0


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    request.app[METRICS].observe_outcome(
        label_of(response.headers.get("Cache-Status"), request.raw_path),
        response.status,
        time.perf_counter() - started,
        _size(response),
    )
    return response


async def refresh(request: web.Request) -> None:
    """Read what only a scrape needs: the queue's depth and what the store holds (a failure leaves the last value:
    a scrape still answers while Redis is down)."""
    svc = request.app[SERVICES]
    try:
        telemetry.QUEUE_DEPTH.set(await svc.queue.pending())
        usage = await svc.store.usage()
        telemetry.STORE_OBJECTS.set(usage.get("keys", 0))
        telemetry.STORE_BYTES.set(usage.get("bytes", 0))
    except Exception as exc:
        log.warning("metrics: could not read the queue or the store: %s", exc)


async def endpoint(request: web.Request) -> web.Response:
    request.app[SERVICES].access.check_admin(request)
    await refresh(request)
    return web.Response(
        body=generate_latest(telemetry.Exposition(request.app[METRICS].registry)),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
