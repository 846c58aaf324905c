"""Bounded waits: poll a condition until it holds, or fail the test naming what never happened.

The tests never sleep for a fixed time hoping something is done; they poll with a deadline, so a fast machine is not
slowed down and a slow one gets a failure that says what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

#: How often a condition is checked while waiting.
INTERVAL = 0.05


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = INTERVAL) -> Any:
    """Poll ``check`` until it returns something truthy (which is returned); fail naming ``what`` after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(
    check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str, interval: float = INTERVAL
) -> Any:
    """``wait_until`` for a coroutine: ``check`` may be a coroutine function or a plain one; the event loop runs
    between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
