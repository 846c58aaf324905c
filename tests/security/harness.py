"""What the security tests attack with: a programmable origin, grenier processes, and a raw HTTP/1.1 client.

Everything listens on and talks to 127.0.0.1 only. The origin records every request it receives (headers in
arrival order, body), so a test can assert that a refused request never reached it, or that a field never did.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACEBACK_MARKS = (b"Traceback", b'File "')

# --- the origin ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the origin received it."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class Answer:
    """What the origin sends: a response, or (``raw``) exact bytes after which it closes the connection."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    raw: bytes | None = None


Program = Callable[[int, Seen], Answer]
"""Programmable behaviour for one path: (how many requests that path got, this request) -> the answer."""


@dataclass
class Origin:
    """An HTTP/1.1 origin on 127.0.0.1 with default behaviour per first path segment (see ``_default``)."""

    port: int = 0
    other_port: int = 0
    """Where ``/redirect/...`` points (another server that must never be reached)."""
    requests: list[Seen] = field(default_factory=list)
    programs: dict[str, Program] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def count(self, path: str) -> int:
        return len(self.seen(path))

    def total(self) -> int:
        with self.lock:
            return len(self.requests)

    def program(self, path: str, behaviour: Program) -> None:
        self.programs[path] = behaviour

    def answer(self, seen: Seen) -> Answer:
        path = seen.path.split("?", 1)[0]
        with self.lock:
            self.requests.append(seen)
            n = sum(1 for r in self.requests if r.path.split("?", 1)[0] == path)
        behaviour = self.programs.get(path)
        if behaviour is not None:
            return behaviour(n, seen)
        return self._default(path, n, seen)

    def _default(self, path: str, n: int, seen: Seen) -> Answer:
        kind = path.strip("/").split("/", 1)[0]
        fresh = (("Cache-Control", "max-age=300"), ("Content-Type", "text/plain"))
        if seen.method not in {"GET", "HEAD"}:
            return Answer(200, (("Content-Type", "text/plain"),), f"{seen.method} {path} {n}".encode())
        if kind == "echo":  # reflects what a poisoner would like the origin to act upon
            echoed = {
                name: seen.get(name)
                for name in ("authorization", "cookie", "x-forwarded-host", "x-original-url", "x-evil")
            }
            return Answer(200, fresh, f"echo {path} {n} {json.dumps(echoed, sort_keys=True)}".encode())
        if kind == "cookie":
            return Answer(200, (*fresh, ("Set-Cookie", "session=abc123; HttpOnly")), f"cookie {path} {n}".encode())
        if kind == "redirect":
            location = f"http://127.0.0.1:{self.other_port}/landing"
            return Answer(302, (("Location", location), ("Cache-Control", "max-age=300")), b"moved")
        if kind == "big":
            return Answer(200, fresh, b"x" * 10_000)
        if kind == "bigchunked":
            chunk = b"x" * 1000
            raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=300\r\n\r\n"
            raw += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
            return Answer(raw=raw)
        return Answer(200, fresh, f"plain {path} {n}".encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _OriginServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = self._chunked()
        seen = Seen(self.command, self.path, tuple(self.headers.items()), body)
        answer = self.server.origin.answer(seen)
        if answer.raw is not None:
            self.wfile.write(answer.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(answer.status)
        for k, v in answer.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _chunked(self) -> bytes:
        out = b""
        for _ in range(10_000):
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()
        return out

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_PURGE = do_FOO = _any


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin


def start_origin(other_port: int = 0) -> tuple[Origin, Callable[[], None]]:
    """An origin on a free 127.0.0.1 port, and the function that stops it."""
    server = _OriginServer(("127.0.0.1", 0), _Handler)
    origin = Origin(port=server.server_address[1], other_port=other_port)
    server.origin = origin
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return origin, stop


# --- grenier processes -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Grenier:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def grenier_env(extra: dict[str, str]) -> dict[str, str]:
    """The process environment: ours without any GRENIER_* (config validation refuses unknown ones), plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRENIER_") and k != "AIOHTTP_NO_EXTENSIONS"}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "grenier", *args],
            env=grenier_env(env),
            stdout=out,
            stderr=out,
            cwd=log.parent,  # never a stray ./config.toml
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start_grenier(env: dict[str, str], logs: Path, name: str, port: int | None = None) -> Grenier:
    """``python -m proxy serve`` on 127.0.0.1, waited for until ``/_grenier/ready`` answers 200."""
    port = port or free_port()
    log = logs / f"{name}.log"
    proc = spawn(["serve", "--host", "127.0.0.1", "--port", str(port)], env, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"grenier {name} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_grenier/ready", timeout=2) as resp:
                if resp.status == 200:
                    return Grenier(port, proc, log, env)
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    pytest.fail(f"grenier {name} on port {port} not ready:\n{log.read_text()}")


# --- a raw HTTP/1.1 client -------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes
    closed: bool = True

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    def __repr__(self) -> str:
        return f"Reply({self.status}, {dict(self.headers.items())!r}, {self.body[:300]!r})"


def build(
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    host: str | None = "",
    close: bool = True,
) -> bytes:
    """A request's bytes. ``host=""`` derives Host from an absolute target; ``None`` sends no Host field."""
    raw_target = target if isinstance(target, bytes) else target.encode("utf-8", "surrogateescape")
    lines = [method.encode("latin-1", "replace") + b" " + raw_target + b" HTTP/1.1"]
    names = {k.lower() for k, _ in headers}
    if host == "" and "host" not in names:
        text = raw_target.decode("latin-1")
        host = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else "127.0.0.1"
    if host:
        lines.append(b"Host: " + host.encode("utf-8", "replace"))
    lines += [k.encode("latin-1", "replace") + b": " + v.encode("utf-8", "replace") for k, v in headers]
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def exchange(port: int, data: bytes, method: str = "GET", timeout: float = 30.0) -> Reply:
    """Send ``data`` and read one response with http.client's parser."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        body = resp.read()
        return Reply(resp.status, resp.headers, body)


def request(
    port: int,
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    host: str | None = "",
    timeout: float = 30.0,
) -> Reply:
    headers = list(headers)
    return exchange(port, build(method, target, headers, body, host=host), method=method, timeout=timeout)


def fetch_target(url: str) -> str:
    """``/fetch?url=`` for ``url``, percent-encoded."""
    from urllib.parse import quote

    return "/fetch?url=" + quote(url, safe="")


def raw_roundtrip(port: int, data: bytes, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``; read until the server closes or ``wait`` seconds pass. Returns (bytes, closed)."""
    received = b""
    deadline = time.monotonic() + wait
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
    return received, False


def parse_raw(data: bytes) -> Reply:
    """The first response in ``data`` (status line, fields, the rest as body)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith(b"HTTP/") else 0
    msg = Message()
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        msg[name.strip()] = value.strip()
    length = msg.get("Content-Length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    return Reply(status, msg, body)


# --- assertions ------------------------------------------------------------------------------------------------------


def assert_no_traceback(body: bytes) -> None:
    for mark in TRACEBACK_MARKS:
        assert mark not in body, f"traceback text in a response body: {body[:500]!r}"


def assert_problem(reply: Reply, status: int | set[int], *words: str) -> dict[str, object]:
    """``reply`` is an ``application/problem+json`` refusal with ``status`` whose detail mentions every word."""
    statuses = {status} if isinstance(status, int) else status
    assert reply.status in statuses, reply
    assert reply.header("Content-Type").startswith("application/problem+json"), reply
    assert_no_traceback(reply.body)
    doc = json.loads(reply.body)
    assert doc["status"] == reply.status, doc
    detail = str(doc["detail"])
    for word in words:
        assert word.lower() in detail.lower(), f"detail {detail!r} does not name {word!r}"
    return doc


def unique(prefix: str) -> str:
    return f"/{prefix}/{uuid.uuid4().hex[:10]}"


def loopback_env(origin: Origin) -> dict[str, str]:
    """Settings for a grenier in wait mode that may fetch from the test origin on loopback."""
    return {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SECURITY_ALLOW_NETWORKS": "127.0.0.0/8",
        "GRENIER_SECURITY_ALLOW_PORTS": str(origin.port),
    }
