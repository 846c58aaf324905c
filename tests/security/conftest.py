"""Fixtures shared by the security tests: one origin (and a bystander server) for the whole session, and the
grenier processes most modules attack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.origins import Origin
from tests.support.ports import free_port
from tests.support.processes import GrenierProcess, Launcher, allow_loopback


@pytest.fixture(scope="session")
def bystander() -> Iterator[Origin]:
    """A second server on 127.0.0.1 that no test may make grenier reach (redirect targets, Host headers)."""
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def origin(bystander: Origin) -> Iterator[Origin]:
    """The origin every test targets; ``/redirect/...`` on it points at the bystander."""
    server = Origin(redirect_to=bystander.url("/landing")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def loopback_env(origin: Origin) -> dict[str, str]:
    """Settings for a grenier in wait mode that may fetch from the test origin on loopback."""
    return {"GRENIER_CACHE_MISS": "wait", "GRENIER_UPSTREAM_RETRIES": "0", **allow_loopback(origin.port)}


ADMIN_TOKEN = "s3cr3t-admin-token"


@pytest.fixture(scope="session")
def open_grenier(
    origin: Origin, bystander: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrenierProcess]:
    """Embedded, in wait mode, with loopback opted into the SSRF guard (the origin, the bystander and its own port
    allowed) and an admin token set."""
    port = free_port()
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_CACHE_MAX_WAIT": "10",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SERVER_MISS_RATE": "0",
        **allow_loopback(origin.port, bystander.port, port),
        "GRENIER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with Launcher(tmp_path_factory.mktemp("open")) as launcher:
        yield launcher.serve(env, port=port)


@pytest.fixture(scope="session")
def guarded_grenier(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    """Embedded, default SSRF guard (no network opted in) except that the origin's port is an allowed port, so that
    the address rules, not the port rule, are what refuses loopback targets."""
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_CACHE_MAX_WAIT": "10",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SECURITY_ALLOW_PORTS": f"80,443,{origin.port}",
        "GRENIER_SECURITY_DENY_HOSTS": "forbidden.test,.evil.test",
    }
    with Launcher(tmp_path_factory.mktemp("guarded")) as launcher:
        yield launcher.serve(env)


@pytest.fixture(scope="module", params=["c-parser", "python-parser"])
def parser_grenier(
    request: pytest.FixtureRequest, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrenierProcess]:
    """Embedded, in wait mode, fetching from the origin on loopback, once with aiohttp's C parser and once with its
    pure-Python one (``AIOHTTP_NO_EXTENSIONS``): the wire tests must hold whichever parser a deployment runs. A body
    that never arrives is cut off after 2 s."""
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SERVER_BODY_TIMEOUT": "2",
        **allow_loopback(origin.port),
    }
    if request.param == "python-parser":
        env["AIOHTTP_NO_EXTENSIONS"] = "1"
    with Launcher(tmp_path_factory.mktemp(request.param)) as launcher:
        yield launcher.serve(env)
