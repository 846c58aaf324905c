"""How many server processes ``grenier serve`` runs, and how soon a supervisor restarts a crashing child."""

from __future__ import annotations

import os

import pytest

from core.settings import ConfigError, build
from core.supervision import restart_delay
from grenier.servers import process_count

REDIS = {"GRENIER_REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    ("crashes", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (50, 10.0)],
)
def test_restart_delay_doubles_per_crash_in_a_row_up_to_a_cap(crashes: int, delay: float) -> None:
    assert restart_delay(crashes) == delay


@pytest.mark.parametrize(
    ("env", "count"),
    [
        pytest.param({**REDIS, "GRENIER_SERVER_PROCESSES": "3"}, 3, id="redis-explicit"),
        pytest.param({**REDIS, "GRENIER_SERVER_PROCESSES": "1"}, 1, id="redis-one"),
        pytest.param(REDIS, len(os.sched_getaffinity(0)), id="redis-default-one-per-core"),
        pytest.param({}, 1, id="embedded-default"),
        pytest.param({"GRENIER_SERVER_PROCESSES": "1"}, 1, id="embedded-one"),
    ],
)
def test_process_count(env: dict[str, str], count: int) -> None:
    assert process_count(build({}, env)) == count


def test_embedded_mode_refuses_an_explicit_count_above_one() -> None:
    with pytest.raises(ConfigError, match=r"server\.processes .* is 2, but embedded mode runs one"):
        process_count(build({}, {"GRENIER_SERVER_PROCESSES": "2"}))
