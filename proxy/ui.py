"""The browser face: the lab's URL form, done properly (escaping, a job page that refreshes until ready).

Fetched pages are shown in a sandboxed ``<iframe>`` so their scripts never run with grenier's origin.
"""

from __future__ import annotations

import html
import time
from typing import assert_never
from urllib.parse import quote

from aiohttp import web

from core import forwarding, lookup, policy
from core.counts import Count
from core.job_ids import JOB_ID
from core.outcome import Failed, Fetched
from core.targets import normalize

from .handlers import admission, no_record, refuse_loop, start_fetch
from .locations import job_location
from .services import SERVICES

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
form{display:flex;gap:.5rem;align-items:center}input[type=url]{flex:1;padding:.4rem;font-size:1rem}
button{padding:.4rem 1rem;font-size:1rem}iframe{width:100%;height:70vh;border:1px solid #ccc;margin-top:1rem}
.meta{color:#555;font-size:.9rem}
.tiles{display:flex;flex-wrap:wrap;gap:.5rem}.tile{border:1px solid #ccc;padding:.5rem .8rem;min-width:7rem}
.tile .n{display:block;font-size:1.4rem;font-variant-numeric:tabular-nums}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.2rem .4rem;text-align:left;font-size:.9rem;word-break:break-all}
#purge-value{flex:1;padding:.4rem;font-size:1rem}.errors{color:#a00}
.result{background:#f6f6f6;padding:.5rem;white-space:pre-wrap;max-height:20rem;overflow:auto}
"""


def page(title: str, body: str, refresh: bool = False) -> web.Response:
    head = '<meta http-equiv="refresh" content="1">' if refresh else ""
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{head}'
        f"<title>{html.escape(title)} · grenier</title><style>{_STYLE}</style></head>"
        f'<body><h1><a href="/_grenier/">grenier</a></h1>{body}</body></html>'
    )
    return web.Response(
        text=doc,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'",
        },
    )


def form(url: str = "") -> str:
    return (
        '<form method="get" action="/_grenier/ui/fetch">'
        f'<label for="url">URL</label><input id="url" name="url" type="url" required value="{html.escape(url)}" '
        'placeholder="https://example.com/">'
        '<label><input type="checkbox" name="force" value="1"> force refresh</label>'
        '<button type="submit">Fetch</button></form>'
    )


async def index(request: web.Request) -> web.Response:
    """``GET /`` (forward mode): the fetch form alone, for clients (the operator's page is ``/_grenier/``)."""
    return page("fetch a page", form())


async def submit(request: web.Request) -> web.StreamResponse:
    """Serve the form: a fresh cached copy at once, else start the job and go to its page."""
    svc = request.app[SERVICES]
    svc.access.check_client(request)
    url = normalize(request.query.get("url"))
    force = request.query.get("force") == "1"
    refuse_loop(svc, url, tuple(request.headers.items()))
    headers = forwarding.for_job(request.headers.items(), svc.settings.upstream.forward_headers)
    await svc.upstream.admit(url)
    since = time.time()
    found = await lookup.find(svc.store, url, headers)
    if not force:
        decision = policy.decide(headers, found.entry.times if found.entry else None, since, svc.settings.cache)
        if isinstance(decision, policy.Hit):
            svc.counters.add(Count.HITS)
            src = f"/_grenier/fetch?url={quote(url, safe='')}"
            meta = f"served from cache · age {decision.age} s · fresh for {decision.ttl} s more"
            return page(
                url,
                f"{form(url)}<p class=meta>{html.escape(meta)}</p>"
                f'<iframe sandbox src="{html.escape(src)}" title="cached page"></iframe>',
            )
    started = await start_fetch(svc, request, url, found, headers, since=since)
    svc.counters.add(Count.REFRESHES if force else Count.MISSES)
    raise web.HTTPSeeOther(f"/_grenier/ui/jobs/{started.record.id}")


async def job_page(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    svc = request.app[SERVICES]
    record = await svc.store.get_job(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None:
        raise no_record(svc, job_id, time.time())
    record = await svc.dispatcher.resolve(record, since=time.time(), admit=admission(svc, request))
    if record.pending:
        return page(
            record.url,
            f"{form(record.url)}<p>Fetching <code>{html.escape(record.url)}</code> "
            f"({html.escape(record.state)})… this page refreshes itself.</p>",
            refresh=True,
        )
    match record.outcome:
        case Fetched(stored=stored, not_stored=not_stored) as got:
            held = await lookup.held_response(svc.store, got)
            kept = "stored in the cache" if stored else f"not stored: {not_stored}"
            summary = f"status {held.status} · {kept}" if held is not None else "the response has since expired"
        case Failed(detail=detail):
            summary = f"fetch failed: {detail}"
        case None:
            summary = "the job ended without an outcome"
        case _:
            assert_never(record.outcome)
    return page(
        record.url,
        f"{form(record.url)}<p class=meta>{html.escape(summary)}</p>"
        f'<iframe sandbox src="{html.escape(job_location(record.id))}" title="fetched page"></iframe>',
    )
