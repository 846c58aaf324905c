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
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        """Each command's future and the loop time by which its reply must have come."""
        self.closed = False
        self.timed_out = False
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are write transports all the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, _ = self.waiting.popleft()
            if future.done():  # its caller timed out and left; the reply still keeps the order
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(
                    RedisTimeoutError("Redis did not answer in time")
                    if self.timed_out
                    else RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
                )

    def send(self, payload: bytes, timeout: float) -> asyncio.Future[Any]:
        """Queue a command; the commands queued in one turn of the event loop go out in one write (one system
        call for all the hits being answered at once, where a write per command cost a quarter of the hit path
        in the profile)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("connection to Redis is closed"))
            return future
        self.waiting.append((future, loop.time() + timeout))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def overdue(self, now: float) -> bool:
        """Has the oldest command waited past its deadline (the server is wedged, or the reply lost)?"""
        return bool(self.waiting) and self.waiting[0][1] < now

    def abort(self, *, timed_out: bool = False) -> None:
        """Drop the connection now: the next read makes a new one instead of queueing behind this one."""
        self.closed = True
        self.timed_out = timed_out
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
        self._watchdog: asyncio.Task[None] | None = None

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
                        await conn.send(_command("AUTH", *auth), self.timeout)
                    if self.db:
                        await conn.send(_command("SELECT", str(self.db)), self.timeout)
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
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        try:
            return await conn.send(payload, self.timeout)
        except RedisConnectionError:
            if self._slots[slot] is conn:
                self._slots[slot] = None
            raise

    async def _watch(self) -> None:
        """Abort a connection whose oldest command is overdue (its waiters get a timeout error, and the next read
        makes a new connection): one check every fraction of the timeout for all reads, rather than a timer per
        read (``wait_for`` per read cost several per cent of the hit path)."""
        loop = asyncio.get_running_loop()
        while any(c is not None and not c.closed for c in self._slots):
            await asyncio.sleep(self.timeout / 4)
            now = loop.time()
            for conn in self._slots:
                if conn is not None and not conn.closed and conn.overdue(now):
                    conn.abort(timed_out=True)

    async def get(self, key: str) -> bytes | None:
        reply = await self._call(_command("GET", key))
        return reply if isinstance(reply, bytes) else None

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        reply = await self._call(_command("MGET", *keys))
        return [v if isinstance(v, bytes) else None for v in reply]

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for conn in self._slots:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self._slots = [None] * len(self._slots)
