"""The names of the shared counters (``/_grenier/stats``): one enum, so the server, the jobs and the store can never
spell a counter two ways."""

from __future__ import annotations

from enum import StrEnum


class Count(StrEnum):
    HITS = "hits"
    MISSES = "misses"
    REFRESHES = "refreshes"
    COLLAPSED = "collapsed"
    JOBS_DONE = "jobs_done"
    JOBS_FAILED = "jobs_failed"
    STORED = "stored"
    NOT_STORED = "not_stored"
    STALE_IF_ERROR = "stale_if_error"
    STALE_IF_UNREACHABLE = "stale_if_unreachable"
