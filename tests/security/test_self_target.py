"""Requests aimed at grenier itself, attacked through a running grenier whose own port is an allowed target: by any
of its addresses a forward-proxy request, ``/fetch`` or the form naming grenier is a loop (508), so no admin
operation and no fetch job is ever run on grenier's own behalf."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.http import assert_problem, fetch_target, request
from tests.support.origins import Origin, unique
from tests.support.ports import free_port
from tests.support.processes import GrenierProcess, Launcher, allow_loopback

from .conftest import ADMIN_TOKEN

#: How grenier (listening on 127.0.0.1) can be named: ``{port}`` is its port.
SELF_AUTHORITIES = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.:{port}", "127.1:{port}", "2130706433:{port}"]


def _cache(g: GrenierProcess, origin: Origin) -> tuple[str, str]:
    """A stored entry (the path and its URL): fetched once through ``/fetch``."""
    path = unique("plain")
    url = origin.url(path)
    first = request(g.port, "GET", fetch_target(url), host=f"127.0.0.1:{g.port}")
    assert first.status == 200, first
    return path, url


@pytest.mark.parametrize("authority", SELF_AUTHORITIES)
def test_forward_purge_of_itself_is_a_loop(open_grenier: GrenierProcess, origin: Origin, authority: str) -> None:
    """``DELETE http://<grenier>/_grenier/cache?url=U`` as a forward-proxy request: 508, and U stays stored."""
    path, url = _cache(open_grenier, origin)
    target = f"http://{authority.format(port=open_grenier.port)}/_grenier/cache?url={quote(url, safe='')}"
    reply = request(open_grenier.port, "DELETE", target)
    assert_problem(reply, 508, "grenier itself")
    again = request(open_grenier.port, "GET", fetch_target(url), host=f"127.0.0.1:{open_grenier.port}")
    assert again.status == 200, again
    assert again.cache_status.get("hit") is True, again
    assert origin.hits(path) == 1


@pytest.mark.parametrize("authority", SELF_AUTHORITIES)
@pytest.mark.parametrize("form", ["forward", "fetch"])
def test_stats_of_itself_are_not_fetched(open_grenier: GrenierProcess, authority: str, form: str) -> None:
    """``GET http://<grenier>/_grenier/stats`` through grenier (either way of asking): 508 before any job."""
    self_url = f"http://{authority.format(port=open_grenier.port)}/_grenier/stats"
    if form == "forward":
        reply = request(open_grenier.port, "GET", self_url)
    else:
        reply = request(open_grenier.port, "GET", fetch_target(self_url), host=f"127.0.0.1:{open_grenier.port}")
    assert_problem(reply, 508, "grenier itself")
    assert "hits" not in reply.text


def test_form_naming_itself_is_a_loop(open_grenier: GrenierProcess, origin: Origin) -> None:
    """The form's submit endpoint gets the same loop check: a URL naming grenier's own form starts no job."""
    path = unique("plain")
    inner = f"http://127.0.0.1:{open_grenier.port}/_grenier/ui/fetch?url={quote(origin.url(path), safe='')}"
    target = f"/_grenier/ui/fetch?url={quote(inner, safe='')}"
    reply = request(open_grenier.port, "GET", target, host=f"127.0.0.1:{open_grenier.port}")
    assert_problem(reply, 508, "grenier itself")
    assert origin.hits(path) == 0


def test_form_refuses_a_request_carrying_our_mark(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A form submission that already went through grenier (its ``Via``) is a loop, as on ``/fetch``."""
    path = unique("plain")
    target = f"/_grenier/ui/fetch?url={quote(origin.url(path), safe='')}"
    reply = request(open_grenier.port, "GET", target, [("Via", "1.1 grenier")], host=f"127.0.0.1:{open_grenier.port}")
    assert_problem(reply, 508, "grenier")
    assert origin.hits(path) == 0


def test_admin_endpoint_refuses_our_own_mark(open_grenier: GrenierProcess, origin: Origin) -> None:
    """Whatever name reached it, a request grenier itself sent (its ``Via``) never runs an admin operation."""
    _, url = _cache(open_grenier, origin)
    reply = request(
        open_grenier.port,
        "DELETE",
        f"/_grenier/cache?url={quote(url, safe='')}",
        [("Via", "1.1 grenier"), ("Authorization", f"Bearer {ADMIN_TOKEN}")],
        host=f"127.0.0.1:{open_grenier.port}",
    )
    assert_problem(reply, 508, "grenier")
    again = request(open_grenier.port, "GET", fetch_target(url), host=f"127.0.0.1:{open_grenier.port}")
    assert again.cache_status.get("hit") is True, again


@pytest.fixture(scope="module")
def tokenless_grenier(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    """No admin token (admin answers loopback peers), loopback and its own port opted in: the set-up in which a
    request relayed to itself would purge with grenier's own loopback authority."""
    port = free_port()
    env = {"GRENIER_CACHE_MISS": "wait", "GRENIER_UPSTREAM_RETRIES": "0", **allow_loopback(origin.port, port)}
    with Launcher(tmp_path_factory.mktemp("tokenless")) as launcher:
        yield launcher.serve(env, port=port)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_relayed_purge_without_token_is_a_loop(tokenless_grenier: GrenierProcess, origin: Origin, host: str) -> None:
    """Without a token a relayed ``DELETE`` reached the admin endpoint from loopback and purged: now a 508, and the
    entry stays stored."""
    g = tokenless_grenier
    path, url = _cache(g, origin)
    reply = request(g.port, "DELETE", f"http://{host}:{g.port}/_grenier/cache?url={quote(url, safe='')}")
    assert_problem(reply, 508, "grenier itself")
    again = request(g.port, "GET", fetch_target(url), host=f"127.0.0.1:{g.port}")
    assert again.cache_status.get("hit") is True, again
    assert origin.hits(path) == 1
