"""The outbound (SSRF) guard and loop marks, attacked through a running grenier: ``/fetch?url=`` and forward-proxy
absolute-form requests naming every address class in every spelling."""

from __future__ import annotations

import time

import pytest

from tests.support.http import assert_no_traceback, assert_problem, fetch_target, request
from tests.support.origins import Origin, unique
from tests.support.ports import free_port
from tests.support.processes import GrenierProcess

#: (host as written in the URL, whether it means this machine: then the origin's port is used and must stay unhit)
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "0.0.0.0",
]
ELSEWHERE = [
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "[fc00::1]",
    "[fe80::1]",
    "224.0.0.1",
]
FORMS = ["fetch", "forward"]


def ask(g: GrenierProcess, form: str, url: str, headers: list[tuple[str, str]] | None = None, timeout: float = 30.0):
    """GET ``url`` through ``g`` as ``/fetch?url=`` or as a forward-proxy absolute-form request."""
    if form == "fetch":
        return request(g.port, "GET", fetch_target(url), headers or [], host=f"127.0.0.1:{g.port}", timeout=timeout)
    return request(g.port, "GET", url, headers or [], timeout=timeout)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_in_any_spelling_is_refused(
    guarded_grenier: GrenierProcess, origin: Origin, host: str, form: str
) -> None:
    """Numeric spellings are judged by the address they mean; the origin listening there gets nothing."""
    path = unique("ssrf")
    reply = ask(guarded_grenier, form, f"http://{host}:{origin.port}{path}")
    assert_problem(reply, 403, "refused", "security.allow_")
    assert origin.hits(path) == 0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("host", ELSEWHERE)
def test_internal_ranges_are_refused_before_connecting(guarded_grenier: GrenierProcess, host: str, form: str) -> None:
    """Private, CGNAT, link-local (metadata), unique-local and multicast targets: 403 at once, no connection tried."""
    started = time.monotonic()
    reply = ask(guarded_grenier, form, f"http://{host}:80{unique('ssrf')}", timeout=10)
    assert_problem(reply, 403, "refused", "security.allow_networks")
    assert time.monotonic() - started < 3, "the guard must refuse before any connection attempt"


@pytest.mark.parametrize("form", FORMS)
def test_metadata_address_is_named(guarded_grenier: GrenierProcess, form: str) -> None:
    reply = ask(guarded_grenier, form, "http://169.254.169.254/latest/meta-data/")
    assert_problem(reply, 403, "metadata")


@pytest.mark.parametrize("form", FORMS)
def test_port_not_allowed(open_grenier: GrenierProcess, origin: Origin, form: str) -> None:
    """Loopback is opted in on this grenier, so only the port rule can refuse (nothing listens there either)."""
    port = free_port()
    reply = ask(open_grenier, form, f"http://127.0.0.1:{port}/x")
    assert_problem(reply, 403, f"port {port}", "security.allow_ports")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("host", ["forbidden.test", "www.evil.test", "FORBIDDEN.test."])
def test_deny_hosts(guarded_grenier: GrenierProcess, origin: Origin, host: str, form: str) -> None:
    reply = ask(guarded_grenier, form, f"http://{host}:{origin.port}/x")
    assert_problem(reply, 403, "security.deny_hosts")


@pytest.mark.parametrize("form", FORMS)
def test_allow_networks_lets_the_loopback_origin_through(
    open_grenier: GrenierProcess, origin: Origin, form: str
) -> None:
    path = unique("plain")
    reply = ask(open_grenier, form, origin.url(path))
    assert reply.status == 200, reply
    assert reply.text == f"plain {path} 1"
    assert origin.hits(path) == 1


@pytest.mark.parametrize("form", FORMS)
def test_redirect_is_the_response_never_followed(
    open_grenier: GrenierProcess, origin: Origin, bystander: Origin, form: str
) -> None:
    """The 3xx comes back as is, even though its Location is an allowed target: a redirect cannot lead inside."""
    before = len(bystander.seen)
    reply = ask(open_grenier, form, origin.url(unique("redirect")))
    assert reply.status == 302, reply
    assert reply.header("Location") == f"http://127.0.0.1:{bystander.port}/landing"
    assert len(bystander.seen) == before


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/pub/file", "file:///etc/passwd", "gopher://127.0.0.1:70/_x"])
def test_other_schemes_are_bad_targets(open_grenier: GrenierProcess, url: str, form: str) -> None:
    reply = ask(open_grenier, form, url)
    assert_problem(reply, 400)
    assert b"root:" not in reply.body


# --- loops -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "mark",
    [
        ("CDN-Loop", "grenier"),
        ("CDN-Loop", "other, GRENIER; v=1"),
        ("Via", "1.1 grenier"),
        ("Via", "1.0 a, 1.1 grenier"),
    ],
)
def test_a_request_carrying_our_mark_is_a_loop(
    open_grenier: GrenierProcess, origin: Origin, form: str, mark: tuple[str, str]
) -> None:
    path = unique("plain")
    reply = ask(open_grenier, form, origin.url(path), [mark])
    assert_problem(reply, 508, "grenier")
    assert origin.hits(path) == 0


def test_forward_proxy_pointed_at_itself_does_not_recurse(open_grenier: GrenierProcess, origin: Origin) -> None:
    """grenier's own port is an allowed target here: fetching through itself stops at the first repetition."""
    path = unique("plain")
    self_url = f"http://127.0.0.1:{open_grenier.port}"
    inner = f"{self_url}/fetch?url={origin.url(path)}"
    started = time.monotonic()
    reply = request(open_grenier.port, "GET", f"{self_url}/fetch?url={fetch_target(inner)[len('/fetch?url=') :]}")
    assert time.monotonic() - started < 15
    assert reply.status == 508 or 400 <= reply.status < 500, reply
    assert_no_traceback(reply.body)
    assert origin.hits(path) == 0
    # An absolute-form request naming grenier itself as the origin of a plain path is bounded as well.
    direct = request(open_grenier.port, "GET", f"{self_url}{path}", timeout=15)
    assert direct.status == 508 or 400 <= direct.status < 500, direct
    assert open_grenier.alive()
