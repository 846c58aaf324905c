"""DNS rebinding against tokenless admin: a page in a browser on grenier's host, whose name now resolves to
127.0.0.1, reaches grenier from a loopback peer and is the same origin for the browser. Without ``admin.token``,
admin answers only requests that name grenier by a loopback name and are not a cross-site request from a page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http import assert_problem, fetch_target, request
from tests.support.origins import Origin
from tests.support.processes import GrenierProcess, Launcher


@pytest.fixture(scope="module")
def tokenless(tmp_path_factory: pytest.TempPathFactory, loopback_env: dict[str, str]) -> Iterator[GrenierProcess]:
    with Launcher(tmp_path_factory.mktemp("tokenless")) as launcher:
        yield launcher.serve(loopback_env)


def stored(grenier: GrenierProcess, target: str) -> bool:
    return "hit" in request(grenier.port, "GET", fetch_target(target)).cache_status


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "rebound.test."])
def test_admin_refuses_a_foreign_host_name_without_a_token(
    tokenless: GrenierProcess, origin: Origin, host: str
) -> None:
    target = origin.route()
    assert request(tokenless.port, "GET", fetch_target(target)).status == 200
    stats = request(tokenless.port, "GET", "/_grenier/stats", host=host)
    assert_problem(stats, 403, "loopback name")
    purge = request(tokenless.port, "DELETE", "/_grenier/cache?url=" + target, host=host)
    assert_problem(purge, 403, "loopback name")
    assert stored(tokenless, target), "a refused purge must not have purged"


def test_admin_refuses_a_cross_site_page_without_a_token(tokenless: GrenierProcess, origin: Origin) -> None:
    target = origin.route()
    assert request(tokenless.port, "GET", fetch_target(target)).status == 200
    purge = request(tokenless.port, "DELETE", "/_grenier/cache?url=" + target, [("Sec-Fetch-Site", "cross-site")])
    assert_problem(purge, 403, "cross-site")
    assert stored(tokenless, target)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "grenier.localhost"])
def test_admin_still_answers_a_loopback_name_without_a_token(tokenless: GrenierProcess, host: str) -> None:
    reply = request(tokenless.port, "GET", "/_grenier/stats", host=f"{host}:{tokenless.port}")
    assert reply.status == 200, reply
