"""Operating the cache through a real grenier: purges by tag (across Vary variants and across two ``grenier serve``
processes sharing one Redis, their hot tiers included), by prefix and host, soft purges that revalidate, a flush,
the 404 for an exact URL with nothing stored, inspection, and a 5xx that must not replace a good entry."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import quote

import aiohttp
import pytest

from tests.support.http import Reply, fetch_url, get, send
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.processes import GrenierProcess, Launcher, grenier_env

ETAG = '"v1"'
VARIANTS = ("gzip", "identity")
SETTINGS = {"GRENIER_CACHE_MISS": "wait", "GRENIER_CACHE_HOT_SECONDS": "60"}


def tagged(origin: Origin, tags: str, *, vary: bool = True) -> str:
    """A path whose responses carry ``tags`` (as Surrogate-Key) and an ETag, vary on Accept-Encoding, and number
    their bodies; a request with the ETag gets a 304."""
    path = unique("tagged")

    def answer(n: int, seen: Seen) -> Answer:
        common = (("Cache-Control", "max-age=300"), ("ETag", ETAG))
        if seen.get("If-None-Match") == ETAG:
            return Answer(304, common)
        fields = (*common, ("Surrogate-Key", tags), ("Content-Type", "text/plain"))
        if vary:
            fields = (*fields, ("Vary", "Accept-Encoding"))
        return Answer(200, fields, f"{seen.get('Accept-Encoding')} #{n}".encode())

    origin.program(path, answer)
    return origin.url(path)


async def fetch(http: aiohttp.ClientSession, server: GrenierProcess, target: str, encoding: str = "gzip") -> Reply:
    return await get(http, fetch_url(server.url, target), {"Accept-Encoding": encoding})


async def purge(http: aiohttp.ClientSession, server: GrenierProcess, query: str) -> Reply:
    return await send(http, "DELETE", f"{server.url}/_grenier/cache?{query}")


def hit(reply: Reply) -> bool:
    return reply.cache_status.get("hit") is True


@pytest.fixture
def two_servers(launcher: Launcher, fresh_redis: Callable[[], str]) -> tuple[GrenierProcess, GrenierProcess]:
    """Two ``grenier serve`` processes on one Redis, whose hot tiers hold entries for 60 s: only the purge's
    notification can make the other process drop one within a test."""
    settings = {"GRENIER_REDIS_URL": fresh_redis(), **SETTINGS}
    launcher.worker(settings)
    return launcher.serve(settings), launcher.serve(settings)


@pytest.fixture
def embedded(launcher: Launcher) -> GrenierProcess:
    return launcher.serve(SETTINGS)


async def warm(http: aiohttp.ClientSession, servers: tuple[GrenierProcess, ...], target: str) -> dict[str, bytes]:
    """Store both variants of ``target`` and make each a hit in every server (twice: the second read is hot)."""
    bodies = {}
    for encoding in VARIANTS:
        first = await fetch(http, servers[0], target, encoding)
        assert first.status == 200, first
        bodies[encoding] = first.body
        for server in servers:
            for _ in range(2):
                again = await fetch(http, server, target, encoding)
                assert hit(again), again
                assert again.body == first.body
    return bodies


async def test_a_tag_purge_removes_every_variant_in_every_process(
    two_servers: tuple[GrenierProcess, GrenierProcess], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, two = two_servers
    product = tagged(origin, "product-7 catalogue")
    other = tagged(origin, "product-8 catalogue")
    before = await warm(http, (one, two), product)
    await warm(http, (one, two), other)

    done = await purge(http, one, "tag=product-7")
    assert done.status == 200, done
    assert done.json() == {"purged": 2, "soft": False, "tag": "product-7"}  # both variants

    for encoding in VARIANTS:
        after = await fetch(http, two, product, encoding)  # the process that did not purge
        assert not hit(after), f"{encoding}: {after}"
        assert after.body != before[encoding]
        refetched = await fetch(http, one, product, encoding)
        assert refetched.body == after.body, "the purging process dropped its hot copy too"
        for server in (one, two):
            assert hit(await fetch(http, server, other, encoding)), "an entry without the tag stays"
    assert (await purge(http, two, "tag=no-such-tag")).json()["purged"] == 0


async def test_surrogate_key_fields_are_not_shown_to_clients(
    two_servers: tuple[GrenierProcess, GrenierProcess], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, _ = two_servers
    target = tagged(origin, "secret-tag")
    miss, again = await fetch(http, one, target), await fetch(http, one, target)
    assert hit(again)
    for reply in (miss, again):
        assert "Surrogate-Key" not in reply.headers, reply.headers


async def test_a_soft_tag_purge_makes_every_process_revalidate(
    two_servers: tuple[GrenierProcess, GrenierProcess], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, two = two_servers
    target = tagged(origin, "soft-7")
    before = await warm(http, (one, two), target)
    assert origin.answered(target, 304) == 0

    done = await purge(http, one, "tag=soft-7&soft=1")
    assert done.json() == {"purged": 2, "soft": True, "tag": "soft-7"}

    revalidated = await fetch(http, two, target, "gzip")
    assert revalidated.status == 200
    assert revalidated.body == before["gzip"], "a 304 confirmed the stored body: nothing was fetched whole"
    assert origin.answered(target, 304) == 1
    assert hit(await fetch(http, one, target, "gzip")), "freshened again for everyone"


async def test_a_soft_url_purge_in_embedded_mode_revalidates(
    embedded: GrenierProcess, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """The entry does not vary, so its hits may take the lean path: a soft purge reaches that path too."""
    target = tagged(origin, "plain", vary=False)
    first = await fetch(http, embedded, target)
    for _ in range(3):
        assert hit(await fetch(http, embedded, target))
    done = await purge(http, embedded, f"url={quote(target, safe='')}&soft=1")
    assert done.json() == {"purged": 1, "soft": True, "url": target}
    revalidated = await fetch(http, embedded, target)
    assert not hit(revalidated)
    assert revalidated.body == first.body
    assert origin.answered(target, 304) == 1
    assert hit(await fetch(http, embedded, target))


async def test_prefix_and_host_bans(embedded: GrenierProcess, origin: Origin, http: aiohttp.ClientSession) -> None:
    base = unique("ban")
    under = [origin.route(f"{base}/img/{n}", changing=True) for n in (1, 2)]
    beside = origin.route(f"{base}/css/site", changing=True)
    for target in (*under, beside):
        assert (await fetch(http, embedded, target)).status == 200
        assert hit(await fetch(http, embedded, target))

    done = await purge(http, embedded, "prefix=" + quote(origin.url(f"{base}/img/"), safe=""))
    assert done.json() == {"purged": 2, "soft": False, "prefix": origin.url(f"{base}/img/")}
    assert [hit(await fetch(http, embedded, t)) for t in (*under, beside)] == [False, False, True]

    host = await purge(http, embedded, "prefix=" + quote(origin.base, safe=""))  # a host ban
    assert host.status == 200
    assert host.json()["prefix"] == origin.base + "/"
    assert host.json()["purged"] >= 3
    assert not hit(await fetch(http, embedded, beside))


async def test_flush_and_the_exact_url_answers(
    embedded: GrenierProcess, origin: Origin, http: aiohttp.ClientSession
) -> None:
    targets = [origin.route(changing=True) for _ in range(3)]
    for target in targets:
        await fetch(http, embedded, target)
    done = await purge(http, embedded, "all=1")
    assert done.status == 200
    assert done.json()["purged"] >= 3
    assert not any([hit(await fetch(http, embedded, t)) for t in targets])

    one = await purge(http, embedded, "url=" + quote(targets[0], safe=""))
    assert one.json() == {"purged": 1, "soft": False, "url": targets[0]}
    gone = await purge(http, embedded, "url=" + quote(targets[0], safe=""))
    assert gone.problem(404, "nothing is stored")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", ("exactly one",)),
        ("url=http://a.test/&tag=x", ("exactly one",)),
        ("prefix=/relative/", ("absolute",)),
        ("tag=two%20words", ("surrogate key",)),
        ("all=0", ("all=1",)),
        ("all=1&soft=maybe", ("soft",)),
    ],
)
async def test_a_bad_purge_is_a_problem(
    embedded: GrenierProcess, http: aiohttp.ClientSession, query: str, words: tuple[str, ...]
) -> None:
    assert (await purge(http, embedded, query)).problem(400, *words)


async def test_inspection_shows_variants_and_the_last_decision(
    embedded: GrenierProcess, origin: Origin, http: aiohttp.ClientSession
) -> None:
    target = tagged(origin, "look-1 look-2")
    for encoding in VARIANTS:
        await fetch(http, embedded, target, encoding)
    reply = await get(http, f"{embedded.url}/_grenier/cache?url={quote(target, safe='')}")
    assert reply.status == 200
    doc = reply.json()
    assert doc["url"] == target
    assert doc["stored"] is True
    assert doc["vary"] == ["accept-encoding"]
    assert len(doc["variants"]) == 2
    for variant in doc["variants"]:
        assert variant["status"] == 200
        assert variant["tags"] == ["look-1", "look-2"]
        assert variant["validators"] == {"If-None-Match": ETAG}
        assert variant["fresh"] is True
        assert 0 < variant["ttl"] <= 300
    assert sorted(v["size"] for v in doc["variants"]) == [len("gzip #1"), len("identity #2")]
    assert doc["last_decision"]["decision"] == "stored"
    assert doc["last_decision"]["status"] == 200

    nothing = await get(http, f"{embedded.url}/_grenier/cache?url={quote(origin.url(unique()), safe='')}")
    assert nothing.json()["stored"] is False
    assert nothing.json()["last_decision"] is None


async def test_a_server_error_does_not_replace_a_good_entry(
    embedded: GrenierProcess, origin: Origin, http: aiohttp.ClientSession
) -> None:
    """A 500 with max-age=60 follows a good 200 (stale by then): its requester gets the 500, but the entry stays
    the 200, which the next request revalidates (a 304) and serves; stored, the 500 would be a hit for 60 s."""
    path = unique("flaky")

    def answer(n: int, seen: Seen) -> Answer:
        if n == 1:
            return Answer(200, (("Cache-Control", "max-age=1"), ("ETag", ETAG)), b"good")
        if n == 2:
            return Answer(500, (("Cache-Control", "max-age=60"),), b"broken")
        assert seen.get("If-None-Match") == ETAG, "the stored 200 is revalidated"
        return Answer(304, (("Cache-Control", "max-age=60"), ("ETag", ETAG)))

    origin.program(path, answer)
    target = origin.url(path)
    assert (await fetch(http, embedded, target)).body == b"good"
    await asyncio.sleep(1.5)  # the 200 goes stale (its max-age is 1 s)
    failed = await fetch(http, embedded, target)
    assert failed.status == 500
    assert failed.body == b"broken"
    inspected = await get(http, f"{embedded.url}/_grenier/cache?url={quote(target, safe='')}")
    assert [v["status"] for v in inspected.json()["variants"]] == [200]
    decision = inspected.json()["last_decision"]
    assert decision["decision"] == "not stored"
    assert decision["status"] == 500
    assert "server error" in decision["reason"]
    after = await fetch(http, embedded, target)
    assert after.status == 200
    assert after.body == b"good"
    assert origin.answered(target, 304) == 1


def cli(server: GrenierProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``grenier ARGS`` with the server's own settings (its Redis)."""
    return subprocess.run(
        [sys.executable, "-m", "grenier", *args],
        env=grenier_env(server.settings),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=server.log_path.parent,
        check=False,
    )


async def test_the_purge_and_inspect_commands(
    two_servers: tuple[GrenierProcess, GrenierProcess], origin: Origin, http: aiohttp.ClientSession
) -> None:
    one, two = two_servers
    target = tagged(origin, "cli-7")
    before = await warm(http, (one, two), target)

    inspected = cli(one, "inspect", target)
    assert inspected.returncode == 0, inspected.stderr
    doc = json.loads(inspected.stdout)
    assert doc["stored"] is True
    assert sorted(v["tags"][0] for v in doc["variants"]) == ["cli-7", "cli-7"]

    soft = cli(one, "purge", "--tag", "cli-7", "--soft")
    assert soft.returncode == 0, soft.stderr
    assert soft.stdout.strip() == "soft-purged tag cli-7: 2 affected"
    assert (await fetch(http, two, target, "identity")).body == before["identity"]
    assert origin.answered(target, 304) == 1

    prefix = cli(one, "purge", "--prefix", origin.base)
    assert prefix.returncode == 0, prefix.stderr
    assert not hit(await fetch(http, two, target, "gzip"))

    missing = cli(one, "purge", origin.url(unique()))
    assert missing.returncode == 1
    assert "nothing is stored" in missing.stderr
    bad = cli(one, "purge", "--tag", "two words")
    assert bad.returncode == 2
    assert "surrogate key" in bad.stderr
