"""The operator's page at ``/_grenier/`` (admin): live counters and hit ratio, the queue, recent jobs, inspect and
purge forms, beside the fetch form.

The page is rendered whole on the server (it reads right without scripts), then one small plain script
(``/_grenier/dashboard.js``, a file of grenier's own origin, as the page's ``Content-Security-Policy`` demands: no
inline script) polls ``/_grenier/dashboard.json`` each second and sends the inspect and purge forms to the cache
endpoints (``GET`` / ``DELETE /_grenier/cache``, :mod:`proxy.purge`), which check the admin again themselves.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from .services import SERVICES
from .ui import form, page

log = logging.getLogger(__name__)

_SCRIPT = (Path(__file__).parent / "dashboard.js").read_bytes()

#: Counters shown, in order, with their labels.
SHOWN = (
    ("hits", "hits"),
    ("misses", "misses"),
    ("refreshes", "forced refreshes"),
    ("collapsed", "collapsed"),
    ("jobs_done", "jobs done"),
    ("jobs_failed", "jobs failed"),
    ("stored", "stored"),
    ("not_stored", "not stored"),
)


def hit_ratio(hits: int, misses: int) -> float | None:
    """Hits over the requests that looked something up (hits and misses); ``None`` before the first."""
    looked = hits + misses
    return round(hits / looked, 4) if looked else None


async def snapshot(request: web.Request) -> dict[str, Any]:
    """What the page shows, read now: shared counters, the queue, the store and the last jobs. A part that cannot
    be read (Redis down) is ``null`` with the reason, so the page still shows the rest."""
    svc = request.app[SERVICES]
    doc: dict[str, Any] = {"mode": "embedded" if svc.settings.embedded else "redis", "errors": {}}
    try:
        totals = await svc.counters.totals()
    except Exception as exc:
        totals = {}
        doc["errors"]["counters"] = f"unreadable: {type(exc).__name__}"
    doc["counters"] = {name: int(totals.get(name, 0)) for name, _ in SHOWN}
    doc["hit_ratio"] = hit_ratio(doc["counters"]["hits"], doc["counters"]["misses"])
    for name, read in (("queue", svc.queue.pending), ("store", svc.store.usage), ("jobs", svc.store.recent_jobs)):
        try:
            doc[name] = await read()
        except Exception as exc:
            doc[name] = None
            doc["errors"][name] = f"unreadable: {type(exc).__name__}"
            log.warning("dashboard: %s unreadable: %s", name, exc)
    return doc


def _ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f} %"


def _jobs_rows(jobs: list[dict[str, Any]] | None) -> str:
    if not jobs:
        return '<tr><td colspan="5">no job has ended yet</td></tr>'
    rows = []
    for job in jobs:
        status = job.get("status")
        rows.append(
            f"<tr><td><code>{html.escape(str(job.get('id', '')))}</code></td>"
            f"<td>{html.escape(str(job.get('url', '')))}</td>"
            f"<td>{html.escape(str(job.get('state', '')))} ({html.escape(str(job.get('outcome', '')))})</td>"
            f"<td>{'' if status is None else int(status)}</td>"
            f"<td>{float(job.get('seconds') or 0):.3f} s</td></tr>"
        )
    return "".join(rows)


async def dashboard(request: web.Request) -> web.Response:
    """``GET /_grenier/``: the operator's page."""
    request.app[SERVICES].access.check_admin(request)
    doc = await snapshot(request)
    counters = "".join(
        f'<div class="tile"><span class="n" id="c-{name}">{doc["counters"][name]}</span>'
        f"<span class=meta>{html.escape(label)}</span></div>"
        for name, label in SHOWN
    )
    queue = "-" if doc["queue"] is None else str(doc["queue"])
    store = doc["store"] or {}
    errors = "; ".join(f"{k} {v}" for k, v in doc["errors"].items())
    body = (
        f"<p class=meta>mode: <span id=mode>{html.escape(doc['mode'])}</span> "
        f'<span id="errors" class=errors>{html.escape(errors)}</span></p>'
        f"<h2>Fetch</h2>{form()}"
        "<h2>Now</h2><div class=tiles>"
        f'<div class="tile"><span class="n" id="hit-ratio">{_ratio_text(doc["hit_ratio"])}</span>'
        "<span class=meta>hit ratio</span></div>"
        f'<div class="tile"><span class="n" id="queue">{html.escape(queue)}</span>'
        "<span class=meta>queued jobs</span></div>"
        f'<div class="tile"><span class="n" id="store-keys">{int(store.get("keys", 0))}</span>'
        "<span class=meta>stored keys</span></div>"
        f'<div class="tile"><span class="n" id="store-bytes">{int(store.get("bytes", 0))}</span>'
        "<span class=meta>stored bytes</span></div>"
        f"{counters}</div>"
        "<h2>Recent jobs</h2><table><thead><tr><th>job</th><th>URL</th><th>state</th><th>status</th>"
        f'<th>duration</th></tr></thead><tbody id="jobs">{_jobs_rows(doc["jobs"])}</tbody></table>'
        "<h2>Inspect</h2>"
        '<form id="inspect" method="get" action="/_grenier/cache"><label for="inspect-url">URL</label>'
        '<input id="inspect-url" name="url" type="url" required placeholder="https://example.com/">'
        '<button type="submit">Inspect</button></form>'
        '<pre id="inspect-result" class=result></pre>'
        "<h2>Purge</h2>"
        '<form id="purge"><select id="purge-by" name="by" aria-label="purge by">'
        '<option value="url">URL</option><option value="prefix">prefix</option><option value="tag">tag</option>'
        '<option value="all">everything</option></select>'
        '<input id="purge-value" name="value" aria-label="what to purge" placeholder="https://example.com/page">'
        '<label><input type="checkbox" id="purge-soft" name="soft" value="1"> soft (mark stale)</label>'
        '<button type="submit">Purge</button></form>'
        '<pre id="purge-result" class=result></pre>'
        '<script src="/_grenier/dashboard.js"></script>'
    )
    return page("operator", body)


async def data(request: web.Request) -> web.Response:
    """``GET /_grenier/dashboard.json``: what the page polls."""
    request.app[SERVICES].access.check_admin(request)
    return web.json_response(await snapshot(request), headers={"Cache-Control": "no-store"})


async def script(request: web.Request) -> web.Response:
    """``GET /_grenier/dashboard.js``: the page's script (no data in it: anyone may read it)."""
    return web.Response(
        body=_SCRIPT,
        content_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
