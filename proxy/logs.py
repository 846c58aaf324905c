"""Logging set-up shared by ``grenier serve`` and ``grenier worker``."""

from __future__ import annotations

import logging


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLogger().level))
