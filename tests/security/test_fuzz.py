"""A bounded, seeded fuzz of the HTTP endpoints: random targets, methods and headers against ``/fetch``, job polling
and the forward proxy. No 5xx for client input (502/503/504 only when the upstream is the cause), no traceback, the
server stays up, and an entry stored before the fuzzing is served afterwards, unchanged, as a hit."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.http import TRACEBACK_MARKS, Reply, build, exchange, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess, Launcher

SEED = 1234
REQUESTS = 300
BUDGET = 90.0
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PURGE", "FOO"]
UPSTREAM_STATUSES = {502, 503, 504}


@pytest.fixture(scope="module")
def fuzzed(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_CACHE_MAX_WAIT": "5",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_UPSTREAM_TOTAL_TIMEOUT": "5",
        "GRENIER_SERVER_MISS_RATE": "0",
        "GRENIER_SECURITY_ALLOW_NETWORKS": "127.0.0.0/8",
        "GRENIER_SECURITY_ALLOW_PORTS": str(origin.port),
        "GRENIER_ADMIN_TOKEN": "fuzz-admin-token",  # so that a random PURGE can never drop the entry under watch
    }
    with Launcher(tmp_path_factory.mktemp("fuzz")) as launcher:
        yield launcher.serve(env)


class Generator:
    """Random but reproducible inputs. Hosts are loopback spellings, refused ranges, or a DNS-looking name with a port
    the guard refuses before any lookup: no request can leave 127.0.0.1."""

    def __init__(self, rng: random.Random, origin_port: int) -> None:
        self.rng = rng
        self.port = origin_port

    def pick(self, items):  # type: ignore[no-untyped-def]
        return items[self.rng.randrange(len(items))]

    def junk(self, max_len: int = 40) -> str:
        alphabet = "abcXYZ019-._~:/?#[]@!$&'()*+,;=% \"<>\\^`{|}\u00e9\u2603\U0001f600\u0130\uff11\u3002"
        return "".join(self.pick(alphabet) for _ in range(self.rng.randrange(max_len)))

    def host(self) -> str:
        loopback = [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "localhost",
            "\uff11\uff12\uff17.0.0.1",
        ]
        refused = [
            "10.0.0.1",
            "[::1]",
            "[fe80::1%25eth0]",
            "169.254.169.254",
            "0.0.0.0",
            "999.1.1.1",
            "[::ffff:7f00:1]",
        ]
        kind = self.rng.random()
        if kind < 0.5:
            return f"{self.pick(loopback)}:{self.port}"
        if kind < 0.8:
            return f"{self.pick(refused)}:{self.pick([self.port, 80, 1])}"
        return f"{self.pick(['example.com', 'xn--e1afmkfd.xn--p1ai', 'a' * 300, 'host_with_underscore'])}:1"

    def path(self) -> str:
        kind = self.rng.random()
        if kind < 0.4:
            return unique("fuzz")
        if kind < 0.6:
            return "/" + quote(self.junk(), safe="/%")
        if kind < 0.8:
            return "/" + self.junk()
        return "/" + "p" * self.rng.choice([10, 5000, 9000])

    def url(self) -> str:
        scheme = self.pick(["http", "http", "http", "https", "HTTP", "ftp", "file", "javascript", "", "gopher"])
        kind = self.rng.random()
        if kind < 0.75:
            return f"{scheme}://{self.host()}{self.path()}" + (f"?{self.junk(20)}" if self.rng.random() < 0.3 else "")
        if kind < 0.85:
            return self.junk(60)
        if kind < 0.95:
            return f"{scheme}://user:pw@{self.host()}/"
        return "http://" + "\u2603" * self.rng.randrange(1, 3000)

    def headers(self) -> list[tuple[str, str]]:
        pool = [
            (
                "Cache-Control",
                lambda: self.pick(
                    [
                        "max-age=-1",
                        "max-stale",
                        "max-stale=abc",
                        "no-cache",
                        "only-if-cached",
                        "min-fresh=99999999999999999999",
                        "max-age=0, no-store",
                        self.junk(30),
                    ]
                ),
            ),
            (
                "Prefer",
                lambda: self.pick(
                    [
                        "wait=abc",
                        "wait=-5",
                        "wait=1e309",
                        "wait=nan",
                        "respond-async",
                        "wait=2, respond-async",
                        self.junk(30),
                    ]
                ),
            ),
            (
                "Range",
                lambda: self.pick(
                    [
                        "bytes=0-4",
                        "bytes=5-1",
                        "bytes=-0",
                        "bytes=0-0,1-1,2-2",
                        "lines=1-2",
                        "bytes=99999999999999999999-",
                        self.junk(20),
                    ]
                ),
            ),
            ("If-None-Match", lambda: self.pick(['"x"', "*", "W/", '"' * 5, self.junk(20)])),
            (
                "If-Modified-Since",
                lambda: self.pick(["yesterday", "Sun, 06 Nov 1994 08:49:37 GMT", "0", self.junk(20)]),
            ),
            ("Accept-Language", lambda: self.junk(20)),
            ("Vary", lambda: "*"),
            ("Via", lambda: self.pick(["1.1 other", "garbage", ""])),
        ]
        chosen = [item for item in pool if self.rng.random() < 0.3]
        return [(name, make().replace("\r", "").replace("\n", "")) for name, make in chosen]

    def target(self, grenier_port: int) -> tuple[str, str | bytes, str | None]:
        """(method, request target, Host field) for one request."""
        method = self.pick(METHODS)
        kind = self.rng.random()
        if kind < 0.45:
            return method, "/fetch?url=" + quote(self.url(), safe=""), f"127.0.0.1:{grenier_port}"
        if kind < 0.55:
            return method, "/fetch?url=" + self.junk(30).replace(" ", "%20"), f"127.0.0.1:{grenier_port}"
        if kind < 0.65:
            job = self.pick(["0" * 32, "f" * 32, "../../etc/passwd", self.junk(10).replace(" ", ""), "x" * 200])
            return "GET", "/_grenier/jobs/" + quote(job, safe=""), f"127.0.0.1:{grenier_port}"
        if kind < 0.7:
            return method, self.pick(["/", "/_grenier/", "/_grenier/ui/fetch?url=" + quote(self.url(), safe="")]), None
        url = self.url().replace(" ", "%20")
        return method, url.encode("utf-8", "surrogatepass"), ""


def test_fuzz_endpoints(fuzzed: GrenierProcess, origin: Origin) -> None:
    path = unique("plain")
    keeper = origin.url(path)
    stored = request(fuzzed.port, "GET", keeper)
    assert stored.status == 200, stored
    rng = random.Random(SEED)
    gen = Generator(rng, origin.port)
    deadline = time.monotonic() + BUDGET
    statuses: dict[int, int] = {}
    dropped: list[bytes] = []
    for i in range(REQUESTS):
        assert time.monotonic() < deadline, f"fuzzing exceeded {BUDGET} s after {i} requests"
        method, target, host = gen.target(fuzzed.port)
        headers = gen.headers()
        body = b"fuzz" * rng.randrange(0, 50) if method in {"POST", "PUT"} else None
        raw = build(method, target, headers, body, host=host if host is not None else f"127.0.0.1:{fuzzed.port}")
        try:
            reply = exchange(fuzzed.port, raw, method=method, timeout=15)
        except ConnectionError:  # the server may drop a request it cannot parse; it must stay up
            dropped.append(raw)
            assert fuzzed.alive(), f"grenier died on request {i}: {raw[:300]!r}"
            continue
        statuses[reply.status] = statuses.get(reply.status, 0) + 1
        check(reply, raw, i)
    assert fuzzed.alive()
    assert statuses.get(200, 0) > 0, statuses
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0, statuses
    assert len(dropped) < REQUESTS // 10, f"{len(dropped)} requests got no answer at all, e.g. {dropped[:3]!r}"
    after = request(fuzzed.port, "GET", keeper)
    assert after.status == 200, after
    assert after.header("Cache-Status").startswith("grenier;hit"), after
    assert after.body == stored.body


def check(reply: Reply, raw: bytes, i: int) -> None:
    where = f"request {i}: {raw[:300]!r} -> {reply!r}"
    for mark in TRACEBACK_MARKS:
        assert mark not in reply.body, f"traceback text in the body of {where}"
    if reply.status >= 500:
        assert reply.status in UPSTREAM_STATUSES, f"a 5xx for client input: {where}"
        assert reply.header("Content-Type").startswith("application/problem+json") or "fwd-status" in reply.header(
            "Cache-Status"
        ), where
