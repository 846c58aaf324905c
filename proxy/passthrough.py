"""Requests the cache does not answer go straight upstream, streamed both ways, then invalidate (§4.4).

This is the one place the proxy process talks to an upstream on the request path: unsafe methods must reach the
origin now (never queued, never stored), and partial requests that no stored response can answer are relayed
rather than cached wrongly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import assert_never

import aiohttp
from aiohttp import web

from core import forwarding, lookup, netguard, policy
from core.problems import Problem
from core.targets import normalize
from core.upstream import wire_url

from .cache_status import cache_status
from .refusals import ResponseCutShort, problem_response
from .services import SERVICES

log = logging.getLogger(__name__)


class BodyTooLarge(Problem):
    status = 413
    title = "Content Too Large"


class BodyTimeout(Problem):
    status = 408
    title = "Request Timeout"


async def _body(request: web.Request, limit: int, timeout: float) -> bytes | None:
    """The request body exactly as received (never decoded: the server does not decompress request bodies, so
    its ``Content-Encoding`` still describes it), read whole under two bounds: ``server.max_body_bytes`` (413)
    and ``server.body_timeout`` for all of it (408), so that a body announced and never sent, or dripped a byte
    at a time, cannot hold the connection. It may arrive in any number of segments."""
    if not request.body_exists:
        return None
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"request body of {request.content_length} bytes is over server.max_body_bytes ({limit})")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for data in request.content.iter_any():
                body += data
                if len(body) > limit:
                    raise BodyTooLarge(f"request body is over server.max_body_bytes ({limit})")
    except TimeoutError:
        raise BodyTimeout(
            f"request body incomplete after server.body_timeout ({timeout:g} s): {len(body)} bytes received"
            + (f" of {request.content_length}" if request.content_length is not None else "")
        ) from None
    return bytes(body)


async def relay(request: web.Request, url: str, fwd: str, detail: str | None = None) -> web.StreamResponse:
    svc = request.app[SERVICES]
    body = await _body(request, svc.settings.server.max_body_bytes, svc.settings.server.body_timeout)
    request_time = time.time()
    try:
        upstream = await svc.upstream.session_for(url).request(
            request.method,
            wire_url(url),
            headers=list(forwarding.for_passthrough(request.headers.items(), svc.pseudonym)),
            data=body,
            allow_redirects=False,
        )
    except TimeoutError:
        return problem_response(
            504,
            "Upstream Timeout",
            f"upstream did not answer in time for {request.method}",
            headers={"Cache-Status": cache_status(svc.pseudonym, fwd=fwd, detail="timeout")},
        )
    except aiohttp.ClientError as exc:
        refusal = netguard.refusal_of(exc)
        if refusal is not None:
            raise refusal from None
        return problem_response(
            502,
            "Bad Gateway",
            f"cannot reach upstream: {exc}",
            headers={"Cache-Status": cache_status(svc.pseudonym, fwd=fwd, detail="connect")},
        )
    if 100 <= upstream.status < 200:
        # aiohttp's client skips interim responses, except 101: a switch to a protocol nobody asked for (Upgrade
        # is never forwarded). Passing it on would hand the client a raw tunnel to the upstream; drop the
        # upstream connection so its bytes are never read as a response either.
        upstream.close()
        return problem_response(
            502,
            "Bad Gateway",
            f"upstream answered {upstream.status} to a request that asked for no protocol switch",
            headers={"Cache-Status": cache_status(svc.pseudonym, fwd=fwd, fwd_status=upstream.status)},
        )
    async with upstream:
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers]
        if request.method == "HEAD":
            received = policy.Received(upstream.status, tuple(fields), request_time, time.time())
            await _head_update(request, url, received)
        # Invalidate before the client sees the response, so its next GET cannot be served the old entry.
        for target in policy.invalidated_urls(request.method, upstream.status, url, tuple(fields)):
            try:
                await lookup.invalidate(svc.store, normalize(target))
            except Exception as exc:  # a target we cannot name cannot be stored either
                log.debug("not invalidating %r: %s", target, exc)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for k, v in forwarding.with_via(forwarding.end_to_end(fields), svc.pseudonym):
            response.headers.add(k, v)
        response.headers["Cache-Status"] = cache_status(
            svc.pseudonym, fwd=fwd, fwd_status=upstream.status, detail=detail
        )
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                await response.write(chunk)
        except aiohttp.ClientError as exc:  # headers are gone already: all we can do is cut the body short
            log.warning("upstream body for %s %s cut short: %s", request.method, url, exc)
            raise ResponseCutShort(f"upstream body cut short: {exc}") from exc
        await response.write_eof()
    return response


async def _head_update(request: web.Request, url: str, received: policy.Received) -> None:
    """RFC 9111 §4.3.5: a HEAD response updates the stored GET response that could have answered the request, or
    marks it stale, as :func:`core.policy.after_head` decides. A failure here never fails the relay."""
    svc = request.app[SERVICES]
    rules = svc.settings.cache
    req_headers = tuple(request.headers.items())
    try:
        found = await lookup.find(
            svc.store, url, forwarding.for_job(req_headers, svc.settings.upstream.forward_headers)
        )
        entry = found.entry
        decision = policy.after_head(
            req_headers, entry.times if entry else None, entry.size if entry else 0, received, rules
        )
        match decision:
            case policy.LeaveStored():
                return
            case policy.Freshen(headers=headers, lifetime=lifetime, keep=keep):
                assert entry is not None
                updated = replace(
                    entry,
                    headers=headers,
                    request_time=received.request_time,
                    response_time=received.response_time,
                    lifetime=lifetime,
                )
            case policy.MarkStale():
                assert entry is not None
                updated = replace(entry, lifetime=0.0)
                keep = policy.retention(entry.headers, 0.0, rules)
            case _:
                assert_never(decision)
        if entry.body_ref is not None:
            await svc.store.keep_chunks(entry.body_ref.name, entry.body_ref.count, keep + CHUNK_MARGIN)
        await svc.store.put_entry(found.key, updated, keep)
        log.info("HEAD %s: stored response %s", url, "updated" if isinstance(decision, policy.Freshen) else "stale")
    except Exception as exc:  # the client's answer matters more than the stored copy: it is never lost over this
        log.warning("HEAD %s: stored response not updated: %s", url, exc)


#: Chunks outlive the entry that points at them by this much (as the fetch job keeps them).
CHUNK_MARGIN = 60.0
