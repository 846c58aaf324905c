"""``grenier worker``: a supervisor that keeps N Dramatiq worker processes alive.

Dramatiq's own ``dramatiq`` command exits when one of its worker processes is killed; here a dead process is
replaced (after a short, growing delay if it keeps dying), so a SIGKILLed worker costs its in-flight jobs one
redelivery (see :mod:`jobs.broker`) and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from dataclasses import replace
from functools import partial

from dramatiq.asyncio import get_event_loop_thread

from core.eventloop import loop_name, use_uvloop
from core.logs import redact, setup_logging
from core.settings import Settings
from core.store import RedisStore
from core.supervision import Supervisor

from .queues import open_queue
from .runtime import JobRuntime

log = logging.getLogger("grenier.worker")


def worker_process(settings: Settings, index: int) -> None:
    """One worker process: its own broker connection, event loop thread and worker threads."""
    setup_logging(settings.log.level, settings.log.format)
    use_uvloop()  # before the AsyncIO middleware makes the jobs' event loop
    queue = open_queue(settings)
    runtime = JobRuntime(settings, lambda: RedisStore.from_url(settings.redis.url))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = queue.start_workers(runtime.run, threads=settings.jobs.threads, on_stop=runtime.close)
    thread = get_event_loop_thread()
    loop = loop_name(thread.loop) if thread is not None else "none"
    log.info("worker process %d (pid %d) consuming %r · loop: %s", index, os.getpid(), settings.jobs.queue, loop)
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the supervisor is gone: do not linger as an orphan
            break
    workers.stop(settings.jobs.time_limit)
    asyncio.run(queue.close())


def run(settings: Settings, processes: int | None = None, threads: int | None = None) -> int:
    if threads is not None:
        settings = replace(settings, jobs=replace(settings.jobs, threads=threads))
    if settings.embedded:
        log.error("grenier worker needs redis.url: in embedded mode `grenier serve` runs its own workers")
        return 2
    count = processes or settings.jobs.processes
    log.info(
        "grenier worker: %d processes x %d threads on %s", count, settings.jobs.threads, redact(settings.redis.url)
    )
    # A stopping worker finishes the jobs it holds: give it their time limit, and a little to close.
    drain = settings.jobs.time_limit + 5
    return Supervisor("worker", partial(worker_process, settings), count, drain).run()
