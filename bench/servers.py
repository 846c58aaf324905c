"""Every contender of the run, started on 127.0.0.1, waited for, warmed and stopped.

The shared pieces (the origin and one throwaway ``redis-server``) live for the whole run in a :class:`Lab`; each
contender is an async context manager that starts its processes, yields a :class:`Contender` once it answers, and
stops them by their ids when the block ends:

* :func:`grenier`: ``grenier serve`` alone (embedded) or with ``grenier worker`` (on the lab's Redis);
* :func:`bare`: :func:`bench.apps.bare_app`, in one or several processes sharing the port (SO_REUSEPORT);
* :func:`naive`: :func:`bench.apps.naive_app` on the lab's Redis;
* :func:`nginx`: nginx with ``proxy_cache`` in front of the origin, from a throwaway config in the run's temp dir
  (``-p``/``-c``/``-e`` keep it off the system nginx's files, ``daemon off`` keeps it a child of ours).
"""

from __future__ import annotations

import asyncio
import enum
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.apps import body, naive_key, path, uvloop_available
from bench.processes import HOST, PHASE_LIMIT, Pinning, Proc, Processes, free_port

ROOT = Path(__file__).resolve().parent.parent


class Kind(enum.Enum):
    GRENIER = "grenier"  # asked through /fetch?url=<origin URL>; a hit says so in Cache-Status
    NGINX = "nginx"  # asked for the origin's path; a hit says so in X-Cache-Status
    PLAIN = "plain"  # asked for the origin's path; every answer counts (bare aiohttp, naive)


@dataclass
class Contender:
    key: str
    label: str
    kind: Kind
    base: str
    origin: str
    #: Every server-side process that works for this contender's hits (its own, and the Redis it reads): their CPU
    #: time is what a hit costs.
    server_pids: list[int] = field(default_factory=list)
    #: The processes whose peak RSS the run reports, by the name the table gives them.
    watched: dict[str, Proc] = field(default_factory=dict)

    def url(self, origin_path: str) -> str:
        if self.kind is Kind.GRENIER:
            return f"{self.base}/fetch?url={self.origin}{origin_path}"
        return f"{self.base}{origin_path}"

    def is_hit(self, headers: Mapping[str, str]) -> bool:
        match self.kind:
            case Kind.GRENIER:
                # RFC 9211: a list whose first member is this cache, e.g. `grenier; hit; ttl=599`.
                first = headers.get("Cache-Status", "").split(",")[0]
                return "hit" in (param.strip() for param in first.split(";")[1:])
            case Kind.NGINX:
                return headers.get("X-Cache-Status", "") == "HIT"
            case Kind.PLAIN:
                return True

    async def answers_hit(self, session: aiohttp.ClientSession, size: int) -> bool:
        """Whether ``size``'s hot URL answers its body now, as a hit (asked with ``Prefer: wait=10``)."""
        async with session.get(self.url(path(size, "hot")), headers={"Prefer": "wait=10"}) as resp:
            got = await resp.read()
            return resp.status == 200 and got == body(size) and self.is_hit(resp.headers)

    async def warm(self, session: aiohttp.ClientSession, size: int) -> str:
        """Make ``size``'s hot URL a hit (fetched and stored) and return it; fail loudly if it never becomes one."""
        deadline = time.monotonic() + PHASE_LIMIT
        while time.monotonic() < deadline:
            if await self.answers_hit(session, size):
                return self.url(path(size, "hot"))
            await asyncio.sleep(0.05)
        raise SystemExit(f"{self.label}: {self.url(path(size, 'hot'))} never answered its body as a hit")


@dataclass
class Lab:
    """What every contender shares: the processes, the pinning, the temp dir, the origin and the Redis."""

    procs: Processes
    pinning: Pinning
    workdir: Path
    sizes: Sequence[int]
    origin: str = ""
    redis_url: str = ""
    redis: Proc | None = None
    #: Extra GRENIER_* settings for the grenier processes (``--grenier-env``).
    grenier_env: Mapping[str, str] = field(default_factory=dict)

    def pids(self, procs: Sequence[Proc], *, with_redis: bool = False) -> list[int]:
        """The ids of ``procs``, and of the Redis when they read it."""
        return [p.pid for p in procs] + ([self.redis.pid] if with_redis and self.redis else [])

    def python(self, name: str, *args: str) -> Proc:
        """Start one of :mod:`bench.apps`'s servers on the server CPUs."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return self.procs.start(name, self.pinning.on_server([sys.executable, "-m", "bench.apps", *args]), env)


async def wait_until_up(url: str, procs: Sequence[Proc]) -> None:
    deadline = time.monotonic() + PHASE_LIMIT
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            for proc in procs:
                proc.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up within {PHASE_LIMIT:g} s")
            await asyncio.sleep(0.1)


# --- what lives for the whole run ------------------------------------------------------------------------------


async def start_origin(lab: Lab) -> None:
    port = free_port()
    proc = lab.python("origin", "origin", "--port", str(port))
    lab.origin = f"http://{HOST}:{port}"
    await wait_until_up(f"{lab.origin}{path(1)}", [proc])


async def start_redis(lab: Lab) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: install it (e.g. apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(lab.workdir)]
    proc = lab.procs.start("redis", lab.pinning.on_server(argv))
    lab.redis_url = f"redis://{HOST}:{port}/0"
    lab.redis = proc
    client = aioredis.Redis.from_url(lab.redis_url)
    try:
        deadline = time.monotonic() + PHASE_LIMIT
        while True:
            try:
                await client.ping()
                return
            except aioredis.ConnectionError:
                proc.check_alive()
                if time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not come up within {PHASE_LIMIT:g} s") from None
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


# --- grenier ---------------------------------------------------------------------------------------------------


def grenier_bin() -> str:
    local = Path(sys.executable).parent / "grenier"
    found = str(local) if local.exists() else shutil.which("grenier")
    if found is None:
        raise SystemExit("grenier is not installed in this environment: run `make bench`")
    return found


def serve_has_processes() -> bool:
    """Whether the installed ``grenier serve`` takes ``--processes``."""
    done = subprocess.run(
        [grenier_bin(), "serve", "--help"], capture_output=True, text=True, timeout=PHASE_LIMIT, check=False
    )
    return "--processes" in done.stdout


def grenier_env(lab: Lab, *, on_redis: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_")}
    env["GRENIER_LOG_LEVEL"] = "warning"
    env["GRENIER_LOG_ACCESS"] = "false"  # as nginx's is here (access_log off): the figures are the cache's own
    # The origin is on loopback, which the SSRF guard refuses unless opted in; one client makes every miss here.
    env["GRENIER_SECURITY_ALLOW_NETWORKS"] = "127.0.0.0/8"
    env["GRENIER_SECURITY_ALLOW_PORTS"] = lab.origin.rsplit(":", 1)[1]
    env["GRENIER_SERVER_MISS_RATE"] = "0"
    if on_redis:
        env["GRENIER_REDIS_URL"] = lab.redis_url
    env.update(lab.grenier_env)
    return env


@asynccontextmanager
async def grenier(lab: Lab, *, on_redis: bool, processes: int = 1) -> AsyncIterator[Contender]:
    mode = "on Redis" if on_redis else "embedded"
    key = "redis" if on_redis else "embedded"
    label = f"grenier {mode}"
    if processes > 1:
        key, label = f"{key}-x{processes}", f"{label}, serve --processes {processes}"
    port = free_port()
    env = grenier_env(lab, on_redis=on_redis)
    config = ["--config", str(ROOT / "config.toml")]
    serve = [grenier_bin(), "serve", *config, "--host", HOST, "--port", str(port)]
    if processes > 1:
        serve += ["--processes", str(processes)]
    started = [lab.procs.start(f"{key}-serve", lab.pinning.on_server(serve), env)]
    if on_redis:
        started.append(lab.procs.start(f"{key}-worker", lab.pinning.on_server([grenier_bin(), "worker", *config]), env))
    watched = {"grenier serve": started[0]}
    if on_redis:
        watched["grenier worker"] = started[1]
    try:
        base = f"http://{HOST}:{port}"
        await wait_until_up(f"{base}/_grenier/ready", started)
        pids = lab.pids(started, with_redis=on_redis)
        yield Contender(key, label, Kind.GRENIER, base, lab.origin, pids, watched)
    finally:
        for proc in reversed(started):
            lab.procs.stop(proc)


# --- the baselines ---------------------------------------------------------------------------------------------


def bare_label(processes: int = 1) -> str:
    loop = "uvloop" if uvloop_available() else "asyncio"
    return f"bare aiohttp ({loop})" + (f" x {processes}, SO_REUSEPORT" if processes > 1 else "")


@asynccontextmanager
async def bare(lab: Lab, processes: int = 1) -> AsyncIterator[Contender]:
    key = "bare" if processes == 1 else f"bare-x{processes}"
    port = free_port()
    args = ["bare", "--port", str(port), "--sizes", ",".join(map(str, lab.sizes))]
    args += ["--loop", "uvloop" if uvloop_available() else "asyncio"]
    if processes > 1:
        args.append("--reuse-port")
    started = [lab.python(f"{key}-{i}", *args) for i in range(processes)]
    try:
        base = f"http://{HOST}:{port}"
        await wait_until_up(f"{base}{path(lab.sizes[0])}", started)
        yield Contender(key, bare_label(processes), Kind.PLAIN, base, lab.origin, lab.pids(started))
    finally:
        for proc in reversed(started):
            lab.procs.stop(proc)


@asynccontextmanager
async def naive(lab: Lab) -> AsyncIterator[Contender]:
    client = aioredis.Redis.from_url(lab.redis_url)
    try:
        for size in lab.sizes:
            await client.set(naive_key(size), body(size))
    finally:
        await client.aclose()
    port = free_port()
    proc = lab.python("naive", "naive", "--port", str(port), "--redis-url", lab.redis_url)
    try:
        base = f"http://{HOST}:{port}"
        await wait_until_up(f"{base}{path(lab.sizes[0])}", [proc])
        pids = lab.pids([proc], with_redis=True)
        yield Contender("naive", "naive: aiohttp + one Redis GET", Kind.PLAIN, base, lab.origin, pids)
    finally:
        lab.procs.stop(proc)


def nginx_bin() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def nginx_conf(prefix: Path, port: int, origin: str, workers: int) -> str:
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for directory in temp.values():
        directory.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would run as an unprivileged user that cannot enter our private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=60m use_temp_path=off;
    upstream origin {{
        server {origin.removeprefix("http://")};
        keepalive 16;
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 10m;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


@asynccontextmanager
async def nginx(lab: Lab, binary: str) -> AsyncIterator[Contender]:
    prefix = lab.workdir / "nginx"
    prefix.mkdir()
    port = free_port()
    workers = len(lab.pinning.server) if lab.pinning.server else 1
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, lab.origin, workers))
    argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    proc = lab.procs.start("nginx", lab.pinning.on_server(argv))
    try:
        base = f"http://{HOST}:{port}"
        await wait_until_up(f"{base}{path(lab.sizes[0], 'up')}", [proc])
        yield Contender("nginx", "nginx proxy_cache", Kind.NGINX, base, lab.origin, lab.pids([proc]))
    finally:
        lab.procs.stop(proc)
