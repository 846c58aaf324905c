"""The engines the scaling run needs beside the lab's one Redis: a Redis Cluster and a RabbitMQ, each started on
127.0.0.1 and free ports in the run's temp dir and stopped by its own id (RabbitMQ by its own process group).

Both are the tests' engines in a benchmark's clothes (``tests/support/cluster.py``, ``tests/support/rabbitmq.py``):
the benchmark does not import the tests, and fails with ``SystemExit`` rather than a test failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import redis

from bench.processes import HOST, PHASE_LIMIT, Proc, Processes, free_port


def _wait(check: Callable[[], bool], what: str, procs: list[Proc]) -> None:
    deadline = time.monotonic() + PHASE_LIMIT
    while not check():
        for proc in procs:
            proc.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {PHASE_LIMIT:g} s")
        time.sleep(0.1)


@dataclass
class Cluster:
    """A Redis Cluster of ``primaries`` nodes without replicas (a throughput run measures the primaries' work)."""

    nodes: list[Proc]
    ports: list[int]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}/0"

    def ok(self) -> bool:
        """Every node says ``cluster_state:ok``, knows every other node, and tells the same slot map: right after
        ``--cluster create`` their views differ for a moment, and a run starts on a settled cluster."""
        maps = set()
        for port in self.ports:
            try:
                with redis.Redis(host=HOST, port=port, socket_timeout=2) as client:
                    info = client.cluster("info")
                    if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != len(self.ports):
                        return False
                    maps.add(repr(sorted(client.execute_command("CLUSTER", "SLOTS"))))
            except redis.ConnectionError:
                return False
        return len(maps) == 1

    def flush(self) -> None:
        for port in self.ports:
            with redis.Redis(host=HOST, port=port, socket_timeout=2) as client:
                client.flushall()


def start_cluster(procs: Processes, workdir: Path, on_server: list[str], primaries: int = 3) -> Cluster:
    """``on_server``: the pinning prefix (``taskset -c ...``) every server-side process gets, or nothing."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise SystemExit("redis-server and redis-cli are needed for the cluster (apt-get install redis-server)")
    nodes, ports = [], []
    for i in range(primaries):
        port = free_port()
        argv = [
            *(binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"),
            *("--dir", str(workdir), "--dbfilename", f"cluster-{i}.rdb"),
            *("--cluster-enabled", "yes", "--cluster-config-file", str(workdir / f"cluster-nodes-{i}.conf")),
            *("--cluster-port", str(free_port())),
        ]
        nodes.append(procs.start(f"cluster-{i}", [*on_server, *argv]))
        ports.append(port)
    cluster = Cluster(nodes, ports)

    def answers() -> bool:
        for port in ports:
            try:
                with redis.Redis(host=HOST, port=port, socket_timeout=1) as client:
                    client.ping()
            except redis.ConnectionError:
                return False
        return True

    _wait(answers, "every cluster node answering PING", nodes)
    created = subprocess.run(
        [cli, "--cluster", "create", *(f"{HOST}:{p}" for p in ports), "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=PHASE_LIMIT,
        check=False,
    )
    if created.returncode != 0:
        raise SystemExit(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
    _wait(cluster.ok, "cluster_state:ok on every node", nodes)
    return cluster


#: Debian's script behind /usr/sbin/rabbitmq-server (which would switch to the rabbitmq user when run as root).
RABBIT_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@dataclass
class Rabbit:
    server: Proc
    epmd: Proc
    url: str


def start_rabbitmq(procs: Processes, workdir: Path, on_server: list[str]) -> Rabbit:
    """``rabbitmq-server`` with everything it writes under ``workdir/rabbitmq``, its own node name, ports and epmd."""
    binary = str(RABBIT_SCRIPT) if RABBIT_SCRIPT.exists() else shutil.which("rabbitmq-server")
    if binary is None:
        raise SystemExit("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    home = workdir / "rabbitmq"
    home.mkdir()
    port, epmd_port = free_port(), free_port()
    (home / "rabbitmq-env.conf").write_text("")
    (home / "rabbitmq.conf").write_text("loopback_users.guest = true\nlisteners.ssl = none\n")
    (home / "enabled_plugins").write_text("[].\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
        "HOME": str(home),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_NODENAME": f"grenier-bench-{uuid.uuid4().hex[:8]}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": HOST,
    }
    epmd = procs.start("epmd", [shutil.which("epmd") or "epmd", "-port", str(epmd_port), "-address", HOST], env)
    server = procs.start("rabbitmq", [*on_server, binary], env)
    url = f"amqp://guest:guest@{HOST}:{port}/%2F"

    def answers() -> bool:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            params = pika.URLParameters(url)
            params.socket_timeout = 2
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
        except (OSError, pika.exceptions.AMQPError):
            return False
        return True

    _wait(answers, f"rabbitmq-server accepting AMQP on port {port}", [server])
    return Rabbit(server, epmd, url)


def stop_rabbitmq(procs: Processes, rabbit: Rabbit) -> None:
    """SIGTERM to its own process group (the script, beam and their helpers), SIGKILL if it lingers; then epmd."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rabbit.server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        rabbit.server.popen.wait(20)
    with contextlib.suppress(ProcessLookupError):  # beam may outlive the script that started it
        os.killpg(rabbit.server.pid, signal.SIGKILL)
    procs.stop(rabbit.server)
    procs.stop(rabbit.epmd)
