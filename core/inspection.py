"""What is stored for a URL, and why, as a JSON document for operators (``GET /_grenier/cache?url=``,
``grenier inspect URL``).

The document is built by pure functions at one explicit ``now``: per stored response (each variant when the URL's
responses vary) its status, size, age, remaining freshness (``ttl``, negative once stale), validators, tags and
stale windows (RFC 9111 §4.2, RFC 5861), read exactly as :func:`core.policy.decide` reads them; and the *note* the
last fetch job left about storing it (:func:`note_of`: stored, revalidated, standing in, or not stored and why),
which is the only trace of a response the cache refused.
"""

from __future__ import annotations

from typing import Any

from . import policy
from .outcome import Failed, Outcome
from .records import StoredResponse, VaryIndex
from .settings import CacheSettings
from .store import Store
from .targets import cache_key


def note_of(job_id: str, outcome: Outcome, now: float) -> dict[str, Any]:
    """What a fetch job decided about storing its URL, kept beside the URL for inspection."""
    note: dict[str, Any] = {"job": job_id, "at": now}
    if isinstance(outcome, Failed):
        return {**note, "decision": "failed", "reason": outcome.detail, "kind": outcome.kind}
    note["status"] = outcome.fwd_status
    if outcome.detail in (policy.STALE_IF_ERROR, policy.STALE_IF_UNREACHABLE):
        return {**note, "decision": outcome.detail, "reason": outcome.error}
    if outcome.stored:
        return {**note, "decision": outcome.detail or "stored"}
    return {**note, "decision": "not stored", "reason": outcome.not_stored}


def describe(key: str, entry: StoredResponse, now: float, rules: CacheSettings) -> dict[str, Any]:
    """One stored response as an operator reads it, at ``now``."""
    age = policy.current_age(entry.headers, entry.request_time, entry.response_time, now)
    cc = policy.CacheControl.of(entry.headers)
    swr = cc.stale_while_revalidate if cc.stale_while_revalidate is not None else rules.stale_while_revalidate
    sie = cc.stale_if_error if cc.stale_if_error is not None else rules.stale_if_error
    return {
        "key": key,
        "status": entry.status,
        "size": entry.size,
        "body": "chunked" if entry.body_ref is not None else "inline",
        "stored_at": entry.response_time,
        "age": int(age),
        "lifetime": entry.lifetime,
        "ttl": round(entry.lifetime - age, 3),
        "fresh": entry.lifetime > age,
        "validators": {k: v for k, v in policy.validators(entry.headers)},
        "tags": list(entry.tags),
        "stale_while_revalidate": swr,
        "stale_if_error": sie,
        "headers": [list(h) for h in entry.headers],
    }


async def inspect(store: Store, url: str, now: float, rules: CacheSettings) -> dict[str, Any]:
    """Everything the store holds for ``url`` (a canonical URL), and the last decision about storing it."""
    url_hash = cache_key(url)
    cached = await store.get_entry(url_hash)
    doc: dict[str, Any] = {"url": url, "key": url_hash, "now": now, "vary": None, "variants": []}
    if isinstance(cached, StoredResponse):
        doc["variants"].append(describe(url_hash, cached, now, rules))
    elif isinstance(cached, VaryIndex):
        doc["vary"] = list(cached.fields)
        prefix = f"{url_hash}:{cached.generation}:"
        for key in await store.variants(url_hash):
            variant = await store.get_entry(key) if key.startswith(prefix) else None
            if isinstance(variant, StoredResponse):
                doc["variants"].append(describe(key, variant, now, rules))
    doc["stored"] = bool(doc["variants"])
    doc["last_decision"] = await store.get_note(url_hash)
    return doc
