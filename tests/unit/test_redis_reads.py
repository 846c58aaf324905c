"""The hit path's pipelined reads against a real redis-server: right values in the right order under concurrency,
the database and the password from the URL, on asyncio's loop and on uvloop's (whose transports differ), and a
wedged server failing fast as a Redis timeout instead of holding the read."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis_reads import RedisReads
from tests.support.ports import free_port
from tests.support.redis import RedisServer

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    if request.param == "uvloop":
        return lambda coro: asyncio.Runner(loop_factory=uvloop.new_event_loop).run(coro)
    return asyncio.run


def test_concurrent_reads_get_their_own_replies(redis_url: str, run: Runner) -> None:
    plain = redis.Redis.from_url(redis_url)
    plain.mset({f"k{i}": f"v{i}".encode() * (i % 7 + 1) for i in range(300)})
    plain.close()

    async def go() -> None:
        reads = RedisReads(redis_url, connections=3, timeout=5)
        try:
            got = await asyncio.gather(*(reads.get(f"k{i}") for i in range(300)), reads.get("absent"))
            assert got == [f"v{i}".encode() * (i % 7 + 1) for i in range(300)] + [None]
            assert await reads.mget(["k1", "absent", "k2"]) == [b"v1v1", None, b"v2v2v2"]
        finally:
            await reads.close()

    run(go())


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of our own that wants a password (the URL carries it, and database 3)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--requirepass", "s3cret", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://:s3cret@127.0.0.1:{port}/3"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                proc.poll()
                assert proc.returncode is None, "redis-server exited"
                time.sleep(0.05)  # a bounded wait (200 tries) for the server to come up
        client.set("where", b"database 3")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(5)


def test_the_password_and_database_of_the_url_are_used(guarded_redis: str, run: Runner) -> None:
    async def go() -> None:
        reads = RedisReads(guarded_redis, connections=1, timeout=5)
        try:
            assert await reads.get("where") == b"database 3"
        finally:
            await reads.close()

    run(go())


def test_a_wedged_server_is_a_timeout_and_the_reads_recover(tmp_path: Path, run: Runner) -> None:
    server = RedisServer(tmp_path)
    try:
        redis.Redis.from_url(server.url).set("k", b"v")

        async def go() -> None:
            reads = RedisReads(server.url, connections=1, timeout=0.5)
            try:
                assert await reads.get("k") == b"v"
                os.kill(server.proc.pid, signal.SIGSTOP)
                try:
                    with pytest.raises(RedisTimeoutError):
                        await reads.get("k")
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                assert await reads.get("k") == b"v"  # a fresh connection replaces the wedged one
            finally:
                await reads.close()

        run(go())
    finally:
        server.stop()
