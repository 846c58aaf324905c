"""The scaling run: ``python -m bench.scaling`` measures what docs/scaling.md reports and prints one markdown table.

* **hits/s** with 1, 2 and 4 ``grenier serve`` processes (``--processes``) sharing one port, against one Redis and
  against a 3-primary Redis Cluster: one URL of ``--size`` bytes warmed, then loaded as ``python -m bench`` loads
  a cell (``wrk`` or the client loop, the median of ``--runs`` runs of ``--duration`` s). The hot tier is off by
  default (``--hot-bytes 0``), so every hit reads the store and the figure is the store's, not each process's
  memory; on the cluster the jobs go through the one Redis (``jobs.broker_url``), which a hit never touches.
* **jobs/s** through the Redis broker and the RabbitMQ broker: ``--misses`` distinct URLs asked at once (at most
  ``--connections`` in flight) with ``Prefer: wait``, through one ``grenier serve``, fetched by ``--workers``
  worker processes; jobs/s is the misses answered 200 over the time from the first request to the last answer. The
  store is the one Redis in both, so only the broker differs.

Everything runs on 127.0.0.1 on free ports in a temp dir, every process it starts is stopped by its own id, and
every phase is bounded. Unlike ``python -m bench`` nothing is pinned unless ``--server-cpus``/``--load-cpus`` say
so: more server processes than server CPUs would measure nothing. It asserts nothing and is not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench import engines, load
from bench.apps import body, path
from bench.processes import HOST, PHASE_LIMIT, Pinning, Proc, Processes, free_port
from bench.servers import ROOT, Contender, Kind, Lab, grenier_bin, grenier_env, start_origin, start_redis, wait_until_up

#: Pause after a warm-up before loading, so start-up work (imports, connections) does not land in the first run.
SETTLE = 0.5


@dataclass(frozen=True)
class HitsRow:
    store: str
    processes: int
    cell: load.Cell


@dataclass(frozen=True)
class JobsRow:
    broker: str
    workers: int
    misses: int
    answered: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def grenier_pair(
    lab: Lab, name: str, settings: Mapping[str, str], *, processes: int, workers: int
) -> AsyncIterator[tuple[str, list[Proc]]]:
    """``grenier serve --processes N`` and ``grenier worker --processes W`` with ``settings``; yields the server's
    base URL once it is ready, and every process started."""
    env = {**grenier_env(lab, on_redis=False), **settings}
    config = ["--config", str(ROOT / "config.toml")]
    port = free_port()
    serve = [grenier_bin(), "serve", *config, "--host", HOST, "--port", str(port), "--processes", str(processes)]
    worker = [grenier_bin(), "worker", *config, "--processes", str(workers)]
    started = [
        lab.procs.start(f"{name}-serve", lab.pinning.on_server(serve), env),
        lab.procs.start(f"{name}-worker", lab.pinning.on_server(worker), env),
    ]
    try:
        base = f"http://{HOST}:{port}"
        await wait_until_up(f"{base}/_grenier/ready", started)
        yield base, started
    finally:
        for proc in reversed(started):
            lab.procs.stop(proc)


async def hits(
    lab: Lab,
    args: argparse.Namespace,
    generator: load.LoadGenerator,
    store: str,
    settings: Mapping[str, str],
    store_pids: Sequence[int],
) -> list[HitsRow]:
    """One row per server process count, against the store ``settings`` name (``store_pids``: its processes)."""
    rows = []
    key = "cluster" if settings.get("GRENIER_REDIS_CLUSTER") == "true" else "redis"
    for n in args.processes:
        name = f"hits-{key}-x{n}"
        async with grenier_pair(lab, name, settings, processes=n, workers=1) as (base, started):
            contender = Contender(name, name, Kind.GRENIER, base, lab.origin, [p.pid for p in started])
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PHASE_LIMIT)) as session:
                url = await contender.warm(session, args.size)
            await asyncio.sleep(SETTLE)
            pids = [*contender.server_pids, *store_pids]
            cell = await load.measure(generator, url, args.size, args.runs, lab.pinning, pids)
        progress(f"  hits, {store}, {n} server process(es): {cell.rate:,.0f}/s ({cell.errors} errors)")
        for failed in (r for r in cell.runs if r.errors):
            progress(f"    errors: {failed.detail or 'not described'}")
        rows.append(HitsRow(store, n, cell))
    return rows


async def jobs(lab: Lab, args: argparse.Namespace, broker: str, settings: Mapping[str, str]) -> JobsRow:
    """``args.misses`` distinct URLs, all sent at once (``args.connections`` in flight), each answered when fetched."""
    run = uuid.uuid4().hex[:8]
    client = aioredis.Redis.from_url(lab.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    wait = {"Prefer": f"wait={int(PHASE_LIMIT)}"}
    async with grenier_pair(lab, f"jobs-{broker.lower()}", settings, processes=1, workers=args.workers) as (
        base,
        _,
    ):
        connector = aiohttp.TCPConnector(limit=args.connections)
        timeout = aiohttp.ClientTimeout(total=PHASE_LIMIT * 2)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            # One miss first, so every worker is consuming before the clock starts.
            async with session.get(f"{base}/fetch?url={lab.origin}{path(args.size, f'{run}-first')}", headers=wait):
                pass

            async def miss(i: int) -> bool:
                url = f"{base}/fetch?url={lab.origin}{path(args.size, f'{run}-{i}')}"
                try:
                    async with session.get(url, headers=wait) as resp:
                        return resp.status == 200 and await resp.read() == body(args.size)
                except (aiohttp.ClientError, TimeoutError):
                    return False

            started = time.perf_counter()
            answered = await asyncio.gather(*(miss(i) for i in range(args.misses)))
            seconds = time.perf_counter() - started
    row = JobsRow(broker, args.workers, args.misses, sum(answered), seconds)
    progress(f"  jobs, {broker}: {row.rate:,.0f}/s ({row.misses - row.answered} not answered 200)")
    return row


async def run(
    args: argparse.Namespace, pinning: Pinning, generator: load.LoadGenerator, workdir: Path
) -> tuple[list[HitsRow], list[JobsRow]]:
    procs = Processes(workdir)
    lab = Lab(procs, pinning, workdir, [args.size])
    common = {
        "GRENIER_CACHE_HOT_BYTES": str(args.hot_bytes),
        "GRENIER_JOBS_MAX_PENDING": str(max(1000, args.misses * 2)),  # the backlog limit is not what is measured
    }
    hit_rows: list[HitsRow] = []
    job_rows: list[JobsRow] = []
    try:
        await start_origin(lab)
        await start_redis(lab)
        assert lab.redis is not None
        on_server = pinning.on_server([])
        if "hits" in args.only:
            single = {**common, "GRENIER_REDIS_URL": lab.redis_url}
            hit_rows += await hits(lab, args, generator, "one Redis", single, [lab.redis.pid])
            cluster = engines.start_cluster(procs, workdir, on_server)
            on_cluster = {
                **common,
                "GRENIER_REDIS_URL": cluster.url,
                "GRENIER_REDIS_CLUSTER": "true",
                "GRENIER_JOBS_BROKER_URL": lab.redis_url,
            }
            pids = [p.pid for p in cluster.nodes]
            hit_rows += await hits(lab, args, generator, "Redis Cluster (3 primaries)", on_cluster, pids)
            for node in cluster.nodes:
                procs.stop(node)
        if "jobs" in args.only:
            job_rows.append(await jobs(lab, args, "Redis", {**common, "GRENIER_REDIS_URL": lab.redis_url}))
            rabbit = engines.start_rabbitmq(procs, workdir, on_server)
            try:
                on_rabbit = {
                    **common,
                    "GRENIER_REDIS_URL": lab.redis_url,
                    "GRENIER_JOBS_BROKER": "rabbitmq",
                    "GRENIER_JOBS_BROKER_URL": rabbit.url,
                    "GRENIER_JOBS_QUEUE": f"grenier-bench-{uuid.uuid4().hex[:8]}",
                }
                job_rows.append(await jobs(lab, args, "RabbitMQ", on_rabbit))
            finally:
                engines.stop_rabbitmq(procs, rabbit)
    finally:
        procs.stop_all()
    return hit_rows, job_rows


def table(hit_rows: Sequence[HitsRow], job_rows: Sequence[JobsRow], args: argparse.Namespace) -> str:
    lines = []
    if hit_rows:
        lines += [
            f"hits/s: one {args.size}-byte URL, {args.runs} x {args.duration:g} s per cell (median), "
            f"{args.connections} connections, hot tier {'off' if args.hot_bytes == 0 else f'{args.hot_bytes} bytes'}",
            "",
            "| store | `grenier serve` processes | hits/s | errors | hits per CPU-second (grenier + store) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in hit_rows:
            per_cpu = row.cell.per_cpu_second
            cpu = f"{per_cpu:,.0f}" if per_cpu is not None else "n/a"
            lines.append(f"| {row.store} | {row.processes} | {row.cell.rate:,.0f} | {row.cell.errors} | {cpu} |")
        lines.append("")
    if job_rows:
        lines += [
            f"jobs/s: distinct {args.size}-byte URLs asked at once with `Prefer: wait`, one `grenier serve`,"
            f" store on one Redis",
            "",
            "| broker | worker processes | misses | not answered 200 | seconds | jobs/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for j in job_rows:
            lines.append(
                f"| {j.broker} | {j.workers} | {j.misses} | {j.misses - j.answered} | {j.seconds:.2f} | {j.rate:,.0f} |"
            )
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 run of 1 s per cell, 50 misses")
    parser.add_argument("--only", default="hits,jobs", help="hits, jobs or both (default: hits,jobs)")
    parser.add_argument("--processes", type=_counts, default=[1, 2, 4], help="server process counts (1,2,4)")
    parser.add_argument("--size", type=int, default=1024, help="body bytes of every URL (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs per hits cell (3)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run (3)")
    parser.add_argument("--connections", type=int, default=64, help="connections of the load (64)")
    parser.add_argument("--misses", type=int, default=2000, help="distinct URLs per broker (2000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the jobs rows (2)")
    parser.add_argument("--hot-bytes", type=int, default=0, help="cache.hot_bytes of each server (0: off)")
    parser.add_argument("--load", choices=["auto", "wrk", "aiohttp"], default="auto", help="load generator")
    parser.add_argument("--server-cpus", help="pin the server side to these CPUs (e.g. 0-2); default: not pinned")
    parser.add_argument("--load-cpus", help="pin the load generator to these CPUs (e.g. 3)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--logs", type=Path, help="copy every process's log into this directory at the end")
    args = parser.parse_args(argv)
    args.only = {part.strip() for part in args.only.split(",")}
    if not args.only <= {"hits", "jobs"}:
        parser.error("--only takes hits, jobs or both")
    if args.quick:
        args.runs, args.duration, args.misses = 1, 1.0, 50
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pinned = args.server_cpus or args.load_cpus
    pinning = Pinning.choose(args.server_cpus, args.load_cpus) if pinned else Pinning(None, None, None)
    generator = load.choose(args.load, pinning, args.connections, args.duration)
    start_load = os.getloadavg()[0]
    progress(f"scaling run: {generator.name}, {pinning.describe()}")
    with tempfile.TemporaryDirectory(prefix="grenier-scaling-") as tmp:
        hit_rows, job_rows = asyncio.run(run(args, pinning, generator, Path(tmp)))
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in Path(tmp).glob("*.log"):
                shutil.copy(log, args.logs / log.name)
    lines = [
        f"grenier scaling run, {os.cpu_count()} CPUs, Python {platform.python_version()}, {generator.name}",
        f"pinning: {pinning.describe()}",
        f"load average (1 min) at the start and at the end: {start_load:.2f}, {os.getloadavg()[0]:.2f}",
    ]
    if any(row.cell.errors for row in hit_rows):
        lines.append("note: some hits cells had errors; their rates count only the good answers")
    report = "\n".join([*lines, "", table(hit_rows, job_rows, args), ""])
    print(report)
    if args.output:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
