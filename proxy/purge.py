"""The admin's cache endpoints: purges (``DELETE /_grenier/cache``, ``PURGE <url>``) and inspection
(``GET /_grenier/cache?url=``).

A purge names exactly one target (:mod:`core.invalidation`): ``url=`` (every variant of one URL), ``prefix=`` (an
absolute URL prefix; a host alone bans the host), ``tag=`` (a surrogate key) or ``all=1``; ``soft=1`` marks the
entries stale instead of removing them. The answer says how many were affected; an exact URL with nothing stored is
a 404 problem, so a typo is not mistaken for a purge.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from core import inspection
from core.invalidation import BadPurge, ByUrl, Everything, Target, describe, prefix_target, tag_target
from core.problems import NotFound
from core.targets import normalize

from .services import SERVICES

log = logging.getLogger(__name__)

SELECTORS = ("url", "prefix", "tag", "all")
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"", "0", "false", "no", "off"})

NO_STORE = {"Cache-Control": "no-store"}


def _flag(query: Any, name: str) -> bool:
    raw = str(query.get(name, "")).strip().lower()
    if raw in _YES:
        return True
    if raw in _NO:
        return False
    raise BadPurge(f"{name}={raw!r}: expected 1 or 0")


def target_of(query: Any) -> Target:
    """The one target a purge's query names, or a 400 saying what is wrong with it."""
    given = [name for name in SELECTORS if name in query]
    if len(given) != 1:
        raise BadPurge(
            "name exactly one of url=, prefix=, tag= or all=1"
            + (f" (got {', '.join(given)})" if given else " (got none)")
        )
    match given[0]:
        case "url":
            return ByUrl(normalize(query.get("url")))
        case "prefix":
            return prefix_target(query.get("prefix"))
        case "tag":
            return tag_target(query.get("tag"))
        case _:
            if not _flag(query, "all"):
                raise BadPurge("all=0 purges nothing: send all=1 to flush every entry")
            return Everything()


async def purge(request: web.Request, target: Target, *, soft: bool = False) -> web.Response:
    """Admin: carry a purge out and say how many entries it affected."""
    svc = request.app[SERVICES]
    svc.access.check_admin(request)
    count = await svc.store.purge(target, soft=soft)
    what = describe(target)
    log.info(
        "%s %s: %d affected (admin request from %s)",
        "soft-purged" if soft else "purged",
        what,
        count,
        svc.access.client(request),
    )
    if count == 0 and isinstance(target, ByUrl):
        raise NotFound(f"nothing is stored for {target.url}: nothing to purge", headers=NO_STORE)
    return web.json_response({"purged": count, "soft": soft, **what}, headers=NO_STORE)


async def purge_url(request: web.Request, url: str) -> web.Response:
    """``PURGE <url>`` (forward mode) or ``PURGE /path`` (reverse mode): every variant of one URL."""
    return await purge(request, ByUrl(url))


async def delete(request: web.Request) -> web.Response:
    """``DELETE /_grenier/cache?url=U | prefix=P | tag=T | all=1 [&soft=1]``."""
    request.app[SERVICES].access.check_admin(request)  # refuse strangers before reading what they ask for
    return await purge(request, target_of(request.query), soft=_flag(request.query, "soft"))


async def inspect(request: web.Request) -> web.Response:
    """``GET /_grenier/cache?url=U``: what is stored for U (every variant) and the last decision about storing it."""
    svc = request.app[SERVICES]
    svc.access.check_admin(request)
    url = normalize(request.query.get("url"))
    doc = await inspection.inspect(svc.store, url, time.time(), svc.settings.cache)
    return web.json_response(doc, headers=NO_STORE)
