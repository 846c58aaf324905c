"""Helpers for the integration tests: real ``grenier`` subprocesses, throwaway Redis servers, bounded waits.

Every wait here is a bounded poll loop that fails with the process log attached, never a bare sleep; every process
started here is stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import http_sf
import pytest
import redis
from multidict import CIMultiDictProxy

PROBLEM = "application/problem+json"
JOB_LOCATION_PREFIX = "/_grenier/jobs/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: Ports on 127.0.0.1 the tests' grenier processes may fetch from: the SSRF guard refuses loopback and unknown
#: ports by default, and the test origins live there (fixtures add their ports).
LOOPBACK_PORTS: list[int] = []


#: A port nothing listens on (bound, then released), allowed by the guard so that fetching it is refused by the
#: operating system, not by grenier: the "connection refused" path.
CLOSED_PORT = free_port()
LOOPBACK_PORTS.append(CLOSED_PORT)


def base_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The test runner's environment without any GRENIER_* variable, the loopback opt-in, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_")}
    env["GRENIER_SECURITY_ALLOW_NETWORKS"] = "127.0.0.0/8"
    env["GRENIER_SECURITY_ALLOW_PORTS"] = ",".join(str(p) for p in LOOPBACK_PORTS)
    env.update(settings)
    return env


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


# -- processes ---------------------------------------------------------------------------------------------------


class GrenierProcess:
    """``python -m proxy serve|worker`` as a child of the test run, logging to a file."""

    def __init__(self, command: str, env: Mapping[str, str], log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.command = command
        self.port = int(env["GRENIER_SERVER_PORT"]) if "GRENIER_SERVER_PORT" in env else 0
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grenier", command, *args],
            env=dict(env),
            cwd=log_path.parent,  # no stray ./config.toml: the environment is the whole configuration
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail(self, why: str) -> None:
        pytest.fail(f"grenier {self.command} (pid {self.pid}): {why}\n--- log ---\n{self.log()[-6000:]}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll ``/_grenier/ready`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(self.url + "/_grenier/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.fail(f"not ready after {timeout} s")
            time.sleep(0.05)

    def wait_log(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``text`` appears ``count`` times in the log (e.g. a worker process saying it consumes)."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} while waiting for {text!r}")
            if time.monotonic() > deadline:
                self.fail(f"{text!r} did not appear {count} time(s) within {timeout} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM this process (by PID), then SIGKILL it if it lingers; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Launcher:
    """Starts ``grenier`` processes and stops every one of them at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[GrenierProcess] = []

    def _start(self, command: str, settings: Mapping[str, str], args: tuple[str, ...]) -> GrenierProcess:
        log_path = self.tmp / f"{command}-{len(self.procs)}.log"
        proc = GrenierProcess(command, base_env(settings), log_path, args)
        self.procs.append(proc)
        return proc

    def serve(self, settings: Mapping[str, str] | None = None, ready: bool = True) -> GrenierProcess:
        env = {"GRENIER_SERVER_HOST": "127.0.0.1", "GRENIER_SERVER_PORT": str(free_port()), **(settings or {})}
        proc = self._start("serve", env, ())
        if ready:
            proc.wait_ready()
        return proc

    def worker(self, settings: Mapping[str, str], processes: int = 1, ready: bool = True) -> GrenierProcess:
        proc = self._start("worker", settings, ("--processes", str(processes)))
        if ready:
            proc.wait_log("consuming", count=processes)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def children(pid: int) -> set[int]:
    """PIDs of the live children of ``pid`` (from /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return {p for p in found if alive(p)}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_children(supervisor_pid: int) -> set[int]:
    """The Dramatiq worker processes a ``grenier worker`` supervisor spawned (not multiprocessing's helpers)."""
    return {p for p in children(supervisor_pid) if "spawn_main" in cmdline(p)}


# -- a throwaway Redis -------------------------------------------------------------------------------------------


class ThrowawayRedis:
    """A redis-server of our own on a free port, for a test that must kill it."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `apt-get install redis-server`")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: self._pings(client), 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# -- HTTP --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def cache_status(self) -> dict[str, Any]:
        """The parameters of grenier's member of ``Cache-Status`` (RFC 9211), parsed as a structured field."""
        raw = self.headers.get("Cache-Status")
        assert raw is not None, f"no Cache-Status on a {self.status} reply"
        members = http_sf.parse(raw.encode(), tltype="list")
        assert len(members) == 1, raw
        name, params = members[0]
        assert str(name) == "grenier", raw
        return {k: (str(v) if isinstance(v, http_sf.Token) else v) for k, v in params.items()}

    @property
    def location(self) -> str:
        loc = self.headers.get("Location", "")
        assert loc.startswith(JOB_LOCATION_PREFIX), f"Location {loc!r}"
        return loc

    def problem(self, status: int) -> dict[str, Any]:
        """Assert this is an RFC 9457 problem with ``status`` and a detail; return its document."""
        assert self.status == status, (self.status, self.body[:500])
        assert self.headers.get("Content-Type", "").startswith(PROBLEM), self.headers.get("Content-Type")
        doc = self.json()
        assert doc["status"] == status
        assert isinstance(doc.get("detail"), str), doc
        assert doc["detail"], doc
        assert_no_traceback(self.body)
        return doc  # type: ignore[no-any-return]


def assert_no_traceback(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert 'File "' not in text


async def request(
    session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, str] | None = None, **kw: Any
) -> Reply:
    async with session.request(method, url, headers=headers, allow_redirects=False, **kw) as resp:
        return Reply(resp.status, resp.headers, await resp.read())


async def get(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Reply:
    return await request(session, "GET", url, headers, **kw)


def fetch_url(base: str, target: str) -> str:
    return f"{base}/fetch?url={urllib.request.quote(target, safe='')}"


async def poll_job(session: aiohttp.ClientSession, base: str, location: str, timeout: float = 20.0) -> Reply:
    """Poll a job until it answers something other than 202; every 202 on the way must be a proper status."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await get(session, base + location)
        if reply.status != 202:
            return reply
        assert reply.headers["Retry-After"] == "1"
        doc = reply.json()
        assert doc["state"] in {"queued", "running"}, doc
        if time.monotonic() > deadline:
            pytest.fail(f"job {location} still {doc['state']} after {timeout} s")
        await asyncio.sleep(0.05)


async def miss_then_done(session: aiohttp.ClientSession, base: str, target: str, timeout: float = 20.0) -> Reply:
    """Request ``target`` through ``/fetch`` (expecting a miss) and return the job's final answer."""
    first = await get(session, fetch_url(base, target))
    assert first.status == 202, (first.status, first.body[:300])
    return await poll_job(session, base, first.location, timeout)
