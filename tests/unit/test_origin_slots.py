"""Per-origin fetch slots of a worker process (``jobs.max_per_origin``) and the origin a job counts against."""

from __future__ import annotations

import pytest

from core.queue import Defer, JobMessage
from core.settings import JobsSettings, Settings
from jobs.runtime import DEFER_SECONDS, JobRuntime, OriginSlots, origin_of


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://example.com/a", "http://example.com:80"),
        ("http://EXAMPLE.com:80/b?q", "http://example.com:80"),
        ("https://example.com/", "https://example.com:443"),
        ("http://example.com:8080/", "http://example.com:8080"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_slots_cap_each_origin_separately() -> None:
    slots = OriginSlots(2)
    assert slots.take("http://a:80")
    assert slots.take("http://a:80")
    assert not slots.take("http://a:80")
    assert slots.take("http://b:80"), "another origin is not held back by a busy one"
    slots.give("http://a:80")
    assert slots.take("http://a:80")
    for origin in ("http://a:80", "http://a:80", "http://b:80"):
        slots.give(origin)
    assert not slots.running


async def test_a_job_for_an_origin_at_its_cap_is_deferred_without_running() -> None:
    runtime = JobRuntime(Settings(jobs=JobsSettings(max_per_origin=1)), lambda: pytest.fail("no job may run"))
    assert runtime.slots.take(origin_of("http://example.com/busy"))
    deferred = await runtime.run(JobMessage("j" * 32, "http://example.com/other"))
    assert deferred == Defer(DEFER_SECONDS)
    assert dict(runtime.slots.running) == {"http://example.com:80": 1}
