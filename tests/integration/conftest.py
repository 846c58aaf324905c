"""Fixtures for the integration tests: one origin server per session, grenier processes per module or test.

The session's real redis-server (``redis_server`` from ``tests/conftest.py``) is shared: each group of grenier
processes gets a Redis database of its own (``module_redis``, ``fresh_redis``), emptied before use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.origins import Origin
from tests.support.ports import CLOSED_PORT
from tests.support.processes import Launcher, allow_loopback


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    server = Origin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def loopback(origin: Origin) -> dict[str, str]:
    """What every grenier here may fetch from on 127.0.0.1: the origin, and the port where nothing listens."""
    return allow_loopback(origin.port, CLOSED_PORT)


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory, loopback: dict[str, str]) -> Iterator[Launcher]:
    with Launcher(tmp_path_factory.mktemp("grenier-module"), loopback) as launcher:
        yield launcher


@pytest.fixture
def launcher(tmp_path: Path, loopback: dict[str, str]) -> Iterator[Launcher]:
    with Launcher(tmp_path, loopback) as launcher:
        yield launcher


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that keeps bodies as sent and never follows redirects on its own."""
    async with aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
