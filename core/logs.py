"""Logging set-up shared by ``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLogger().level))


def redact(url: str) -> str:
    """A Redis URL fit for logs: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
