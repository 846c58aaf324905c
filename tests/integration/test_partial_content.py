"""Partial content end to end (RFC 9111 §3.3, §3.4; RFC 9110 §14): real redis-server, real `grenier serve` and
`grenier worker` processes, an origin on 127.0.0.1 that serves byte ranges and counts every request it sees, and
an ordinary client using grenier as its forward proxy in wait mode.

Two proxies share the worker's settings but for the chunk size: one stores these bodies inline, the other in
chunks of 1 KiB, so parts are cut, combined and served across chunk boundaries too. A third, embedded (its store in
memory, its workers in the server process), runs the first tests over the other store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import aiohttp
import pytest

from tests.support.http import Reply, send
from tests.support.origins import Answer, Origin, Ranged, unique
from tests.support.processes import Launcher

SMALL = bytes(range(48, 58)) * 10  # 100 bytes: "0123456789" ten times
LARGE = bytes((i * 7 + 3) % 251 for i in range(5000))  # over four 1 KiB chunks, no repeating pattern within 251
CHUNK = 1024


@dataclass
class Proxies:
    inline: str
    chunked: str
    embedded: str

    def of(self, kind: str) -> tuple[str, bytes]:
        """The proxy of that kind and a body that is one chunk there (inline) or several."""
        return {
            "inline": (self.inline, SMALL),
            "chunked": (self.chunked, LARGE),
            "embedded": (self.embedded, LARGE),
        }[kind]


def _common(redis_url: str, origin: Origin) -> dict[str, str]:
    return {
        "GRENIER_REDIS_URL": redis_url,
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_JOBS_POLL_INTERVAL": "0.05",
        "GRENIER_JOBS_THREADS": "4",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SECURITY_ALLOW_PORTS": str(origin.port),
    }


@pytest.fixture(scope="module")
def proxies(module_redis: str, second_module_redis: str, origin: Origin, module_launcher: Launcher) -> Proxies:
    """A worker and a proxy storing inline, and (on another database) a worker and a proxy storing 1 KiB chunks."""
    inline = _common(module_redis, origin)
    module_launcher.worker(inline, processes=1)
    chunked = {**_common(second_module_redis, origin), "GRENIER_CACHE_CHUNK_BYTES": str(CHUNK)}
    module_launcher.worker(chunked, processes=1)
    embedded = {k: v for k, v in chunked.items() if k != "GRENIER_REDIS_URL"}
    return Proxies(
        inline=module_launcher.serve(inline).url,
        chunked=module_launcher.serve(chunked).url,
        embedded=module_launcher.serve(embedded).url,
    )


async def fetch(proxy: str, url: str, range_spec: str | None = None, **fields: str) -> Reply:
    headers = {**({"Range": range_spec} if range_spec else {}), **fields}
    async with aiohttp.ClientSession() as s:
        return await send(s, "GET", url, headers, proxy=proxy)


def ranges_seen(origin: Origin, path: str) -> list[tuple[str | None, str | None]]:
    """The ``Range`` and ``If-Range`` of every request the origin saw on ``path``."""
    return [(s.get("Range"), s.get("If-Range")) for s in origin.seen(path)]


def served(reply: Reply, body: bytes, first: int, last: int) -> None:
    assert reply.status == 206, (reply.status, reply.body[:200])
    assert reply.headers["Content-Range"] == f"bytes {first}-{last}/{len(body)}"
    assert reply.body == body[first : last + 1]


@pytest.mark.parametrize("kind", ["inline", "chunked", "embedded"])
async def test_range_miss_reaches_the_origin_once_and_the_part_is_stored(
    proxies: Proxies, origin: Origin, kind: str
) -> None:
    """§3.3: a range miss is fetched once (the range forwarded), its 206 stored; a range the part holds is a hit."""
    proxy, body = proxies.of(kind)
    path = unique("ranged")
    origin.program(path, Ranged(body))
    last = len(body) // 2
    first = await fetch(proxy, origin.url(path), f"bytes=0-{last}")
    served(first, body, 0, last)
    assert "fwd=uri-miss" in first.headers["Cache-Status"]
    assert "stored" in first.headers["Cache-Status"]
    assert ranges_seen(origin, path) == [(f"bytes=0-{last}", None)]  # once, and only the range
    again = await fetch(proxy, origin.url(path), f"bytes=0-{last}")
    served(again, body, 0, last)
    assert again.headers["Cache-Status"].startswith("grenier;hit")
    inner = await fetch(proxy, origin.url(path), f"bytes=7-{last - 3}")
    served(inner, body, 7, last - 3)
    assert inner.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 1


@pytest.mark.parametrize("kind", ["inline", "chunked", "embedded"])
async def test_parts_combine_into_the_whole_response(proxies: Proxies, origin: Origin, kind: str) -> None:
    """§3.4: with a stored head, a request for the whole asks only for the rest, under If-Range with the part's
    strong validator; the two parts combine into a complete 200 that answers every later request."""
    proxy, body = proxies.of(kind)
    path = unique("ranged")
    origin.program(path, Ranged(body))
    half = len(body) // 2 + 1  # an odd split, off any chunk boundary
    served(await fetch(proxy, origin.url(path), f"bytes=0-{half - 1}"), body, 0, half - 1)
    whole = await fetch(proxy, origin.url(path))
    assert whole.status == 200
    assert whole.body == body
    assert "Content-Range" not in whole.headers
    assert "fwd=partial" in whole.headers["Cache-Status"]
    assert ranges_seen(origin, path) == [(f"bytes=0-{half - 1}", None), (f"bytes={half}-{len(body) - 1}", '"v1"')]
    hit = await fetch(proxy, origin.url(path))
    assert hit.status == 200
    assert hit.body == body
    assert hit.headers["Cache-Status"].startswith("grenier;hit")
    tail = await fetch(proxy, origin.url(path), "bytes=-10")
    served(tail, body, len(body) - 10, len(body) - 1)
    assert tail.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 2


async def test_a_range_past_the_part_asks_only_the_missing_bytes(proxies: Proxies, origin: Origin) -> None:
    """§3.4: a range that starts within the stored part and runs past it asks the origin for the missing bytes
    only; the combined part then answers both ranges."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL))
    served(await fetch(proxies.inline, origin.url(path), "bytes=0-19"), SMALL, 0, 19)
    served(await fetch(proxies.inline, origin.url(path), "bytes=10-39"), SMALL, 10, 39)
    assert ranges_seen(origin, path) == [("bytes=0-19", None), ("bytes=20-39", '"v1"')]
    served(await fetch(proxies.inline, origin.url(path), "bytes=5-35"), SMALL, 5, 35)
    assert origin.hits(path) == 2


async def test_parts_of_different_representations_never_combine(proxies: Proxies, origin: Origin) -> None:
    """§3.4: parts combine only under the same strong validator: an origin that ignores If-Range and answers with
    a new ETag replaces the stored part instead of completing it, so the old part's range is a miss again."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL, changing=True, if_range=False))
    served(await fetch(proxies.inline, origin.url(path), "bytes=0-9"), SMALL, 0, 9)
    second = await fetch(proxies.inline, origin.url(path), "bytes=10-19")
    served(second, SMALL, 10, 19)
    assert second.headers["ETag"] == '"v2"'
    hit = await fetch(proxies.inline, origin.url(path), "bytes=10-19")
    assert hit.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(path) == 2
    again = await fetch(proxies.inline, origin.url(path), "bytes=0-9")  # "v1" bytes were not kept beside "v2"
    served(again, SMALL, 0, 9)
    assert "fwd=partial" in again.headers["Cache-Status"]
    assert origin.hits(path) == 3


async def test_concurrent_misses_for_one_range_reach_the_origin_once(proxies: Proxies, origin: Origin) -> None:
    """Collapsing holds for ranges: requests for the same range share one fetch; the origin is asked once."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL, delay=0.5))
    replies = await asyncio.gather(*(fetch(proxies.inline, origin.url(path), "bytes=20-29") for _ in range(4)))
    for reply in replies:
        served(reply, SMALL, 20, 29)
    assert ranges_seen(origin, path) == [("bytes=20-29", None)]


async def test_a_conditional_range_gets_the_whole(proxies: Proxies, origin: Origin) -> None:
    """RFC 9110 §13.1.5: a stored part never answers a request with If-Range; the whole is fetched (only what the
    part lacks) and served whole."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL))
    served(await fetch(proxies.inline, origin.url(path), "bytes=0-49"), SMALL, 0, 49)
    reply = await fetch(proxies.inline, origin.url(path), "bytes=0-9", **{"If-Range": '"v0"'})
    assert reply.status == 200
    assert reply.body == SMALL
    assert ranges_seen(origin, path) == [("bytes=0-49", None), ("bytes=50-99", '"v1"')]


async def test_a_request_for_the_whole_never_gets_a_part(proxies: Proxies, origin: Origin) -> None:
    """§3.4: an origin that ignores If-Range answers the request for the missing bytes with a part of a new
    representation, which cannot complete the stored one: the whole is then fetched, and the client gets a 200."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL, changing=True, if_range=False))
    served(await fetch(proxies.inline, origin.url(path), "bytes=0-9"), SMALL, 0, 9)
    whole = await fetch(proxies.inline, origin.url(path))
    assert whole.status == 200
    assert whole.body == SMALL
    assert ranges_seen(origin, path) == [("bytes=0-9", None), ("bytes=10-99", '"v1"'), (None, None)]


async def test_a_part_without_a_strong_validator_is_not_completed(proxies: Proxies, origin: Origin) -> None:
    """§3.4: a part with only a weak validator can never combine: a request for the whole asks for the whole."""
    path = unique("ranged")
    origin.program(path, lambda n, seen: _weakened(Ranged(SMALL)(n, seen)))
    served(await fetch(proxies.inline, origin.url(path), "bytes=0-9"), SMALL, 0, 9)
    whole = await fetch(proxies.inline, origin.url(path))
    assert whole.status == 200
    assert whole.body == SMALL
    assert ranges_seen(origin, path) == [("bytes=0-9", None), (None, None)]


def _weakened(answer: Answer) -> Answer:
    fields = tuple((k, f"W/{v}" if k == "ETag" else v) for k, v in answer.headers)
    return replace(answer, headers=fields)


async def test_concurrent_misses_for_different_ranges_each_get_their_own(proxies: Proxies, origin: Origin) -> None:
    """RFC 9110 §14: requests for different ranges never share a fetch: each gets the bytes it asked for."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL, delay=0.5))
    spans = [(0, 9), (40, 49), (90, 99)]
    replies = await asyncio.gather(*(fetch(proxies.inline, origin.url(path), f"bytes={a}-{b}") for a, b in spans))
    for reply, (a, b) in zip(replies, spans, strict=True):
        served(reply, SMALL, a, b)
    assert sorted(r for r, _ in ranges_seen(origin, path)) == sorted(f"bytes={a}-{b}" for a, b in spans)


async def test_an_origin_that_ignores_range_is_asked_once(proxies: Proxies, origin: Origin) -> None:
    """RFC 9110 §14.2: an origin may answer a range request with the whole 200: it is stored whole, the range is
    cut from it, and every later request is a hit."""
    url = origin.route(body=SMALL)  # a Route ignores Range
    served(await fetch(proxies.inline, url, "bytes=10-19"), SMALL, 10, 19)
    whole = await fetch(proxies.inline, url)
    assert whole.status == 200
    assert whole.body == SMALL
    assert whole.headers["Cache-Status"].startswith("grenier;hit")
    assert origin.hits(url) == 1


async def test_an_unsatisfiable_range_gets_the_origins_416(proxies: Proxies, origin: Origin) -> None:
    """RFC 9110 §15.5.17: a range beyond the representation, on a miss, is answered with the origin's 416, which
    is not stored (no explicit freshness, and it answers the request's own fields)."""
    path = unique("ranged")
    origin.program(path, Ranged(SMALL))
    reply = await fetch(proxies.inline, origin.url(path), "bytes=500-")
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(SMALL)}"
    assert ranges_seen(origin, path) == [("bytes=500-", None)]
