"""Shared fixtures: a throwaway real ``redis-server`` on a free port (never a server we did not start), and emptied
databases on it.

Database 0 is what ``redis_url`` empties for each unit test; groups of grenier processes (integration and security
tests) take databases 1..15 in turn, each emptied before use, so no test sees another's keys.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.cluster import RedisCluster
from tests.support.rabbitmq import RabbitServer
from tests.support.redis import RedisServer, fresh_database

_databases = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server started for this test session (and stopped after it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """Database 0 of the session's redis-server, emptied before each test (the server is ours; other databases
    belong to the grenier process groups)."""
    return fresh_database(redis_server, 0)


@pytest.fixture(scope="module")
def module_redis(redis_server: str) -> str:
    """A Redis URL (a database of the session's server) for this module's processes alone."""
    return fresh_database(redis_server, next(_databases))


@pytest.fixture(scope="module")
def second_module_redis(redis_server: str) -> str:
    """Another database for this module, for a second group of processes that must not share the first's queue."""
    return fresh_database(redis_server, next(_databases))


@pytest.fixture
def fresh_redis(redis_server: str) -> Callable[[], str]:
    """Make a Redis URL on an emptied database of the session's server, for this test's processes alone."""
    return lambda: fresh_database(redis_server, next(_databases))


@pytest.fixture(scope="session")
def rabbitmq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AMQP URL of a real rabbitmq-server started for this test session, only when a test asks for it (it takes
    seconds to start); each test isolates itself by a queue name of its own (``fresh_queue``)."""
    server = RabbitServer(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def fresh_queue() -> str:
    """A job queue name no other test uses (queues on the session's RabbitMQ outlive a test)."""
    return f"grenier-fetch-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-primary Redis Cluster started for this test session, only when a test asks for it."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """A seed node's URL of the session's cluster, every node emptied first (a cluster has one database)."""
    redis_cluster.flush()
    return redis_cluster.url
