"""Where grenier itself is, as a client reaches it: the base of the job locations a ``202`` hands out, and whether
an absolute-form target names one of them (then grenier answers it, never fetches it).

A forward-proxy client resolves a relative ``Location`` against its *target*, so a job location must be absolute
and name grenier: ``server.public_url`` when set; else, for a request in origin-form (direct, or reverse mode),
its ``Host``, which names grenier; else (absolute-form, whose ``Host`` names the target) the address the request
came in on.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from core.settings import ServerSettings
from core.targets import host_port, names_self

JOBS_PREFIX = "/_grenier/jobs/"
_JOB_PATH = re.compile(r"/_grenier/jobs/[0-9a-f]{32}")


def job_location(job_id: str) -> str:
    """The job's path on grenier (what a page on grenier's own origin links to)."""
    return f"{JOBS_PREFIX}{job_id}"


def _socket_base(request: web.Request) -> str | None:
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if not isinstance(sock, tuple) or len(sock) < 2:
        return None
    host = str(sock[0])
    return f"http://[{host}]:{sock[1]}" if ":" in host else f"http://{host}:{sock[1]}"


def own_base(request: web.Request, server: ServerSettings) -> str:
    """``scheme://host[:port]`` of grenier as this request reached it (see the module docstring)."""
    if server.public_url:
        return server.public_url.rstrip("/")
    if request.raw_path.startswith("/"):
        return f"{request.scheme}://{request.host}"
    found = _socket_base(request)
    if found is not None:
        return found
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"http://{host}:{server.port}"


def absolute_job_location(request: web.Request, server: ServerSettings, job_id: str) -> str:
    return own_base(request, server) + job_location(job_id)


def names_own_job(request: web.Request, url: str, server: ServerSettings) -> bool:
    """Is the absolute-form target ``url`` (canonical) a job location of this grenier: its path exactly a job's
    (the one aiohttp routes the request on, so no other endpoint can be reached this way), its authority grenier's
    (``server.public_url``, its listening address, or the address this request came in on)?"""
    path = urlsplit(url).path
    if not _JOB_PATH.fullmatch(path) or request.path != path:
        return False
    if names_self(url, server.host, server.port):
        return True
    target = host_port(url)
    for base in (server.public_url, _socket_base(request)):
        if base and host_port(base.rstrip("/") + "/") == target:
            return True
    return False
