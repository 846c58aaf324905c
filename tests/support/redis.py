"""A real ``redis-server`` of the tests' own, on a free port, and emptied databases on it.

The session's shared server and the servers a test must kill (to see grenier notice that Redis is gone) are the same
class, so both start, wait and fail alike. The tests never touch a Redis they did not start.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from .polling import wait_until
from .ports import free_port


class RedisServer:
    """``redis-server`` on 127.0.0.1 and a free port, without persistence, logging to ``<tmp>/redis.log``; ready
    (answering PING) when the constructor returns. Stopped by its own PID."""

    def __init__(self, tmp: Path, timeout: float = 10.0, args: Sequence[str] = (), name: str = "redis") -> None:
        """``args``: further options (``--replicaof``...); ``name``: of its log file, when several share ``tmp``."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `apt-get install redis-server` (make test does this as root)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = tmp / f"{name}.log"
        self._tmp = tmp
        self._command = [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(tmp), "--logfile", str(self.log_path), "--dbfilename", f"{name}.rdb"),
            *args,
        ]
        self.start(timeout)

    def restart(self, timeout: float = 10.0) -> None:
        """SIGKILL, then a new, empty server on the same port (no persistence: everything it held is gone)."""
        self.kill()
        self.start(timeout)

    def start(self, timeout: float = 10.0) -> None:
        """Start it (again, after ``kill``: same port, same options), and wait until it answers PING."""
        self.proc = subprocess.Popen(self._command, cwd=self._tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: self._answers(client), timeout, f"redis-server on port {self.port}")
        except BaseException:
            self.kill()
            raise
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: Redis is gone at once, as if it had crashed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def fresh_database(server_url: str, number: int) -> str:
    """The URL of database ``number`` on the server at ``server_url``, emptied."""
    url = server_url.rsplit("/", 1)[0] + f"/{number}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
