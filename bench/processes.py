"""Processes the benchmark starts: free loopback ports, CPU pinning, stopping each by its own id, and peak RSS."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
#: Upper bound (s) on any one phase (a start-up, a warm-up), so a broken run ends instead of hanging.
PHASE_LIMIT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def parse_cpus(spec: str) -> frozenset[int]:
    """``"0"``, ``"1-3"`` or ``"0,2-3"`` as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    if not cpus:
        raise ValueError(f"no CPU in {spec!r}")
    return frozenset(cpus)


def cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


@dataclass(frozen=True)
class Pinning:
    """The CPUs every server-side process (servers, Redis, workers, origin) gets, and those the load generator gets.

    Pinning is done with ``taskset``; without it (or with fewer than two CPUs) nothing is pinned and ``server`` and
    ``load`` are ``None``.
    """

    server: frozenset[int] | None
    load: frozenset[int] | None
    taskset: str | None

    @classmethod
    def choose(cls, server: str | None, load: str | None) -> Pinning:
        taskset = shutil.which("taskset")
        available = os.sched_getaffinity(0)
        if taskset is None or len(available) < 2:
            return cls(None, None, None)
        ordered = sorted(available)
        server_cpus = parse_cpus(server) if server else frozenset(ordered[:1])
        load_cpus = parse_cpus(load) if load else frozenset(ordered[1:2])
        if server_cpus & load_cpus and not (server_cpus == load_cpus == frozenset(ordered)):
            raise SystemExit(f"--server-cpus {cpu_list(server_cpus)} and --load-cpus {cpu_list(load_cpus)} overlap")
        # Both on every CPU: nothing pinned, servers and load generator share the machine (the only way to give N
        # server processes N CPUs on a small machine; the N-process ratio is then against one process in the same
        # conditions, as for bare aiohttp).
        return cls(server_cpus, load_cpus, taskset)

    def _prefix(self, cpus: frozenset[int] | None) -> list[str]:
        return [self.taskset, "-c", cpu_list(cpus)] if self.taskset and cpus else []

    def on_server(self, argv: list[str]) -> list[str]:
        return [*self._prefix(self.server), *argv]

    def on_load(self, argv: list[str]) -> list[str]:
        return [*self._prefix(self.load), *argv]

    @property
    def load_threads(self) -> int:
        """Threads for the load generator: one per CPU it may use."""
        return len(self.load) if self.load else max(1, (os.cpu_count() or 2) // 2)

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "not pinned (no taskset or a single CPU)"
        return f"servers on CPU {cpu_list(self.server)}, load generator on CPU {cpu_list(self.load)} (taskset)"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise SystemExit(f"{self.name} exited with {self.popen.returncode}:\n{tail}")


class Processes:
    """Every process this run starts; each is stopped by its own id (and, if it will not stop, its own group)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, so a stuck child of ours can be ended with it
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 15.0) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                # Still running, so its group is still ours: end it together with anything it started.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


# --- peak RSS ------------------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after it start past the last ')'.
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def _tree(pid: int, children: dict[int, list[int]] | None = None) -> Iterator[int]:
    children = _children() if children is None else children
    todo = [pid]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(children.get(current, []))


def peak_rss_kib(pid: int) -> int | None:
    """The process's VmHWM (its peak resident set, KiB), or ``None`` when it is gone or has no such line."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class PeakRss:
    processes: int
    kib: int

    @property
    def mib(self) -> float:
        return self.kib / 1024


def tree_peak_rss(pid: int) -> PeakRss:
    """The sum of VmHWM over ``pid`` and its descendants: an upper bound on the tree's peak RSS."""
    peaks = [peak for p in _tree(pid) if (peak := peak_rss_kib(p)) is not None]
    return PeakRss(len(peaks), sum(peaks))


# --- CPU use ---------------------------------------------------------------------------------------------------


def cpu_times() -> dict[int, tuple[int, int]]:
    """CPU number -> (all jiffies, idle jiffies) since boot, from /proc/stat."""
    times: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields]
            times[int(name[3:])] = (sum(values), values[3] + values[4])  # idle + iowait
    return times


def busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: frozenset[int]) -> float:
    """The fraction of time ``cpus`` were busy (with anything, ours or not) between two :func:`cpu_times`."""
    total = sum(after[c][0] - before[c][0] for c in cpus)
    idle = sum(after[c][1] - before[c][1] for c in cpus)
    return (total - idle) / total if total else 0.0


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time (s) spent so far by these processes and their living descendants."""
    children = _children()
    ticks = 0
    for pid in pids:
        for p in _tree(pid, children):
            try:
                text = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
