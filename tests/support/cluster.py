"""A Redis Cluster of the tests' own: three primaries (``redis-server --cluster-enabled yes``) on free ports, joined
by ``redis-cli --cluster create``, each stopped by its own PID.

Each node's cluster bus gets a free port of its own (``--cluster-port``): the default, port + 10000, may be taken or
out of range for a port the system handed out.
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


class RedisCluster:
    def __init__(self, tmp: Path, primaries: int = 3, timeout: float = 30.0) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed: `apt-get install redis-server` (make test does this as root)")
        tmp.mkdir(parents=True, exist_ok=True)
        self.nodes: list[RedisServer] = []
        try:
            for i in range(primaries):
                args = (
                    *("--cluster-enabled", "yes", "--cluster-config-file", str(tmp / f"nodes-{i}.conf")),
                    *("--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"),
                )
                self.nodes.append(RedisServer(tmp, args=args, name=f"node-{i}"))
            created = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if created.returncode != 0:
                pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            wait_until(self._ok, timeout, "every cluster node to report cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """A seed node's URL (any node: the client discovers the others)."""
        return self.nodes[0].url

    def _ok(self) -> bool:
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

    def flush(self) -> None:
        """Empty every node (each holds its own slots)."""
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
