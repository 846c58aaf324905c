"""Free TCP ports on 127.0.0.1, found by the operating system rather than guessed.

Everything the tests start listens on loopback only; a port is taken by binding port 0 and releasing it.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: A port nothing listens on, for the "connection refused" path: fetching it fails in the operating system, not in
#: grenier (the integration tests allow it through the SSRF guard).
CLOSED_PORT = free_port()
