"""``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn

from core.logs import setup_logging
from core.settings import ConfigError, Settings, load


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
    purge = sub.add_parser("purge", help="forget every stored variant of a URL (Redis mode)")
    purge.add_argument("url", help="the absolute URL to purge")
    purge.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    worker = sub.add_parser("worker", help="run fetch-job worker processes (Redis mode)")
    worker.add_argument("--config", help="path to config.toml (default: $GRENIER_CONFIG or ./config.toml)")
    worker.add_argument("--processes", type=int, help="worker processes to keep alive (overrides jobs.processes)")
    worker.add_argument("--threads", type=int, help="threads per worker process (overrides jobs.threads)")
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


def _purge(settings: Settings, raw_url: str) -> int:
    from core import lookup
    from core.problems import Problem
    from core.store import RedisStore
    from core.targets import normalize

    if settings.embedded:
        print(
            "grenier: the embedded store lives inside `grenier serve`; purge there with "
            "DELETE /_grenier/cache?url=... (or PURGE <url>)",
            file=sys.stderr,
        )
        return 2
    try:
        url = normalize(raw_url)
    except Problem as exc:
        print(f"grenier: {exc.detail}", file=sys.stderr)
        return 2

    async def run() -> None:
        store = RedisStore.open(settings.redis)
        try:
            await lookup.invalidate(store, url)
        finally:
            await store.close()

    asyncio.run(run())
    print(f"purged {url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    setup_logging(settings.log.level)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "purge":
        return _purge(settings, args.url)
    from jobs.worker import run

    return run(settings, processes=args.processes, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
