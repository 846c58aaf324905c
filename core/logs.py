"""Logging set-up shared by ``grenier serve`` and ``grenier worker``, and the redaction every line goes through.

Two line formats (``log.format``): ``combined``, text lines (``time level logger: message``) with access lines
written bare in the combined log format, and ``json``, one JSON object per line for every logger, with the
structured fields a line carries (``extra={"fields": {...}}``) as its keys.

Credentials never reach a log: the formatters pass every finished line (message, arguments and traceback alike,
Dramatiq's and redis-py's included) through :func:`scrub`, which masks the userinfo of URLs (also when
percent-encoded inside a query) and the values of ``Authorization`` / ``Proxy-Authorization``. That costs a
substring test per line and a regex only on a line that has something to mask.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .settings import Settings

#: The logger access lines go to; it writes them bare (combined) or as JSON objects, never with a text prefix.
ACCESS_LOGGER = "grenier.access"

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@'\"<>]*)@")
_ENCODED_USERINFO = re.compile(r"(?i)(%3A%2F%2F)((?:(?!%2F|%3F|%23|%40)[^\s&/?#'\"<>])*)%40")
_AUTHORIZATION = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\b['\"]?\s*[:=,]\s*['\"]?)((?:basic|bearer|digest|negotiate)\s+)?[^\s'\",;)}\]]+"
)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:***@" if sep else f"{match.group(1)}***@"


def _mask_encoded_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(2)
    cut = userinfo.upper().find("%3A")
    return f"{match.group(1)}{userinfo[:cut]}%3A***%40" if cut >= 0 else f"{match.group(1)}***%40"


def scrub(text: str) -> str:
    """``text`` with every credential it may carry masked: a URL's password (or a lone user part, often a token),
    raw or percent-encoded, and the value of an ``Authorization`` or ``Proxy-Authorization`` field."""
    if "@" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "%40" in text:
        text = _ENCODED_USERINFO.sub(_mask_encoded_userinfo, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}***", text)
    return text


def redact(url: str) -> str:
    """A Redis or AMQP URL fit for logs: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class TextFormatter(logging.Formatter):
    """``time level logger: message``, scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class BareFormatter(logging.Formatter):
    """The message alone: access lines in the combined log format, already redacted by their writer."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and the line's
    structured ``fields``; a traceback as ``exception``. Values are scrubbed like text lines."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc, ensure_ascii=False, default=str))


def setup_logging(level: str, fmt: str = "combined") -> None:
    """Configure the root logger (``level``, ``fmt`` as in ``log.format``) and the access logger, once per process
    (again in a spawned child: it starts with no handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, root.level))

    access = logging.getLogger(ACCESS_LOGGER)
    for handler in list(access.handlers):
        access.removeHandler(handler)
    access_handler = logging.StreamHandler(sys.stderr)
    access_handler.setFormatter(JsonFormatter() if fmt == "json" else BareFormatter())
    access.addHandler(access_handler)
    access.propagate = False


def backends(settings: Settings) -> str:
    """Where the store and the job queue live, fit for a start-up line (passwords redacted)."""
    if settings.embedded:
        return "embedded (in-process store and workers)"
    redis = settings.redis
    if redis.sentinels:
        store = f"redis primary {redis.sentinel_service!r} via sentinels {', '.join(redis.sentinels)}"
    else:
        store = f"redis {redact(redis.url)}"
    jobs = settings.jobs
    if jobs.broker == "rabbitmq":
        return f"{store} · jobs on rabbitmq {redact(jobs.broker_url)}"
    return f"{store} · jobs on redis {redact(jobs.broker_url)}" if jobs.broker_url else store
