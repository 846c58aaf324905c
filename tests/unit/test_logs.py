"""Credentials never reach the logs: Redis URLs are redacted before they are printed."""

from __future__ import annotations

import logging

import pytest

from core.logs import CredentialFilter, hide_credentials, redact

CASES = [
    ("password only", "redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("user and password", "redis://u:pw@h/1", "redis://u:***@h/1"),
    ("no credentials", "redis://h:6379/0", "redis://h:6379/0"),
    ("tls", "rediss://:k@h:6380", "rediss://:***@h:6380"),
]


@pytest.mark.parametrize(("case", "url", "shown"), CASES, ids=[c[0] for c in CASES])
def test_redact(case: str, url: str, shown: str) -> None:
    assert redact(url) == shown, case


HIDDEN = [
    (
        "a job message's arguments",
        "Failed to process message fetch('a1', 'http://o.test/', {'headers': [['Authorization', 'Bearer s3cret']]})",
        "Failed to process message fetch('a1', 'http://o.test/', {'headers': [['Authorization', '***']]})",
    ),
    ("caseless, double quotes", '["authorization", "Basic czNjcmV0"]', '["authorization", "***"]'),
    ("an escaped quote inside", r"['Authorization', 'Bearer a\'s3cret']", "['Authorization', '***']"),
    ("other fields stay", "[['Accept', 'text/html'], ['Foo', '1']]", "[['Accept', 'text/html'], ['Foo', '1']]"),
]


@pytest.mark.parametrize(("case", "text", "shown"), HIDDEN, ids=[c[0] for c in HIDDEN])
def test_hide_credentials(case: str, text: str, shown: str) -> None:
    assert hide_credentials(text) == shown, case
    assert "s3cret" not in hide_credentials(text)


def test_the_filter_rewrites_a_record_that_carries_credentials() -> None:
    record = logging.LogRecord("dramatiq", logging.ERROR, __file__, 1, "message %s", ("['Authorization', 'x1']",), None)
    assert CredentialFilter().filter(record)
    assert record.getMessage() == "message ['Authorization', '***']"
