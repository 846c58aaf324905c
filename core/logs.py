"""Logging set-up shared by ``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .settings import Settings

#: A request's ``Authorization`` value as a fetch job's message prints it (``['Authorization', 'Bearer x']``).
_AUTHORIZATION = re.compile(r"""(['"]authorization['"]\s*[,:]\s*)(['"])(?:\\.|(?!\2).)*\2""", re.IGNORECASE)


def hide_credentials(text: str) -> str:
    """``text`` with every quoted ``Authorization`` value a job message carries replaced by ``***``."""
    return _AUTHORIZATION.sub(r"\1\2***\2", text)


class CredentialFilter(logging.Filter):
    """Dramatiq prints a message's arguments when its actor fails: a fetch job's carry the request's fields, with
    its ``Authorization`` on a fetch of its own. This filter keeps those values out of the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = hide_credentials(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(CredentialFilter())
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLogger().level))


def redact(url: str) -> str:
    """A Redis or AMQP URL fit for logs: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
