"""HTTP/1.1 framing refusals as problem documents.

aiohttp's parser (C or pure Python) already rejects ambiguous framing (``Content-Length`` with
``Transfer-Encoding``, conflicting lengths, malformed chunks) and closes the connection, but answers in plain text.
:class:`ProblemRunner` keeps its decisions and only changes the answer to ``application/problem+json``; the Host
rules it does not enforce are checked by :func:`check_host_field` in the request middleware.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from core.problems import Problem, problem_body


class _ProblemRequestHandler(RequestHandler):
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


class _ProblemServer(Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemRunner(web.AppRunner):
    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server


class AmbiguousHost(Problem):
    title = "Bad Request"


def check_host_field(request: web.Request) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host field."""
    hosts = request.headers.getall("Host", [])
    if request.version >= (1, 1) and len(hosts) != 1:
        raise AmbiguousHost(
            "an HTTP/1.1 request must carry exactly one Host field"
            if hosts
            else "an HTTP/1.1 request must carry a Host field"
        )


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
