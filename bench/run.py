"""``python -m bench``: every contender measured in one run, then one markdown table of figures and ratios.

The phases, in order (each bounded in time; every process started here is stopped by its id at the end):

1. the origin and a throwaway ``redis-server`` start on free loopback ports, on the server CPUs;
2. the miss URLs of every size are fetched straight from the origin (the latency baseline);
3. each contender in turn (bare aiohttp, nginx, naive, grenier embedded, grenier on Redis, then the ``--processes``
   variants) starts, and for each body size: its hot URL is warmed and checked to be a hit, the load generator
   measures it ``--runs`` times, and for grenier the same miss URLs are timed through ``/fetch`` with
   ``Prefer: wait=10``, the Redis entry is sized and the peak RSS of its processes is read; then it stops.

It asserts nothing: it prints the table (and writes it to ``--output`` if given).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp

from bench import load, probes, servers
from bench.apps import naive_key, path, uvloop_available
from bench.processes import PHASE_LIMIT, Pinning, Processes, tree_peak_rss
from bench.report import Results, Setup, size_name, table
from bench.servers import Contender, Kind, Lab

CONTENDERS = ("bare", "nginx", "naive", "embedded", "redis")
DEFAULT_SIZES = "1K,16K,256K,1M"
#: Seconds a contender is left alone after its first warm-up, so start-up work does not leak into the first runs.
SETTLE = 1.0


def parse_size(text: str) -> int:
    """``1024``, ``16K`` or ``1M`` (K and M are binary: KiB and MiB)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1024, "M": 1024**2}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * scale


def parse_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.startswith("GRENIER_"):
        raise argparse.ArgumentTypeError(f"expected GRENIER_<SECTION>_<KEY>=VALUE, got {item!r}")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"body sizes, comma-separated (default {DEFAULT_SIZES})")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the cell is their median (default 3)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    p.add_argument("--misses", type=int, default=50, help="distinct miss URLs per size, 0 to skip (default 50)")
    p.add_argument(
        "--only",
        default=",".join(CONTENDERS),
        help=f"contenders to run, comma-separated (default all: {','.join(CONTENDERS)})",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="also run bare aiohttp in N SO_REUSEPORT processes and, when the installed grenier has the flag, "
        "`grenier serve --processes N` on Redis (give them CPUs with --server-cpus)",
    )
    p.add_argument(
        "--grenier-env",
        type=parse_env,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra GRENIER_* setting for the grenier processes (repeatable)",
    )
    p.add_argument("--load", choices=["auto", "wrk", "aiohttp"], default="auto", help="load generator (default auto)")
    p.add_argument("--server-cpus", help="CPUs for every server-side process, e.g. 0 or 0-1 (default: the first)")
    p.add_argument("--load-cpus", help="CPUs for the load generator (default: the second)")
    p.add_argument("--quick", action="store_true", help="a smoke run: --runs 1 --duration 1 --misses 10")
    p.add_argument("--output", type=Path, help="also write the report (markdown) to this file")
    p.add_argument("--logs", type=Path, metavar="DIR", help="copy every started process's log here at the end")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.misses = 1, 1.0, 10
    args.sizes = sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()})
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    if unknown := set(args.only) - set(CONTENDERS):
        p.error(f"--only: unknown contender(s) {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.duration <= 0 or args.connections < 1 or args.processes < 1 or not args.sizes:
        p.error("--runs, --duration, --connections, --processes and --sizes must be positive")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the run ---------------------------------------------------------------------------------------------------

Start = Callable[[], AbstractAsyncContextManager[Contender]]


def plan(lab: Lab, args: argparse.Namespace, notes: list[str]) -> list[Start]:
    """The contenders to run, in order; a baseline that cannot run here becomes a note instead."""
    starts: list[Start] = []
    only = set(args.only)
    if "bare" in only:
        starts.append(lambda: servers.bare(lab))
    if "nginx" in only:
        binary = servers.nginx_bin()
        if binary is None:
            notes.append("nginx is not installed: no nginx rows (e.g. apt-get install nginx-light)")
        else:
            starts.append(lambda: servers.nginx(lab, binary))
    if "naive" in only:
        starts.append(lambda: servers.naive(lab))
    if "embedded" in only:
        starts.append(lambda: servers.grenier(lab, on_redis=False))
    if "redis" in only:
        starts.append(lambda: servers.grenier(lab, on_redis=True))
    if args.processes > 1:
        n = args.processes
        starts.append(lambda: servers.bare(lab, processes=n))
        if servers.serve_has_processes():
            starts.append(lambda: servers.grenier(lab, on_redis=True, processes=n))
        else:
            notes.append(f"the installed `grenier serve` has no --processes: no grenier x {n} row")
    return starts


def miss_paths(size: int, count: int, run_id: str) -> list[str]:
    return [path(size, f"miss-{run_id}-{i}") for i in range(count)]


async def measure_contender(
    contender: Contender,
    lab: Lab,
    args: argparse.Namespace,
    generator: load.LoadGenerator,
    results: Results,
    notes: list[str],
    run_id: str,
) -> None:
    results.labels[contender.key] = contender.label
    by_size = results.hits.setdefault(contender.key, {})
    timed_misses = contender.kind is Kind.GRENIER and "-x" not in contender.key and args.misses > 0
    timeout = aiohttp.ClientTimeout(total=PHASE_LIMIT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i, size in enumerate(lab.sizes):
            url = await contender.warm(session, size)
            if i == 0:
                await asyncio.sleep(SETTLE)
            if contender.key == "redis":
                results.entry_bytes[size] = await probes.entry_memory(lab.redis_url, f"{lab.origin}{path(size, 'hot')}")
            if contender.key == "naive":
                results.raw_bytes[size] = await probes.key_memory(lab.redis_url, naive_key(size))
            cell = await load.measure(generator, url, size, args.runs, lab.pinning, contender.server_pids)
            by_size[size] = cell
            progress(f"  {contender.label}, {size_name(size)}: {cell.rate:,.0f} hits/s ({cell.errors} errors)")
            for failed in (r for r in cell.runs if r.errors):
                progress(f"    a run with {failed.errors} errors: {failed.detail}")
            if not await contender.answers_hit(session, size):
                notes.append(f"{contender.label}, {size_name(size)}: the hot URL was no longer a hit after its runs")
            if timed_misses:
                urls = [contender.url(p) for p in miss_paths(size, args.misses, run_id)]
                got = await probes.latency(urls, size, {"Prefer": "wait=10"})
                results.misses.setdefault(contender.key, {})[size] = got
                progress(f"  {contender.label}, {size_name(size)}: misses p50 {got.pct(50):.1f} ms")
            for name, proc in contender.watched.items():
                mode = contender.label.removeprefix("grenier ")
                results.rss.setdefault(f"{name} ({mode})", {})[size] = tree_peak_rss(proc.pid)


async def run(
    args: argparse.Namespace, pinning: Pinning, generator: load.LoadGenerator, workdir: Path
) -> tuple[Results, list[str]]:
    results = Results(args.sizes)
    notes: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    procs = Processes(workdir)
    lab = Lab(procs, pinning, workdir, args.sizes, grenier_env=dict(args.grenier_env))
    try:
        await servers.start_origin(lab)
        await servers.start_redis(lab)
        if args.misses > 0 and {"embedded", "redis"} & set(args.only):
            progress("origin: direct fetches of the miss URLs")
            for size in lab.sizes:
                urls = [f"{lab.origin}{p}" for p in miss_paths(size, args.misses, run_id)]
                results.direct[size] = await probes.latency(urls, size)
        for start in plan(lab, args, notes):
            async with start() as contender:
                progress(f"{contender.label}: up")
                await measure_contender(contender, lab, args, generator, results, notes, run_id)
    finally:
        procs.stop_all()
    return results, notes


# --- the report ------------------------------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(args: argparse.Namespace, pinning: Pinning, generator: load.LoadGenerator) -> list[str]:
    root = servers.ROOT
    commit = _first_line(["git", "-C", str(root), "log", "-1", "--format=%h"])
    status = ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    nginx = servers.nginx_bin()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = [
        f"Python {platform.python_version()}",
        f"aiohttp {aiohttp.__version__}",
        _first_line(["redis-server", "--version"]).split(" sha=")[0],
        _first_line([nginx, "-v"]).removeprefix("nginx version: ") if nginx else "no nginx",
        _first_line(["wrk", "-v"]).split(" [")[0] if isinstance(generator, load.Wrk) else "",
    ]
    return [
        f"grenier benchmark, {now}, commit {commit}" + (" (with uncommitted changes)" if dirty else ""),
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "software: " + ", ".join(v for v in versions if v),
        f"pinning: {pinning.describe()}",
        f"bare aiohttp event loop: {'uvloop' if uvloop_available() else 'asyncio (uvloop is not importable)'}",
        f"grenier settings added: {', '.join(f'{k}={v}' for k, v in args.grenier_env) or 'none'}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pinning = Pinning.choose(args.server_cpus, args.load_cpus)
    if pinning.load:
        # This process times the misses and may be the load generator: keep it off the servers' CPUs too.
        os.sched_setaffinity(0, pinning.load)
    generator = load.choose(args.load, pinning, args.connections, args.duration)
    start_load = os.getloadavg()[0]
    lines = header(args, pinning, generator)
    cells = len(args.sizes) * (len(args.only) + (2 if args.processes > 1 else 0))
    progress(f"{lines[0]}: {cells} cells of {args.runs} x {args.duration:g} s, {generator.name}")
    with tempfile.TemporaryDirectory(prefix="grenier-bench-") as tmp:
        results, notes = asyncio.run(run(args, pinning, generator, Path(tmp)))
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in Path(tmp).glob("**/*.log"):
                shutil.copy(log, args.logs / log.name)
    lines.append(f"load average (1 min) at the start and at the end: {start_load:.2f}, {os.getloadavg()[0]:.2f}")
    setup = Setup(args.runs, args.duration, args.connections, generator.name, args.misses, args.processes)
    report = "\n".join([*lines, *(f"note: {n}" for n in notes), "", table(results, setup), ""])
    print(report)
    if args.output:
        args.output.write_text(report)
    return 0
