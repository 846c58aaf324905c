"""The two values grenier keeps: a stored response (cache entry) and a job record.

Each encodes to one byte string, ``MAGIC | len(meta) | meta JSON | raw body``, so a hit is one ``GET`` and the body
is never base64'd or re-encoded.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from typing import Any, Literal, assert_never

from .outcome import FAILURE_KINDS, Failed, Fetched, Outcome
from .policy import Headers, StoredTimes

_ENTRY_MAGIC = b"GRE1"
_VARY_MAGIC = b"GRV1"
_JOB_MAGIC = b"GRJ1"
_LEN = struct.Struct(">I")


class CorruptRecord(ValueError):
    """Bytes in the store that are not a record of the expected kind (treated as absent)."""


def _pack(magic: bytes, meta: dict[str, Any], body: bytes) -> bytes:
    head = json.dumps(meta, separators=(",", ":")).encode()
    return b"".join((magic, _LEN.pack(len(head)), head, body))


def _unpack(magic: bytes, data: bytes) -> tuple[dict[str, Any], bytes]:
    if data[:4] != magic or len(data) < 8:
        raise CorruptRecord("unknown record format")
    (size,) = _LEN.unpack_from(data, 4)
    try:
        meta = json.loads(data[8 : 8 + size])
    except ValueError as exc:
        raise CorruptRecord(str(exc)) from None
    if not isinstance(meta, dict):
        raise CorruptRecord("metadata is not an object")
    return meta, data[8 + size :]


@dataclass(frozen=True)
class BodyRef:
    """Where a body too large to travel inline lies: ``size`` bytes in chunks of ``chunk`` bytes, stored under
    ``name`` (``<url hash>:<version>``; chunk ``i`` at ``grenier:chunk:<name>:<i>``).

    Every write of a body takes a new version, and the entry that points at it is written last: a reader sees the
    old body or the whole new one, never a part (the chunks of an abandoned write are never pointed at and expire).
    """

    name: str
    size: int
    chunk: int

    @property
    def count(self) -> int:
        return -(-self.size // self.chunk)

    def span(self, first: int, last: int) -> range:
        """The chunk numbers that hold bytes ``first`` to ``last`` (inclusive)."""
        return range(first // self.chunk, last // self.chunk + 1)


@dataclass(frozen=True)
class StoredResponse:
    """An upstream response as fetched, with the times that its age is computed from (RFC 9111 §4.2.3).

    Its body is either inline (``body``; one store read serves it) or, when larger than one chunk, in chunks that
    ``body_ref`` points at (``body`` is then empty).
    """

    url: str
    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float
    lifetime: float = 0.0
    body_ref: BodyRef | None = None
    tags: tuple[str, ...] = ()
    """Its surrogate keys (``core.invalidation.tags_of`` its fields, read before they may be stripped): the store
    indexes it by them, so a purge of any of them reaches it."""

    @property
    def size(self) -> int:
        return self.body_ref.size if self.body_ref is not None else len(self.body)

    @property
    def times(self) -> StoredTimes:
        return StoredTimes(self.headers, self.request_time, self.response_time, self.lifetime, self.status)

    def meta(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "headers": [list(h) for h in self.headers],
            "request_time": self.request_time,
            "response_time": self.response_time,
            "lifetime": self.lifetime,
            **({"body_ref": [self.body_ref.name, self.body_ref.size, self.body_ref.chunk]} if self.body_ref else {}),
            **({"tags": list(self.tags)} if self.tags else {}),
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], body: bytes) -> StoredResponse:
        try:
            return cls(
                url=str(meta["url"]),
                status=int(meta["status"]),
                headers=tuple((str(k), str(v)) for k, v in meta["headers"]),
                body=body,
                request_time=float(meta["request_time"]),
                response_time=float(meta["response_time"]),
                lifetime=float(meta.get("lifetime", 0.0)),
                body_ref=_body_ref(meta.get("body_ref")),
                tags=tuple(str(t) for t in meta.get("tags") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord(f"bad response metadata: {exc}") from None

    def encode(self) -> bytes:
        return _pack(_ENTRY_MAGIC, self.meta(), self.body)

    @classmethod
    def decode(cls, data: bytes) -> StoredResponse:
        meta, body = _unpack(_ENTRY_MAGIC, data)
        return cls.from_meta(meta, body)


def _body_ref(raw: Any) -> BodyRef | None:
    if raw is None:
        return None
    name, size, chunk = raw
    if not isinstance(name, str) or int(size) < 0 or int(chunk) <= 0:
        raise ValueError(f"bad body reference {raw!r}")
    return BodyRef(name, int(size), int(chunk))


@dataclass(frozen=True)
class VaryIndex:
    """Stands at a URL's entry key when its responses vary: which request fields select a variant (§4.1).

    ``generation`` is part of every variant's key, so replacing or deleting the index orphans the old variants
    at once (they expire on their own) without having to find and delete them.
    """

    fields: tuple[str, ...]
    generation: str

    def encode(self) -> bytes:
        return _pack(_VARY_MAGIC, {"fields": list(self.fields), "generation": self.generation}, b"")

    @classmethod
    def decode(cls, data: bytes) -> VaryIndex:
        meta, _ = _unpack(_VARY_MAGIC, data)
        try:
            return cls(tuple(str(f) for f in meta["fields"]), str(meta["generation"]))
        except (KeyError, TypeError) as exc:
            raise CorruptRecord(f"bad vary index: {exc}") from None


Cached = StoredResponse | VaryIndex


def decode_cached(data: bytes) -> Cached:
    """What an entry key holds: a response, or the index of a URL's variants."""
    if data[:4] == _VARY_MAGIC:
        return VaryIndex.decode(data)
    return StoredResponse.decode(data)


JobState = Literal["queued", "running", "done", "failed"]
PENDING: frozenset[str] = frozenset({"queued", "running"})


@dataclass(frozen=True)
class JobRecord:
    """One fetch job as clients poll it: its progress, then its :data:`~core.outcome.Outcome` once it has ended.

    A request that collapsed onto another request's job gets a record of its own all the same (its own unguessable
    id, so a job location is only ever known to the request it was given to): ``joined`` names the job it waits
    for and ``sent`` holds the fields its own request forwards, which say whether that job's outcome is its to use
    (:func:`core.outcome.shareable`). Its location resolves through the joined job (``proxy.dispatch``); a record
    that turns to a fetch of its own drops ``joined``.
    """

    id: str
    url: str
    state: JobState = "queued"
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    outcome: Outcome | None = None
    joined: str | None = None
    """The job this request collapsed onto, while it waits for that job's outcome."""
    sent: Headers = ()
    """The fields this request presented for its fetch (its Authorization too, which only a job fetched with the
    same credentials is joined with): what a joined outcome is judged against."""

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    def running(self, now: float) -> JobRecord:
        """This record as a worker takes the job up (once more, after a redelivery)."""
        return replace(self, state="running", started=now, attempts=self.attempts + 1)

    def ended(self, outcome: Outcome, now: float) -> JobRecord:
        """The terminal record: ``done`` with a response, ``failed`` without one."""
        return replace(self, state="done" if isinstance(outcome, Fetched) else "failed", finished=now, outcome=outcome)

    def status_doc(self, location: str) -> dict[str, Any]:
        """The JSON a poller sees while the job is pending (and the 202 body)."""
        return {
            "id": self.id,
            "url": self.url,
            "state": self.state,
            "location": location,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "attempts": self.attempts,
        }

    def encode(self) -> bytes:
        meta: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "attempts": self.attempts,
        }
        if self.joined is not None:
            meta.update(joined=self.joined, sent=[list(h) for h in self.sent])
        body = b""
        match self.outcome:
            case Fetched() as got:
                meta.update(
                    key=got.key,
                    fwd_status=got.fwd_status,
                    stored=got.stored,
                    not_stored=got.not_stored,
                    detail=got.detail,
                    vary=list(got.vary),
                    variant=got.variant,
                    error=got.error,
                )
                if got.response is not None:
                    meta["response"] = got.response.meta()
                    body = got.response.body
            case Failed(kind=kind, detail=detail):
                meta.update(error=detail, error_kind=kind)
            case None:
                pass
            case _:
                assert_never(self.outcome)
        return _pack(_JOB_MAGIC, meta, body)

    @classmethod
    def decode(cls, data: bytes) -> JobRecord:
        meta, body = _unpack(_JOB_MAGIC, data)
        try:
            state = str(meta["state"])
            if state not in {"queued", "running", "done", "failed"}:
                raise CorruptRecord(f"unknown job state {state!r}")
            return cls(
                id=str(meta["id"]),
                url=str(meta["url"]),
                state=state,  # type: ignore[arg-type]
                created=float(meta["created"]),
                started=meta.get("started"),
                finished=meta.get("finished"),
                attempts=int(meta.get("attempts", 0)),
                outcome=_decode_outcome(state, meta, body),
                joined=str(meta["joined"]) if meta.get("joined") is not None else None,
                sent=tuple((str(k), str(v)) for k, v in meta.get("sent") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord(f"bad job metadata: {exc}") from None


def _decode_outcome(state: str, meta: dict[str, Any], body: bytes) -> Outcome | None:
    if state == "failed":
        kind = meta.get("error_kind")
        return Failed(kind if kind in FAILURE_KINDS else "internal", str(meta.get("error") or "the fetch failed"))
    resp, key = meta.get("response"), meta.get("key")
    if state != "done" or not (isinstance(resp, dict) or isinstance(key, str)):
        return None
    return Fetched(
        fwd_status=meta.get("fwd_status"),
        key=key if isinstance(key, str) else None,
        response=StoredResponse.from_meta(resp, body) if isinstance(resp, dict) else None,
        stored=bool(meta.get("stored")),
        vary=tuple(str(f) for f in meta.get("vary") or ()),
        not_stored=meta.get("not_stored"),
        detail=meta.get("detail"),
        variant=meta.get("variant"),
        error=meta.get("error"),
    )
