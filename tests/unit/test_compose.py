"""The Compose files as data: they parse, every ``GRENIER_*`` variable they set is a setting grenier knows (and its
value passes the settings' validation), and the cluster file has the shape docs/scaling.md describes.

``docker compose config`` is not available where the tests run; these checks read the files with PyYAML (which
resolves the anchors and merge keys the files use) and hold them to what grenier and the other services expect.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import env_kind, load

ROOT = Path(__file__).resolve().parents[2]
FILES = ["docker-compose.yml", "docker-compose.cluster.yml"]


def compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict), name
    return data


def grenier_services(data: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    """The services running ``grenier <command>``."""
    return {name: svc for name, svc in data["services"].items() if svc.get("command", [])[:2] == ["grenier", command]}


@pytest.mark.parametrize("name", FILES)
def test_every_grenier_variable_is_a_known_setting_with_a_valid_value(name: str) -> None:
    services = compose(name)["services"]
    grenier = {**grenier_services(compose(name), "serve"), **grenier_services(compose(name), "worker")}
    assert grenier, f"{name} runs no grenier process"
    for service, svc in services.items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        ours = {k: v for k, v in env.items() if k.startswith("GRENIER_")}
        assert {k: env_kind(k, v) for k, v in ours.items()} == dict.fromkeys(ours, "setting"), service
        if service in grenier:
            load(ROOT / "config.toml", env)  # raises on a value the settings refuse


@pytest.mark.parametrize("name", FILES)
def test_every_reference_names_something_the_file_defines(name: str) -> None:
    data = compose(name)
    services = data["services"]
    for service, svc in services.items():
        assert "image" in svc or "build" in svc, service
        assert set(svc.get("depends_on") or {}) <= set(services), service
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in (data.get("volumes") or {}), (service, volume)
        for config in svc.get("configs") or []:
            assert config["source"] in (data.get("configs") or {}), (service, config)
        for network in svc.get("networks") or []:
            assert network in (data.get("networks") or {}), (service, network)


def test_the_cluster_file_runs_three_primaries_with_replicas_rabbitmq_two_proxies_behind_one_port_and_workers() -> None:
    data = compose("docker-compose.cluster.yml")
    services = data["services"]

    nodes = [name for name, svc in services.items() if svc.get("command", [None])[0] == "redis-server"]
    assert len(nodes) == 6
    node_conf = data["configs"]["redis-node"]["content"]
    assert re.search(r"^cluster-enabled yes$", node_conf, re.MULTILINE)
    create = "\n".join(services["redis-cluster"]["command"])
    assert "--cluster create" in create
    assert "--cluster-replicas 1" in create  # six nodes: three primaries, each with a replica
    assert all(node in create for node in nodes)

    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    proxies = grenier_services(data, "serve")
    workers = grenier_services(data, "worker")
    assert len(proxies) == 2
    assert workers
    for name, svc in {**proxies, **workers}.items():
        settings = load(ROOT / "config.toml", {k: str(v) for k, v in svc["environment"].items()})
        assert settings.redis.cluster, name
        assert settings.redis.url.removeprefix("redis://").split(":")[0] in nodes, name
        assert settings.jobs.broker == "rabbitmq", name
        assert settings.jobs.broker_url.split("@")[1].startswith("rabbitmq:"), name
        for dependency in ("redis-cluster", "rabbitmq"):
            assert dependency in svc["depends_on"], (name, dependency)

    # One published port, on the load balancer; the proxies themselves are reached only through it.
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert list(published) == ["lb"]
    balancer = data["configs"]["haproxy"]["content"]
    assert {m for m in re.findall(r"^\s*server (\S+) (\S+):8080", balancer, re.MULTILINE)} == {(p, p) for p in proxies}
    assert re.search(r"^\s*option forwardfor$", balancer, re.MULTILINE)
    # The proxies believe X-Forwarded-For from the load balancer's address, and only from it.
    address = services["lb"]["networks"]["grenier"]["ipv4_address"]
    for name, svc in proxies.items():
        assert svc["environment"]["GRENIER_SERVER_TRUSTED_PROXIES"] == f"{address}/32", name
