"""Operating grenier, through real processes: access and job log lines parsed from their logs, trusted proxies,
credentials kept out of the logs, the worker's health check, and the shutdown grace."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp

from tests.support.http import build, fetch_target, fetch_url, get, parse_raw, poll_job, raw_roundtrip, request
from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.processes import ROOT, GrenierProcess, Launcher, grenier_env

#: The combined log format, then grenier's fields.
COMBINED = re.compile(
    r'(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<target>\S+) (?P<version>HTTP/\d\.\d)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r"cache=(?P<cache>\S+) upstream=(?P<upstream>\S+) duration=(?P<duration>\d+\.\d{3}) job=(?P<job>\S+)$"
)
WAIT = {"Prefer": "wait=10"}


#: The launcher's own readiness polls, left out of what the tests look at.
READY = "/_grenier/ready"


def access_lines(proc: GrenierProcess) -> list[dict[str, str]]:
    found = (m.groupdict() for line in proc.log().splitlines() if (m := COMBINED.match(line)))
    return [d for d in found if d["target"] != READY]


def json_lines(proc: GrenierProcess) -> list[dict[str, Any]]:
    found = (json.loads(line) for line in proc.log().splitlines() if line.startswith("{"))
    return [d for d in found if d.get("target") != READY]


def line_for(lines: list[dict[str, Any]], target: str, status: int) -> dict[str, Any]:
    """The one access line for ``target`` with ``status`` (waited for by the caller)."""
    found = [d for d in lines if unquote(d.get("target", "")) == unquote(target) and int(d["status"]) == status]
    assert len(found) == 1, lines
    return found[0]


def wait_access(proc: GrenierProcess, parse: Callable[[GrenierProcess], list[dict[str, Any]]], count: int) -> None:
    """Lines are written once the response is sent: the client may read it a moment before."""
    proc.wait_for(lambda: len([d for d in parse(proc) if "target" in d]) >= count, 10, f"{count} access lines")


async def test_combined_access_lines_say_what_the_cache_did(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    serve = launcher.serve({"GRENIER_LOG_LEVEL": "info"})
    target = origin.route(body=b"x" * 1234)
    url = fetch_url(serve.url, target)
    path = url.removeprefix(serve.url)
    miss = await get(http, url, {**WAIT, "Referer": "http://u:hunter2@ref.example/", "User-Agent": 'agent "7"'})
    assert miss.status == 200
    raw, closed = await asyncio.to_thread(raw_roundtrip, serve.port, build("GET", path))  # the hit
    assert closed
    assert parse_raw(raw).body == b"x" * 1234
    wait_access(serve, access_lines, 2)

    first, second = access_lines(serve)
    assert unquote(first["target"]) == unquote(second["target"]) == unquote(path)  # as the client's library spelled it
    assert first["client"] == "127.0.0.1"
    assert first["method"] == "GET"
    assert first["version"] == "HTTP/1.1"
    assert first["status"] == "200"
    assert int(first["bytes"]) > 1234  # the head, then the body
    assert first["cache"] == "uri-miss"
    assert first["upstream"] == "200"
    assert re.fullmatch(r"[0-9a-f-]{8,}", first["job"]), first
    assert first["referer"] == "http://u:***@ref.example/"
    assert first["agent"] == r"agent \x227\x22"
    assert (second["status"], second["cache"], second["job"]) == ("200", "hit", "-")
    assert int(second["bytes"]) == len(raw)  # every byte the client received
    assert float(second["duration"]) < 5
    time.strptime(first["time"], "%d/%b/%Y:%H:%M:%S +0000")
    assert "hunter2" not in serve.log()

    # The job's own line (embedded mode: the workers log into the server's log).
    job_line = re.search(rf"job {first['job']} stored: (\S+) status=200 bytes=1234 duration=\d+\.\d{{3}}", serve.log())
    assert job_line is not None, serve.log()[-3000:]
    assert job_line.group(1) == target


async def test_hits_on_the_lean_path_are_logged_too(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """A hit answered straight from the connection's bytes (``proxy/lean.py``) writes the same line as any other."""
    serve = launcher.serve({})
    target = origin.route(body=b"y" * 321)
    path = fetch_target(target)
    assert (await get(http, serve.url + path, WAIT)).status == 200
    lean_before = request(serve.port, "GET", "/_grenier/stats").json()["process"]["lean_hits"]
    head = build("GET", path, [("User-Agent", "lean/1"), ("Referer", "http://u:hunter2@r.example/")], close=False)
    raw, _ = await asyncio.to_thread(raw_roundtrip, serve.port, head, 1.0)
    assert parse_raw(raw).body == b"y" * 321
    assert request(serve.port, "GET", "/_grenier/stats").json()["process"]["lean_hits"] == lean_before + 1
    wait_access(serve, access_lines, 2)

    (lean,) = [d for d in access_lines(serve) if d["agent"] == "lean/1"]
    assert lean["target"] == path
    assert lean["client"] == "127.0.0.1"
    assert (lean["method"], lean["version"], lean["status"]) == ("GET", "HTTP/1.1", "200")
    assert int(lean["bytes"]) == len(raw)
    assert (lean["cache"], lean["upstream"], lean["job"]) == ("hit", "-", "-")
    assert lean["referer"] == "http://u:***@r.example/"
    assert "hunter2" not in serve.log()


async def test_json_lines_and_the_job_line(launcher: Launcher, origin: Origin, http: aiohttp.ClientSession) -> None:
    serve = launcher.serve({"GRENIER_LOG_FORMAT": "json"})
    target = origin.route(body=b"json body", cache_control="no-store")
    url = fetch_url(serve.url, target)
    accepted = await get(http, url)
    assert accepted.status == 202
    done = await poll_job(http, serve.url, accepted.location)
    assert done.status == 200
    serve.wait_for(
        lambda: any(d.get("target") == accepted.location and d["status"] == 200 for d in json_lines(serve)),
        10,
        "the access line of the poll that got the response",
    )

    lines = json_lines(serve)
    assert all(line["time"].endswith("Z") for line in lines)
    first = line_for(lines, url.removeprefix(serve.url), 202)
    job = accepted.location.rsplit("/", 1)[1]
    assert first["logger"] == "grenier.access"
    assert first["client"] == "127.0.0.1"
    assert first["cache"] == "uri-miss"
    assert first["upstream_status"] is None
    assert first["job"] == job
    assert first["bytes"] > len(accepted.body)
    assert isinstance(first["duration"], float)
    poll = line_for(lines, accepted.location, 200)
    assert poll["job"] == job
    assert poll["upstream_status"] == 200
    assert poll["bytes"] > len(b"json body")
    (job_line,) = [line for line in lines if line.get("logger") == "jobs.fetch_job" and "outcome" in line]
    assert job_line["job"] == job
    assert job_line["url"] == target
    assert job_line["outcome"] == "not-stored"
    assert job_line["reason"]
    assert job_line["upstream_status"] == 200
    assert job_line["bytes"] == len(b"json body")
    assert job_line["level"] == "info"


async def test_access_log_off_writes_no_line(launcher: Launcher, http: aiohttp.ClientSession) -> None:
    serve = launcher.serve({"GRENIER_LOG_ACCESS": "false"})
    on = launcher.serve({})
    for proc in (serve, on):
        assert (await get(http, proc.url + "/_grenier/health")).status == 200
    wait_access(on, access_lines, 1)
    assert access_lines(serve) == []
    assert "/_grenier/health" not in serve.log()


async def test_trusted_proxies_name_the_client_for_access_rules_miss_rate_and_logs(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """grenier behind a proxy on loopback: the clients are who the proxy says, each with its own miss bucket."""
    settings = {
        "GRENIER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8",
        "GRENIER_SERVER_ALLOW_CLIENTS": "203.0.113.0/24",
        "GRENIER_SERVER_MISS_RATE": "0.001",
        "GRENIER_SERVER_MISS_BURST": "1",
    }
    serve = launcher.serve(settings)
    alice = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}  # the left entry is the client's own, not believed
    bob = {"X-Forwarded-For": "203.0.113.8"}
    outsider = {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}

    assert (await get(http, fetch_url(serve.url, origin.route()), alice)).status == 202
    assert (await get(http, fetch_url(serve.url, origin.route()), alice)).status == 429  # alice's bucket is empty
    assert (await get(http, fetch_url(serve.url, origin.route()), bob)).status == 202  # bob's is not
    (await get(http, fetch_url(serve.url, origin.route()), outsider)).problem(403, "198.51.100.1")
    (await get(http, fetch_url(serve.url, origin.route()))).problem(403, "127.0.0.1")  # the proxy itself
    # The loopback rule for admin operations judges the client too: a proxy on this host makes nobody an admin.
    (await get(http, serve.url + "/_grenier/stats", bob)).problem(403, "loopback")
    assert (await get(http, serve.url + "/_grenier/stats")).status == 200
    wait_access(serve, access_lines, 7)
    clients = [(d["client"], d["status"]) for d in access_lines(serve) if d["target"].startswith("/fetch")]
    assert clients == [
        ("203.0.113.7", "202"),
        ("203.0.113.7", "429"),
        ("203.0.113.8", "202"),
        ("198.51.100.1", "403"),
        ("127.0.0.1", "403"),
    ]


async def test_without_trusted_proxies_forwarding_fields_are_ignored(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    serve = launcher.serve({"GRENIER_SERVER_ALLOW_CLIENTS": "203.0.113.0/24"})
    reply = await get(http, fetch_url(serve.url, origin.route()), {"X-Forwarded-For": "203.0.113.7"})
    reply.problem(403, "127.0.0.1")
    wait_access(serve, access_lines, 1)
    assert access_lines(serve)[0]["client"] == "127.0.0.1"


def test_redis_password_never_reaches_the_start_up_lines(launcher: Launcher, redis_server: str) -> None:
    """The session's Redis has no password, and accepts any: the processes start and say where their Redis is."""
    with_password = redis_server.replace("redis://", "redis://:hunter2@", 1)
    worker = launcher.worker({"GRENIER_REDIS_URL": with_password}, processes=1)
    serve = launcher.serve({"GRENIER_REDIS_URL": with_password})
    for proc in (worker, serve):
        assert "redis://:***@" in proc.log(), proc.log()
        assert "hunter2" not in proc.log()


def _check(settings: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grenier", "worker", "--check"],
        env={**grenier_env(settings), "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_worker_check(launcher: Launcher, fresh_redis: Callable[[], str], tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    settings = {"GRENIER_REDIS_URL": fresh_redis(), "GRENIER_JOBS_ALIVE_FILE": str(alive)}
    before = _check(settings, tmp_path)
    assert before.returncode == 1
    assert "no worker alive" in before.stderr

    worker = launcher.worker(settings, processes=1)
    ok = _check(settings, tmp_path)
    assert ok.returncode == 0, ok.stderr
    first = alive.stat().st_mtime
    wait_until(lambda: alive.stat().st_mtime > first, 5, "the worker to touch its alive file again")

    unreachable = _check({**settings, "GRENIER_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}, tmp_path)
    assert unreachable.returncode == 1
    assert "does not answer" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr

    assert worker.stop(timeout=30) == 0
    old = time.time() - 11
    os.utime(alive, (old, old))
    stale = _check(settings, tmp_path)
    assert stale.returncode == 1
    assert "s old" in stale.stderr


async def test_sigterm_lets_a_waiting_request_finish_beyond_ten_seconds(
    launcher: Launcher, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """cache.max_wait is 30 s: a request waiting for its job when SIGTERM arrives gets its answer 12 s later."""
    serve = launcher.serve({"GRENIER_UPSTREAM_READ_TIMEOUT": "20"})
    target = origin.route(delays=(12.0,), body=b"worth the wait")
    request = asyncio.create_task(get(http, fetch_url(serve.url, target), {"Prefer": "wait=25"}))
    await asyncio.to_thread(wait_until, lambda: origin.hits(target) == 1, 10, "the job to reach the origin")
    serve.proc.send_signal(signal.SIGTERM)
    reply = await request
    assert reply.status == 200
    assert reply.body == b"worth the wait"
    assert await asyncio.to_thread(serve.proc.wait, 30) == 0
