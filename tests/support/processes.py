"""Real ``grenier serve`` and ``grenier worker`` processes, children of the test run.

The environment is the whole configuration: a process gets the runner's environment without any ``GRENIER_*``
variable (a stray one would change a setting, or be warned about) plus the test's settings, and runs in its own
directory so no stray ``./config.toml`` is read. Each logs to a file; every wait is a bounded poll that fails with that
log attached, and every process is stopped by its own PID (SIGTERM, then SIGKILL if it lingers), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from .ports import free_port

ROOT = Path(__file__).resolve().parents[2]
#: How often a starting process is checked: starts are on the path of most fixtures, and a check is cheap (a refused
#: connection or a short log read), so a finer poll than elsewhere shortens every start.
START_INTERVAL = 0.01


def grenier_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment without any ``GRENIER_*`` (nor a parser choice), one server process, plus
    ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_") and k != "AIOHTTP_NO_EXTENSIONS"}
    # One server process unless a test asks for more: a test's server is one process to watch and to stop.
    return {**env, "PYTHONPATH": str(ROOT), "GRENIER_SERVER_PROCESSES": "1", **settings}


def allow_loopback(*ports: int) -> dict[str, str]:
    """Settings that let grenier fetch from 127.0.0.1 on ``ports``: the SSRF guard refuses loopback and unlisted
    ports by default, and the test origins live there."""
    return {
        "GRENIER_SECURITY_ALLOW_NETWORKS": "127.0.0.0/8",
        "GRENIER_SECURITY_ALLOW_PORTS": ",".join(str(p) for p in ports),
    }


class GrenierProcess:
    """``python -m grenier <command> <args>`` with ``settings``, logging to ``log_path``."""

    def __init__(self, command: str, settings: Mapping[str, str], log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.command = command
        self.settings = dict(settings)
        self.port = int(settings.get("GRENIER_SERVER_PORT", 0))
        self.log_path = log_path
        self._terminated = False
        with log_path.open("wb") as log:  # the child has its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "grenier", command, *args],
                env=grenier_env(settings),
                cwd=log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail(self, why: str) -> None:
        pytest.fail(f"grenier {self.command} (pid {self.pid}): {why}\n--- log ---\n{self.log()[-6000:]}")

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> None:
        """Poll ``check`` until it is truthy; fail with the log if the process exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"no {what} within {timeout} s")
            time.sleep(START_INTERVAL)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_grenier/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``/_grenier/ready`` until it answers 200."""
        self.wait_for(self._ready, timeout, "200 from /_grenier/ready")

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears ``count`` times in the log (e.g. a worker process saying it consumes)."""
        self.wait_for(lambda: self.log().count(text) >= count, timeout, f"{text!r} {count} time(s) in the log")

    def terminate(self) -> None:
        """Send SIGTERM to this process (by PID), once, without waiting."""
        if self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM this process (by PID), then SIGKILL it if it lingers; returns the exit code."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class Launcher:
    """Starts ``grenier`` processes logging into ``tmp`` and stops every one of them at the end (``stop_all``, or
    leaving its ``with`` block). ``defaults`` are settings every process gets unless its own override them."""

    def __init__(self, tmp: Path, defaults: Mapping[str, str] | None = None) -> None:
        self.tmp = tmp
        self.defaults = dict(defaults or {})
        self.procs: list[GrenierProcess] = []

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()

    def _start(self, command: str, settings: Mapping[str, str], args: tuple[str, ...]) -> GrenierProcess:
        log_path = self.tmp / f"{command}-{len(self.procs)}.log"
        proc = GrenierProcess(command, {**self.defaults, **settings}, log_path, args)
        self.procs.append(proc)
        return proc

    def serve(
        self, settings: Mapping[str, str] | None = None, ready: bool = True, port: int | None = None
    ) -> GrenierProcess:
        """``grenier serve`` on 127.0.0.1 and ``port`` (a free one by default), waited for until ready."""
        own = {"GRENIER_SERVER_HOST": "127.0.0.1", "GRENIER_SERVER_PORT": str(port or free_port())}
        proc = self._start("serve", {**own, **(settings or {})}, ())
        if ready:
            proc.wait_ready()
        return proc

    def worker(
        self, settings: Mapping[str, str], processes: int = 1, ready: bool = True, args: tuple[str, ...] = ()
    ) -> GrenierProcess:
        """``grenier worker --processes N``, waited for until each worker process consumes."""
        proc = self._start("worker", settings, ("--processes", str(processes), *args))
        if ready:
            proc.wait_log("consuming", count=processes)
        return proc

    def stop_all(self) -> None:
        """SIGTERM every process, newest first, then wait for each in turn: they shut down side by side."""
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            proc.stop()


# -- processes seen from /proc -------------------------------------------------------------------------------------


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


#: The repository's root: what a ``python -m grenier`` started by a test imports.
REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], cwd: Path, extra: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m grenier <args>`` to its end, in ``cwd``, without the test runner's ``GRENIER_*`` variables (plus
    ``extra``); its output captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_")}
    env.update(PYTHONPATH=str(REPO), **(extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "grenier", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
