"""Hit throughput and miss-to-ready latency through grenier, each beside a bare aiohttp handler, in one run.

Everything runs on 127.0.0.1 and is started (and stopped) here: an aiohttp origin, a throwaway ``redis-server`` on a
free port, ``grenier serve`` and ``grenier worker`` in Redis mode (and, with ``--embedded``, ``grenier serve`` alone).

* hit throughput: one warmed URL requested by ``--concurrency`` clients for ``--duration`` seconds or ``--requests``
  requests, whichever ends first; the bare figure is the origin's own handler returning the same bytes.
* miss-to-ready latency: ``--misses`` distinct URLs, one after another, with ``Prefer: wait=10`` (the answer is the
  fetched response itself); the bare figure is the origin answering the same URLs directly.

It prints figures and asserts nothing. Usage: ``python bench/hit_throughput.py [--embedded]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: Upper bound on any one phase (start-up, warm-up, a measurement), so a broken run ends instead of hanging.
PHASE_LIMIT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --- the origin (run in its own process: `hit_throughput.py --serve-origin PORT --body-bytes N`) -----------------


def serve_origin(port: int, body_bytes: int) -> None:
    body = (b"grenier bench " * (body_bytes // 14 + 1))[:body_bytes]
    headers = {"Content-Type": "text/plain", "Cache-Control": "max-age=600"}

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# --- processes -------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Every process this run starts; ``stop_all`` ends each one by its own id (and its own process group)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
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


def grenier_env(redis_url: str | None, origin: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_")}
    env["GRENIER_LOG_LEVEL"] = "warning"
    # The origin is on loopback, which the SSRF guard refuses unless opted in; one client makes every miss here.
    env["GRENIER_SECURITY_ALLOW_NETWORKS"] = "127.0.0.0/8"
    env["GRENIER_SECURITY_ALLOW_PORTS"] = str(urlsplit(origin).port)
    env["GRENIER_SERVER_MISS_RATE"] = "0"
    if redis_url:
        env["GRENIER_REDIS_URL"] = redis_url
    return env


def grenier_bin() -> str:
    local = Path(sys.executable).parent / "grenier"
    found = str(local) if local.exists() else shutil.which("grenier")
    if found is None:
        raise SystemExit("grenier is not installed in this environment: run `make bench`")
    return found


def start_redis(procs: Processes) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: install it (e.g. apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    procs.start("redis", [*argv, "--dir", str(procs.workdir)])
    return f"redis://{HOST}:{port}/0"


# --- measurement -----------------------------------------------------------------------------------------------


async def wait_until_up(session: aiohttp.ClientSession, url: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + PHASE_LIMIT
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as resp:
                await resp.read()
                if resp.status == 200:
                    return
        if proc is not None and proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up within {PHASE_LIMIT:g} s")
        await asyncio.sleep(0.1)


async def warm(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + PHASE_LIMIT
    while time.monotonic() < deadline:
        async with session.get(url, headers={"Prefer": "wait=10"}) as resp:
            await resp.read()
            if resp.status == 200 and "hit" in resp.headers.get("Cache-Status", "").split(";"):
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{url} never became a cache hit")


@dataclass
class Throughput:
    requests: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def throughput(url: str, concurrency: int, duration: float, limit: int, expect: bytes) -> Throughput:
    """Requests per second for ``url`` from ``concurrency`` clients, bounded by ``duration`` and ``limit``."""
    sent = done = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        end = start + duration

        async def client() -> None:
            nonlocal sent, done, errors
            while sent < limit and time.perf_counter() < end:
                sent += 1
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and body == expect
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    done += 1
                else:
                    errors += 1

        async with asyncio.timeout(duration + PHASE_LIMIT):
            await asyncio.gather(*(client() for _ in range(concurrency)))
        return Throughput(done, errors, time.perf_counter() - start)


@dataclass
class Latency:
    samples: list[float]
    errors: int

    def pct(self, p: float) -> float:
        """The ``p``-th percentile in milliseconds (nearest rank)."""
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


async def latency(session: aiohttp.ClientSession, urls: list[str], headers: dict[str, str]) -> Latency:
    """Time to the full answer for each URL, one after another (200 with a body counts; a 202 is an error)."""
    samples: list[float] = []
    errors = 0
    async with asyncio.timeout(len(urls) * 11 + PHASE_LIMIT):
        for url in urls:
            start = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                elapsed = time.perf_counter() - start
            if resp.status == 200:
                samples.append(elapsed)
            else:
                errors += 1
    return Latency(samples, errors)


# --- one mode --------------------------------------------------------------------------------------------------


@dataclass
class ModeResult:
    mode: str
    hit: Throughput
    bare_hit: Throughput
    miss: Latency
    bare_miss: Latency


async def bench_mode(
    mode: str, procs: Processes, *, origin: str, body: bytes, args: argparse.Namespace, redis_url: str | None
) -> ModeResult:
    port = free_port()
    env = grenier_env(redis_url, origin)
    config = ["--config", str(ROOT / "config.toml")]
    started = [
        procs.start(f"serve-{mode}", [grenier_bin(), "serve", *config, "--host", HOST, "--port", str(port)], env)
    ]
    if redis_url:
        started.append(procs.start(f"worker-{mode}", [grenier_bin(), "worker", *config], env))
    base = f"http://{HOST}:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_up(session, f"{base}/_grenier/ready", started[0])
            hot = f"{origin}/hot/{mode}"
            via = f"{base}/fetch?url={hot}"
            await warm(session, via)
            # Let idle workers settle so the first measurement does not share the CPU with their start-up.
            await asyncio.sleep(1.0)
            hit = await throughput(via, args.concurrency, args.duration, args.requests, body)
            bare_hit = await throughput(hot, args.concurrency, args.duration, args.requests, body)
            run = uuid.uuid4().hex[:8]
            targets = [f"{origin}/miss/{mode}/{run}/{i}" for i in range(args.misses)]
            miss = await latency(session, [f"{base}/fetch?url={t}" for t in targets], {"Prefer": "wait=10"})
            bare_miss = await latency(session, targets, {})
    finally:
        for proc in reversed(started):
            procs.stop(proc)
    return ModeResult(mode, hit, bare_hit, miss, bare_miss)


def report(results: list[ModeResult], args: argparse.Namespace) -> None:
    print(
        f"\ngrenier bench · body {args.body_bytes} B · concurrency {args.concurrency} · "
        f"up to {args.duration:g} s or {args.requests} requests per throughput figure · "
        f"{args.misses} misses · {os.cpu_count()} CPUs (client, grenier, workers, redis and origin share them)"
    )
    row = "  {:<28}{:>14}{:>14}{:>8}"
    for r in results:
        print(f"\n[{r.mode} mode]")
        print(row.format("", "grenier", "bare aiohttp", "ratio"))
        ratio = r.hit.rate / r.bare_hit.rate if r.bare_hit.rate else float("nan")
        print(row.format("hit throughput (req/s)", f"{r.hit.rate:,.0f}", f"{r.bare_hit.rate:,.0f}", f"{ratio:.2f}"))
        print(
            row.format(
                "  requests / errors",
                f"{r.hit.requests}/{r.hit.errors}",
                f"{r.bare_hit.requests}/{r.bare_hit.errors}",
                "",
            )
        )
        for p in (50, 95):
            g, b = r.miss.pct(p), r.bare_miss.pct(p)
            print(row.format(f"miss-to-ready p{p} (ms)", f"{g:.1f}", f"{b:.1f}", f"{g / b if b else float('nan'):.1f}"))
        print(
            row.format(
                "  answered / not ready",
                f"{len(r.miss.samples)}/{r.miss.errors}",
                f"{len(r.bare_miss.samples)}/{r.bare_miss.errors}",
                "",
            )
        )


async def main(args: argparse.Namespace) -> None:
    body = (b"grenier bench " * (args.body_bytes // 14 + 1))[: args.body_bytes]
    with tempfile.TemporaryDirectory(prefix="grenier-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            origin_port = free_port()
            origin_argv = [sys.executable, __file__, "--serve-origin", str(origin_port)]
            origin_proc = procs.start("origin", [*origin_argv, "--body-bytes", str(args.body_bytes)])
            origin = f"http://{HOST}:{origin_port}"
            redis_url = start_redis(procs)
            async with aiohttp.ClientSession() as session:
                await wait_until_up(session, f"{origin}/up", origin_proc)
            results = [await bench_mode("redis", procs, origin=origin, body=body, args=args, redis_url=redis_url)]
            if args.embedded:
                results.append(await bench_mode("embedded", procs, origin=origin, body=body, args=args, redis_url=None))
        finally:
            procs.stop_all()
    report(results, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per throughput figure (default 5)")
    p.add_argument("--requests", type=int, default=20000, help="at most this many requests per figure")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent client connections (default 32)")
    p.add_argument("--misses", type=int, default=50, help="distinct URLs for the miss latency (default 50)")
    p.add_argument("--body-bytes", type=int, default=4096, help="size of the origin's body (default 4096)")
    p.add_argument("--embedded", action="store_true", help="also measure the embedded mode")
    p.add_argument("--serve-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    options = parse_args()
    if options.serve_origin:
        serve_origin(options.serve_origin, options.body_bytes)
    else:
        asyncio.run(main(options))
