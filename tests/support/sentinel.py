"""A Sentinel-managed Redis of the tests' own: one primary, one replica and three sentinels, on free ports.

Everything runs ``redis-server`` (``--sentinel`` for the sentinels), writes under one temporary directory and is
stopped by its own PID. A sentinel notices a dead primary after ``DOWN_AFTER_MS``; ``failover()`` asks one to fail
over at once, as an operator would.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from .polling import wait_until
from .ports import free_port
from .redis import RedisServer

SERVICE = "grenier-primary"
#: How long a primary must be unreachable before the sentinels call it down.
DOWN_AFTER_MS = 1000


class SentinelSet:
    def __init__(self, tmp: Path, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `apt-get install redis-server` (make test does this as root)")
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.primary = RedisServer(tmp, name="primary")
        self.replica: RedisServer | None = None
        try:
            self.replica = RedisServer(tmp, args=("--replicaof", "127.0.0.1", str(self.primary.port)), name="replica")
            for i, port in enumerate(self.sentinel_ports):
                conf = tmp / f"sentinel-{i}.conf"  # a sentinel rewrites its own file: one each
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {tmp}\nlogfile {tmp / f'sentinel-{i}.log'}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {SERVICE} 10000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                self.sentinels.append(
                    subprocess.Popen(
                        [binary, str(conf), "--sentinel"],
                        cwd=tmp,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            wait_until(self._settled, timeout, "the sentinels to see the replica and each other")
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> list[str]:
        """The sentinels as ``host:port``, the form ``redis.sentinels`` takes."""
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def ask(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index], socket_timeout=2, decode_responses=True)

    def _settled(self) -> bool:
        try:
            for i in range(len(self.sentinel_ports)):
                with self.ask(i) as s:
                    replicas = s.sentinel_slaves(SERVICE)
                    if not any(r.get("master-link-status") == "ok" for r in replicas):
                        return False
                    if len(s.sentinel_sentinels(SERVICE)) < 2:
                        return False
        except redis.RedisError:
            return False
        return True

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        with self.ask() as s:
            _, port = s.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote the replica now, without waiting for the primary to fail."""
        with self.ask() as s:
            s.sentinel_failover(SERVICE)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.sentinels:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.replica is not None:
            self.replica.stop()
        self.primary.stop()
