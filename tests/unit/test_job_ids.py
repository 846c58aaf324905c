"""Job ids carry their issue time, so a missing record can be told apart: lost with the store, or expired / never
issued (``core/job_ids.py``)."""

from __future__ import annotations

import pytest

from core.job_ids import CLOCK_SLACK, JOB_ID, issued_at, missing, new_job_id

NOW = 1_764_547_200.0  # 2025-12-01T00:00:00Z
TTL = 3600.0


def test_an_id_is_32_hex_digits_and_carries_its_time_to_the_millisecond() -> None:
    job_id = new_job_id(NOW + 0.123, "ab" * 10)
    assert JOB_ID.fullmatch(job_id)
    assert job_id.endswith("ab" * 10)
    assert issued_at(job_id) == pytest.approx(NOW + 0.123, abs=0.001)


def test_ids_issued_at_the_same_time_differ() -> None:
    assert new_job_id(NOW) != new_job_id(NOW)


@pytest.mark.parametrize(
    ("issued", "lost"),
    [
        (NOW, True),  # just issued: its record must be there
        (NOW - TTL + 1, True),  # still within jobs.result_ttl
        (NOW - TTL, False),  # its record has expired
        (NOW - 10 * TTL, False),
        (NOW + CLOCK_SLACK - 1, True),  # another server's clock a little ahead
        (NOW + CLOCK_SLACK + 1, False),  # not a time any server issued it at
        (0.0, False),  # an id from before ids carried a time (a random prefix): never "lost"
    ],
)
def test_a_missing_record_is_lost_only_within_the_result_ttl(issued: float, lost: bool) -> None:
    assert missing(new_job_id(issued), NOW, TTL).lost is lost
