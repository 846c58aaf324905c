"""The Prometheus metrics every grenier process shares (server and workers alike), and how a process exposes them.

Why one module in ``core``: an upstream fetch, a job's end and a Redis error are counted the same way whether a
server relays, an embedded worker thread fetches, or a ``grenier worker`` process does; ``proxy`` and ``jobs`` both
import these objects and never each other.

**Several processes.** A supervisor (``grenier serve`` with ``server.processes`` > 1, and ``grenier worker`` always)
gives its children one fresh directory in ``PROMETHEUS_MULTIPROC_DIR`` (:func:`share_with_children`) before it spawns
them: prometheus_client's multiprocess mode, where each child writes its values into memory-mapped files there and any
one scrape adds every process's up (:class:`Exposition`). Chosen over one HTTP port per worker process because a
scrape then sees the whole group at once: a server child answering ``/_grenier/metrics`` reports every server
process, whichever the kernel handed the connection to, and the worker supervisor's one port
(``jobs.metrics_port``) reports every worker process, including those that died and were replaced (their counters
do not go back). The per-process ``process_*`` series, which the files do not carry, are read from ``/proc`` for
each live pid that wrote a file, labelled by that ``pid``.

**Bounded labels.** Origin hosts are labels (:class:`HostLabels`): the first :data:`MAX_HOST_LABELS` distinct hosts
a process sees keep their name, every later one is ``other``; failure kinds and outcomes come from closed sets.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: Origin hosts named in labels per process; later ones are counted as ``other``.
MAX_HOST_LABELS = 20
OTHER = "other"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry()
"""The shared metrics below (a server's own response metrics live in its app's registry, ``proxy/metrics.py``)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

UPSTREAM_SECONDS = Histogram(
    "grenier_upstream_seconds",
    "Time from sending a request upstream to its status and header fields, by origin host (capped).",
    ["host"],
    registry=REGISTRY,
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "grenier_upstream_errors",
    "Upstream requests that got no usable response, by origin host (capped) and kind (timeout, connect, ...).",
    ["host", "kind"],
    registry=REGISTRY,
)
JOBS = Counter(
    "grenier_jobs",
    "Fetch jobs ended, by outcome (stored, revalidated, not-stored, stale-if-error, failed) and failure kind.",
    ["outcome", "kind"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "grenier_job_seconds",
    "How long a fetch job ran, from its start on a worker to its end, by outcome.",
    ["outcome"],
    registry=REGISTRY,
    buckets=_LATENCY_BUCKETS,
)
REDIS_ERRORS = Counter(
    "grenier_redis_errors",
    "Redis errors met, by where (server: a request; job; counters: a flush; broker: a worker's consumer).",
    ["where"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "grenier_queue_depth",
    "Fetch jobs waiting for a worker, as last read by a server process.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
STORE_OBJECTS = Gauge(
    "grenier_store_objects",
    "Objects the store holds (embedded: entries and records; Redis: keys in its database), as last read.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
STORE_BYTES = Gauge(
    "grenier_store_bytes",
    "Bytes the store holds (embedded: every held byte; Redis: its used memory), as last read.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
HOT_TIER_LOOKUPS = Counter(
    "grenier_hot_tier_lookups",
    "Hot-tier lookups in Redis mode, by result (hit, miss): the hit ratio is hit / (hit + miss).",
    ["result"],
    registry=REGISTRY,
)


class HostLabels:
    """The label for an origin host: its name for the first ``limit`` distinct hosts seen, then ``other``, so a
    client that asks for a million hosts makes at most ``limit + 1`` series."""

    def __init__(self, limit: int = MAX_HOST_LABELS) -> None:
        self.limit = limit
        self._named: set[str] = set()
        self._lock = threading.Lock()  # embedded workers count from their threads' loop

    def __call__(self, host: str) -> str:
        if host in self._named:
            return host
        with self._lock:
            if len(self._named) < self.limit:
                self._named.add(host)
                return host
        return OTHER


HOSTS = HostLabels()


def share_with_children() -> str:
    """For a supervisor, before it spawns: a fresh multiprocess directory its children inherit (removed when the
    supervisor exits), so their metrics add up in one scrape."""
    path = tempfile.mkdtemp(prefix="grenier-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_gone(pid: int) -> None:
    """A child died: its live gauges stop counting (its counters stay, as counters must)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


_PID_IN_FILE = re.compile(r"_(\d+)\.db$")


class PidProcessCollector(Collector):
    """``process_*`` for every live process that wrote into a multiprocess directory, each labelled ``pid``."""

    def __init__(self, path: str, extra_pids: Iterable[int] = ()) -> None:
        self.path = path
        self.extra = tuple(extra_pids)

    def pids(self) -> list[int]:
        found = {int(m.group(1)) for f in Path(self.path).glob("*.db") if (m := _PID_IN_FILE.search(f.name))}
        return sorted(p for p in found.union(self.extra) if Path(f"/proc/{p}").exists())

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self.pids():
            for family in ProcessCollector(pid=lambda p=pid: p, registry=None).collect():  # type: ignore[misc]
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()


class Exposition(Collector):
    """What one scrape reports: every process of the group (multiprocess mode), or this process's registries and
    its ``process_*`` series."""

    def __init__(self, *registries: CollectorRegistry, own_pid: bool = False) -> None:
        self.registries = (*registries, REGISTRY)
        self.own_pid = own_pid

    def collect(self) -> Iterator[Metric]:
        path = multiprocess_dir()
        if path is None:
            for registry in self.registries:
                yield from registry.collect()
            yield from ProcessCollector(registry=None).collect()
            return
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
        yield from merged.collect()
        yield from PidProcessCollector(path, (os.getpid(),) if self.own_pid else ()).collect()


def serve_group(host: str, port: int) -> None:
    """The worker supervisor's scrape endpoint: every worker process's metrics, on ``host:port`` (a daemon thread;
    any path answers)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(Exposition(own_pid=True))
    start_http_server(port, addr=host, registry=registry)
