"""Cheap requests that would make expensive answers, attacked through a running grenier: an upstream's huge field
sections are not stored, numbers of any length in fields are parsed within bounds, and a request field the origin
rejects cannot plant its error in the cache for everyone."""

from __future__ import annotations

from tests.support.http import Reply, fetch_target, request
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.processes import GrenierProcess

HUGE = "9" * 5000  # over Python's 4,300-digit limit for int()


def _fetch(g: GrenierProcess, url: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    return request(g.port, "GET", fetch_target(url), headers or [], host=f"127.0.0.1:{g.port}")


def test_many_vary_names_are_not_stored(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A ``Vary`` naming thousands of fields would make every hit compute a key over all of them: not stored, and
    the outcome says why."""
    names = ", ".join(f"x-v{i}" for i in range(1500))
    url = origin.route(headers={"Vary": names})
    first = _fetch(open_grenier, url)
    assert first.status == 200, first
    assert "vary" in str(first.cache_status.get("detail", "")).lower(), first
    assert _fetch(open_grenier, url).status == 200
    assert origin.hits(url) == 2


def test_many_fields_are_not_stored(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A response with hundreds of fields is passed on once, not stored (cache.max_stored_fields)."""
    url = origin.route(headers={f"X-Filler-{i}": "x" for i in range(80)})
    first = _fetch(open_grenier, url)
    assert first.status == 200, first
    assert "cache.max_stored_fields" in str(first.cache_status.get("detail", "")), first
    _fetch(open_grenier, url)
    assert origin.hits(url) == 2


def test_large_field_section_is_not_stored(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A few large fields, together over cache.max_stored_header_bytes: not stored either."""
    url = origin.route(headers={f"X-Big-{i}": "y" * 7000 for i in range(12)})
    first = _fetch(open_grenier, url)
    assert first.status == 200, first
    assert "cache.max_stored_header_bytes" in str(first.cache_status.get("detail", "")), first


def test_huge_numbers_in_response_fields(open_grenier: GrenierProcess, origin: Origin) -> None:
    """``max-age`` of 5,000 digits: stored as the longest lifetime and served from the cache, never a 500."""
    url = origin.route(cache_control=f"max-age={HUGE}")
    first = _fetch(open_grenier, url)
    assert first.status == 200, first
    second = _fetch(open_grenier, url)
    assert second.status == 200, second
    assert origin.hits(url) == 1


def test_huge_age_is_read_as_very_old(open_grenier: GrenierProcess, origin: Origin) -> None:
    """``Age`` of 5,000 digits: the response is older than any lifetime (stale at once), never a 500."""
    url = origin.route(headers={"Age": HUGE})
    for _ in range(2):
        reply = _fetch(open_grenier, url)
        assert reply.status == 200, reply


def test_huge_numbers_in_range(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A ``Range`` with 5,000-digit positions on a stored response: the whole body (or 416), never a 500."""
    url = origin.route()
    assert _fetch(open_grenier, url).status == 200
    beyond = _fetch(open_grenier, url, [("Range", f"bytes={HUGE}-")])
    assert beyond.status in {200, 416}, beyond
    whole = _fetch(open_grenier, url, [("Range", f"bytes=0-{HUGE}")])
    assert whole.status in {200, 206}, whole
    assert whole.body == f"body of {origin.path_of(url)}".encode()
    suffix = _fetch(open_grenier, url, [("Range", f"bytes=-{HUGE}")])
    assert suffix.status in {200, 206}, suffix


def _rejects_long_accept(status: int) -> object:
    """An origin that answers ``status`` (no freshness given) when ``Accept`` is long, else a fresh 200."""

    def answer(n: int, seen: Seen) -> Answer:
        if len(seen.get("Accept") or "") > 1000:
            return Answer(status, (("Content-Type", "text/plain"),), b"rejected")
        return Answer(200, (("Content-Type", "text/plain"), ("Cache-Control", "max-age=300")), b"fine")

    return answer


def test_oversized_forwarded_field_does_not_plant_an_error(open_grenier: GrenierProcess, origin: Origin) -> None:
    """A 2,000-byte ``Accept`` on a cold URL: not forwarded, so the origin cannot be made to fail, and the next
    ordinary client gets the real page."""
    for status in (404, 414, 501):
        path = unique("accept")
        origin.program(path, _rejects_long_accept(status))  # type: ignore[arg-type]
        first = _fetch(open_grenier, origin.url(path), [("Accept", "text/html;q=0.9, " + "a" * 2000)])
        assert first.status == 200, first
        assert "a" * 2000 not in (origin.seen(path)[0].get("Accept") or "")
        assert _fetch(open_grenier, origin.url(path)).body == b"fine"


def test_errors_caused_by_the_request_are_not_stored(open_grenier: GrenierProcess, origin: Origin) -> None:
    """4xx other than 404/410 and 414/431/501 without explicit freshness are not stored: the next request asks the
    origin again (the error was this request's, not the resource's)."""
    for status in (400, 405, 406, 414, 431, 501):
        url = origin.route(status=status, cache_control=None)
        first = _fetch(open_grenier, url)
        assert first.status == status, first
        assert _fetch(open_grenier, url).status == status
        assert origin.hits(url) == 2, status
