"""Credentials never reach the logs: Redis URLs are redacted before they are printed."""

from __future__ import annotations

import pytest

from core.logs import redact

CASES = [
    ("password only", "redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("user and password", "redis://u:pw@h/1", "redis://u:***@h/1"),
    ("no credentials", "redis://h:6379/0", "redis://h:6379/0"),
    ("tls", "rediss://:k@h:6380", "rediss://:***@h:6380"),
]


@pytest.mark.parametrize(("case", "url", "shown"), CASES, ids=[c[0] for c in CASES])
def test_redact(case: str, url: str, shown: str) -> None:
    assert redact(url) == shown, case
