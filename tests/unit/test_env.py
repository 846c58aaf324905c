"""``GRENIER_*`` environment variables that are not settings: what start-up does with each kind.

A misspelled key in a known section (``GRENIER_CACHE_MAX_TLL``) stops start-up (exit 2): its author meant a setting
and would otherwise run without it. Any other unknown ``GRENIER_*`` is warned about and ignored. What Kubernetes
injects for a Service named ``grenier`` or ``grenier-<anything>`` (and Docker's legacy links) is ignored quietly:
``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT[_<PORT NAME>]``, ``<NAME>_PORT``, ``<NAME>_PORT_<n>_<PROTO>[_PROTO|
_PORT|_ADDR]`` (Kubernetes "Discovering services: environment variables").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError, EnvKind, Settings, build, env_kind, env_warnings
from tests.support.processes import run_cli

KINDS: list[tuple[str, str, str, EnvKind]] = [
    # id, name, value, kind
    ("setting", "GRENIER_SERVER_PORT", "8081", "setting"),
    ("config-file", "GRENIER_CONFIG", "/etc/grenier.toml", "setting"),
    ("not-ours", "PATH", "/bin", "other"),
    ("k8s-service-host", "GRENIER_SERVICE_HOST", "10.0.0.11", "service-link"),
    ("k8s-service-port", "GRENIER_SERVICE_PORT", "8080", "service-link"),
    ("k8s-named-service-port", "GRENIER_SERVICE_PORT_HTTP", "8080", "service-link"),
    ("k8s-port", "GRENIER_PORT", "tcp://10.0.0.11:8080", "service-link"),
    ("k8s-port-tcp", "GRENIER_PORT_8080_TCP", "tcp://10.0.0.11:8080", "service-link"),
    ("k8s-port-proto", "GRENIER_PORT_8080_TCP_PROTO", "tcp", "service-link"),
    ("k8s-port-port", "GRENIER_PORT_8080_TCP_PORT", "8080", "service-link"),
    ("k8s-port-addr", "GRENIER_PORT_8080_TCP_ADDR", "10.0.0.11", "service-link"),
    ("k8s-udp", "GRENIER_PORT_53_UDP_ADDR", "10.0.0.11", "service-link"),
    # A Service named grenier-redis in the same namespace: its prefix is a section's, its names are still links.
    ("k8s-grenier-redis", "GRENIER_REDIS_SERVICE_HOST", "10.0.0.12", "service-link"),
    ("k8s-grenier-redis-port", "GRENIER_REDIS_PORT", "tcp://10.0.0.12:6379", "service-link"),
    ("k8s-grenier-redis-tcp", "GRENIER_REDIS_PORT_6379_TCP_ADDR", "10.0.0.12", "service-link"),
    # A Service named grenier-server: GRENIER_SERVER_PORT is a real setting, but a link's value is no port number.
    ("k8s-grenier-server-port", "GRENIER_SERVER_PORT", "tcp://10.0.0.13:8080", "service-link"),
    ("misspelled-key", "GRENIER_CACHE_MAX_TLL", "5", "misspelled"),
    ("misspelled-server-key", "GRENIER_SERVER_PROT", "8080", "misspelled"),
    ("misspelled-log-key", "GRENIER_LOG_LEVL", "debug", "misspelled"),
    ("no-such-section", "GRENIER_METRICS_ENABLED", "1", "foreign"),
    ("section-without-key", "GRENIER_CACHE", "x", "foreign"),
    ("another-programs", "GRENIER_HOME", "/srv", "foreign"),
]


@pytest.mark.parametrize(("case", "name", "value", "kind"), KINDS, ids=[k[0] for k in KINDS])
def test_env_kind(case: str, name: str, value: str, kind: EnvKind) -> None:
    assert env_kind(name, value) == kind, case


def test_service_links_and_foreign_names_leave_the_settings_alone() -> None:
    env = {
        "GRENIER_SERVICE_HOST": "10.0.0.11",
        "GRENIER_PORT": "tcp://10.0.0.11:8080",
        "GRENIER_PORT_8080_TCP": "tcp://10.0.0.11:8080",
        "GRENIER_PORT_8080_TCP_ADDR": "10.0.0.11",
        "GRENIER_SERVER_PORT": "tcp://10.0.0.13:8080",
        "GRENIER_HOME": "/srv",
    }
    assert build({}, env) == Settings()


def test_a_link_value_does_not_hide_a_real_setting_beside_it() -> None:
    s = build({}, {"GRENIER_SERVER_PORT": "9090", "GRENIER_PORT_8080_TCP_PORT": "8080"})
    assert s.server.port == 9090


def test_misspelled_key_is_an_error_naming_the_section_keys() -> None:
    with pytest.raises(ConfigError) as info:
        build({}, {"GRENIER_CACHE_MAX_TLL": "5"})
    assert "GRENIER_CACHE_MAX_TLL" in str(info.value)
    assert "max_ttl" in str(info.value)


def test_warnings_name_foreign_variables_and_hijacked_settings_but_not_links() -> None:
    lines = env_warnings(
        {
            "GRENIER_HOME": "/srv",
            "GRENIER_SERVICE_HOST": "10.0.0.11",
            "GRENIER_PORT_8080_TCP": "tcp://10.0.0.11:8080",
            "GRENIER_SERVER_PORT": "tcp://10.0.0.13:8080",
            "GRENIER_LOG_LEVEL": "info",
            "HOME": "/root",
        }
    )
    assert len(lines) == 2
    assert lines[0].startswith("GRENIER_HOME: ignored")
    assert lines[1].startswith("GRENIER_SERVER_PORT: ignored")
    assert "tcp://10.0.0.13:8080" in lines[1]


def test_cli_warns_about_foreign_variables_and_starts(tmp_path: Path) -> None:
    """A real process: the warning is logged (once), the service links are not, and the command goes on (a
    worker in embedded mode stops right after with its own exit code 2, past the configuration)."""
    done = run_cli(
        ["worker"],
        tmp_path,
        {"GRENIER_HOME": "/srv", "GRENIER_PORT_8080_TCP_ADDR": "10.0.0.11", "GRENIER_SERVICE_HOST": "10.0.0.11"},
    )
    assert "configuration error" not in done.stderr
    assert done.stderr.count("GRENIER_HOME: ignored") == 1
    assert "GRENIER_PORT_8080_TCP_ADDR" not in done.stderr
    assert "GRENIER_SERVICE_HOST" not in done.stderr
    assert "grenier worker needs redis.url" in done.stderr


def test_cli_misspelled_key_exits_2(tmp_path: Path) -> None:
    done = run_cli(["worker"], tmp_path, {"GRENIER_JOBS_PROCESES": "2"})
    assert done.returncode == 2
    assert "configuration error" in done.stderr
    assert "GRENIER_JOBS_PROCESES" in done.stderr


def test_redis_password_is_not_in_a_configuration_error(tmp_path: Path) -> None:
    done = run_cli(["worker"], tmp_path, {"GRENIER_REDIS_URL": "http://:hunter2@redis:6379/0"})
    assert done.returncode == 2
    assert "redis.url" in done.stderr
    assert "hunter2" not in done.stderr
