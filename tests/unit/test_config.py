"""Settings: defaults, TOML, ``GRENIER_<SECTION>_<KEY>`` overrides and start-up validation (proxy/config.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from core import configdoc
from core.settings import (
    ConfigError,
    JobsSettings,
    LogSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    build,
    load,
)
from tests.support.processes import run_cli


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ---------------------------------------------------------------------------------------------------


#: Every key and its documented default, exactly as ``configdoc.rows()`` (the README table's source) reports it.
DEFAULTS = {
    "server.host": "127.0.0.1",
    "server.port": 8080,
    "server.public_url": "",
    "server.processes": 0,
    "server.allow_clients": ("127.0.0.0/8", "::1/128"),
    "server.proxy_users": (),
    "server.pseudonym": "grenier",
    "server.max_line_bytes": 16384,
    "server.max_field_bytes": 16384,
    "server.max_body_bytes": 1024 * 1024,
    "server.keepalive_timeout": 15.0,
    "server.lean_hits": True,
    "server.body_timeout": 10.0,
    "server.miss_rate": 50.0,
    "server.miss_burst": 100,
    "server.trusted_proxies": (),
    "server.client_address_field": "x-forwarded-for",
    "redis.url": "",
    "redis.sentinels": (),
    "redis.sentinel_service": "",
    "redis.cluster": False,
    "redis.on_down": "refuse",
    "cache.default_ttl": 30,
    "cache.max_ttl": 86400,
    "cache.stale_keep": 86400,
    "cache.heuristic_fraction": 0.1,
    "cache.heuristic_max": 86400,
    "cache.stale_while_revalidate": 0,
    "cache.stale_if_error": 0,
    "cache.stale_if_unreachable": 86400,
    "cache.targeted_field": "Grenier-Cache-Control",
    "cache.memory_bytes": 256 * 1024 * 1024,
    "cache.chunk_bytes": 256 * 1024 - 64,
    "cache.hot_bytes": 64 * 1024 * 1024,
    "cache.hot_entry_bytes": 1024 * 1024,
    "cache.hot_seconds": 2.0,
    "cache.share_set_cookie": False,
    "cache.share_authorized": True,
    "cache.max_stored_fields": 64,
    "cache.max_stored_header_bytes": 32768,
    "cache.max_vary_fields": 32,
    "cache.miss": "async",
    "cache.max_wait": 30.0,
    "cache.wait_default": 25.0,
    "cache.strip_tag_fields": True,
    "upstream.origin": "",
    "upstream.connect_timeout": 5.0,
    "upstream.total_timeout": 30.0,
    "upstream.max_body_bytes": 1024 * 1024 * 1024,
    "upstream.retries": 2,
    "upstream.retry_backoff": 0.2,
    "upstream.read_timeout": 10.0,
    "upstream.max_header_bytes": 16384,
    "upstream.max_connections_per_origin": 16,
    "upstream.min_rate_bytes": 1024,
    "upstream.min_rate_window": 10.0,
    "upstream.forward_headers": ("accept", "accept-encoding", "accept-language"),
    "upstream.deny_fields": (
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-scheme",
        "x-forwarded-server",
        "x-host",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ),
    "jobs.result_ttl": 3600,
    "jobs.unstored_result_ttl": 60,
    "jobs.time_limit": 60.0,
    "jobs.processes": 2,
    "jobs.threads": 8,
    "jobs.max_per_origin": 4,
    "jobs.heartbeat_timeout": 10.0,
    "jobs.poll_interval": 0.1,
    "jobs.queue": "grenier-fetch",
    "jobs.max_pending": 1000,
    "jobs.max_deliveries": 3,
    "jobs.broker": "redis",
    "jobs.broker_url": "",
    "jobs.metrics_port": 0,
    "jobs.metrics_host": "127.0.0.1",
    "jobs.alive_file": "/tmp/grenier-worker.alive",
    "security.allow_networks": (),
    "security.allow_hosts": (),
    "security.deny_hosts": (),
    "security.allow_ports": (80, 443, 8080, 8443),
    "admin.token": "",
    "log.level": "info",
    "log.format": "combined",
    "log.access": True,
}


def _get(s: Settings, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(s, section), name)


def test_defaults() -> None:
    s = build({}, {})
    assert s == Settings()
    assert {key: _get(s, key) for key in DEFAULTS} == DEFAULTS
    for key, value in DEFAULTS.items():
        assert type(_get(s, key)) is type(value), key
    assert s.embedded is True
    assert s.server == ServerSettings()
    assert s.redis == RedisSettings(url="")
    assert s.cache.miss == "async"
    assert s.jobs == JobsSettings()
    assert s.log == LogSettings(level="info")


def test_settings_are_frozen() -> None:
    s = build({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.port = 1  # type: ignore[misc]


def test_documented_rows_list_every_key_with_its_default() -> None:
    rows = {f"{section}.{key}": (default, doc) for section, key, default, doc in configdoc.rows()}
    assert list(rows) == list(DEFAULTS)
    assert {key: default for key, (default, _) in rows.items()} == DEFAULTS
    assert all(doc for _, doc in rows.values())
    assert set(rows) == {key for key, *_ in ENV_CASES}


# --- TOML -------------------------------------------------------------------------------------------------------


def test_build_from_toml_data() -> None:
    s = build(
        {
            "server": {"host": "0.0.0.0", "port": 9000},
            "redis": {"url": "redis://localhost:6379/1"},
            "cache": {"miss": "wait", "max_wait": 5},  # a TOML integer is a fine float
            "log": {"level": "debug"},
        },
        {},
    )
    assert s.server == ServerSettings(host="0.0.0.0", port=9000)
    assert s.redis.url == "redis://localhost:6379/1"
    assert s.embedded is False
    assert s.cache.miss == "wait"
    assert s.cache.max_wait == 5.0
    assert isinstance(s.cache.max_wait, float)
    assert s.log.level == "debug"
    assert s.jobs == JobsSettings()  # untouched sections keep their defaults


def test_load_reads_explicit_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[server]\nport = 8181\n\n[upstream]\norigin = "http://127.0.0.1:9000"\nretries = 0\n\n[jobs]\nthreads = 3\n',
    )
    for given in (path, str(path)):
        s = load(given, env={})
        assert s.server.port == 8181
        assert s.upstream.origin == "http://127.0.0.1:9000"
        assert s.upstream.retries == 0
        assert s.jobs.threads == 3


def test_load_uses_grenier_config_env(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 8282\n", name="elsewhere.toml")
    assert load(None, env={"GRENIER_CONFIG": str(path)}).server.port == 8282


def test_load_reads_config_toml_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "[server]\nport = 8383\n")
    monkeypatch.chdir(tmp_path)
    assert load(None, env={}).server.port == 8383


def test_load_without_any_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(None, env={}) == Settings()


def test_env_overrides_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 8181\nhost = 'a.example'\n")
    s = load(path, env={"GRENIER_SERVER_PORT": "9191"})
    assert s.server == ServerSettings(host="a.example", port=9191)


# --- every key from the environment -----------------------------------------------------------------------------

HEX = "ab" * 32

ENV_CASES: list[tuple[str, str, Any]] = [
    ("server.host", "0.0.0.0", "0.0.0.0"),
    ("server.port", "9090", 9090),
    ("server.public_url", "https://cache.example", "https://cache.example"),
    ("server.processes", "4", 4),
    ("server.allow_clients", "10.0.0.0/8, 192.168.0.0/16", ("10.0.0.0/8", "192.168.0.0/16")),
    ("server.proxy_users", f"alice:{HEX},bob:{HEX}", (f"alice:{HEX}", f"bob:{HEX}")),
    ("server.pseudonym", "edge-1.example", "edge-1.example"),
    ("server.max_line_bytes", "8192", 8192),
    ("server.max_field_bytes", "4096", 4096),
    ("server.max_body_bytes", "0", 0),
    ("server.keepalive_timeout", "5", 5.0),
    ("server.lean_hits", "false", False),
    ("server.body_timeout", "2.5", 2.5),
    ("server.miss_rate", "0", 0.0),
    ("server.miss_burst", "10", 10),
    ("redis.url", "redis://127.0.0.1:6390/2", "redis://127.0.0.1:6390/2"),
    ("redis.sentinels", "10.0.0.1:26379, sentinel-b:26380", ("10.0.0.1:26379", "sentinel-b:26380")),
    ("redis.sentinel_service", "cache", "cache"),
    ("redis.cluster", "true", True),
    ("redis.on_down", "bypass", "bypass"),
    ("cache.default_ttl", "60", 60),
    ("cache.max_ttl", "600", 600),
    ("cache.stale_keep", "15", 15),
    ("cache.heuristic_fraction", "0.5", 0.5),
    ("cache.heuristic_max", "3600", 3600),
    ("cache.stale_while_revalidate", "30", 30),
    ("cache.stale_if_error", "60", 60),
    ("cache.stale_if_unreachable", "0", 0),
    ("cache.targeted_field", "Edge-Cache-Control", "Edge-Cache-Control"),
    ("cache.memory_bytes", "1048576", 1048576),
    ("cache.chunk_bytes", "65536", 65536),
    ("cache.hot_bytes", "0", 0),
    ("cache.hot_entry_bytes", "1000", 1000),
    ("cache.hot_seconds", "0.5", 0.5),
    ("cache.share_set_cookie", "true", True),
    ("cache.max_stored_fields", "50", 50),
    ("cache.max_stored_header_bytes", "8192", 8192),
    ("cache.max_vary_fields", "4", 4),
    ("cache.miss", "wait", "wait"),
    ("cache.max_wait", "12.5", 12.5),
    ("cache.wait_default", "3", 3.0),
    ("cache.strip_tag_fields", "false", False),
    ("upstream.origin", "https://origin.example:8443", "https://origin.example:8443"),
    ("upstream.connect_timeout", "1.5", 1.5),
    ("upstream.total_timeout", "7", 7.0),
    ("upstream.max_body_bytes", "1024", 1024),
    ("upstream.retries", "0", 0),
    ("upstream.retry_backoff", "0.05", 0.05),
    ("upstream.read_timeout", "2.5", 2.5),
    ("upstream.max_header_bytes", "8192", 8192),
    ("upstream.max_connections_per_origin", "4", 4),
    ("upstream.min_rate_bytes", "0", 0),
    ("upstream.min_rate_window", "2.5", 2.5),
    ("upstream.forward_headers", "accept, x-custom", ("accept", "x-custom")),
    ("upstream.deny_fields", "x-forwarded-host, x-tenant", ("x-forwarded-host", "x-tenant")),
    ("cache.share_authorized", "false", False),
    ("jobs.result_ttl", "120", 120),
    ("jobs.unstored_result_ttl", "5", 5),
    ("jobs.time_limit", "9.5", 9.5),
    ("jobs.processes", "4", 4),
    ("jobs.threads", "16", 16),
    ("jobs.max_per_origin", "2", 2),
    ("jobs.heartbeat_timeout", "2.5", 2.5),
    ("jobs.poll_interval", "0.25", 0.25),
    ("jobs.queue", "other-queue", "other-queue"),
    ("jobs.max_pending", "50", 50),
    ("jobs.max_deliveries", "1", 1),
    ("jobs.broker", "rabbitmq", "rabbitmq"),
    ("jobs.broker_url", "amqp://u:p@mq:5672/%2F", "amqp://u:p@mq:5672/%2F"),
    ("jobs.metrics_port", "9108", 9108),
    ("jobs.metrics_host", "0.0.0.0", "0.0.0.0"),
    ("jobs.alive_file", "/run/grenier/alive", "/run/grenier/alive"),
    ("security.allow_networks", "127.0.0.0/8", ("127.0.0.0/8",)),
    ("security.allow_hosts", ".example.com,api.test", (".example.com", "api.test")),
    ("security.deny_hosts", "evil.test", ("evil.test",)),
    ("security.allow_ports", "80, 8000", (80, 8000)),
    ("admin.token", "s3cret", "s3cret"),
    ("log.level", "warning", "warning"),
    ("log.format", "json", "json"),
    ("log.access", "false", False),
    ("server.trusted_proxies", "10.0.0.0/8, 192.0.2.1", ("10.0.0.0/8", "192.0.2.1")),
    ("server.client_address_field", "forwarded", "forwarded"),
]


#: The other settings a key only makes sense with (the comparison is against them alone).
CONTEXT: dict[str, dict[str, str]] = {
    "redis.sentinels": {"GRENIER_REDIS_SENTINEL_SERVICE": "cache"},
    "redis.cluster": {"GRENIER_REDIS_URL": "redis://127.0.0.1:7000", "GRENIER_JOBS_BROKER_URL": "redis://q:6379/0"},
    "jobs.broker": {"GRENIER_REDIS_URL": "redis://127.0.0.1:6379/0", "GRENIER_JOBS_BROKER_URL": "amqp://mq/%2F"},
    "jobs.broker_url": {"GRENIER_REDIS_URL": "redis://127.0.0.1:6379/0", "GRENIER_JOBS_BROKER": "rabbitmq"},
}


def _flat(s: Settings) -> dict[str, Any]:
    return {
        f"{sec.name}.{f.name}": getattr(getattr(s, sec.name), f.name)
        for sec in dataclasses.fields(s)
        for f in dataclasses.fields(getattr(s, sec.name))
    }


def _key_of(env_name: str) -> str:
    return next(k for k in DEFAULTS if _env_name(k) == env_name)


def _env_name(key: str) -> str:
    section, name = key.split(".")
    return f"GRENIER_{section.upper()}_{name.upper()}"


@pytest.mark.parametrize(("key", "raw", "expected"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_every_key_is_overridable_from_env(key: str, raw: str, expected: Any) -> None:
    section, name = key.split(".")
    context = CONTEXT.get(key, {})
    s = build({}, {**context, _env_name(key): raw})
    value = getattr(getattr(s, section), name)
    assert value == expected
    assert type(value) is type(expected)
    moved = {k for k, v in _flat(s).items() if v != DEFAULTS[k]}
    assert moved <= {key, *(_key_of(env) for env in context)}  # nothing else moved


def test_grenier_config_is_a_known_env_name_and_other_env_is_ignored() -> None:
    assert build({}, {"GRENIER_CONFIG": "/nowhere.toml", "PATH": "/bin", "HOME": "/root"}) == Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("0", False), ("false", False), ("No", False)],
)
def test_env_booleans(raw: str, expected: bool) -> None:
    assert build({}, {"GRENIER_CACHE_SHARE_SET_COOKIE": raw}).cache.share_set_cookie is expected


def test_env_empty_list() -> None:
    assert build({}, {"GRENIER_SERVER_ALLOW_CLIENTS": ""}).server.allow_clients == ()


def test_toml_lists_become_tuples() -> None:
    s = build({"security": {"allow_ports": [8000, 9000], "allow_hosts": ["a.test"]}}, {})
    assert s.security.allow_ports == (8000, 9000)
    assert s.security.allow_hosts == ("a.test",)


# --- refusals: each names the key -------------------------------------------------------------------------------

BAD_DATA: list[tuple[str, dict[str, Any], dict[str, str], str]] = [
    # id, TOML data, env, text the message must contain
    ("unknown-section", {"cahce": {"max_ttl": 5}}, {}, "cahce"),
    ("section-not-a-table", {"cache": 5}, {}, "cache"),
    ("unknown-key", {"cache": {"max_tll": 5}}, {}, "cache.max_tll"),
    ("unknown-env", {}, {"GRENIER_CACHE_MAX_TLL": "5"}, "GRENIER_CACHE_MAX_TLL"),
    ("unknown-env-key-names-section", {}, {"GRENIER_SERVER_PROT": "5"}, "[server]"),
    ("trusted-proxies-not-cidr", {}, {"GRENIER_SERVER_TRUSTED_PROXIES": "10.0.0.0/33"}, "server.trusted_proxies[0]"),
    ("client-field-literal", {}, {"GRENIER_SERVER_CLIENT_ADDRESS_FIELD": "x-real-ip"}, "server.client_address_field"),
    ("log-format-literal", {}, {"GRENIER_LOG_FORMAT": "logfmt"}, "log.format"),
    ("on-down-literal", {}, {"GRENIER_REDIS_ON_DOWN": "ignore"}, "redis.on_down"),
    ("toml-str-for-int", {"server": {"port": "8080"}}, {}, "server.port"),
    ("toml-bool-for-int", {"jobs": {"threads": True}}, {}, "jobs.threads"),
    ("toml-float-for-int", {"cache": {"max_ttl": 1.5}}, {}, "cache.max_ttl"),
    ("toml-str-for-float", {"cache": {"max_wait": "5"}}, {}, "cache.max_wait"),
    ("toml-bool-for-float", {"upstream": {"total_timeout": False}}, {}, "upstream.total_timeout"),
    ("toml-int-for-str", {"server": {"host": 1}}, {}, "server.host"),
    ("toml-literal", {"cache": {"miss": "sync"}}, {}, "cache.miss"),
    ("targeted-field-not-a-token", {"cache": {"targeted_field": "My Cache-Control"}}, {}, "cache.targeted_field"),
    ("stale-if-unreachable-negative", {"cache": {"stale_if_unreachable": -1}}, {}, "cache.stale_if_unreachable"),
    ("toml-literal-case", {"log": {"level": "INFO"}}, {}, "log.level"),
    ("env-not-int", {}, {"GRENIER_SERVER_PORT": "eighty"}, "server.port"),
    ("env-float-for-int", {}, {"GRENIER_JOBS_THREADS": "2.5"}, "jobs.threads"),
    ("env-not-float", {}, {"GRENIER_CACHE_MAX_WAIT": "soon"}, "cache.max_wait"),
    ("env-literal", {}, {"GRENIER_LOG_LEVEL": "loud"}, "log.level"),
    ("port-zero", {"server": {"port": 0}}, {}, "server.port"),
    ("public-url-relative", {"server": {"public_url": "/cache"}}, {}, "server.public_url"),
    ("public-url-scheme", {"server": {"public_url": "ftp://cache.example"}}, {}, "server.public_url"),
    ("public-url-path", {"server": {"public_url": "http://cache.example/sub"}}, {}, "server.public_url"),
    ("public-url-query", {"server": {"public_url": "http://cache.example/?a=1"}}, {}, "server.public_url"),
    ("port-too-big", {}, {"GRENIER_SERVER_PORT": "65536"}, "server.port"),
    ("server-processes-negative", {"server": {"processes": -1}}, {}, "server.processes"),
    ("redis-url-scheme", {"redis": {"url": "http://127.0.0.1:6379"}}, {}, "redis.url"),
    ("default-ttl-negative", {"cache": {"default_ttl": -1}}, {}, "cache.default_ttl"),
    ("max-ttl-zero", {"cache": {"max_ttl": 0}}, {}, "cache.max_ttl"),
    ("stale-keep-negative", {}, {"GRENIER_CACHE_STALE_KEEP": "-5"}, "cache.stale_keep"),
    ("max-wait-negative", {"cache": {"max_wait": -0.5}}, {}, "cache.max_wait"),
    ("wait-default-negative", {"cache": {"wait_default": -1}}, {}, "cache.wait_default"),
    ("origin-not-http", {"upstream": {"origin": "ftp://origin.example"}}, {}, "upstream.origin"),
    ("origin-relative", {"upstream": {"origin": "/just/a/path"}}, {}, "upstream.origin"),
    ("origin-with-query", {"upstream": {"origin": "http://origin.example/?a=1"}}, {}, "upstream.origin"),
    ("connect-timeout-zero", {"upstream": {"connect_timeout": 0}}, {}, "upstream.connect_timeout"),
    ("total-timeout-negative", {}, {"GRENIER_UPSTREAM_TOTAL_TIMEOUT": "-1"}, "upstream.total_timeout"),
    ("max-body-zero", {"upstream": {"max_body_bytes": 0}}, {}, "upstream.max_body_bytes"),
    ("retries-negative", {"upstream": {"retries": -1}}, {}, "upstream.retries"),
    ("retry-backoff-negative", {"upstream": {"retry_backoff": -0.1}}, {}, "upstream.retry_backoff"),
    ("result-ttl-zero", {"jobs": {"result_ttl": 0}}, {}, "jobs.result_ttl"),
    ("time-limit-zero", {"jobs": {"time_limit": 0}}, {}, "jobs.time_limit"),
    ("processes-zero", {"jobs": {"processes": 0}}, {}, "jobs.processes"),
    ("threads-zero", {}, {"GRENIER_JOBS_THREADS": "0"}, "jobs.threads"),
    ("per-origin-zero", {}, {"GRENIER_JOBS_MAX_PER_ORIGIN": "0"}, "jobs.max_per_origin"),
    ("min-rate-negative", {}, {"GRENIER_UPSTREAM_MIN_RATE_BYTES": "-1"}, "upstream.min_rate_bytes"),
    ("min-rate-window-zero", {}, {"GRENIER_UPSTREAM_MIN_RATE_WINDOW": "0"}, "upstream.min_rate_window"),
    ("heartbeat-zero", {"jobs": {"heartbeat_timeout": 0}}, {}, "jobs.heartbeat_timeout"),
    ("poll-interval-zero", {"jobs": {"poll_interval": 0}}, {}, "jobs.poll_interval"),
    ("queue-empty", {"jobs": {"queue": ""}}, {}, "jobs.queue"),
    ("sentinel-no-port", {"redis": {"sentinels": ["s1"], "sentinel_service": "c"}}, {}, "redis.sentinels[0]"),
    (
        "sentinel-bad-port",
        {"redis": {"sentinels": ["s1:1", "s2:x"], "sentinel_service": "c"}},
        {},
        "redis.sentinels[1]",
    ),
    ("sentinel-no-service", {"redis": {"sentinels": ["s1:26379"]}}, {}, "redis.sentinel_service"),
    ("rabbitmq-embedded", {"jobs": {"broker": "rabbitmq", "broker_url": "amqp://mq/"}}, {}, "jobs.broker"),
    ("rabbitmq-no-url", {"redis": {"url": "redis://r/0"}, "jobs": {"broker": "rabbitmq"}}, {}, "jobs.broker_url"),
    (
        "rabbitmq-redis-url",
        {"redis": {"url": "redis://r/0"}, "jobs": {"broker": "rabbitmq", "broker_url": "redis://r/1"}},
        {},
        "jobs.broker_url",
    ),
    (
        "redis-broker-amqp-url",
        {"redis": {"url": "redis://r/0"}, "jobs": {"broker_url": "amqp://mq/"}},
        {},
        "jobs.broker_url",
    ),
    ("broker-url-embedded", {"jobs": {"broker_url": "redis://r/1"}}, {}, "jobs.broker_url"),
    ("cluster-no-url", {"redis": {"cluster": True}}, {}, "redis.cluster"),
    ("cluster-redis-broker", {"redis": {"cluster": True, "url": "redis://c:7000"}}, {}, "redis.cluster"),
    (
        "cluster-and-sentinels",
        {"redis": {"cluster": True, "url": "redis://c:7000", "sentinels": ["s:1"], "sentinel_service": "c"}},
        {},
        "redis.cluster",
    ),
    ("broker-unknown", {"redis": {"url": "redis://r/0"}, "jobs": {"broker": "kafka"}}, {}, "jobs.broker"),
    ("bool-env-garbage", {}, {"GRENIER_CACHE_SHARE_SET_COOKIE": "maybe"}, "cache.share_set_cookie"),
    ("bool-toml-string", {"cache": {"share_set_cookie": "true"}}, {}, "cache.share_set_cookie"),
    ("bool-toml-int", {"cache": {"share_set_cookie": 1}}, {}, "cache.share_set_cookie"),
    ("list-toml-scalar", {"security": {"allow_ports": 80}}, {}, "security.allow_ports"),
    ("list-toml-item-type", {"security": {"allow_ports": [80, "x"]}}, {}, "security.allow_ports[1]"),
    ("list-env-item-type", {}, {"GRENIER_SECURITY_ALLOW_PORTS": "80,http"}, "security.allow_ports"),
    ("allow-port-zero", {"security": {"allow_ports": [0]}}, {}, "security.allow_ports[0]"),
    ("allow-port-too-big", {"security": {"allow_ports": [80, 70000]}}, {}, "security.allow_ports[1]"),
    ("allow-clients-not-cidr", {"server": {"allow_clients": ["10.0.0.0/8", "nope"]}}, {}, "server.allow_clients[1]"),
    ("allow-networks-not-cidr", {}, {"GRENIER_SECURITY_ALLOW_NETWORKS": "300.0.0.0/8"}, "security.allow_networks[0]"),
    ("pseudonym-space", {"server": {"pseudonym": "my cache"}}, {}, "server.pseudonym"),
    ("pseudonym-empty", {"server": {"pseudonym": ""}}, {}, "server.pseudonym"),
    ("proxy-user-no-digest", {"server": {"proxy_users": ["alice"]}}, {}, "server.proxy_users[0]"),
    ("proxy-user-short-digest", {"server": {"proxy_users": ["alice:abc"]}}, {}, "server.proxy_users[0]"),
    ("heuristic-fraction-over-1", {"cache": {"heuristic_fraction": 1.5}}, {}, "cache.heuristic_fraction"),
    ("read-timeout-zero", {"upstream": {"read_timeout": 0}}, {}, "upstream.read_timeout"),
    ("max-pending-zero", {"jobs": {"max_pending": 0}}, {}, "jobs.max_pending"),
    ("max-deliveries-zero", {"jobs": {"max_deliveries": 0}}, {}, "jobs.max_deliveries"),
    ("miss-burst-zero", {"server": {"miss_burst": 0}}, {}, "server.miss_burst"),
    ("miss-rate-negative", {"server": {"miss_rate": -1}}, {}, "server.miss_rate"),
    ("inf-timeout-env", {}, {"GRENIER_UPSTREAM_CONNECT_TIMEOUT": "inf"}, "upstream.connect_timeout"),
    # NaN compares false with everything: a range check written as "v < 0" alone would let it through.
    ("nan-timeout-env", {}, {"GRENIER_UPSTREAM_TOTAL_TIMEOUT": "nan"}, "upstream.total_timeout"),
    ("nan-max-wait-toml", {"cache": {"max_wait": float("nan")}}, {}, "cache.max_wait"),
]


@pytest.mark.parametrize(("data", "env", "names"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_settings_raise_config_error_naming_the_key(data: dict[str, Any], env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(data, env)
    assert names in str(info.value)


def test_env_type_error_names_the_env_var_too() -> None:
    with pytest.raises(ConfigError) as info:
        build({}, {"GRENIER_SERVER_PORT": "eighty"})
    assert "server.port" in str(info.value)
    assert "GRENIER_SERVER_PORT" in str(info.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[cache]\nmax_ttl = \n", "not valid TOML"),
        ("[cache\nmax_ttl = 5\n", "not valid TOML"),
        ("[cache]\nmax_tll = 5\n", "cache.max_tll"),
        ('[server]\nport = "x"\n', "server.port"),
    ],
    ids=["missing-value", "unclosed-table", "unknown-key", "wrong-type"],
)
def test_load_bad_file(tmp_path: Path, text: str, names: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert names in str(info.value)


def test_load_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[server]\nhost = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert "not valid TOML" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("via", ["argument", "GRENIER_CONFIG"])
def test_load_missing_explicit_file(tmp_path: Path, via: str) -> None:
    missing = tmp_path / "absent.toml"
    path, env = (missing, {}) if via == "argument" else (None, {"GRENIER_CONFIG": str(missing)})
    with pytest.raises(ConfigError) as info:
        load(path, env=env)
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


# --- the CLI turns a configuration error into exit code 2 -------------------------------------------------------


def test_cli_serve_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cache]\nmax_tll = 5\n", name="bad.toml")
    done = run_cli(["serve", "--config", str(path)], cwd=tmp_path)
    assert done.returncode == 2
    assert "cache.max_tll" in done.stderr
    assert "configuration error" in done.stderr


def test_cli_serve_with_missing_config_exits_2(tmp_path: Path) -> None:
    done = run_cli(["serve", "--config", str(tmp_path / "absent.toml")], cwd=tmp_path)
    assert done.returncode == 2
    assert "absent.toml" in done.stderr


def test_cli_worker_in_embedded_mode_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "[jobs]\nprocesses = 1\n", name="embedded.toml")
    done = run_cli(["worker", "--config", str(path)], cwd=tmp_path)
    assert done.returncode == 2
    assert "redis.url" in done.stderr


def test_cli_worker_rejects_zero_processes(tmp_path: Path) -> None:
    path = _write(tmp_path, '[redis]\nurl = "redis://127.0.0.1:1/0"\n', name="redis.toml")
    done = run_cli(["worker", "--config", str(path), "--processes", "0"], cwd=tmp_path)
    assert done.returncode == 2
    assert "--processes" in done.stderr


def test_sentinels_alone_are_not_embedded() -> None:
    """``redis.url`` may be empty with sentinels: the primary's address is theirs to give."""
    s = build({"redis": {"sentinels": ["127.0.0.1:26379"], "sentinel_service": "cache"}}, {})
    assert not s.embedded
