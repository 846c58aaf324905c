"""The lean hit path: a fresh response held in this process's memory, answered straight from the connection's bytes.

Why it exists: through aiohttp a hit pays for a request object, a task, three middlewares, a response object and
its header serialisation, about two thirds of what a 1 KiB hit cost in the profile (docs/performance.md). A hit
needs none of it: read the head, find the entry in memory, ask :func:`core.policy.decide`, write a header block
prepared once per entry with the few fields that change per response (``Date``, ``Age``, ``Cache-Status``).

It takes only requests whose answer it can give exactly as the full path would (``tests/integration/
test_lean_hits.py`` holds the two to the same bytes):

* ``GET``, HTTP/1.1, one valid ``Host``, and only :data:`HARMLESS` fields: fields that cannot change the answer to a
  hit on an entry that does not vary. Anything that frames a body, asks for validation, a range, a conditional or
  another connection state, carries credentials or names a loop is not harmless;
* a target the full path would look up: ``/fetch?url=`` (forward mode) or an absolute-form target, from a client
  network ``server.allow_clients`` admits while no proxy users are set; in reverse mode, a path outside
  ``/_grenier/`` without percent-escapes. Loops and targets the SSRF guard refuses by spelling go the full way, to be
  refused there;
* an entry already in memory (the embedded store, or the hot tier in Redis mode; never a read that would wait), not a
  Vary index nor a stored part (a 206), whose body is whole in memory too, and that ``decide`` calls a fresh
  :class:`~core.policy.Hit`.

Everything else goes to aiohttp, and so does every later byte of that connection: the handover is final, so
aiohttp's parser never starts in the middle of a connection, and a connection that only asks for hits (a load
balancer's, a benchmark's) never leaves the lean path.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, Protocol

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from yarl import URL

from core import policy
from core.counts import Count
from core.policy import Headers
from core.problems import Problem
from core.records import Cached, StoredResponse
from core.settings import Settings
from core.store import Store
from core.targets import cache_key, join_origin, names_self, normalize
from core.upstream import Upstream

from . import responses
from .access import in_networks
from .access_log import LeanAccessLog
from .cache_status import cache_status
from .client_address import parse_address
from .metrics import Metrics
from .stats import Counters
from .wire import HOST_FIELD

log = logging.getLogger(__name__)

#: Request fields that cannot change the answer to a hit on an entry that does not vary: who is asking and what it
#: would like, none of it read by the cache for such an entry. A request carrying any other field takes the full
#: path, which knows what to do with it.
HARMLESS = frozenset(
    {
        b"host",
        b"user-agent",
        b"accept",
        b"accept-language",
        b"accept-encoding",
        b"accept-charset",
        b"connection",  # only "keep-alive": any other value goes the full way
        b"keep-alive",
        b"referer",
        b"origin",
        b"dnt",
        b"priority",
        b"upgrade-insecure-requests",
        b"sec-fetch-site",
        b"sec-fetch-mode",
        b"sec-fetch-dest",
        b"sec-fetch-user",
        b"sec-ch-ua",
        b"sec-ch-ua-mobile",
        b"sec-ch-ua-platform",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    }
)

_REQUEST_LINE = re.compile(rb"GET ([!-~]+) HTTP/1\.1")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t -~]*")
_HOST = re.compile(HOST_FIELD.pattern.encode())
_CONTROL_PREFIX = b"/_grenier"
_API_PATHS = (b"/fetch", b"/_grenier/fetch")

#: Stop answering on the lean path while this many bytes wait in the connection's write buffer: the rest of the
#: connection goes to aiohttp, which waits for the client to drain them.
WRITE_BUFFER_LIMIT = 256 * 1024

#: A head still incomplete at this size is aiohttp's to read (and refuse): no lean head is anywhere near it.
MAX_HEAD = 64 * 1024

#: Bodies up to this size go out in the same write as their head; larger ones after it, uncopied.
_JOIN_BELOW = 64 * 1024

#: Parsed targets and prepared header blocks kept; past this the memo starts again (a bound, not a cache policy).
_MEMO_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    key: str
    api: bool
    """``/fetch?url=``: answered as foreign content from grenier's own origin (see ``handlers.as_foreign``)."""
    client_checked: bool
    """The full path checks the client's network for this target (forward proxy and ``/fetch``)."""


class LeanHits:
    """Answers the hits it can on a connection's bytes; see the module docstring for which."""

    def __init__(
        self, settings: Settings, store: Store, upstream: Upstream, counters: Counters, metrics: Metrics
    ) -> None:
        self._settings = settings
        self._store = store
        self._upstream = upstream
        self._counters = counters
        self._metrics = metrics
        self._rules = settings.cache
        self._pseudonym = settings.server.pseudonym
        self._own_field = settings.cache.targeted_field
        self._origin = settings.upstream.origin
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in settings.server.allow_clients)
        self._users = bool(settings.server.proxy_users)
        self._max_line = settings.server.max_line_bytes
        self._max_field = settings.server.max_field_bytes
        self._targets: dict[bytes, _Target | None] = {}
        self._blocks: dict[tuple[int, Headers, int, bool], bytes] = {}
        self._statuses: dict[int, bytes] = {}
        self._date_second = -1
        self._date = b""
        self.served = 0
        self.access = LeanAccessLog.build(settings)

    # --- per connection --------------------------------------------------------------------------------------------

    def client_allowed(self, transport: asyncio.BaseTransport) -> bool:
        """May this connection's peer use the forward proxy and ``/fetch`` (``AccessRules.check_client``)?"""
        if self._users:
            return False
        peer = transport.get_extra_info("peername")
        return bool(peer) and in_networks(parse_address(str(peer[0])), self._networks)

    def connection(self, transport: asyncio.Transport, owner: LeanOwner) -> LeanConnection:
        """The lean state of a new connection (``owner``: the connection's aiohttp request handler)."""
        return LeanConnection(self, transport, self.client_allowed(transport), owner)

    def parse(self, head: bytes, client_allowed: bool) -> _Target | None:
        """The target of a request head the lean path may answer (see the module docstring), else ``None``."""
        lines = head.split(b"\r\n")
        request_line = _REQUEST_LINE.fullmatch(lines[0])
        if request_line is None or len(lines[0]) > self._max_line:
            return None
        hosts = 0
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            lower = name.lower()
            if not sep or lower not in HARMLESS or len(line) > self._max_field or not _TOKEN.fullmatch(name):
                return None
            value = value.strip(b" \t")
            if not _VALUE.fullmatch(value):
                return None
            if lower == b"host":
                hosts += 1
                if not _HOST.fullmatch(value):
                    return None
            elif lower == b"connection" and value.lower() != b"keep-alive":
                return None
        if hosts != 1:
            return None
        target = self._target(request_line.group(1))
        if target is None or (target.client_checked and not client_allowed):
            return None
        return target

    def answer_held(self, target: _Target, started: float) -> list[bytes] | Literal[False] | None:
        """The answer from what this process holds in memory; ``False`` when the entry (or a chunk of it) is not held
        here (a read would tell), ``None`` when the lean path cannot answer at all."""
        held = self._store.peek_entry(target.key)
        if held is None:
            return False
        entry = self._takes(held)
        if entry is None:
            return None
        ref = entry.body_ref
        chunks = self._store.peek_chunks(ref.name, range(ref.count), ref.size) if ref is not None else []
        body = _whole(entry, chunks)
        return False if body is None else self.answer(target, entry, body, started)

    async def answer_read(self, target: _Target, started: float) -> list[bytes] | None:
        """The answer after reading the store (Redis mode: an entry not, or no longer, in the hot tier); ``None``
        when the lean path cannot answer."""
        entry = self._takes(await self._store.get_entry(target.key))
        if entry is None:
            return None
        ref = entry.body_ref
        chunks = await self._store.get_chunks(ref.name, range(ref.count), ref.size) if ref is not None else []
        body = _whole(entry, chunks)
        return None if body is None else self.answer(target, entry, body, started)

    def _takes(self, entry: Cached | None) -> StoredResponse | None:
        """``entry`` if the lean path may answer with it: a response (not a Vary index) no larger than the hot tier
        holds; a larger body goes the full way, which streams it a few chunks at a time."""
        if isinstance(entry, StoredResponse) and entry.size <= self._rules.hot_entry_bytes:
            return entry
        return None

    def answer(self, target: _Target, entry: StoredResponse, body: list[bytes], started: float) -> list[bytes] | None:
        """The bytes that answer ``target`` with ``entry`` if it is a fresh hit now, counted as one."""
        if entry.status not in _PHRASES or entry.status == 206:
            return None  # a stored part (RFC 9111 §3.3) never answers a request without a range
        now = time.time()
        decision = policy.decide((), entry.times, now, self._rules)
        if not isinstance(decision, policy.Hit) or decision.ttl < 0:
            return None
        block = self._block(entry, target.api)
        if block is None:
            return None
        age = int(policy.current_age(entry.headers, entry.request_time, entry.response_time, now))
        status_field = cache_status(self._pseudonym, hit=True, ttl=decision.ttl)
        head_out = b"".join(
            (
                block,
                b"Date: ",
                self._date_at(now),
                b"\r\nAge: ",
                str(age).encode(),
                b"\r\nCache-Status: ",
                status_field.encode(),
                b"\r\n\r\n",
            )
        )
        self._counters.add(Count.HITS)
        self._metrics.observe(status_field, entry.status, time.perf_counter() - started, entry.size)
        self.served += 1
        if not body:
            return [head_out]
        if len(body) == 1 and len(body[0]) < _JOIN_BELOW:
            return [head_out + body[0]]
        return [head_out, *body]

    def _target(self, raw: bytes) -> _Target | None:
        """What the full path would look up for this request target, or ``None`` when it would do anything else
        (memoised: clients ask for the same targets over and over)."""
        try:
            return self._targets[raw]
        except KeyError:
            pass
        target = self._parse_target(raw)
        if len(self._targets) >= _MEMO_SIZE:
            self._targets.clear()
        self._targets[raw] = target
        return target

    def _parse_target(self, raw: bytes) -> _Target | None:
        try:
            text = raw.decode("ascii")
            if not raw.startswith(b"/"):  # absolute-form: the forward proxy (routing.proxy_middleware)
                url, api, checked = normalize(text), False, True
            elif self._origin:
                raw_path = raw.split(b"?", 1)[0]
                if b"%" in raw_path or raw_path == _CONTROL_PREFIX or raw_path.startswith(_CONTROL_PREFIX + b"/"):
                    return None
                url, api, checked = join_origin(self._origin, text), False, False
            else:
                path, _, query = text.partition("?")
                if path.encode() not in _API_PATHS:
                    return None
                url = normalize(URL.build(path=path, query_string=query, encoded=True).query.get("url"))
                api, checked = True, True
            # What handlers._relay_reason refuses (a loop through grenier itself, a target refused by its spelling)
            # is refused on the full path, with its problem document.
            server = self._settings.server
            if names_self(url, server.host, server.port):
                return None
            self._upstream.check_spelling(url)
        except (Problem, UnicodeError, ValueError):
            return None
        return _Target(url, cache_key(url), api, checked)

    def _block(self, entry: StoredResponse, api: bool) -> bytes | None:
        """The header block for ``entry``, filed by what it is made of (status, fields, size), so that the same
        stored response read again from Redis (a new object each read) finds the block already built."""
        key = (entry.status, entry.headers, entry.size, api)
        block = self._blocks.get(key)
        if block is not None:
            return block
        headers = responses.hit_fields(entry.headers, self._pseudonym)
        if self._own_field:  # RFC 9213 §2.1: addressed to grenier alone (app.py strips it on the full path)
            headers.popall(self._own_field, None)
        if api:
            responses.make_foreign(headers)
        headers.setdefault("Content-Type", "application/octet-stream")
        headers["Content-Length"] = str(entry.size)
        headers.setdefault("Server", SERVER_SOFTWARE)
        try:
            fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if "\r" in fields.replace("\r\n", "") or "\n" in fields.replace("\r\n", ""):
                return None
            head = _PHRASES[entry.status] + fields.encode("utf-8")
        except UnicodeError:
            return None
        if len(self._blocks) >= _MEMO_SIZE:
            self._blocks.clear()
        self._blocks[key] = head
        return head

    def _date_at(self, now: float) -> bytes:
        second = int(now)
        if second != self._date_second:
            self._date = email.utils.formatdate(second, usegmt=True).encode()
            self._date_second = second
        return self._date


#: Status lines of the statuses a stored response may have, as aiohttp writes them.
_PHRASES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus if s.value >= 200}


class LeanOwner(Protocol):
    """What owns a connection the lean path answers on: aiohttp's request handler for it (``proxy/wire.py``)."""

    def lean_answered(self) -> None:
        """A response went out: the connection's idle timer starts again (as it does after aiohttp's own). Bytes
        that arrive do not restart it, so a head trickled in forever is cut off all the same."""

    def lean_handover(self, rest: bytes) -> None:
        """The lean path is done with this connection: ``rest`` and every later byte are aiohttp's."""


class LeanConnection:
    """One connection while the lean path has it: requests are answered in order, from memory at once, or after a
    store read (during which later bytes wait, in order, behind it); the first request it cannot answer hands the
    connection, from that request on, to aiohttp."""

    def __init__(
        self,
        hits: LeanHits,
        transport: asyncio.Transport,
        client_allowed: bool,
        owner: LeanOwner,
    ) -> None:
        self._hits = hits
        self._transport = transport
        self._client_allowed = client_allowed
        self._owner = owner
        self._buffer = b""
        self._reading: asyncio.Task[None] | None = None
        self._paused = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._reading is None:
            self._run()
        elif len(self._buffer) > WRITE_BUFFER_LIMIT and not self._paused:  # a client pipelining this much waits
            self._paused = True
            self._transport.pause_reading()

    def close(self) -> None:
        """The connection is gone: stop any read under way."""
        if self._reading is not None:
            self._reading.cancel()

    def _run(self) -> None:
        hits, transport = self._hits, self._transport
        while self._buffer:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0 or transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT or transport.is_closing():
                break
            started = time.perf_counter()
            try:
                target = hits.parse(self._buffer[:head_end], self._client_allowed)
                answer = hits.answer_held(target, started) if target is not None else None
            except Exception:  # never a lean failure: the full path answers this request instead
                log.exception("lean hit path failed; the request goes the full way")
                break
            if answer is None:
                break
            if answer is False:
                assert target is not None
                self._reading = asyncio.get_running_loop().create_task(self._read(target, head_end + 4, started))
                return
            self._write(answer)
            if hits.access is not None:
                hits.access.hit(transport, self._buffer[:head_end], answer, time.perf_counter() - started)
            self._buffer = self._buffer[head_end + 4 :]
        else:
            return  # all answered
        if head_end < 0 and len(self._buffer) <= MAX_HEAD and self._buffer.count(b"\n") == self._buffer.count(b"\r\n"):
            return  # half a head: wait for the rest (a bare LF would never end one here: aiohttp refuses it)
        self._give_up()

    async def _read(self, target: _Target, taken: int, started: float) -> None:
        try:
            answer = await self._hits.answer_read(target, started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down, say: the full path answers with its problem document
            log.debug("lean read failed (%s); the request goes the full way", exc)
            answer = None
        self._reading = None
        if self._transport.is_closing():
            return
        if answer is None:
            self._give_up()
            return
        self._write(answer)
        if self._hits.access is not None:
            self._hits.access.hit(self._transport, self._buffer[: taken - 4], answer, time.perf_counter() - started)
        self._buffer = self._buffer[taken:]
        self._resume()
        self._run()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._transport.resume_reading()

    def _write(self, answer: list[bytes]) -> None:
        if len(answer) == 1:
            self._transport.write(answer[0])
        else:
            self._transport.writelines(answer)
        self._owner.lean_answered()

    def _give_up(self) -> None:
        rest, self._buffer = self._buffer, b""
        self._resume()
        self._owner.lean_handover(rest)


LEAN: web.AppKey[LeanHits] = web.AppKey("grenier_lean_hits", LeanHits)


def _whole(entry: StoredResponse, chunks: Sequence[bytes | None]) -> list[bytes] | None:
    """The pieces of ``entry``'s body: inline, or its ``chunks`` when every one of them is there (else ``None``)."""
    ref = entry.body_ref
    if ref is None or entry.size == 0:
        return [entry.body] if entry.body else []
    body = [c for c in chunks if c is not None]
    return body if len(body) == ref.count else None
