"""The hit path's reads from Redis (``GET``, ``MGET``) over a small asyncio protocol with the hiredis parser.

Measured on this project's machine, the cost of a Redis read on the hit path is the client library, not Redis:
redis-py's asyncio client spends most of a hit in its command machinery (pool checkout, retry wrapper, response
parsing layers; a py-spy profile of Redis-mode hits without the hot tier put about 28 % of the server thread
there). This module keeps a few persistent connections and pipelines every read on them: a read is one RESP
command written to a socket and one future resolved by hiredis when its reply arrives, in order.

Only plain ``redis://`` TCP URLs take this path (``rediss://`` and ``unix://`` keep redis-py's); writes, scripts and
the subscription stay on redis-py. Failures raise redis-py's own exception types, so callers handle one family.

The reads share the store's circuit breaker (:mod:`core.breaker`): refused at once while it is open, tripping it
when a connection cannot be made or a read times out; a read on a connection that turns out to be dead (a Redis
restarted since) is sent once more.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .breaker import Breaker


def _command(*args: str | bytes) -> bytes:
    """One RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One connection: commands go out in order and each reply resolves the oldest waiting future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are write transports all the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            if future.done():  # its caller timed out and left; the reply still keeps the order
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("connection to Redis is closed"))
            return future
        self.waiting.append(future)
        self.transport.write(payload)
        return future

    def abort(self) -> None:
        """Drop the connection now: the next read makes a new one instead of queueing behind this one."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class RedisReads:
    """``GET`` and ``MGET`` for one Redis URL over ``connections`` pipelined connections, each command bounded by
    ``timeout`` seconds (a wedged server fails fast and its connection is dropped and made again), behind
    ``breaker`` when given."""

    def __init__(self, url: str, connections: int, timeout: float, breaker: Breaker | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path.isdigit() else 0
        self.timeout = timeout
        self.breaker = breaker
        self._slots: list[_Connection | None] = [None] * connections
        self._locks = [asyncio.Lock() for _ in range(connections)]
        self._turn = itertools.cycle(range(connections))

    @staticmethod
    def serves(url: str) -> bool:
        """Can this URL take the fast path (plain TCP)?"""
        return urlsplit(url).scheme == "redis"

    async def _connection(self, slot: int) -> _Connection:
        conn = self._slots[slot]
        if conn is not None and not conn.closed:
            return conn
        async with self._locks[slot]:
            conn = self._slots[slot]
            if conn is not None and not conn.closed:
                return conn
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    _, conn = await loop.create_connection(_Connection, self.host, self.port)
                    if self.password is not None:
                        auth = (self.username, self.password) if self.username else (self.password,)
                        await conn.send(_command("AUTH", *auth))
                    if self.db:
                        await conn.send(_command("SELECT", str(self.db)))
            except TimeoutError:
                raise RedisTimeoutError(f"connecting to Redis at {self.host}:{self.port} timed out") from None
            except OSError as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
            self._slots[slot] = conn
            return conn

    async def _call(self, payload: bytes) -> Any:
        if self.breaker is not None:
            self.breaker.check()
        try:
            try:
                return await self._send(payload)
            except RedisConnectionError:  # a connection that died with a restarted Redis: once more, afresh
                return await self._send(payload)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if self.breaker is not None:
                self.breaker.trip(exc)
            raise

    async def _send(self, payload: bytes) -> Any:
        slot = next(self._turn)
        conn = await self._connection(slot)
        future = conn.send(payload)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            conn.abort()  # replies may never come: start this connection afresh
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s") from None
        except RedisConnectionError:
            if self._slots[slot] is conn:
                self._slots[slot] = None
            raise

    async def get(self, key: str) -> bytes | None:
        reply = await self._call(_command("GET", key))
        return reply if isinstance(reply, bytes) else None

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        reply = await self._call(_command("MGET", *keys))
        return [v if isinstance(v, bytes) else None for v in reply]

    async def close(self) -> None:
        for conn in self._slots:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self._slots = [None] * len(self._slots)
