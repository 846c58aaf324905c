"""Who may use grenier: client networks, proxy users, CONNECT, and admin operations (token, no-store, purge)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.security.conftest import ADMIN_TOKEN
from tests.support.http import assert_no_traceback, assert_problem, fetch_target, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess, Launcher, grenier_env


@pytest.fixture(scope="module")
def elsewhere_only(loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    """server.allow_clients excludes 127.0.0.1, the only address the tests connect from."""
    env = {**loopback_env, "GRENIER_SERVER_ALLOW_CLIENTS": "10.0.0.0/8"}
    with Launcher(tmp_path_factory.mktemp("clients")) as launcher:
        yield launcher.serve(env)


@pytest.fixture(scope="module")
def with_users(loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrenierProcess]:
    digest = hashlib.sha256(b"secret").hexdigest()
    env = {**loopback_env, "GRENIER_SERVER_PROXY_USERS": f"alice:{digest}"}
    with Launcher(tmp_path_factory.mktemp("users")) as launcher:
        yield launcher.serve(env)


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Proxy-Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def via(g: GrenierProcess, form: str, url: str, headers: list[tuple[str, str]] | None = None):
    if form == "fetch":
        return request(g.port, "GET", fetch_target(url), headers or [], host=f"127.0.0.1:{g.port}")
    return request(g.port, "GET", url, headers or [])


# --- client networks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_client_outside_allow_clients_is_refused(elsewhere_only: GrenierProcess, origin: Origin, form: str) -> None:
    path = unique("plain")
    reply = via(elsewhere_only, form, origin.url(path))
    assert_problem(reply, 403, "127.0.0.1", "server.allow_clients")
    assert origin.hits(path) == 0


def test_client_outside_allow_clients_cannot_use_the_form(elsewhere_only: GrenierProcess, origin: Origin) -> None:
    path = unique("plain")
    reply = request(elsewhere_only.port, "GET", "/_grenier/ui/fetch?url=" + fetch_target(origin.url(path))[11:])
    assert_problem(reply, 403, "server.allow_clients")
    assert origin.hits(path) == 0


def test_health_stays_public(elsewhere_only: GrenierProcess) -> None:
    reply = request(elsewhere_only.port, "GET", "/_grenier/health")
    assert reply.status == 200, reply


def test_x_forwarded_for_does_not_grant_access(elsewhere_only: GrenierProcess, origin: Origin) -> None:
    path = unique("plain")
    reply = via(
        elsewhere_only, "forward", origin.url(path), [("X-Forwarded-For", "10.1.2.3"), ("X-Real-IP", "10.1.2.3")]
    )
    assert_problem(reply, 403, "server.allow_clients")
    assert origin.hits(path) == 0


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
    with_users: GrenierProcess, origin: Origin, form: str, credentials: tuple[str, str] | None, why: str
) -> None:
    path = unique("plain")
    reply = via(with_users, form, origin.url(path), [credentials] if credentials else [])
    assert_problem(reply, 407, why)
    assert reply.header("Proxy-Authenticate").startswith("Basic")
    assert origin.hits(path) == 0


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_proxy_user_with_the_right_password_is_served(with_users: GrenierProcess, origin: Origin, form: str) -> None:
    path = unique("echo")
    reply = via(with_users, form, origin.url(path), [basic("alice", "secret")])
    assert reply.status == 200, reply
    seen = origin.seen(path)
    assert len(seen) == 1
    assert "proxy-authorization" not in seen[0].names(), "the proxy credentials must not reach the origin"


def test_connect_is_refused_with_a_reason(open_grenier: GrenierProcess, origin: Origin) -> None:
    target = f"127.0.0.1:{origin.port}"
    before = len(origin.seen)
    reply = request(open_grenier.port, "CONNECT", target, host=target)
    assert_problem(reply, 405, "CONNECT")
    assert len(origin.seen) == before


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
    open_grenier: GrenierProcess, headers: list[tuple[str, str]], status: int, why: str
) -> None:
    reply = request(open_grenier.port, "GET", "/_grenier/stats", headers)
    assert_problem(reply, status, why)
    if status == 401:
        assert reply.header("WWW-Authenticate").startswith("Bearer")


def test_stats_with_the_token(open_grenier: GrenierProcess) -> None:
    reply = request(open_grenier.port, "GET", "/_grenier/stats", [bearer(ADMIN_TOKEN)])
    assert reply.status == 200, reply
    assert "no-store" in reply.header("Cache-Control")
    assert_no_traceback(reply.body)


@pytest.mark.parametrize("path", ["/_grenier/", "/_grenier", "/_grenier/dashboard.json", "/_grenier/metrics"])
def test_operator_page_and_metrics_need_the_admin_token(open_grenier: GrenierProcess, path: str) -> None:
    assert_problem(request(open_grenier.port, "GET", path, []), 401, "Authorization: Bearer")
    assert_problem(request(open_grenier.port, "GET", path, [bearer("wrong")]), 403, "wrong admin token")
    reply = request(open_grenier.port, "GET", path, [bearer(ADMIN_TOKEN)])
    assert reply.status == 200, reply
    assert "no-store" in reply.header("Cache-Control")


def _store(g: GrenierProcess, origin: Origin) -> tuple[str, str]:
    path = unique("plain")
    url = origin.url(path)
    first = request(g.port, "GET", url)
    assert first.status == 200, first
    hit = request(g.port, "GET", url)
    assert hit.header("Cache-Status").startswith("grenier;hit"), hit
    return path, url


def _purge(g: GrenierProcess, how: str, url: str, headers: list[tuple[str, str]]):
    if how == "delete":
        return request(
            g.port, "DELETE", "/_grenier/cache?url=" + fetch_target(url)[11:], headers, host=f"127.0.0.1:{g.port}"
        )
    return request(g.port, "PURGE", url, headers)


@pytest.mark.parametrize("how", ["delete", "purge"])
def test_purge_refused_without_the_token_keeps_the_entry(
    open_grenier: GrenierProcess, origin: Origin, how: str
) -> None:
    path, url = _store(open_grenier, origin)
    assert_problem(_purge(open_grenier, how, url, []), 401)
    assert_problem(_purge(open_grenier, how, url, [bearer("nope")]), 403)
    again = request(open_grenier.port, "GET", url)
    assert again.header("Cache-Status").startswith("grenier;hit"), again
    assert again.text == f"plain {path} 1"


@pytest.mark.parametrize("how", ["delete", "purge"])
def test_purge_with_the_token_forgets_the_entry(open_grenier: GrenierProcess, origin: Origin, how: str) -> None:
    path, url = _store(open_grenier, origin)
    done = _purge(open_grenier, how, url, [bearer(ADMIN_TOKEN)])
    assert done.status == 200, done
    assert "no-store" in done.header("Cache-Control")
    after = request(open_grenier.port, "GET", url)
    assert "fwd=uri-miss" in after.header("Cache-Status"), after
    assert after.text == f"plain {path} 2"


@pytest.mark.parametrize("query", ["tag=t", "prefix=http%3A%2F%2F127.0.0.1%2F", "all=1", "all=1&soft=1"])
def test_every_purge_needs_the_admin_token(open_grenier: GrenierProcess, origin: Origin, query: str) -> None:
    path, url = _store(open_grenier, origin)
    assert_problem(request(open_grenier.port, "DELETE", f"/_grenier/cache?{query}"), 401)
    assert_problem(request(open_grenier.port, "DELETE", f"/_grenier/cache?{query}", [bearer("nope")]), 403)
    again = request(open_grenier.port, "GET", url)
    assert again.header("Cache-Status").startswith("grenier;hit"), again
    assert again.text == f"plain {path} 1"


def test_inspection_needs_the_admin_token(open_grenier: GrenierProcess, origin: Origin) -> None:
    _, url = _store(open_grenier, origin)
    query = "/_grenier/cache?url=" + fetch_target(url)[11:]
    assert_problem(request(open_grenier.port, "GET", query), 401)
    assert_problem(request(open_grenier.port, "GET", query, [bearer("nope")]), 403)
    shown = request(open_grenier.port, "GET", query, [bearer(ADMIN_TOKEN)])
    assert shown.status == 200, shown
    assert json.loads(shown.body)["stored"] is True


# --- purge from the command line (Redis mode) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_grenier(
    module_redis: str, loopback_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GrenierProcess, dict[str, str]]]:
    env = {**loopback_env, "GRENIER_REDIS_URL": module_redis, "GRENIER_JOBS_POLL_INTERVAL": "0.05"}
    with Launcher(tmp_path_factory.mktemp("redis-purge")) as launcher:
        launcher.worker(env, processes=1, args=("--threads", "2"), ready=False)
        yield launcher.serve(env), env


def test_cli_purge_in_redis_mode(redis_grenier: tuple[GrenierProcess, dict[str, str]], origin: Origin) -> None:
    g, env = redis_grenier
    path, url = _store(g, origin)
    done = subprocess.run(
        [sys.executable, "-m", "grenier", "purge", url],
        env=grenier_env(env),
        capture_output=True,
        timeout=30,
        cwd=g.log_path.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert url in done.stdout.decode()
    after = request(g.port, "GET", url)
    assert "fwd=uri-miss" in after.header("Cache-Status"), after
    assert after.text == f"plain {path} 2"
