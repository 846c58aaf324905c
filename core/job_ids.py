"""Job ids that carry the time they were issued, so a poll of a job whose record is missing can tell "lost with the
store" (a Redis restarted without persistence, or evicting under memory pressure) from "never existed / expired".

An id is 32 lowercase hex digits, as before: the first 12 are the milliseconds since the epoch when it was issued
(48 bits, good until the year 10889), the other 20 are random (80 bits). The time is not a secret, and a client that
forges one only changes which problem it is told about.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

#: What a job id looks like (the job endpoint refuses anything else without reading the store).
JOB_ID = re.compile(r"[0-9a-f]{32}")
#: An id issued this far in the future (clocks of two servers disagreeing) still counts as recent.
CLOCK_SLACK = 60.0


def new_job_id(now: float, random_hex: str | None = None) -> str:
    """A fresh id issued at ``now`` (seconds since the epoch)."""
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{random_hex if random_hex is not None else secrets.token_hex(10)}"


def issued_at(job_id: str) -> float:
    """When ``job_id`` was issued (seconds since the epoch); ids from before this scheme give a time long past."""
    return int(job_id[:12], 16) / 1000


@dataclass(frozen=True)
class Missing:
    """What a missing record means: ``lost`` (the store should hold it still), else it expired or never existed;
    ``age``: seconds since its id was issued."""

    lost: bool
    age: float


def missing(job_id: str, now: float, result_ttl: float) -> Missing:
    """A job's record is not in the store at ``now``: was it lost? Yes when its id was issued within the records'
    lifetime (``jobs.result_ttl``)."""
    age = now - issued_at(job_id)
    return Missing(-CLOCK_SLACK <= age < result_ttl, age)
