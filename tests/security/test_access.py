"""Who may use grenier: client networks, proxy users, CONNECT, and admin operations (token, no-store, purge)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.security.conftest import ADMIN_TOKEN
from tests.security.harness import (
    Grenier,
    Origin,
    assert_no_traceback,
    assert_problem,
    fetch_target,
    grenier_env,
    loopback_env,
    request,
    spawn,
    start_grenier,
    stop,
    unique,
)


@pytest.fixture(scope="module")
def elsewhere_only(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grenier]:
    """server.allow_clients excludes 127.0.0.1, the only address the tests connect from."""
    env = {**loopback_env(origin), "GRENIER_SERVER_ALLOW_CLIENTS": "10.0.0.0/8"}
    g = start_grenier(env, tmp_path_factory.mktemp("clients"), "clients")
    yield g
    stop(g.proc)


@pytest.fixture(scope="module")
def with_users(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grenier]:
    digest = hashlib.sha256(b"secret").hexdigest()
    env = {**loopback_env(origin), "GRENIER_SERVER_PROXY_USERS": f"alice:{digest}"}
    g = start_grenier(env, tmp_path_factory.mktemp("users"), "users")
    yield g
    stop(g.proc)


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Proxy-Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def via(g: Grenier, form: str, url: str, headers: list[tuple[str, str]] | None = None):
    if form == "fetch":
        return request(g.port, "GET", fetch_target(url), headers or [], host=f"127.0.0.1:{g.port}")
    return request(g.port, "GET", url, headers or [])


# --- client networks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_client_outside_allow_clients_is_refused(elsewhere_only: Grenier, origin: Origin, form: str) -> None:
    path = unique("plain")
    reply = via(elsewhere_only, form, origin.url(path))
    assert_problem(reply, 403, "127.0.0.1", "server.allow_clients")
    assert origin.count(path) == 0


def test_client_outside_allow_clients_cannot_use_the_form(elsewhere_only: Grenier, origin: Origin) -> None:
    path = unique("plain")
    reply = request(elsewhere_only.port, "GET", "/_grenier/ui/fetch?url=" + fetch_target(origin.url(path))[11:])
    assert_problem(reply, 403, "server.allow_clients")
    assert origin.count(path) == 0


def test_health_stays_public(elsewhere_only: Grenier) -> None:
    reply = request(elsewhere_only.port, "GET", "/_grenier/health")
    assert reply.status == 200, reply


def test_x_forwarded_for_does_not_grant_access(elsewhere_only: Grenier, origin: Origin) -> None:
    path = unique("plain")
    reply = via(
        elsewhere_only, "forward", origin.url(path), [("X-Forwarded-For", "10.1.2.3"), ("X-Real-IP", "10.1.2.3")]
    )
    assert_problem(reply, 403, "server.allow_clients")
    assert origin.count(path) == 0


# --- proxy users -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["fetch", "forward"])
@pytest.mark.parametrize(
    ("credentials", "why"),
    [
        (None, "Proxy-Authorization"),
        (basic("alice", "wrong"), "wrong password"),
        (basic("mallory", "secret"), "unknown proxy user"),
        (("Proxy-Authorization", "Basic !!!notbase64"), "not valid Basic"),
        (("Proxy-Authorization", "Bearer secret"), "Basic"),
    ],
    ids=["none", "wrong-password", "unknown-user", "garbage", "other-scheme"],
)
def test_proxy_users_need_the_right_password(
    with_users: Grenier, origin: Origin, form: str, credentials: tuple[str, str] | None, why: str
) -> None:
    path = unique("plain")
    reply = via(with_users, form, origin.url(path), [credentials] if credentials else [])
    assert_problem(reply, 407, why)
    assert reply.header("Proxy-Authenticate").startswith("Basic")
    assert origin.count(path) == 0


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_proxy_user_with_the_right_password_is_served(with_users: Grenier, origin: Origin, form: str) -> None:
    path = unique("echo")
    reply = via(with_users, form, origin.url(path), [basic("alice", "secret")])
    assert reply.status == 200, reply
    seen = origin.seen(path)
    assert len(seen) == 1
    assert "proxy-authorization" not in seen[0].names(), "the proxy credentials must not reach the origin"


def test_connect_is_refused_with_a_reason(open_grenier: Grenier, origin: Origin) -> None:
    target = f"127.0.0.1:{origin.port}"
    before = origin.total()
    reply = request(open_grenier.port, "CONNECT", target, host=target)
    assert_problem(reply, 405, "CONNECT")
    assert origin.total() == before


# --- admin -----------------------------------------------------------------------------------------------------------


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


@pytest.mark.parametrize(
    ("headers", "status", "why"),
    [
        ([], 401, "Authorization: Bearer"),
        ([bearer("wrong")], 403, "wrong admin token"),
        ([bearer(ADMIN_TOKEN + "x")], 403, "wrong admin token"),
        ([("Authorization", f"Basic {ADMIN_TOKEN}")], 401, "Bearer"),
        ([("X-Admin-Token", ADMIN_TOKEN)], 401, "Bearer"),
    ],
    ids=["none", "wrong", "longer", "basic", "other-field"],
)
def test_stats_needs_the_admin_token(
    open_grenier: Grenier, headers: list[tuple[str, str]], status: int, why: str
) -> None:
    reply = request(open_grenier.port, "GET", "/_grenier/stats", headers)
    assert_problem(reply, status, why)
    if status == 401:
        assert reply.header("WWW-Authenticate").startswith("Bearer")


def test_stats_with_the_token(open_grenier: Grenier) -> None:
    reply = request(open_grenier.port, "GET", "/_grenier/stats", [bearer(ADMIN_TOKEN)])
    assert reply.status == 200, reply
    assert "no-store" in reply.header("Cache-Control")
    assert_no_traceback(reply.body)


def _store(g: Grenier, origin: Origin) -> tuple[str, str]:
    path = unique("plain")
    url = origin.url(path)
    first = request(g.port, "GET", url)
    assert first.status == 200, first
    hit = request(g.port, "GET", url)
    assert hit.header("Cache-Status").startswith("grenier;hit"), hit
    return path, url


def _purge(g: Grenier, how: str, url: str, headers: list[tuple[str, str]]):
    if how == "delete":
        return request(
            g.port, "DELETE", "/_grenier/cache?url=" + fetch_target(url)[11:], headers, host=f"127.0.0.1:{g.port}"
        )
    return request(g.port, "PURGE", url, headers)


@pytest.mark.parametrize("how", ["delete", "purge"])
def test_purge_refused_without_the_token_keeps_the_entry(open_grenier: Grenier, origin: Origin, how: str) -> None:
    path, url = _store(open_grenier, origin)
    assert_problem(_purge(open_grenier, how, url, []), 401)
    assert_problem(_purge(open_grenier, how, url, [bearer("nope")]), 403)
    again = request(open_grenier.port, "GET", url)
    assert again.header("Cache-Status").startswith("grenier;hit"), again
    assert again.text == f"plain {path} 1"


@pytest.mark.parametrize("how", ["delete", "purge"])
def test_purge_with_the_token_forgets_the_entry(open_grenier: Grenier, origin: Origin, how: str) -> None:
    path, url = _store(open_grenier, origin)
    done = _purge(open_grenier, how, url, [bearer(ADMIN_TOKEN)])
    assert done.status == 200, done
    assert "no-store" in done.header("Cache-Control")
    after = request(open_grenier.port, "GET", url)
    assert "fwd=uri-miss" in after.header("Cache-Status"), after
    assert after.text == f"plain {path} 2"


# --- purge from the command line (Redis mode) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_grenier(
    redis_server: str, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Grenier, dict[str, str]]]:
    url = redis_server.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    logs = tmp_path_factory.mktemp("redis-purge")
    env = {**loopback_env(origin), "GRENIER_REDIS_URL": url, "GRENIER_JOBS_POLL_INTERVAL": "0.05"}
    worker = spawn(["worker", "--processes", "1", "--threads", "2"], env, logs / "worker.log")
    try:
        g = start_grenier(env, logs, "serve")
    except BaseException:
        stop(worker)
        raise
    yield g, env
    stop(g.proc)
    stop(worker)


def test_cli_purge_in_redis_mode(redis_grenier: tuple[Grenier, dict[str, str]], origin: Origin) -> None:
    g, env = redis_grenier
    path, url = _store(g, origin)
    done = subprocess.run(
        [sys.executable, "-m", "grenier", "purge", url],
        env=grenier_env(env),
        capture_output=True,
        timeout=30,
        cwd=g.log.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert url in done.stdout.decode()
    after = request(g.port, "GET", url)
    assert "fwd=uri-miss" in after.header("Cache-Status"), after
    assert after.text == f"plain {path} 2"
