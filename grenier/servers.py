"""``grenier serve``: one server process, or a supervisor keeping ``server.processes`` of them on one port.

One Python process runs its event loop on one core, however many the machine has. In Redis mode everything the
server processes share (entries, job records, claims, counters, the queue) lives on Redis, so identical processes can
split the load: each binds the same address with SO_REUSEPORT and builds its own app (its own store connections,
upstream sessions, miss-rate buckets and metrics), and the kernel spreads new connections over them. The supervisor
(:class:`core.supervision.Supervisor`, the one ``grenier worker`` uses) replaces a process that dies and, on SIGTERM
or SIGINT, stops them all.

Embedded mode keeps its store and its workers inside the server process, so a second process would be a second,
separate cache: it runs one, and refuses an explicit request for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from functools import partial

from core import telemetry
from core.eventloop import use_uvloop
from core.logs import setup_logging
from core.settings import ConfigError, Settings
from core.supervision import Supervisor
from proxy.app import serve, shutdown_grace

from .wiring import create_app

log = logging.getLogger("grenier.server")


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (which ``taskset`` and cpusets narrow), or the
    machine's count where the platform has no such mask."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def process_count(settings: Settings) -> int:
    """How many server processes to run: ``server.processes``, 0 meaning one per available core; always 1 in
    embedded mode, where any other explicit count is a configuration error."""
    wanted = settings.server.processes
    if settings.embedded:
        if wanted > 1:
            raise ConfigError(
                f"server.processes (or --processes) is {wanted}, but embedded mode runs one server process: its store "
                "and workers live in that process, so a second would be a separate cache; set redis.url to run several"
            )
        return 1
    return wanted or available_cores()


def drain_seconds(settings: Settings) -> float:
    """How long a stopping server process may take: the grace its requests get (:func:`proxy.app.shutdown_grace`),
    and a little more to close."""
    return shutdown_grace(settings) + 5


def address_taken(settings: Settings) -> OSError | None:
    """Bind the listening address once, without SO_REUSEPORT, and let it go; the error if that fails. Start-up then
    fails with one clear line instead of server processes that die on binding and are restarted for ever; without
    SO_REUSEPORT this also refuses a port that another group of grenier processes shares."""

    async def probe() -> None:
        server = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, settings.server.host, settings.server.port
        )
        server.close()
        await server.wait_closed()

    try:
        asyncio.run(probe())
    except OSError as exc:
        return exc
    return None


async def _serve_until_stopped(settings: Settings, *, reuse_port: bool, supervised: bool) -> None:
    """Serve until SIGTERM or SIGINT, or, for a supervised process, until the supervisor is gone (a SIGKILLed
    supervisor forwards nothing; its children must not keep the port as orphans).

    The first of these starts a graceful stop and later ones are ignored: a Ctrl-C reaches a supervised process
    twice (from the terminal, then forwarded by its supervisor), and a second cancellation would cut short the
    closing of its connections. The supervisor bounds how long a stop may take.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    parent = multiprocessing.parent_process() if supervised else None
    if parent is not None:
        # The sentinel becomes readable when the parent process ends.
        sentinel = parent.sentinel

        def orphaned() -> None:
            loop.remove_reader(sentinel)
            log.warning("the supervisor (pid %s) is gone: stopping", parent.pid)
            stop()

        loop.add_reader(sentinel, orphaned)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(create_app(settings), settings, reuse_port=reuse_port)


def server_process(settings: Settings, index: int) -> None:
    """One of the supervisor's server processes: its own event loop, app and connections, on the shared port."""
    setup_logging(settings.log.level, settings.log.format)
    use_uvloop()
    asyncio.run(_serve_until_stopped(settings, reuse_port=True, supervised=True))


def run(settings: Settings) -> int:
    """``grenier serve``: the exit code (1 when the address cannot be bound). Raises ``ConfigError`` for a process
    count the mode cannot run."""
    count = process_count(settings)
    if settings.embedded and settings.server.processes == 0:
        log.info(
            "embedded mode runs one server process (its store and workers live in it); "
            "set redis.url to run one per core"
        )
    server = settings.server
    if (error := address_taken(settings)) is not None:
        log.error("cannot listen on %s:%d: %s", server.host, server.port, error)
        return 1
    if count == 1:
        use_uvloop()
        asyncio.run(_serve_until_stopped(settings, reuse_port=False, supervised=False))
        return 0
    log.info("grenier serve: %d server processes on http://%s:%d (SO_REUSEPORT)", count, server.host, server.port)
    telemetry.share_with_children()  # any process answers /_grenier/metrics for all of them
    return Supervisor("server", partial(server_process, settings), count, drain_seconds(settings)).run()
