"""The metrics' labels as pure rules: what a response is counted as, and origin host labels kept bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core import telemetry
from core.telemetry import OTHER, HostLabels
from proxy.dashboard import hit_ratio
from proxy.metrics import Metrics, label_of

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


@pytest.mark.parametrize(
    ("cache_status", "raw_path", "label"),
    [
        # RFC 9211 §2, as proxy.cache_status writes it: a hit with its remaining freshness; a negative ttl: stale.
        ("grenier;hit;ttl=30", "/fetch?url=x", "hit"),
        ("grenier;hit;ttl=-5", "/fetch?url=x", "stale-hit"),
        # RFC 9211 §2.2: fwd names why the request went forward.
        ("grenier;fwd=uri-miss", "/fetch?url=x", "uri-miss"),
        ("grenier;fwd=stale", "/_grenier/fetch?url=x", "stale"),
        ("grenier;fwd=uri-miss", "/_grenier/jobs/abc", "uri-miss"),
        # No Cache-Status from a handler: grenier's own endpoints are control, never bypass.
        (None, "/_grenier/health", "control"),
        (None, "/_grenier/ready", "control"),
        (None, "/_grenier/metrics", "control"),
        (None, "/_grenier/", "control"),
        (None, "/_grenier", "control"),
        (None, "/_grenier/cache?url=x", "control"),
        # ... while anything else without one was not a cache matter at all.
        (None, "/", "bypass"),
        (None, "/fetch?url=x", "bypass"),
        (None, "/_grenier/fetch?url=x", "bypass"),
        (None, "/_grenier/jobs/abc", "bypass"),
    ],
)
def test_response_label(cache_status: str | None, raw_path: str, label: str) -> None:
    assert label_of(cache_status, raw_path) == label


def test_host_labels_name_the_first_hosts_then_other() -> None:
    labels = HostLabels(limit=3)
    assert [labels(h) for h in ("a.test", "b.test", "a.test", "c.test")] == ["a.test", "b.test", "a.test", "c.test"]
    assert labels("d.test") == OTHER
    assert labels("e.test") == OTHER
    assert labels("b.test") == "b.test"  # a named host keeps its name
    assert {labels(f"h{n}.test") for n in range(1000)} == {OTHER}


@pytest.mark.parametrize(
    ("hits", "misses", "ratio"),
    [(0, 0, None), (1, 1, 0.5), (3, 1, 0.75), (0, 4, 0.0), (2, 1, 0.6667)],
)
def test_hit_ratio(hits: int, misses: int, ratio: float | None) -> None:
    assert hit_ratio(hits, misses) == ratio


def _exported() -> set[str]:
    """Every series name grenier's registries can produce (a counter's ``_total``, a histogram's ``_bucket``...)."""
    names: set[str] = set()
    for registry in (telemetry.REGISTRY, Metrics().registry):
        for family in registry.collect():
            kind = family.type
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(kind, ("",))
            names.update(family.name + s for s in suffixes)
    return names


def test_the_grafana_dashboard_queries_only_metrics_grenier_exports() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(?:grenier|process)_[a-z_]+", expr)}
    exported = _exported() | {"process_resident_memory_bytes", "process_cpu_seconds_total"}
    assert used - exported == set()
    # Every metric the issue asks for has a panel.
    for wanted in (
        "grenier_responses_total",
        "grenier_served_bytes_total",
        "grenier_upstream_seconds_bucket",
        "grenier_upstream_errors_total",
        "grenier_queue_depth",
        "grenier_job_seconds_bucket",
        "grenier_jobs_total",
        "grenier_store_objects",
        "grenier_store_bytes",
        "grenier_hot_tier_lookups_total",
        "grenier_redis_errors_total",
    ):
        assert wanted in used, wanted
