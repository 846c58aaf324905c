"""``grenier worker``: a supervisor that keeps N Dramatiq worker processes alive.

Dramatiq's own ``dramatiq`` command exits when one of its worker processes is killed; here a dead process is
replaced (after a short, growing delay if it keeps dying), so a SIGKILLed worker costs its in-flight jobs one
redelivery (see :mod:`jobs.broker`) and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess

from core.logs import redact, setup_logging
from core.settings import Settings
from core.store import RedisStore

from .queues import open_queue
from .runtime import JobRuntime

log = logging.getLogger("grenier.worker")

#: A worker process that dies this soon after its start counts as crashing; its restarts back off.
MIN_HEALTHY_SECONDS = 5.0


def worker_process(settings: Settings, index: int) -> None:
    """One worker process: its own broker connection, event loop thread and worker threads."""
    setup_logging(settings.log.level)
    queue = open_queue(settings)
    runtime = JobRuntime(settings, lambda: RedisStore.from_url(settings.redis.url))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = queue.start_workers(runtime.run, threads=settings.jobs.threads, on_stop=runtime.close)
    log.info("worker process %d (pid %d) consuming %r", index, os.getpid(), settings.jobs.queue)
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the supervisor is gone: do not linger as an orphan
            break
    workers.stop(settings.jobs.time_limit)
    asyncio.run(queue.close())


class Supervisor:
    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self.ctx = multiprocessing.get_context("spawn")
        self.children: dict[int, BaseProcess] = {}
        self.started: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.stopping = threading.Event()

    def _spawn(self, index: int) -> None:
        proc = self.ctx.Process(target=worker_process, args=(self.settings, index), name=f"grenier-worker-{index}")
        proc.start()
        self.children[index] = proc
        self.started[index] = time.monotonic()
        log.info("started worker process %d (pid %s)", index, proc.pid)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        for i in range(self.processes):
            self._spawn(i)
        while not self.stopping.wait(0.2):
            for index, proc in list(self.children.items()):
                if proc.is_alive():
                    continue
                lived = time.monotonic() - self.started[index]
                self.failures[index] = self.failures.get(index, 0) + 1 if lived < MIN_HEALTHY_SECONDS else 0
                delay = min(10.0, 0.5 * 2 ** self.failures[index]) if self.failures[index] else 0.0
                log.warning(
                    "worker process %d (pid %s) exited with %s; restarting in %.1f s",
                    index,
                    proc.pid,
                    proc.exitcode,
                    delay,
                )
                if self.stopping.wait(delay):
                    break
                self._spawn(index)
        return self._shutdown()

    def _shutdown(self) -> int:
        log.info("stopping %d worker processes", len(self.children))
        for proc in self.children.values():
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.jobs.time_limit + 5
        for proc in self.children.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        return 0


def run(settings: Settings, processes: int | None = None, threads: int | None = None) -> int:
    from dataclasses import replace

    if threads is not None:
        settings = replace(settings, jobs=replace(settings.jobs, threads=threads))
    if settings.embedded:
        log.error("grenier worker needs redis.url: in embedded mode `grenier serve` runs its own workers")
        return 2
    count = processes or settings.jobs.processes
    log.info(
        "grenier worker: %d processes x %d threads on %s", count, settings.jobs.threads, redact(settings.redis.url)
    )
    return Supervisor(settings, count).run()
