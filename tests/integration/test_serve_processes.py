"""``grenier serve`` with several server processes (``server.processes``): one port, one process per connection,
a dead process replaced, SIGTERM a clean stop, and embedded mode held to one process.

Which process answered is read from ``/_grenier/health`` (its pid) over a new connection each time, since the kernel
picks a listening socket per connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.polling import wait_until
from tests.support.ports import free_port
from tests.support.processes import GrenierProcess, Launcher, alive, children


def answering_pid(base: str) -> int:
    """The pid of the server process that answers ``/_grenier/health`` on a new connection; any failure to answer
    fails the test."""
    with urllib.request.urlopen(base + "/_grenier/health", timeout=5) as resp:  # one connection per request
        assert resp.status == 200
        doc = json.loads(resp.read())
    assert doc["status"] == "ok", doc
    return int(doc["pid"])


def answering_until(base: str, done: Callable[[set[int]], bool], timeout: float, what: str) -> set[int]:
    """Ask over and over which process answers until the pids seen satisfy ``done``; every request must be
    answered."""
    seen: set[int] = set()

    def check() -> bool:
        seen.add(answering_pid(base))
        return done(seen)

    wait_until(check, timeout, what)
    return seen


def two_servers(launcher: Launcher, redis_url: str) -> tuple[GrenierProcess, set[int]]:
    """``grenier serve`` with ``server.processes = 2`` in Redis mode, and the pids of its two server processes once
    each has answered."""
    supervisor = launcher.serve({"GRENIER_REDIS_URL": redis_url, "GRENIER_SERVER_PROCESSES": "2"})
    pids = answering_until(supervisor.url, lambda seen: len(seen) == 2, 30, "two server processes to answer")
    return supervisor, pids


def test_two_server_processes_answer_on_one_port(launcher: Launcher, fresh_redis: Callable[[], str]) -> None:
    supervisor, pids = two_servers(launcher, fresh_redis())
    assert supervisor.pid not in pids
    assert pids <= children(supervisor.pid)
    log = supervisor.log()
    assert "2 server processes" in log
    for pid in pids:  # each process logs its own start-up line, naming the event loop it runs
        assert f"loop: uvloop · pid {pid}" in log, log


def test_killed_server_process_is_replaced_while_the_port_keeps_answering(
    launcher: Launcher, fresh_redis: Callable[[], str]
) -> None:
    supervisor, first = two_servers(launcher, fresh_redis())
    victim, survivor = sorted(first)
    os.kill(victim, signal.SIGKILL)
    # The supervisor reaps a child only once all its threads are gone, and with them its listening socket; a
    # connection the kernel handed that socket before then is reset, which is the kill's doing, not the port's.
    supervisor.wait_log(f"(pid {victim}) exited with -9")

    # From here every connection is answered: by the survivor until the replacement listens, then by either.
    seen = answering_until(supervisor.url, lambda seen: bool(seen - first), 30, "a replacement server process")
    (replacement,) = seen - first
    assert victim not in seen
    assert not alive(victim)
    assert replacement in children(supervisor.pid)
    assert supervisor.proc.poll() is None
    answering_until(supervisor.url, lambda seen: seen == {survivor, replacement}, 30, "both live processes")


def test_sigterm_stops_every_server_process_and_exits_0(launcher: Launcher, fresh_redis: Callable[[], str]) -> None:
    supervisor, pids = two_servers(launcher, fresh_redis())

    assert supervisor.stop(timeout=60) == 0, supervisor.log()[-3000:]
    # The supervisor waits for its children before it exits: none may outlive it.
    assert not any(alive(pid) for pid in pids), [pid for pid in pids if alive(pid)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", supervisor.port), timeout=5).close()
    log = supervisor.log()
    assert "stopping 2 server processes" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "settings"),
    [
        pytest.param(("--processes", "2"), {}, id="flag"),
        pytest.param((), {"GRENIER_SERVER_PROCESSES": "2"}, id="setting"),
    ],
)
def test_embedded_mode_refuses_more_than_one_process(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_")}
    env.update(settings, GRENIER_SERVER_PORT=str(free_port()))  # no redis.url: embedded
    done = subprocess.run(
        [sys.executable, "-m", "grenier", "serve", *args],
        env=env,
        cwd=tmp_path,  # no stray ./config.toml
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "configuration error: server.processes" in done.stderr
    assert "embedded mode" in done.stderr
    assert "Traceback" not in done.stderr


def test_embedded_mode_by_default_runs_one_process_and_says_why(launcher: Launcher) -> None:
    # no redis.url, server.processes at its default, 0: one per core (the launcher pins 1 unless told otherwise)
    serve = launcher.serve({"GRENIER_SERVER_PROCESSES": "0"})
    assert answering_pid(serve.url) == serve.pid  # the process itself serves: no supervisor, no children
    assert "embedded mode runs one server process" in serve.log()
