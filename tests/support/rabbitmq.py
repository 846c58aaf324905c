"""A real ``rabbitmq-server`` of the tests' own, on free ports, started once per test session (it takes seconds).

Everything it writes (database, logs, Erlang cookie) lives in a temporary directory; it listens on 127.0.0.1 only,
its node name and ports are its own (AMQP, Erlang distribution, and an ``epmd`` started here on a free port), and no
plugin is enabled (no management port). Debian's ``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user
when run as root, which would drop this environment: the launcher runs the script it wraps. Stopped by its own
process group and ``epmd`` by its PID; it never touches a RabbitMQ it did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest

from .polling import wait_until
from .ports import free_port

#: Debian's script behind /usr/sbin/rabbitmq-server (runs as whoever calls it).
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def _server_binary() -> str:
    if SERVER_SCRIPT.exists():
        return str(SERVER_SCRIPT)
    found = shutil.which("rabbitmq-server")
    if found is None:
        pytest.fail("rabbitmq-server is not installed: `apt-get install rabbitmq-server` (make test does this as root)")
    return found


class RabbitServer:
    """``rabbitmq-server`` on 127.0.0.1 and a free port; ready (accepting an AMQP connection) when the constructor
    returns. ``url`` is the AMQP URL of its default virtual host, as the default ``guest`` user (loopback only)."""

    def __init__(self, tmp: Path, timeout: float = 120.0) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        epmd_port, dist_port = free_port(), free_port()
        (tmp / "rabbitmq-env.conf").write_text("")
        (tmp / "rabbitmq.conf").write_text("loopback_users.guest = true\nlisteners.ssl = none\n")
        (tmp / "enabled_plugins").write_text("[].\n")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(tmp),  # the Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmp / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_NODENAME": f"grenier-test-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
            "RABBITMQ_LOG_BASE": str(tmp / "log"),
            "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        epmd = shutil.which("epmd") or "epmd"
        self.epmd = subprocess.Popen(
            [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.log_path = tmp / "rabbitmq.out"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [_server_binary()],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the script, beam and their helpers stop together
            )
        try:
            wait_until(self._answers, timeout, f"rabbitmq-server on port {self.port}")
        except BaseException:
            print(f"rabbitmq-server did not start; its output:\n{self.log()}")  # shown with the failure
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"rabbitmq-server exited with {self.proc.returncode}:\n{self.log()}")
        try:  # the port first: pika logs every refused attempt loudly
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        try:
            params = pika.URLParameters(self.url)
            params.socket_timeout = 2
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its process group (SIGKILL if it lingers), then its ``epmd``."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # beam may outlive the script that started it
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.epmd.poll() is None:
            self.epmd.kill()
        self.epmd.wait(5)
