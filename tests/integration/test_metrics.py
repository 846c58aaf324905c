"""``/_grenier/metrics`` and the workers' metrics port, scraped from real processes after real traffic: the names are
there and the values moved (Redis mode with two server processes and a worker; embedded mode)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.ports import CLOSED_PORT, free_port
from tests.support.processes import GrenierProcess, Launcher
from tests.support.redis import RedisServer

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {lab[label] for n, lab, _ in samples if n == name and label in lab}


def status_of(url: str) -> int:
    """GET on a new connection each time (so several server processes share the requests); the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def fetch_until_hit(serve: GrenierProcess, target: str) -> None:
    api = serve.url + "/fetch?url=" + urllib.parse.quote(target, safe="")
    assert status_of(api) == 202
    wait_until(lambda: status_of(api) == 200, 20, f"{target} to be served")


def traffic(serve: GrenierProcess, origin: Origin, hits: int) -> tuple[str, int]:
    """A miss, ``hits`` hits (each on its own connection), health probes, and a job whose origin refuses; the URL
    fetched and its body's size."""
    body = b"x" * 1000
    target = origin.route(body=body)
    fetch_until_hit(serve, target)  # the miss and the polls that end in the response
    api = serve.url + "/fetch?url=" + urllib.parse.quote(target, safe="")
    for _ in range(hits):
        assert status_of(api) == 200
    for _ in range(3):
        assert status_of(serve.url + "/_grenier/health") == 200
    refused = f"http://127.0.0.1:{CLOSED_PORT}/nothing-listens"
    assert status_of(serve.url + "/fetch?url=" + urllib.parse.quote(refused, safe="")) == 202
    return target, len(body)


def check_shared(samples: Samples, hits: int, size: int) -> None:
    """What every server's scrape shows after :func:`traffic`."""
    assert total(samples, "grenier_responses_total", cache="hit") >= hits
    assert total(samples, "grenier_served_bytes_total", cache="hit") >= hits * size
    assert total(samples, "grenier_response_seconds_count", cache="hit") >= hits
    # Probes and scrapes are grenier's own endpoints, never counted as a bypass.
    assert total(samples, "grenier_responses_total", cache="control") >= 3
    assert total(samples, "grenier_responses_total", cache="bypass") == 0
    assert total(samples, "grenier_store_objects") > 0
    assert total(samples, "grenier_store_bytes") > 0
    assert any(n == "grenier_queue_depth" for n, _, _ in samples)


def test_server_processes_and_worker_export_every_metric_after_traffic(
    launcher: Launcher, fresh_redis: Callable[[], str], origin: Origin
) -> None:
    port = free_port()
    settings: Mapping[str, str] = {"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_UPSTREAM_RETRIES": "0"}
    worker = launcher.worker({**settings, "GRENIER_JOBS_METRICS_PORT": str(port)}, processes=1)
    serve = launcher.serve({**settings, "GRENIER_SERVER_PROCESSES": "2"})
    hits = 6
    _, size = traffic(serve, origin, hits)

    def jobs_ended() -> Samples | None:
        got = scrape(f"http://127.0.0.1:{port}/metrics")
        return got if total(got, "grenier_jobs_total") >= 2 else None

    work = wait_until(jobs_ended, 20, "both jobs counted by the worker")
    assert total(work, "grenier_jobs_total", outcome="stored") == 1
    assert total(work, "grenier_jobs_total", outcome="failed", kind="connect") == 1
    assert total(work, "grenier_job_seconds_count", outcome="stored") == 1
    assert total(work, "grenier_upstream_seconds_count", host="127.0.0.1") >= 1
    assert total(work, "grenier_upstream_errors_total", host="127.0.0.1", kind="connect") >= 1
    # process_* of the worker process (not only of its supervisor), labelled by pid.
    assert len(labelled(work, "process_resident_memory_bytes", "pid")) == 2

    # Two server processes: whichever answers the scrape reports both (each hit counted once, in one of them).
    scraped = scrape(serve.url + "/_grenier/metrics")
    check_shared(scraped, hits, size)
    # ... and the poll that found it stored, unless that poll joined the job as it ended (then it is its miss).
    assert hits <= total(scraped, "grenier_responses_total", cache="hit") <= hits + 1
    assert len(labelled(scraped, "process_resident_memory_bytes", "pid")) == 2
    assert total(scraped, "grenier_hot_tier_lookups_total", result="hit") >= 1
    assert total(scraped, "grenier_hot_tier_lookups_total", result="miss") >= 1
    again = scrape(serve.url + "/_grenier/metrics")
    assert total(again, "grenier_responses_total", cache="control") > total(
        scraped, "grenier_responses_total", cache="control"
    )
    assert worker.alive()


def test_embedded_server_exports_its_jobs_upstream_and_process(launcher: Launcher, origin: Origin) -> None:
    serve = launcher.serve({"GRENIER_UPSTREAM_RETRIES": "0"})
    hits = 3
    _, size = traffic(serve, origin, hits)

    def failed_counted() -> Samples | None:
        got = scrape(serve.url + "/_grenier/metrics")
        return got if total(got, "grenier_jobs_total", outcome="failed") else None

    scraped = wait_until(failed_counted, 20, "the refused fetch's job to be counted")
    check_shared(scraped, hits, size)
    assert total(scraped, "grenier_jobs_total", outcome="stored") == 1
    assert total(scraped, "grenier_jobs_total", outcome="failed", kind="connect") >= 1
    assert total(scraped, "grenier_upstream_seconds_count", host="127.0.0.1") >= 1
    assert total(scraped, "grenier_upstream_errors_total", kind="connect") >= 1
    assert total(scraped, "process_resident_memory_bytes") > 0
    assert total(scraped, "process_cpu_seconds_total") > 0


def test_redis_errors_are_counted_and_the_scrape_still_answers(
    launcher: Launcher, origin: Origin, tmp_path: Path
) -> None:
    own = RedisServer(tmp_path, name="metrics-redis")
    try:
        serve = launcher.serve({"GRENIER_REDIS_URL": own.url, "GRENIER_CACHE_HOT_BYTES": "0"})
        target = origin.route()
        own.kill()
        api = serve.url + "/fetch?url=" + urllib.parse.quote(target, safe="")
        assert status_of(api) == 503
        scraped = scrape(serve.url + "/_grenier/metrics")
        assert total(scraped, "grenier_redis_errors_total", where="server") >= 1
        assert total(scraped, "grenier_responses_total", status="5xx") >= 1
    finally:
        own.kill()
