"""Hits per second for one URL: ``wrk`` on the load CPUs when it is installed, else an aiohttp client loop.

A cell of the table is the median of several short runs. A run counts as errors what the generator can see: with
``wrk``, non-2xx/3xx answers, socket errors and, when fewer bytes came back than the 2xx/3xx bodies alone would fill,
every request of that run; with the client loop, any answer other than a 200 with the expected body. Each run also
records the CPU time the server-side processes spent, so a cell can say how many hits one CPU-second buys: a figure
that other tenants of the machine, which slow the hits/s, leave alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import aiohttp

from bench.processes import Pinning, busy, cpu_seconds, cpu_times


@dataclass(frozen=True)
class Run:
    requests: int
    errors: int
    seconds: float
    #: Fractions of time the server CPUs and the load generator's CPUs were busy, when pinned.
    server_busy: float | None = None
    load_busy: float | None = None
    #: CPU time (s) the server-side processes spent during the run, when known.
    server_cpu: float | None = None
    #: What the errors were, as the generator reported them.
    detail: str = ""

    @property
    def per_cpu_second(self) -> float | None:
        """Answered requests per CPU-second of the server-side processes: what other tenants of the CPU leave alone."""
        return (self.requests - self.errors) / self.server_cpu if self.server_cpu else None

    @property
    def rate(self) -> float:
        """Answered requests per second (errors excluded)."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Cell:
    runs: Sequence[Run]

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    @property
    def per_cpu_second(self) -> float | None:
        rates = [r for run in self.runs if (r := run.per_cpu_second) is not None]
        return statistics.median(rates) if rates else None

    @property
    def busy(self) -> tuple[float, float] | None:
        """Median fractions of time the server CPUs and the load CPUs were busy, when they were pinned."""
        server = [run.server_busy for run in self.runs if run.server_busy is not None]
        load = [run.load_busy for run in self.runs if run.load_busy is not None]
        return (statistics.median(server), statistics.median(load)) if server and load else None


class LoadGenerator(Protocol):
    name: str

    async def run(self, url: str, size: int) -> Run: ...


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output: str, size: int) -> Run:
    """A run from ``wrk``'s summary, e.g. ``30000 requests in 3.00s, 40.00MB read`` and the error lines."""
    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read", output)
    if summary is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests = int(summary[1])
    seconds = float(summary[2]) * _SECONDS[summary[3]]
    read = float(summary[4]) * _UNITS[summary[5]]
    errors = not_ok = 0
    details: list[str] = []
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors = not_ok = int(found[1])
        details.append(found[0])
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in found.groups())
        details.append(found[0])
    # wrk prints the bytes read with two decimals: allow for that rounding before calling the bodies short.
    if read < (requests - not_ok) * size * 0.99:
        errors = requests
        details.append(f"{summary[0]}: short of {requests - not_ok} bodies of {size} bytes")
    return Run(requests, min(errors, requests), seconds, detail="; ".join(details))


class Wrk:
    name = "wrk"

    def __init__(self, binary: str, pinning: Pinning, connections: int, duration: float) -> None:
        self.binary = binary
        self.pinning = pinning
        self.connections = connections
        self.duration = duration

    def argv(self, url: str) -> list[str]:
        threads = min(self.pinning.load_threads, self.connections)
        wrk = [self.binary, f"-t{threads}", f"-c{self.connections}", f"-d{self.duration:g}s", "--timeout", "10s", url]
        return self.pinning.on_load(wrk)

    async def run(self, url: str, size: int) -> Run:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.duration + 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise RuntimeError(f"wrk did not finish within {self.duration + 30:g} s") from None
        return parse_wrk(out.decode(errors="replace"), size)


class ClientLoop:
    """The fallback: ``connections`` aiohttp clients in this process (which runs on the load CPUs) for ``duration``."""

    name = "aiohttp client loop"

    def __init__(self, connections: int, duration: float) -> None:
        self.connections = connections
        self.duration = duration

    async def run(self, url: str, size: int) -> Run:
        requests = errors = 0
        seen: Counter[str] = Counter()
        connector = aiohttp.TCPConnector(limit=self.connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.perf_counter()
            end = start + self.duration

            async def client() -> None:
                nonlocal requests, errors
                while time.perf_counter() < end:
                    requests += 1
                    try:
                        async with session.get(url) as resp:
                            got = await resp.read()
                            ok = resp.status == 200 and len(got) == size
                            if not ok:
                                seen[f"status {resp.status}, {len(got)} bytes"] += 1
                    except aiohttp.ClientError as exc:
                        ok = False
                        seen[type(exc).__name__] += 1
                    errors += not ok

            async with asyncio.timeout(self.duration + 30):
                await asyncio.gather(*(client() for _ in range(self.connections)))
            detail = "; ".join(f"{what}: {n}" for what, n in seen.most_common())
            return Run(requests, errors, time.perf_counter() - start, detail=detail)


def choose(wanted: str, pinning: Pinning, connections: int, duration: float) -> LoadGenerator:
    """``wrk`` when ``wanted`` is ``auto`` or ``wrk`` and it is installed; else the client loop."""
    binary = shutil.which("wrk")
    if wanted == "wrk" and binary is None:
        raise SystemExit("--load wrk: wrk is not on PATH (e.g. apt-get install wrk)")
    if wanted != "aiohttp" and binary is not None:
        return Wrk(binary, pinning, connections, duration)
    return ClientLoop(connections, duration)


async def measure(
    generator: LoadGenerator, url: str, size: int, runs: int, pinning: Pinning, server_pids: Sequence[int]
) -> Cell:
    """``runs`` runs against ``url``, each with the CPU time ``server_pids`` spent and how busy the CPUs were."""
    done: list[Run] = []
    for _ in range(runs):
        before, spent = cpu_times(), cpu_seconds(server_pids)
        run = await generator.run(url, size)
        after, spent = cpu_times(), cpu_seconds(server_pids) - spent
        run = replace(run, server_cpu=spent)
        if pinning.server and pinning.load:
            run = replace(
                run, server_busy=busy(before, after, pinning.server), load_busy=busy(before, after, pinning.load)
            )
        done.append(run)
    return Cell(done)
