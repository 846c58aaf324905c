"""Fixtures shared by the security tests: one origin (and a bystander server) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.harness import Grenier, Origin, free_port, start_grenier, start_origin, stop


@pytest.fixture(scope="session")
def bystander() -> Iterator[Origin]:
    """A second server on 127.0.0.1 that no test may make grenier reach (redirect targets, Host headers)."""
    server, stop = start_origin()
    yield server
    stop()


@pytest.fixture(scope="session")
def origin(bystander: Origin) -> Iterator[Origin]:
    """The origin every test targets; ``/redirect/...`` on it points at the bystander."""
    server, stop = start_origin(other_port=bystander.port)
    yield server
    stop()


ADMIN_TOKEN = "s3cr3t-admin-token"


@pytest.fixture(scope="session")
def open_grenier(origin: Origin, bystander: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grenier]:
    """Embedded, in wait mode, with loopback opted into the SSRF guard (the origin, the bystander and its own port
    allowed) and an admin token set."""
    port = free_port()
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_CACHE_MAX_WAIT": "10",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SERVER_MISS_RATE": "0",
        "GRENIER_SECURITY_ALLOW_NETWORKS": "127.0.0.0/8",
        "GRENIER_SECURITY_ALLOW_PORTS": f"{origin.port},{bystander.port},{port}",
        "GRENIER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    g = start_grenier(env, tmp_path_factory.mktemp("open"), "open", port=port)
    yield g
    stop(g.proc)


@pytest.fixture(scope="session")
def guarded_grenier(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grenier]:
    """Embedded, default SSRF guard (no network opted in) except that the origin's port is an allowed port, so that
    the address rules, not the port rule, are what refuses loopback targets."""
    env = {
        "GRENIER_CACHE_MISS": "wait",
        "GRENIER_CACHE_MAX_WAIT": "10",
        "GRENIER_UPSTREAM_RETRIES": "0",
        "GRENIER_SECURITY_ALLOW_PORTS": f"80,443,{origin.port}",
        "GRENIER_SECURITY_DENY_HOSTS": "forbidden.test,.evil.test",
    }
    g = start_grenier(env, tmp_path_factory.mktemp("guarded"), "guarded")
    yield g
    stop(g.proc)
