"""Logging set-up shared by ``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

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
    """A Redis URL fit for logs: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
