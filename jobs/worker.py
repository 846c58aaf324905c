"""``grenier worker``: a supervisor that keeps N Dramatiq worker processes alive.

Dramatiq's own ``dramatiq`` command exits when one of its worker processes is killed; here a dead process is
replaced (after a short, growing delay if it keeps dying), so a SIGKILLed worker costs its in-flight jobs one
redelivery (see :mod:`jobs.broker`) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from functools import partial

from dramatiq.asyncio import get_event_loop_thread

from core import telemetry
from core.eventloop import loop_name, use_uvloop
from core.logs import backends, setup_logging
from core.queue import JobQueue, Workers
from core.settings import Settings
from core.store import RedisStore
from core.supervision import Supervisor

from .queues import open_queue
from .runtime import JobRuntime

log = logging.getLogger("grenier.worker")

#: ``grenier worker --check`` fails when ``jobs.alive_file`` was last touched longer ago than this.
ALIVE_STALE_SECONDS = 10.0
#: ... or when the broker does not answer a PING within this.
CHECK_TIMEOUT = 2.0


def touch(path: str) -> None:
    """Mark this worker alive (``jobs.alive_file``); a failure is logged, never fatal."""
    if not path:
        return
    try:
        with open(path, "a"):
            os.utime(path)
    except OSError as exc:
        log.warning("cannot touch jobs.alive_file %s: %s", path, exc)


def check(settings: Settings, now: float | None = None) -> int:
    """``grenier worker --check``: 0 when a worker process touched ``jobs.alive_file`` within
    ``ALIVE_STALE_SECONDS`` and the broker answers; else 1, with the reason on stderr. For a container health check,
    which cannot probe a worker over HTTP (its one optional port serves metrics)."""
    now = time.time() if now is None else now
    if settings.embedded:
        print("grenier worker --check: no redis.url: embedded mode has no worker processes", file=sys.stderr)
        return 1
    path = settings.jobs.alive_file
    try:
        age = now - os.stat(path).st_mtime
    except OSError as exc:
        print(f"grenier worker --check: no worker alive: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if age > ALIVE_STALE_SECONDS:
        print(f"grenier worker --check: no worker alive: {path} is {age:.0f} s old", file=sys.stderr)
        return 1
    queue = open_queue(settings)  # the broker the workers use: Redis (or its Sentinel primary), or RabbitMQ
    try:
        asyncio.run(asyncio.wait_for(queue.ping(), CHECK_TIMEOUT))
    except Exception as exc:  # any failure to answer is the check's answer, not a crash
        print(f"grenier worker --check: the broker ({backends(settings)}) does not answer: {exc!r}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(queue.close())
    print(f"grenier worker --check: ok (alive {age:.1f} s ago, broker answers)")
    return 0


def worker_process(settings: Settings, index: int) -> None:
    """One worker process: its own broker connection, event loop thread and worker threads."""
    setup_logging(settings.log.level, settings.log.format)
    use_uvloop()  # before the AsyncIO middleware makes the jobs' event loop
    queue = open_queue(settings)
    runtime = JobRuntime(settings, lambda: RedisStore.open(settings.redis))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers = queue.start_workers(runtime.run, threads=settings.jobs.threads, on_stop=runtime.close)
    thread = get_event_loop_thread()
    loop = loop_name(thread.loop) if thread is not None else "none"
    log.info("worker process %d (pid %d) consuming %r · loop: %s", index, os.getpid(), settings.jobs.queue, loop)
    parent = os.getppid()
    touch(settings.jobs.alive_file)
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the supervisor is gone: do not linger as an orphan
            break
        touch(settings.jobs.alive_file)
    if not drain(workers, queue, settings.jobs.time_limit):
        logging.shutdown()
        os._exit(0)  # worker threads still wait on the unreachable broker: leave them
    asyncio.run(queue.close())


#: Seconds a stopping worker waits on a broker that does not answer before it leaves its jobs to be redelivered.
DOWN_GRACE = 3.0


def drain(workers: Workers, queue: JobQueue, time_limit: float) -> bool:
    """Stop ``workers``, letting the jobs they hold finish (up to ``time_limit``); but while the broker is
    unreachable, nothing can be acknowledged (Dramatiq retries an ack every 5 s for ever, and a stop would wait for
    ``time_limit`` and more): give up after ``DOWN_GRACE`` seconds of that. Their messages stay in this worker's
    unacknowledged set, and another worker runs them again once this one's heartbeat times out (no job is lost).
    Returns whether the workers stopped."""
    stopping = threading.Thread(target=workers.stop, args=(time_limit,), name="grenier-stop", daemon=True)
    stopping.start()
    down_since: float | None = None
    while True:
        stopping.join(0.5)
        if not stopping.is_alive():
            return True
        now = time.monotonic()
        if _broker_answers(queue):
            down_since = None
        elif down_since is None:
            down_since = now
        elif now - down_since >= DOWN_GRACE:
            log.warning("stopping with the broker unreachable: this worker's jobs will be redelivered")
            return False


def _broker_answers(queue: JobQueue) -> bool:
    try:
        asyncio.run(queue.ping())
    except Exception:
        return False
    return True


def run(settings: Settings, processes: int | None = None, threads: int | None = None) -> int:
    if threads is not None:
        settings = replace(settings, jobs=replace(settings.jobs, threads=threads))
    if settings.embedded:
        log.error(
            "grenier worker needs redis.url (or redis.sentinels): in embedded mode `grenier serve` runs its own workers"
        )
        return 2
    count = processes or settings.jobs.processes
    log.info("grenier worker: %d processes x %d threads on %s", count, settings.jobs.threads, backends(settings))
    telemetry.share_with_children()
    jobs = settings.jobs
    if jobs.metrics_port:
        try:
            telemetry.serve_group(jobs.metrics_host, jobs.metrics_port)
            log.info("worker metrics on http://%s:%d/metrics", jobs.metrics_host, jobs.metrics_port)
        except OSError as exc:  # the workers matter more than their metrics
            log.error("cannot serve worker metrics on %s:%d: %s", jobs.metrics_host, jobs.metrics_port, exc)
    # A stopping worker finishes the jobs it holds: give it their time limit, and a little to close.
    drain = settings.jobs.time_limit + 5
    return Supervisor("worker", partial(worker_process, settings), count, drain).run()
