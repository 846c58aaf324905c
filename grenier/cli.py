"""``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn

from core.logs import setup_logging
from core.settings import ConfigError, Settings, env_warnings, load

log = logging.getLogger("grenier")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grenier", description="A caching HTTP proxy.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy (embedded mode runs its own workers)")
    serve.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument(
        "--processes", type=int, help="server processes on the one port, 0: one per core (overrides server.processes)"
    )
    purge = sub.add_parser("purge", help="forget (or mark stale) stored responses (Redis mode)")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("url", nargs="?", help="the absolute URL to purge (every stored variant of it)")
    which.add_argument("--prefix", help="every URL under this absolute URL prefix (a host alone: the whole host)")
    which.add_argument("--tag", help="every entry whose response carried this surrogate key")
    which.add_argument("--all", action="store_true", help="every entry (a flush)")
    purge.add_argument("--soft", action="store_true", help="mark them stale (revalidated next time) instead")
    purge.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    inspect = sub.add_parser("inspect", help="print what is stored for a URL, and why, as JSON (Redis mode)")
    inspect.add_argument("url", help="the absolute URL to inspect")
    inspect.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    worker = sub.add_parser("worker", help="run fetch-job worker processes (Redis mode)")
    worker.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    worker.add_argument("--processes", type=int, help="worker processes to keep alive (overrides jobs.processes)")
    worker.add_argument("--threads", type=int, help="threads per worker process (overrides jobs.threads)")
    worker.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if a worker process is alive (jobs.alive_file is fresh) and the broker answers",
    )
    return p


def _config_error(exc: ConfigError) -> NoReturn:
    print(f"grenier: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = load(args.config)
        if args.command == "serve":
            if args.processes is not None and args.processes < 0:
                raise ConfigError(f"--processes: must be at least 0, got {args.processes}")
            server = replace(
                settings.server,
                host=args.host or settings.server.host,
                port=settings.server.port if args.port is None else args.port,
                processes=settings.server.processes if args.processes is None else args.processes,
            )
            settings = replace(settings, server=server)
        if args.command == "worker":
            for name in ("processes", "threads"):
                value = getattr(args, name)
                if value is not None and value < 1:
                    raise ConfigError(f"--{name}: must be at least 1, got {value}")
        return settings
    except ConfigError as exc:
        _config_error(exc)


def _serve(settings: Settings) -> int:
    from . import servers

    try:
        return servers.run(settings)
    except ConfigError as exc:
        _config_error(exc)


def _redis_only(settings: Settings, what: str) -> bool:
    if settings.embedded:
        print(
            f"grenier: the embedded store lives inside `grenier serve`; {what} there with the admin endpoint"
            " /_grenier/cache (see the README)",
            file=sys.stderr,
        )
        return False
    return True


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    """``grenier purge URL | --prefix P | --tag T | --all [--soft]``: 0 when something was purged, 1 when nothing
    matched (a URL with nothing stored), 2 on bad input."""
    from core.invalidation import ByUrl, Everything, Target, describe, prefix_target, tag_target
    from core.problems import Problem
    from core.store import RedisStore
    from core.targets import normalize

    if not _redis_only(settings, "purge"):
        return 2
    try:
        target: Target
        if args.prefix is not None:
            target = prefix_target(args.prefix)
        elif args.tag is not None:
            target = tag_target(args.tag)
        elif args.all:
            target = Everything()
        else:
            target = ByUrl(normalize(args.url))
    except Problem as exc:
        print(f"grenier: {exc.detail}", file=sys.stderr)
        return 2

    async def run() -> int:
        store = RedisStore.open(settings.redis)
        try:
            return await store.purge(target, soft=args.soft)
        finally:
            await store.close()

    count = asyncio.run(run())
    named = (
        "everything" if isinstance(target, Everything) else " ".join(f"{k} {v}" for k, v in describe(target).items())
    )
    print(f"{'soft-purged' if args.soft else 'purged'} {named}: {count} affected")
    if count == 0 and isinstance(target, ByUrl):
        print(f"grenier: nothing is stored for {target.url}", file=sys.stderr)
        return 1
    return 0


def _inspect(settings: Settings, raw_url: str) -> int:
    """``grenier inspect URL``: the same JSON as ``GET /_grenier/cache?url=``."""
    import json
    import time

    from core import inspection
    from core.problems import Problem
    from core.store import RedisStore
    from core.targets import normalize

    if not _redis_only(settings, "inspect"):
        return 2
    try:
        url = normalize(raw_url)
    except Problem as exc:
        print(f"grenier: {exc.detail}", file=sys.stderr)
        return 2

    async def run() -> dict[str, object]:
        store = RedisStore.open(settings.redis)
        try:
            return await inspection.inspect(store, url, time.time(), settings.cache)
        finally:
            await store.close()

    print(json.dumps(asyncio.run(run()), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    setup_logging(settings.log.level, settings.log.format)
    for line in env_warnings(os.environ):
        log.warning("%s", line)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "purge":
        return _purge(settings, args)
    if args.command == "inspect":
        return _inspect(settings, args.url)
    from jobs.worker import check, run

    if args.check:
        return check(settings)
    return run(settings, processes=args.processes, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
