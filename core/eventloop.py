"""The event loop grenier's processes run on: uvloop's when it is installed, asyncio's own otherwise.

uvloop does the event loop's own work (polling sockets, scheduling callbacks, moving bytes through transports) in C
on libuv, under the same asyncio API. How much that buys depends on how much of a request's time is the loop's:
on grenier's hit path most of it is Python (aiohttp's handler, the policy, redis-py), so the gain is modest; it
changes no behaviour, so it is on wherever it installs, and where it has no wheel (Windows) asyncio's loop runs the
same code.

It is chosen by setting the event loop *policy* at a process's start, before any loop exists, rather than by passing
a loop factory to one ``asyncio.run``: every loop the process makes then follows, including the one Dramatiq's
``AsyncIO`` middleware creates in its own thread for the fetch jobs (``asyncio.new_event_loop()``).
"""

from __future__ import annotations

import asyncio


def use_uvloop() -> None:
    """Make every event loop this process creates from now on a uvloop loop, if uvloop can be imported; otherwise
    leave asyncio's default alone (the start-up lines say which loop runs: :func:`loop_name`)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: the package whose loop this is, read from the loop itself (what runs, not what
    was asked for)."""
    return type(loop).__module__.partition(".")[0]
