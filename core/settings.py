"""Settings: one frozen, validated object built from ``config.toml`` plus ``GRENIER_<SECTION>_<KEY>``.

Every key has its default beside it; the README's configuration table mirrors these fields. Validation happens
once, at start-up, so that a typo stops the process (exit code 2) instead of surfacing as odd behaviour later.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from .logs import redact
from .netguard import Guard

ENV_PREFIX = "GRENIER_"


class ConfigError(Exception):
    """A configuration value or key is wrong; the message names the key."""


def _doc(text: str) -> Any:
    return {"doc": text}


@dataclass(frozen=True)
class ServerSettings:
    host: str = field(default="127.0.0.1", metadata=_doc("Address `grenier serve` listens on."))
    port: int = field(default=8080, metadata=_doc("Port `grenier serve` listens on."))
    public_url: str = field(
        default="",
        metadata=_doc(
            "Absolute URL clients reach grenier at (e.g. https://cache.example), used in job locations; empty: the"
            " request's Host when it names grenier, else the address the request came in on."
        ),
    )
    processes: int = field(
        default=0,
        metadata=_doc(
            "Server processes `grenier serve` runs on the one port (SO_REUSEPORT); 0: one per CPU core. Embedded"
            " mode runs one (its store and workers live in it) and refuses more."
        ),
    )
    allow_clients: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"),
        metadata=_doc("Networks (CIDR) whose clients may use /fetch, the form and the forward proxy."),
    )
    proxy_users: tuple[str, ...] = field(
        default=(),
        metadata=_doc('If set, forward/fetch clients must send Proxy-Authorization: Basic; "user:<sha256 hex>".'),
    )
    pseudonym: str = field(
        default="grenier", metadata=_doc("This cache's name in Via, CDN-Loop and Cache-Status (loop detection).")
    )
    max_line_bytes: int = field(default=16384, metadata=_doc("Longest request line accepted (414/400 beyond)."))
    max_field_bytes: int = field(default=16384, metadata=_doc("Longest request header field accepted."))
    max_body_bytes: int = field(
        default=1024 * 1024, metadata=_doc("Largest request body relayed upstream (413 beyond).")
    )
    keepalive_timeout: float = field(default=15.0, metadata=_doc("Seconds an idle client connection is kept."))
    lean_hits: bool = field(
        default=True,
        metadata=_doc(
            "Answer fresh hits held in the process's memory straight from the connection, without aiohttp's request"
            " machinery (the same answer, a fraction of the cost); false sends every request the full way."
        ),
    )
    body_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds a relayed request's whole body may take to arrive once its head is in (408 and the connection"
            " closed beyond). keepalive_timeout bounds only the head; at the default a body of max_body_bytes"
            " needs about 100 KB/s."
        ),
    )
    miss_rate: float = field(
        default=50.0, metadata=_doc("Misses per second one client may cause (429 beyond); 0 disables the limit.")
    )
    miss_burst: int = field(default=100, metadata=_doc("Misses a client may cause in a burst above miss_rate."))
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Networks (CIDR) of the proxies in front of grenier whose client_address_field is believed: the client"
            " is the rightmost address in it that is not one of them (access rules, miss rate, logs). Empty: the"
            " socket's peer, whatever a request says."
        ),
    )
    client_address_field: Literal["x-forwarded-for", "forwarded"] = field(
        default="x-forwarded-for",
        metadata=_doc(
            "The field trusted proxies append the client's address to (X-Forwarded-For, or RFC 7239 Forwarded);"
            " only this one is read, since a proxy passes the other on as the client wrote it."
        ),
    )


@dataclass(frozen=True)
class SecuritySettings:
    allow_networks: tuple[str, ...] = field(
        default=(),
        metadata=_doc('Networks (CIDR) targets may resolve into despite the SSRF guard, e.g. ["127.0.0.0/8"].'),
    )
    allow_hosts: tuple[str, ...] = field(
        default=(), metadata=_doc('Target hosts allowed whatever they resolve to (".example.com" for subdomains).')
    )
    deny_hosts: tuple[str, ...] = field(default=(), metadata=_doc("Target hosts always refused (wins over allow)."))
    allow_ports: tuple[int, ...] = field(default=(80, 443, 8080, 8443), metadata=_doc("Target ports clients may name."))


@dataclass(frozen=True)
class AdminSettings:
    token: str = field(
        default="",
        metadata=_doc("Bearer token for admin operations (stats, purge); empty: admin only from loopback peers."),
    )


@dataclass(frozen=True)
class RedisSettings:
    url: str = field(
        default="",
        metadata=_doc(
            "Redis URL for the cache and the job broker; empty runs embedded (in-process store and workers)."
            " With sentinels it only carries the database and credentials (its host is ignored), or is empty."
        ),
    )
    sentinels: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            'Sentinel addresses ("host:port"); when set, the Redis primary is the one they name for'
            " sentinel_service, and a failover is followed without a restart."
        ),
    )
    sentinel_service: str = field(
        default="", metadata=_doc("The primary's service name in Sentinel (required with sentinels).")
    )
    cluster: bool = field(
        default=False,
        metadata=_doc(
            "redis.url is a seed node of a Redis Cluster (any node; the others are discovered). The jobs then need"
            " jobs.broker = rabbitmq, or a plain Redis in jobs.broker_url: Dramatiq's Redis broker is not"
            " cluster-aware."
        ),
    )
    on_down: Literal["refuse", "bypass"] = field(
        default="refuse",
        metadata=_doc(
            "While Redis is unreachable: refuse (503 + Retry-After), or bypass: relay GET and HEAD straight to the"
            " origin (through the SSRF guard, uncached, Cache-Status fwd=bypass); other requests still get 503."
        ),
    )

    @property
    def configured(self) -> bool:
        """Is there a Redis at all (a URL, or sentinels to ask for one)? Without one, grenier runs embedded."""
        return bool(self.url or self.sentinels)


@dataclass(frozen=True)
class CacheSettings:
    default_ttl: int = field(
        default=30,
        metadata=_doc("Lifetime (s) of a response with no explicit freshness (no max-age/Expires)."),
    )
    max_ttl: int = field(default=86400, metadata=_doc("Upper bound (s) on any entry's freshness lifetime."))
    stale_keep: int = field(
        default=86400,
        metadata=_doc("Seconds an entry is kept after it goes stale, to be revalidated (304) instead of refetched."),
    )
    heuristic_fraction: float = field(
        default=0.1, metadata=_doc("Heuristic freshness: this fraction of (Date - Last-Modified) (RFC 9111 4.2.2).")
    )
    heuristic_max: int = field(default=86400, metadata=_doc("Upper bound (s) on a heuristic freshness lifetime."))
    stale_while_revalidate: int = field(
        default=0,
        metadata=_doc("Default stale-while-revalidate window (s) for responses that set none (RFC 5861); 0: off."),
    )
    stale_if_error: int = field(
        default=0, metadata=_doc("Default stale-if-error window (s) for responses that set none (RFC 5861); 0: off.")
    )
    stale_if_unreachable: int = field(
        default=86400,
        metadata=_doc(
            "When the origin gives no response at all (connection refused or dropped), serve a stored response"
            " up to this many seconds stale, marked stale, unless it forbids it (RFC 9111 4.2.4); 0: off."
        ),
    )
    targeted_field: str = field(
        default="Grenier-Cache-Control",
        metadata=_doc(
            "grenier's own targeted cache-control field (RFC 9213): it wins over CDN-Cache-Control, which wins"
            " over Cache-Control, and is never passed on to clients; empty: none."
        ),
    )
    memory_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_doc(
            "Embedded mode: bytes the in-process store may hold (bodies, fields, job records); least recently used"
            " entries are evicted beyond it. Redis mode: size Redis with maxmemory instead."
        ),
    )
    chunk_bytes: int = field(
        # 64 bytes short of 256 KiB: Redis's allocator rounds a 256 KiB value (plus its header) up to its next size
        # class, 320 KiB, so a power-of-two chunk would cost 25 % more memory than its bytes (measured).
        default=256 * 1024 - 64,
        metadata=_doc(
            "Bodies up to this size are stored inline with their fields (a hit is one read); larger ones in chunks"
            " of this size, streamed in by the worker and out to the client. Keep it a little under a power of two:"
            " Redis's allocator rounds a value of exactly 2^n bytes (plus its header) up to the next size class."
        ),
    )
    hot_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_doc(
            "Redis mode: bytes of hot entries each `grenier serve` process keeps in its own memory in front of"
            " Redis (0: no hot tier)."
        ),
    )
    hot_entry_bytes: int = field(
        default=1024 * 1024, metadata=_doc("Largest entry (or body chunk) the hot tier holds, in bytes.")
    )
    hot_seconds: float = field(
        default=2.0,
        metadata=_doc(
            "Longest (s) a hot entry is served without reading Redis again: the bound on staleness if a purge or"
            " refresh notification is lost."
        ),
    )
    share_set_cookie: bool = field(
        default=False, metadata=_doc("Store and share responses that carry Set-Cookie (off: they are never stored).")
    )
    share_authorized: bool = field(
        default=True,
        metadata=_doc(
            "Forward and reverse mode: a request with Authorization goes through the cache, its credentials sent"
            " on its own fetch, and a response that says public, s-maxage or must-revalidate is stored and reused"
            " (RFC 9111 3.5); off: such requests are relayed and never cached."
        ),
    )
    max_stored_fields: int = field(
        default=64,
        metadata=_doc(
            "Responses with more header fields than this are passed on but not stored: every hit would replay them."
        ),
    )
    max_stored_header_bytes: int = field(
        default=32 * 1024,
        metadata=_doc("Responses whose header fields (names and values) total more bytes than this are not stored."),
    )
    max_vary_fields: int = field(
        default=32,
        metadata=_doc("Responses whose Vary names more request fields than this are not stored: each hit keys on all."),
    )
    miss: Literal["async", "wait"] = field(
        default="async",
        metadata=_doc('On a miss without `Prefer: wait`: "async" answers 202 + job, "wait" waits for the fetch.'),
    )
    max_wait: float = field(default=30.0, metadata=_doc("Longest (s) a request may wait for its job."))
    wait_default: float = field(
        default=25.0,
        metadata=_doc('How long (s) a request waits when `miss = "wait"` and it sent no `Prefer`.'),
    )
    strip_tag_fields: bool = field(
        default=True,
        metadata=_doc(
            "Keep the surrogate-key fields (Surrogate-Key, Cache-Tag) out of stored responses and what clients see;"
            " entries are indexed by their tags either way."
        ),
    )

    @cached_property
    def targets(self) -> tuple[str, ...]:
        """RFC 9213 §2.1: the target list, most specific first and lower-cased: ``targeted_field`` (when set),
        then ``CDN-Cache-Control``, since grenier is a shared cache in front of origins, like a CDN's."""
        own = self.targeted_field.strip().lower()
        cdn = "cdn-cache-control"
        return (own, cdn) if own and own != cdn else (cdn,)


@dataclass(frozen=True)
class UpstreamSettings:
    origin: str = field(
        default="",
        metadata=_doc("Reverse-proxy origin (e.g. http://127.0.0.1:9000); empty disables reverse mode."),
    )
    connect_timeout: float = field(default=5.0, metadata=_doc("Seconds to establish an upstream connection."))
    total_timeout: float = field(default=30.0, metadata=_doc("Seconds for a whole upstream fetch, body included."))
    max_body_bytes: int = field(
        default=1024 * 1024 * 1024,
        metadata=_doc(
            "Larger upstream responses are not stored: their job fails with a 502 that says why. Bodies stream"
            " through in chunks, so this bounds the store's use, not the processes' memory."
        ),
    )
    retries: int = field(default=2, metadata=_doc("Extra attempts after a connection error (not after a status)."))
    retry_backoff: float = field(default=0.2, metadata=_doc("First retry delay (s); doubles per attempt."))
    read_timeout: float = field(
        default=10.0, metadata=_doc("Seconds to wait for the first byte and between reads of an upstream response.")
    )
    max_header_bytes: int = field(default=16384, metadata=_doc("Longest upstream response header field accepted."))
    max_connections_per_origin: int = field(
        default=16, metadata=_doc("Concurrent upstream connections per origin, per process.")
    )
    min_rate_bytes: int = field(
        default=1024,
        metadata=_doc(
            "Slowest upstream transfer accepted (bytes per second over `min_rate_window`): a fetch job slower than"
            " that fails as too slow (504), so a trickling upstream cannot hold a worker thread; 0 disables."
        ),
    )
    min_rate_window: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds over which `min_rate_bytes` is measured; also how long, beyond the connect and read timeouts,"
            " an upstream may take to send its status and header fields."
        ),
    )
    forward_headers: tuple[str, ...] = field(
        default=("accept", "accept-encoding", "accept-language"),
        metadata=_doc(
            "Client request fields a /fetch?url= fetch forwards upstream (its other fields are for grenier). Forward"
            " and reverse mode forward every end-to-end field but those of deny_fields."
        ),
    )
    deny_fields: tuple[str, ...] = field(
        default=(
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
        metadata=_doc(
            "Client request fields a cacheable fetch never forwards: overrides of what the origin thinks was asked,"
            " known cache-poisoning vectors."
        ),
    )


@dataclass(frozen=True)
class JobsSettings:
    result_ttl: int = field(default=3600, metadata=_doc("Seconds a job record (and its response) stays pollable."))
    unstored_result_ttl: int = field(
        default=60,
        metadata=_doc(
            "Seconds a job keeps a response it could not store (private, no-store) for the request that fetched it."
        ),
    )
    time_limit: float = field(default=60.0, metadata=_doc("Seconds a fetch job may run before it is failed."))
    processes: int = field(default=2, metadata=_doc("Worker processes `grenier worker` keeps alive."))
    threads: int = field(default=8, metadata=_doc("Worker threads per worker process (and in embedded mode)."))
    max_per_origin: int = field(
        default=4,
        metadata=_doc(
            "Fetch jobs one worker process runs at once to one origin (scheme, host, port); further jobs for it are"
            " put back on the queue for a moment, holding no thread, so one slow origin cannot starve the others."
        ),
    )
    heartbeat_timeout: float = field(
        default=10.0, metadata=_doc("Seconds after which a silent worker's unfinished jobs are redelivered.")
    )
    poll_interval: float = field(default=0.1, metadata=_doc("Seconds an idle worker waits before polling again."))
    queue: str = field(default="grenier-fetch", metadata=_doc("Queue name of fetch jobs."))
    max_pending: int = field(default=1000, metadata=_doc("Queued jobs beyond which misses get 503 + Retry-After."))
    max_deliveries: int = field(
        default=3,
        metadata=_doc(
            "Times a job is taken up by a worker at most: one whose worker died that often ends failed instead of"
            " being redelivered for ever."
        ),
    )
    broker: Literal["redis", "rabbitmq"] = field(
        default="redis",
        metadata=_doc(
            "What carries the fetch jobs between servers and workers (Redis mode): Redis, or RabbitMQ (a durable"
            " queue; a killed worker's job is redelivered at once). The store stays on Redis either way."
        ),
    )
    broker_url: str = field(
        default="",
        metadata=_doc(
            "The broker's URL: \"amqp://...\" for RabbitMQ, or a Redis URL; empty: the store's Redis (redis.url or"
            " its sentinels)."
        ),
    )
    metrics_port: int = field(
        default=0,
        metadata=_doc(
            "Port on which `grenier worker` serves the Prometheus metrics of all its worker processes (any path);"
            " 0: none."
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1", metadata=_doc("Address the workers' metrics port listens on (0.0.0.0: every interface).")
    )
    alive_file: str = field(
        default="/tmp/grenier-worker.alive",
        metadata=_doc(
            "File every `grenier worker` process touches each second; `grenier worker --check` (the container's"
            " health check) fails when it is older than 10 s or the broker does not answer."
        ),
    )

    @property
    def claim_ttl(self) -> float:
        """How long a URL's in-flight claim lives: long enough that a job redelivered after its worker died (a
        heartbeat timeout later, then a whole second run) still owns its URL."""
        return self.time_limit * 2 + self.heartbeat_timeout + 10


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_doc("Log level."))
    format: Literal["combined", "json"] = field(
        default="combined",
        metadata=_doc(
            'Line format: "combined" (access lines in the combined log format plus grenier\'s fields, other lines'
            ' as text) or "json" (one JSON object per line, for every line).'
        ),
    )
    access: bool = field(default=True, metadata=_doc("Write an access log line per request."))


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def embedded(self) -> bool:
        return not self.redis.configured

    @cached_property
    def guard(self) -> Guard:
        """The outbound SSRF guard for client-chosen targets."""
        sec = self.security
        return Guard.from_lists(
            list(sec.allow_networks), list(sec.allow_hosts), list(sec.deny_hosts), list(sec.allow_ports)
        )


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _coerce(key: str, tp: Any, value: Any, from_env: bool) -> Any:
    """Turn a TOML or environment value into the field's type, or say which key is wrong."""
    origin = get_origin(tp)
    if origin is tuple:
        (item_type, _) = get_args(tp)
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", item_type, v, from_env) for i, v in enumerate(value))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - a programming error


#: Numeric settings that may be 0 (every other number must be positive).
_ZERO_ALLOWED = frozenset(
    {
        "cache.default_ttl",
        "cache.stale_keep",
        "cache.max_wait",
        "cache.wait_default",
        "cache.heuristic_fraction",
        "cache.heuristic_max",
        "cache.stale_while_revalidate",
        "cache.stale_if_error",
        "cache.stale_if_unreachable",
        "cache.hot_bytes",
        "upstream.retries",
        "upstream.retry_backoff",
        "upstream.min_rate_bytes",
        "server.max_body_bytes",
        "server.miss_rate",
        "server.processes",
        "jobs.metrics_port",
    }
)


def _check_numbers(s: Settings) -> None:
    for section in dataclasses.fields(s):
        values = getattr(s, section.name)
        for f in dataclasses.fields(values):
            v = getattr(values, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            key = f"{section.name}.{f.name}"
            if not math.isfinite(v):
                raise ConfigError(f"{key}: must be a finite number, got {v!r}")
            if key in _ZERO_ALLOWED and v < 0:
                raise ConfigError(f"{key}: must be >= 0, got {v!r}")
            if key not in _ZERO_ALLOWED and v <= 0:
                raise ConfigError(f"{key}: must be > 0, got {v!r}")


def _validate(s: Settings) -> None:
    _check_numbers(s)
    if not 0 < s.server.port < 65536:
        raise ConfigError(f"server.port: must be 1..65535, got {s.server.port}")
    if s.jobs.metrics_port > 65535:
        raise ConfigError(f"jobs.metrics_port: must be 0 (none) or 1..65535, got {s.jobs.metrics_port}")
    if s.redis.url and urlsplit(s.redis.url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"redis.url: must start with redis://, rediss:// or unix://, got {redact(s.redis.url)!r}")
    _check_backends(s)
    if not 0 <= s.cache.heuristic_fraction <= 1:
        raise ConfigError(f"cache.heuristic_fraction: must be between 0 and 1, got {s.cache.heuristic_fraction!r}")
    if s.upstream.origin:
        parts = urlsplit(s.upstream.origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"upstream.origin: must be an absolute http(s) URL, got {s.upstream.origin!r}")
        if parts.query or parts.fragment:
            raise ConfigError("upstream.origin: must not carry a query or fragment")
    own = s.cache.targeted_field
    if own and (not own.isascii() or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in own)):
        raise ConfigError(f"cache.targeted_field: must be a field name (a token) or empty, got {own!r}")
    if s.server.public_url:
        parts = urlsplit(s.server.public_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in {"", "/"}:
            raise ConfigError(
                f"server.public_url: must be an absolute http(s) URL with no path, got {s.server.public_url!r}"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError("server.public_url: must not carry a query, fragment or credentials")
    if not s.jobs.queue:
        raise ConfigError("jobs.queue: must not be empty")
    if not s.server.pseudonym or not s.server.pseudonym.replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"server.pseudonym: must be a token (letters, digits, '-', '.'), got {s.server.pseudonym!r}")
    for i, net in enumerate(s.server.allow_clients):
        _network(f"server.allow_clients[{i}]", net)
    for i, net in enumerate(s.server.trusted_proxies):
        _network(f"server.trusted_proxies[{i}]", net)
    for i, net in enumerate(s.security.allow_networks):
        _network(f"security.allow_networks[{i}]", net)
    for i, port in enumerate(s.security.allow_ports):
        if not 0 < port < 65536:
            raise ConfigError(f"security.allow_ports[{i}]: must be 1..65535, got {port}")
    try:
        _ = s.guard
    except ValueError as exc:
        raise ConfigError(f"security: {exc}") from None
    for i, user in enumerate(s.server.proxy_users):
        name, sep, digest = user.partition(":")
        if not sep or not name or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f'server.proxy_users[{i}]: expected "user:<sha256 hex of the password>"')


def _check_backends(s: Settings) -> None:
    """Sentinel and the broker: each combination that cannot work is refused by name at start-up."""
    for i, address in enumerate(s.redis.sentinels):
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f'redis.sentinels[{i}]: expected "host:port", got {address!r}')
    if s.redis.sentinels and not s.redis.sentinel_service:
        raise ConfigError("redis.sentinel_service: required with redis.sentinels (the primary's name in Sentinel)")
    if s.redis.cluster:
        if s.redis.sentinels:
            raise ConfigError("redis.cluster: a cluster fails over by itself; redis.sentinels must be empty with it")
        if not s.redis.url:
            raise ConfigError("redis.cluster: needs redis.url, a seed node of the cluster")
        if s.jobs.broker == "redis" and not s.jobs.broker_url:
            raise ConfigError(
                "redis.cluster: the jobs need jobs.broker = rabbitmq, or a plain Redis in jobs.broker_url"
                " (Dramatiq's Redis broker is not cluster-aware)"
            )
    jobs = s.jobs
    if jobs.broker == "rabbitmq":
        if s.embedded:
            raise ConfigError("jobs.broker: rabbitmq needs redis.url (or redis.sentinels) for the store")
        if urlsplit(jobs.broker_url).scheme not in {"amqp", "amqps"}:
            raise ConfigError(
                f"jobs.broker_url: must start with amqp:// or amqps:// for RabbitMQ, got {jobs.broker_url!r}"
            )
    elif jobs.broker_url and s.embedded:
        raise ConfigError("jobs.broker_url: embedded mode runs its jobs in process; set redis.url to use a broker")
    elif jobs.broker_url and urlsplit(jobs.broker_url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"jobs.broker_url: must be a Redis URL for jobs.broker = redis, got {jobs.broker_url!r}")


def _network(key: str, raw: str) -> None:
    try:
        ipaddress.ip_network(raw, strict=False)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def build(data: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Merge TOML data and environment overrides into validated ``Settings``."""
    sections: dict[str, Any] = {}
    known = _section_types()
    for name in data:
        if name not in known:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(known)})")
    for name, cls in known.items():
        raw = data.get(name, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: expected a table")
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(fields))})")
        values = {k: _coerce(f"{name}.{k}", hints[k], v, from_env=False) for k, v in raw.items()}
        for key in fields:
            env_name = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
            if env_name in env and env_kind(env_name, env[env_name]) == "setting":
                values[key] = _coerce(f"{name}.{key} (from {env_name})", hints[key], env[env_name], from_env=True)
        sections[name] = cls(**values)
    for env_name, value in env.items():
        if env_kind(env_name, value) == "misspelled":
            section = env_name.removeprefix(ENV_PREFIX).split("_", 1)[0].lower()
            known_keys = ", ".join(f.name for f in dataclasses.fields(known[section]))
            raise ConfigError(f"{env_name}: unknown key in section [{section}] (known: {known_keys})")
    settings = Settings(**sections)
    _validate(settings)
    return settings


@functools.cache
def _known_env_names() -> frozenset[str]:
    names = {"GRENIER_CONFIG"}
    for name, cls in _section_types().items():
        names.update(f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}" for f in dataclasses.fields(cls))
    return frozenset(names)


#: The variables Kubernetes injects for every Service in a pod's namespace (and Docker's legacy links): a Service
#: named ``grenier`` (or ``grenier-redis``...) gives ``GRENIER_SERVICE_HOST``, ``GRENIER_SERVICE_PORT[_<NAME>]``,
#: ``GRENIER_PORT`` and ``GRENIER_PORT_8080_TCP[_PROTO|_PORT|_ADDR]``. They are nobody's settings.
_SERVICE_LINK = re.compile(
    r"GRENIER(?:_[A-Z0-9_]+?)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"
)
#: What a service link's ``..._PORT`` variable holds (``tcp://10.0.0.11:8080``): never a valid setting value.
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://\S+:\d+")

EnvKind = Literal["setting", "service-link", "misspelled", "foreign", "other"]


def env_kind(name: str, value: str) -> EnvKind:
    """What an environment variable is to grenier.

    ``setting``: ``GRENIER_<SECTION>_<KEY>`` of a real key (or ``GRENIER_CONFIG``). ``service-link``: what Kubernetes
    injects for a Service whose name starts with ``grenier``; ignored quietly, even ``GRENIER_SERVER_PORT`` when it
    holds a link's ``tcp://host:port`` (a Service named ``grenier-server``). ``misspelled``: a known section's prefix
    with a key it does not have (``GRENIER_CACHE_MAX_TLL``), a configuration error, since the operator meant a setting
    and would otherwise run without it. ``foreign``: any other ``GRENIER_*`` (another program's, a removed setting):
    warned about, not fatal. ``other``: not ours at all.
    """
    if not name.startswith(ENV_PREFIX):
        return "other"
    if name in _known_env_names():
        if _SERVICE_LINK.fullmatch(name) and _SERVICE_LINK_VALUE.fullmatch(value):
            return "service-link"
        return "setting"
    if _SERVICE_LINK.fullmatch(name):
        return "service-link"
    section = name.removeprefix(ENV_PREFIX).split("_", 1)[0].lower()
    if section in _section_types() and "_" in name.removeprefix(ENV_PREFIX):
        return "misspelled"
    return "foreign"


def env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line per ``GRENIER_*`` variable that is ignored and may be a mistake (not the service links)."""
    lines = []
    for name, value in sorted(env.items()):
        kind = env_kind(name, value)
        if kind == "foreign":
            lines.append(f"{name}: ignored (no setting section by that name; settings are GRENIER_<SECTION>_<KEY>)")
        elif kind == "service-link" and name in _known_env_names():
            lines.append(f"{name}: ignored (it holds a service link, {value!r}, not a setting)")
    return lines


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (or ``$GRENIER_CONFIG``, or ``./config.toml`` when present) and apply the environment."""
    env = os.environ if env is None else env
    chosen = path or env.get("GRENIER_CONFIG")
    data: dict[str, Any] = {}
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
    else:
        p = Path("config.toml")
    if p.is_file():
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return build(data, env)
