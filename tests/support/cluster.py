"""A Redis Cluster of the tests' own: three primaries, each with a replica (``redis-server --cluster-enabled yes``
x 6) on free ports, joined by ``redis-cli --cluster create ... --cluster-replicas 1``, each stopped by its own PID.

Each node's cluster bus gets a free port of its own (``--cluster-port``): the default, port + 10000, may be taken or
out of range for a port the system handed out. ``--cluster-node-timeout 2000``: a primary unreachable for 2 s is
failed over to its replica, so a test that kills one waits seconds, not the default 15 s.
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

#: Milliseconds a node may be unreachable before the others mark it failed (its replica then takes over).
NODE_TIMEOUT_MS = 2000


class RedisCluster:
    def __init__(self, tmp: Path, primaries: int = 3, replicas: int = 1, timeout: float = 30.0) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed: `apt-get install redis-server` (make test does this as root)")
        tmp.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.nodes: list[RedisServer] = []
        try:
            for i in range(primaries * (1 + replicas)):
                args = (
                    *("--cluster-enabled", "yes", "--cluster-config-file", str(tmp / f"nodes-{i}.conf")),
                    *("--cluster-port", str(free_port()), "--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                )
                self.nodes.append(RedisServer(tmp, args=args, name=f"node-{i}"))
            created = subprocess.run(
                [
                    *(cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)),
                    *("--cluster-replicas", str(replicas), "--cluster-yes"),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if created.returncode != 0:
                pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            self.wait_whole()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """A seed node's URL (any live node: the client discovers the others)."""
        return next(n for n in self.nodes if n.proc.poll() is None).url

    def _role(self, node: RedisServer) -> str:
        with redis.Redis(port=node.port, socket_timeout=2) as client:
            return str(client.info("replication")["role"])

    def primaries(self) -> list[RedisServer]:
        """The live nodes that are primaries now (a failover changes which)."""
        return [n for n in self.nodes if n.proc.poll() is None and self._role(n) == "master"]

    def slots_of(self, node: RedisServer) -> list[tuple[int, int]]:
        """The slot ranges ``node`` holds as a primary now (empty for a replica)."""
        with redis.Redis(port=node.port, socket_timeout=2) as client:
            myid = client.execute_command("CLUSTER", "MYID")
            myid = myid.decode() if isinstance(myid, bytes) else str(myid)
            ranges = []
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                node_id = primary[2].decode() if isinstance(primary[2], bytes) else str(primary[2])
                if node_id == myid:
                    ranges.append((int(start), int(end)))
            return ranges

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """A live replica of ``primary``."""
        for node in self.nodes:
            if node.proc.poll() is None and node is not primary:
                with redis.Redis(port=node.port, socket_timeout=2) as client:
                    replication = client.info("replication")
                if replication["role"] == "slave" and int(replication["master_port"]) == primary.port:
                    return node
        pytest.fail(f"no live replica of the primary on port {primary.port}")

    def _whole(self) -> bool:
        """Every node up, reporting ``cluster_state:ok``, and every replica's link to its primary up."""
        for node in self.nodes:
            if node.proc.poll() is not None:
                return False
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
        return True

    def wait_whole(self) -> None:
        wait_until(self._whole, self.timeout, "every cluster node up, cluster_state:ok, every replica linked")

    def revive(self, node: RedisServer) -> None:
        """Start a killed node again (same port and nodes file): it rejoins as a replica of the primary that took
        its slots, so the cluster has its full shape for the next test."""
        node.start()
        self.wait_whole()

    def flush(self) -> None:
        """Empty every primary (each holds its own slots; the replicas follow)."""
        for node in self.primaries():
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
