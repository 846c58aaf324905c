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
  Vary index, whose body is whole in memory too, and that ``decide`` calls a fresh :class:`~core.policy.Hit`.

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
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from yarl import URL

from core import policy
from core.counts import Count
from core.problems import Problem
from core.records import StoredResponse
from core.settings import Settings
from core.store import Store
from core.targets import cache_key, join_origin, names_self, normalize
from core.upstream import Upstream

from . import responses
from .access import _address, in_networks
from .cache_status import cache_status
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


@dataclass(frozen=True, slots=True)
class _Block:
    entry: StoredResponse
    """Held so that the ``id`` the block is filed under cannot be reused while it is filed."""
    head: bytes
    """Status line and every field that does not change per response, each ending in CRLF."""


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
        self._blocks: dict[tuple[int, bool], _Block] = {}
        self._statuses: dict[int, bytes] = {}
        self._date_second = -1
        self._date = b""
        self.served = 0

    # --- per connection --------------------------------------------------------------------------------------------

    def client_allowed(self, transport: asyncio.BaseTransport) -> bool:
        """May this connection's peer use the forward proxy and ``/fetch`` (``AccessRules.check_client``)?"""
        if self._users:
            return False
        peer = transport.get_extra_info("peername")
        return bool(peer) and in_networks(_address(str(peer[0])), self._networks)

    def serve(self, data: bytes, transport: asyncio.WriteTransport, client_allowed: bool) -> int:
        """Answer the lean requests at the start of ``data``; return how many of its bytes they took (the rest, from
        the first request this path does not answer, is aiohttp's)."""
        taken = 0
        end = len(data)
        while taken < end:
            if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                break
            head_end = data.find(b"\r\n\r\n", taken)
            if head_end < 0:
                break
            try:
                answer = self._answer(data[taken:head_end], client_allowed)
            except Exception:  # never a lean failure: the full path answers this request instead
                log.exception("lean hit path failed; the request goes the full way")
                answer = None
            if answer is None:
                break
            if len(answer) == 1:
                transport.write(answer[0])
            else:
                transport.writelines(answer)
            taken = head_end + 4
        return taken

    # --- one request -----------------------------------------------------------------------------------------------

    def _answer(self, head: bytes, client_allowed: bool) -> list[bytes] | None:
        started = time.perf_counter()
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
        entry = self._store.peek_entry(target.key)
        if not isinstance(entry, StoredResponse) or entry.status not in _PHRASES:
            return None
        now = time.time()
        decision = policy.decide((), entry.times, now, self._rules)
        if not isinstance(decision, policy.Hit) or decision.ttl < 0:
            return None
        body = self._body(entry)
        if body is None:
            return None
        block = self._block(entry, target.api)
        if block is None:
            return None
        age = int(policy.current_age(entry.headers, entry.request_time, entry.response_time, now))
        status_field = cache_status(self._pseudonym, hit=True, ttl=decision.ttl)
        head_out = b"".join(
            (
                block.head,
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
        self._metrics.observe(status_field, entry.status, time.perf_counter() - started)
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

    def _body(self, entry: StoredResponse) -> list[bytes] | None:
        ref = entry.body_ref
        if ref is None or entry.size == 0:
            return [entry.body] if entry.body else []
        chunks = self._store.peek_chunks(ref.name, range(ref.count), ref.size)
        body = [c for c in chunks if c is not None]
        return body if len(body) == ref.count else None

    def _block(self, entry: StoredResponse, api: bool) -> _Block | None:
        key = (id(entry), api)
        block = self._blocks.get(key)
        if block is not None and block.entry is entry:
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
        block = self._blocks[key] = _Block(entry, head)
        return block

    def _date_at(self, now: float) -> bytes:
        second = int(now)
        if second != self._date_second:
            self._date = email.utils.formatdate(second, usegmt=True).encode()
            self._date_second = second
        return self._date


#: Status lines of the statuses a stored response may have, as aiohttp writes them.
_PHRASES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus if s.value >= 200}


LEAN: web.AppKey[LeanHits] = web.AppKey("grenier_lean_hits", LeanHits)
