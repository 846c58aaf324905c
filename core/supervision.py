"""Keeping N child processes alive: the one supervision loop behind ``grenier serve --processes N`` and
``grenier worker``.

A child that exits is replaced. One that dies soon after its start (``MIN_HEALTHY_SECONDS``) counts as crashing and
is restarted after a delay that doubles with each crash in a row (:func:`restart_delay`), so a child that cannot
start (its port taken, its Redis refusing) costs a log line every few seconds instead of a spinning core; the other
children are watched meanwhile. On SIGTERM or SIGINT the supervisor forwards SIGTERM to every child, gives them a
bounded time to finish what they are doing, kills any that overstays, and returns 0: stopping is not a failure.

Children are started with the ``spawn`` method: a fresh interpreter that imports what it needs, never a fork that
would inherit the supervisor's signal handlers, threads or half-open connections. A child should watch for its
supervisor's disappearance (a SIGKILL gives it no chance to forward anything) and stop rather than linger as an
orphan.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from . import telemetry

#: A child that dies this soon after its start counts as crashing; its restarts back off.
MIN_HEALTHY_SECONDS = 5.0
#: The delay before the first restart of a crashing child; each further crash in a row doubles it ...
FIRST_RESTART_DELAY = 1.0
#: ... up to this.
MAX_RESTART_DELAY = 10.0
#: How often the supervisor looks at its children (and at a stop request).
POLL_SECONDS = 0.2


def restart_delay(crashes: int) -> float:
    """Seconds to wait before restarting a child that crashed ``crashes`` times in a row (0: it had lived long
    enough, so it is restarted at once)."""
    if crashes <= 0:
        return 0.0
    return min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2.0 ** (crashes - 1))


class Supervisor:
    """Keeps ``processes`` children running ``target(index)`` until SIGTERM or SIGINT.

    ``target`` must be picklable (a module-level function, or a ``functools.partial`` of one over picklable
    arguments): ``spawn`` sends it to the child. ``drain_seconds`` bounds how long the children may take to stop.
    """

    def __init__(self, name: str, target: Callable[[int], None], processes: int, drain_seconds: float) -> None:
        self.name = name
        self.target = target
        self.processes = processes
        self.drain_seconds = drain_seconds
        self.log = logging.getLogger(f"grenier.{name}")
        self._ctx = multiprocessing.get_context("spawn")
        self.children: dict[int, BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._crashes: dict[int, int] = {}
        self._restart_at: dict[int, float] = {}
        # A plain flag, not a threading.Event: setting an Event takes a lock, which a signal handler may find held
        # by the very wait it interrupted.
        self._stop_requested = False

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def _spawn(self, index: int) -> None:
        proc = self._ctx.Process(target=self.target, args=(index,), name=f"grenier-{self.name}-{index}")
        proc.start()
        self.children[index] = proc
        self._started[index] = time.monotonic()
        self.log.info("started %s process %d (pid %s)", self.name, index, proc.pid)

    def _watch(self, index: int, proc: BaseProcess, now: float) -> None:
        """Restart the child ``index`` if its time has come, or schedule the restart of one found dead."""
        if index in self._restart_at:
            if now >= self._restart_at[index]:
                del self._restart_at[index]
                self._spawn(index)
            return
        if proc.is_alive():
            return
        if proc.pid is not None:
            telemetry.process_gone(proc.pid)
        lived = now - self._started[index]
        self._crashes[index] = self._crashes.get(index, 0) + 1 if lived < MIN_HEALTHY_SECONDS else 0
        delay = restart_delay(self._crashes[index])
        self.log.warning(
            "%s process %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
            self.name,
            index,
            proc.pid,
            proc.exitcode,
            lived,
            delay,
        )
        if delay:
            self._restart_at[index] = now + delay
        else:
            self._spawn(index)

    def run(self) -> int:
        """Start the children, keep them alive, and stop them all on SIGTERM or SIGINT; the exit code (0)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        for index in range(self.processes):
            self._spawn(index)
        while not self._stop_requested:
            time.sleep(POLL_SECONDS)
            if self._stop_requested:
                break
            now = time.monotonic()
            for index, proc in list(self.children.items()):
                self._watch(index, proc, now)
        return self._shutdown()

    def _shutdown(self) -> int:
        live = [proc for proc in self.children.values() if proc.is_alive() and proc.pid]
        self.log.info("stopping %d %s processes (up to %.0f s)", len(live), self.name, self.drain_seconds)
        for proc in live:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds
        for proc in live:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                self.log.warning(
                    "%s process (pid %s) still running after %.0f s: killing it",
                    self.name,
                    proc.pid,
                    self.drain_seconds,
                )
                proc.kill()
                proc.join()
        return 0
