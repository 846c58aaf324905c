"""Cache poisoning and deception: the override fields that make an origin act on another request never reach it
(``upstream.deny_fields``); ``/fetch`` sends only its allow list; credentialed and cookie-setting responses are never
shared unless the origin allows it; errors never replace a good entry."""

from __future__ import annotations

import json

import pytest

from tests.support.http import exchange, fetch_target, request
from tests.support.origins import Answer, Origin, Seen, unique
from tests.support.processes import GrenierProcess

POISON = [
    ("X-Forwarded-Host", "evil.example"),
    ("Forwarded", "host=evil.example;proto=https"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Forwarded-Scheme", "http"),
    ("X-Host", "evil.example"),
]


def get(
    g: GrenierProcess, form: str, url: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None
):
    if form == "fetch":
        return request(g.port, "GET", fetch_target(url), headers or [], body, host=f"127.0.0.1:{g.port}")
    return request(g.port, "GET", url, headers or [], body)


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_override_fields_and_get_bodies_do_not_reach_the_origin(
    open_grenier: GrenierProcess, origin: Origin, form: str
) -> None:
    path = unique("echo")
    url = origin.url(path)
    poisoned = get(open_grenier, form, url, POISON, body=b"smuggled=1")
    assert poisoned.status == 200, poisoned
    (seen,) = origin.seen(path)
    for name, _ in POISON:
        assert name.lower() not in seen.names(), f"{name} reached the origin"
    assert seen.body == b""
    assert "content-length" not in seen.names() or seen.get("content-length") == "0"
    assert "evil.example" not in poisoned.text
    clean = get(open_grenier, "forward", url)
    assert clean.header("Cache-Status").startswith("grenier;hit"), clean
    assert clean.body == poisoned.body
    assert json.loads(clean.text.split(" ", 3)[3]) == {
        "authorization": None,
        "cookie": None,
        "x-evil": None,
        "x-forwarded-host": None,
        "x-original-url": None,
    }


@pytest.mark.parametrize(("form", "reaches"), [("fetch", False), ("forward", True)])
def test_other_fields_reach_the_origin_in_forward_mode_only(
    open_grenier: GrenierProcess, origin: Origin, form: str, reaches: bool
) -> None:
    """Forward mode is transparent (an ordinary end-to-end field reaches the origin, whose Vary says whether it keys
    the entry); ``/fetch``'s fields are meant for grenier, and only its allow list reaches the target."""
    path = unique("echo")
    reply = get(open_grenier, form, origin.url(path), [("X-Evil", "1")])
    assert reply.status == 200, reply
    (seen,) = origin.seen(path)
    assert ("x-evil" in seen.names()) is reaches, seen.headers


@pytest.mark.parametrize(
    ("credential", "first_fwd", "again_fwd"),
    [
        # RFC 9111 §3.5: through the cache, on a fetch of its own; the stored response allows no sharing with it.
        (("Authorization", "Bearer alice-s3cret"), "fwd=uri-miss", "fwd=miss"),
        (("Cookie", "session=alice-s3cret"), "fwd=bypass", "fwd=bypass"),
    ],
    ids=["auth", "cookie"],
)
def test_credentialed_requests_are_never_stored_nor_served_another_response(
    open_grenier: GrenierProcess, origin: Origin, credential: tuple[str, str], first_fwd: str, again_fwd: str
) -> None:
    path = unique("echo")
    url = origin.url(path)
    private = request(open_grenier.port, "GET", url, [credential])
    assert private.status == 200, private
    assert first_fwd in private.header("Cache-Status")
    assert "stored" not in private.cache_status
    assert "alice-s3cret" in private.text, "the credential is relayed to the origin"
    clean = request(open_grenier.port, "GET", url)
    assert "fwd=uri-miss" in clean.header("Cache-Status"), clean
    assert "alice-s3cret" not in clean.text
    # Now a clean entry is stored; a credentialed request still does not use it and does not overwrite it.
    again = request(open_grenier.port, "GET", url, [credential])
    assert again_fwd in again.header("Cache-Status")
    assert "alice-s3cret" in again.text
    last = request(open_grenier.port, "GET", url)
    assert last.header("Cache-Status").startswith("grenier;hit"), last
    assert last.body == clean.body
    assert origin.hits(path) == 3


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_set_cookie_responses_are_not_stored(open_grenier: GrenierProcess, origin: Origin, form: str) -> None:
    path = unique("cookie")
    url = origin.url(path)
    first = get(open_grenier, form, url)
    assert first.status == 200, first
    assert "stored" not in first.header("Cache-Status").replace("not stored", "")
    second = get(open_grenier, form, url)
    assert "fwd=uri-miss" in second.header("Cache-Status"), second
    assert second.text == f"cookie {path} 2"
    assert origin.hits(path) == 2


def good_then(status: int):
    """A 200 that is stale on arrival (upstream Age over max-age), then ``status`` with no freshness."""

    def behaviour(n: int, seen: Seen) -> Answer:
        if n == 1:
            return Answer(200, (("Cache-Control", "max-age=10"), ("Age", "11")), b"the good body")
        return Answer(status, (("Content-Type", "text/plain"),), f"error {status}".encode())

    return behaviour


@pytest.mark.parametrize("status", [404, 500, 503, 403])
def test_an_error_without_freshness_does_not_replace_a_good_entry(
    open_grenier: GrenierProcess, origin: Origin, status: int
) -> None:
    path = unique("prog")
    url = origin.url(path)
    origin.program(path, good_then(status))
    assert request(open_grenier.port, "GET", url).text == "the good body"
    refreshed = request(open_grenier.port, "GET", url)
    assert refreshed.status == status, refreshed
    kept = request(open_grenier.port, "GET", url, [("Cache-Control", "max-stale")])
    assert kept.status == 200, kept
    assert kept.text == "the good body"
    assert kept.header("Cache-Status").startswith("grenier;hit")
    assert origin.hits(path) == 2


def test_absolute_form_url_wins_over_the_host_field(
    open_grenier: GrenierProcess, origin: Origin, bystander: Origin
) -> None:
    """The entry is keyed by the request's URL; the Host field (naming another allowed server) is never fetched."""
    path = unique("plain")
    url = origin.url(path)
    before = len(bystander.seen)
    liar = request(open_grenier.port, "GET", url, [("Host", f"127.0.0.1:{bystander.port}")])
    assert liar.status == 200, liar
    assert liar.text == f"plain {path} 1"
    (seen,) = origin.seen(path)
    assert seen.get("host") == f"127.0.0.1:{origin.port}"
    honest = request(open_grenier.port, "GET", url)
    assert honest.header("Cache-Status").startswith("grenier;hit"), honest
    assert honest.body == liar.body
    other = request(open_grenier.port, "GET", url, [("Host", "evil.example")])
    assert other.header("Cache-Status").startswith("grenier;hit"), other
    assert other.body == liar.body
    assert len(bystander.seen) == before
    assert origin.hits(path) == 1


HOP_BY_HOP = [
    ("Connection", "close, X-Secret"),
    ("X-Secret", "1"),
    ("Keep-Alive", "timeout=300"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic YWxpY2U6c2VjcmV0"),
    ("Proxy-Connection", "keep-alive"),
]


@pytest.mark.parametrize(
    ("method", "extra"),
    [("GET", []), ("GET", [("Authorization", "Bearer t")]), ("POST", []), ("DELETE", [])],
    ids=["cacheable", "credentialed-relay", "post-relay", "delete-relay"],
)
def test_hop_by_hop_fields_never_reach_the_origin(
    open_grenier: GrenierProcess, origin: Origin, method: str, extra: list[tuple[str, str]]
) -> None:
    path = unique("echo")
    raw = (
        f"{method} {origin.url(path)} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n".encode()
        + "".join(f"{k}: {v}\r\n" for k, v in [*HOP_BY_HOP, *extra]).encode()
        + (b"Content-Length: 4\r\n\r\ndata" if method == "POST" else b"\r\n")
    )
    reply = exchange(open_grenier.port, raw, method=method)
    assert reply.status == 200, reply
    (seen,) = origin.seen(path)
    for name in ("x-secret", "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection"):
        assert name not in seen.names(), f"{name} reached the origin: {seen.headers}"
    assert "x-secret" not in (seen.get("connection") or "").lower()
