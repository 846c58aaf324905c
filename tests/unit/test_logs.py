"""Credentials never reach the logs: Redis URLs are redacted, and every formatted line is scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from core.logs import JsonFormatter, TextFormatter, redact, scrub

CASES = [
    ("password only", "redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("user and password", "redis://u:pw@h/1", "redis://u:***@h/1"),
    ("no credentials", "redis://h:6379/0", "redis://h:6379/0"),
    ("tls", "rediss://:k@h:6380", "rediss://:***@h:6380"),
]


@pytest.mark.parametrize(("case", "url", "shown"), CASES, ids=[c[0] for c in CASES])
def test_redact(case: str, url: str, shown: str) -> None:
    assert redact(url) == shown, case


SCRUBS = [
    (
        "a job message's arguments (Dramatiq prints them when an actor fails)",
        "Failed to process message fetch('a1', 'http://o.test/', {'headers': [['Authorization', 'Bearer s3cret']]})",
        "Failed to process message fetch('a1', 'http://o.test/', {'headers': [['Authorization', 'Bearer ***']]})",
    ),
    ("caseless, double quotes", '["authorization", "Basic czNjcmV0"]', '["authorization", "Basic ***"]'),
    (
        "redis password in a sentence",
        "connecting to redis://:s3cret@h:6379/0 now",
        "connecting to redis://:***@h:6379/0 now",
    ),
    ("URL user and password", "GET http://bob:pw@a.example/x", "GET http://bob:***@a.example/x"),
    ("URL token as user", "https://ghp_token@a.example/", "https://***@a.example/"),
    ("in a query, raw", "/fetch?url=http://u:p@a.example/", "/fetch?url=http://u:***@a.example/"),
    (
        "in a query, percent-encoded",
        "/fetch?url=http%3A%2F%2Fu%3Ap%40a.example%2F",
        "/fetch?url=http%3A%2F%2Fu%3A***%40a.example%2F",
    ),
    ("percent-encoded token", "url=https%3a%2f%2ftok%40a.example", "url=https%3a%2f%2f***%40a.example"),
    ("authorization header in a repr", "{'Authorization': 'Bearer abc.def'}", "{'Authorization': 'Bearer ***'}"),
    ("proxy-authorization field", "Proxy-Authorization: Basic dTpw", "Proxy-Authorization: Basic ***"),
    ("an e-mail address is not a URL", "mail ops@example.com", "mail ops@example.com"),
    ("a path with @ is not userinfo", "http://a.example/@user", "http://a.example/@user"),
    ("nothing to mask", "GET /x 200", "GET /x 200"),
]


@pytest.mark.parametrize(("case", "text", "shown"), SCRUBS, ids=[c[0] for c in SCRUBS])
def test_scrub(case: str, text: str, shown: str) -> None:
    assert scrub(text) == shown, case


def _record(msg: str, *args: object, fields: dict[str, object] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("grenier.x", logging.WARNING, __file__, 1, msg, args, None)
    if fields is not None:
        record.fields = fields
    return record


def test_text_lines_are_scrubbed_arguments_included() -> None:
    line = TextFormatter().format(_record("store at %s", "redis://:hunter2@r:6379/0"))
    assert "hunter2" not in line
    assert line.endswith("WARNING grenier.x: store at redis://:***@r:6379/0")


def test_json_lines_carry_fields_and_are_scrubbed() -> None:
    line = JsonFormatter().format(_record("job %s", "j1", fields={"job": "j1", "url": "http://u:hunter2@a.example/"}))
    doc = json.loads(line)
    assert doc["level"] == "warning"
    assert doc["logger"] == "grenier.x"
    assert doc["message"] == "job j1"
    assert doc["job"] == "j1"
    assert doc["url"] == "http://u:***@a.example/"
    assert doc["time"].endswith("Z")
