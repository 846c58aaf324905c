"""HTTP/1.1 framing refusals as problem documents.

aiohttp's parser (C or pure Python) already rejects ambiguous framing (``Content-Length`` with
``Transfer-Encoding``, conflicting lengths, malformed chunks) and closes the connection, but answers in plain text.
:class:`ProblemRunner` keeps its decisions and only changes the answer to ``application/problem+json``; the Host
rules it does not enforce are checked by :func:`check_host_field` in the request middleware, and the version by
:func:`check_version`. Without the C extension, aiohttp's pure-Python parser is held to what the C parser refuses.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.http_parser import HttpRequestParserPy, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _RequestFactory
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from yarl import URL

from core.problems import Problem, problem_body

if TYPE_CHECKING:
    from .lean import LeanConnection, LeanHits


class _ProblemRequestHandler(RequestHandler):
    def __init__(self, *args: Any, lean: LeanHits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self._parser) is HttpRequestParserPy:  # no C extension (AIOHTTP_NO_EXTENSIONS=1)
            self._parser.__class__ = _StrictPyRequestParser
        self._lean_hits = lean
        self._lean: LeanConnection | None = None
        """The lean hit path (``proxy/lean.py``) while this connection has only asked for what it answers; ``None``
        from the first request it leaves to aiohttp on."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._lean_hits is not None:
            self._lean = self._lean_hits.connection(cast(asyncio.Transport, transport), self)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._lean is not None:
            self._lean.close()
            self._lean = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes go to the lean hit path while it answers every request in them, else (from the first request it
        does not answer) to aiohttp's parser, for good: aiohttp never starts in the middle of a connection."""
        if self._lean is not None:
            if not (self._force_close or self._close):
                self._lean.feed(data)
            return
        super().data_received(data)

    def lean_answered(self) -> None:
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout

    def lean_handover(self, rest: bytes) -> None:
        self._lean = None
        if rest:
            super().data_received(rest)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is under way: nothing more may be written on it
            raise ConnectionError("response already started; cannot send an error")
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            detail = "an internal error occurred"
        else:
            self.logger.debug("refused malformed request from %s: %s", request.remote, message)
            detail = f"malformed request: {(message or 'bad framing').splitlines()[0][:200]}"
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        resp = web.Response(
            status=status, body=problem_body(status, title, detail), content_type="application/problem+json"
        )
        resp.force_close()
        return resp


class _StrictPyRequestParser(HttpRequestParserPy):
    """aiohttp's pure-Python parser, held to what the C parser accepts: it upper-cases any method token, so
    ``get`` would be served as ``GET``; the C parser (and the RFC: methods are case-sensitive) refuses it."""

    def parse_message(self, lines: list[bytes]) -> RawRequestMessage:
        method = lines[0].split(b" ", 1)[0] if lines else b""
        if method != method.upper():
            raise BadHttpMethod(method.decode("latin-1"))
        return super().parse_message(lines)


class _ProblemServer(Server):
    lean: LeanHits | None = None
    """Set once the app has started (``proxy.app.serve``): connections made from then on start on the lean path."""

    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, lean=self.lean, **self._kwargs)


def _tolerant(factory: _RequestFactory) -> _RequestFactory:
    """``factory``, but a request whose absolute-form target the URL library cannot decode still becomes a request.

    aiohttp decodes the host of an absolute-form target (``GET http://xn--a-/``) while it builds the request, outside
    every middleware; an IDNA error there ends the connection's handler with no answer and the socket held. Such a
    request is built with a neutral URL instead: its raw target (``raw_path``) is kept, so the routing middleware
    still sees an absolute-form target and refuses it, with a 400 that names the host, like any malformed target.
    """

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> BaseRequest:
        try:
            return factory(message, payload, protocol, writer, task)
        except (UnicodeError, ValueError):
            neutral = message._replace(url=URL.build(path="/", encoded=True))
            return factory(neutral, payload, protocol, writer, task)

    return make


class ProblemRunner(web.AppRunner):
    def answer_lean_hits(self, lean: LeanHits) -> None:
        """Start every connection made from now on on the lean hit path."""
        assert isinstance(self.server, _ProblemServer)
        self.server.lean = lean

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        server.request_factory = _tolerant(server.request_factory)
        return server


class AmbiguousHost(Problem):
    title = "Bad Request"


class VersionNotSupported(Problem):
    status = 505
    title = "HTTP Version Not Supported"


_REG_NAME_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2}"
_IP_LITERAL = r"\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
#: RFC 9110 §7.2: ``Host = uri-host [ ":" port ]``; uri-host is an IP literal or a reg-name (which covers IPv4).
HOST_FIELD = re.compile(rf"(?:{_IP_LITERAL}|(?:{_REG_NAME_CHAR})*)(?::[0-9]*)?")


def check_host_field(request: web.Request) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host field, and any Host field is ``uri-host[:port]``
    (400 otherwise). A Host that is no authority (``a b``, ``a@b``) would otherwise reach logs, keys and upstreams
    spelled in ways no URL parser agrees on."""
    hosts = request.headers.getall("Host", [])
    if request.version >= (1, 1) and len(hosts) != 1:
        raise AmbiguousHost(
            "an HTTP/1.1 request must carry exactly one Host field"
            if hosts
            else "an HTTP/1.1 request must carry a Host field"
        )
    for host in hosts:
        if not HOST_FIELD.fullmatch(host):
            raise AmbiguousHost(f"the Host field {host[:100]!r} is not a host with an optional port")


def check_version(request: web.Request) -> None:
    """Only HTTP/1.0 and HTTP/1.1 are spoken here (505 otherwise), whichever parser read the request line: the C
    parser lets ``HTTP/2.0`` and ``HTTP/0.9`` through, the pure-Python one any ``HTTP/d.d``."""
    if request.version not in {HttpVersion10, HttpVersion11}:
        major, minor = request.version
        # aiohttp answers in the request's version; the refusal must be spoken in one the client can read, and
        # no later request on this connection is to be trusted.
        # (aiohttp memoises ``version`` in the request's cache, which is where the response reads it.)
        request._cache["version"] = HttpVersion11
        raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported: send HTTP/1.1 or HTTP/1.0")


async def close_after_http10_framing(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 request is processed, but the framing is suspect (an
    HTTP/1.0 hop before us may have read it differently), so the connection is closed after the response.

    An ``on_response_prepare`` signal, so that it holds for responses a handler prepares itself (the relay)."""
    if request.version < HttpVersion11 and "Transfer-Encoding" in request.headers:
        response.force_close()


def runner_kwargs(max_line: int, max_field: int, keepalive: float) -> dict[str, Any]:
    """Keyword arguments for the runner, passed through to each connection's request handler."""
    # lingering_time: after refusing a request whose body it did not read (a 413), aiohttp drains the rest for
    # this long before closing; keep it short so a refused client cannot hold the connection.
    return {
        "max_line_size": max_line,
        "max_field_size": max_field,
        "keepalive_timeout": keepalive,
        "lingering_time": min(keepalive, 1.0),
        # Request bodies reach handlers as sent: the relay forwards them with their own Content-Encoding, which a
        # decoded body would contradict (and decoding a client's body is work nobody asked for).
        "auto_decompress": False,
        "access_log": None,
    }
