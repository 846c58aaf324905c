"""Fixtures for the integration tests: one origin server per session, grenier processes per module or test.

The session's real redis-server (``redis_server`` from ``tests/conftest.py``) is shared: each group of grenier
processes gets a Redis database number of its own, emptied before use, so no test sees another's keys.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from .origin import Origin
from .support import LOOPBACK_PORTS, Launcher

#: Database 0 is what ``redis_url`` flushes for unit tests; grenier process groups here take 1..15 in turn.
_databases = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    server = Origin().start()
    LOOPBACK_PORTS.append(server.port)
    try:
        yield server
    finally:
        server.stop()


def _fresh_db(redis_server: str) -> str:
    url = redis_server.rsplit("/", 1)[0] + f"/{next(_databases)}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(scope="module")
def module_redis(redis_server: str) -> str:
    """A Redis URL (a database of the session's server) for this module's processes alone."""
    return _fresh_db(redis_server)


@pytest.fixture
def fresh_redis(redis_server: str) -> Callable[[], str]:
    """Make a Redis URL on an emptied database of the session's server, for this test's processes alone."""
    return lambda: _fresh_db(redis_server)


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("grenier-module"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that keeps bodies as sent and never follows redirects on its own."""
    async with aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
