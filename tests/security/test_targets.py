"""Target URLs whose spelling is wrong, or that name nothing, attacked through a running grenier: every one is a
``400`` (or, once looked up, a ``502``) problem document, and none kills a request handler or shows a traceback."""

from __future__ import annotations

import pytest

from tests.support.http import assert_problem, build, fetch_target, parse_raw, raw_roundtrip, request
from tests.support.origins import Origin, unique
from tests.support.processes import GrenierProcess

#: Hosts whose spelling alone shows they name nothing: refused before any lookup.
MALFORMED_HOSTS = [
    "xn--a-",  # an A-label that is not valid Punycode
    "xn--",
    "a..b",
    "-lead.example",
    "trail-.example",
    "a" * 64 + ".example",  # a label over 63 octets
    "%41.example",  # percent-encoding in a host
    "ex%2eample.com",
    "%3D%28%C3%A9",
    "=(\u00e9",
    "ex\u00e4mple\u2488.com",  # a character IDNA disallows
    "a_b$.example",
]


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_malformed_host_via_fetch_is_a_400(open_grenier: GrenierProcess, origin: Origin, host: str) -> None:
    """``/fetch?url=`` naming a host that cannot exist (on an allowed port, so only the spelling can refuse it): a 400
    that says the host is wrong."""
    url = f"http://{host}:{origin.port}/x"
    reply = request(open_grenier.port, "GET", fetch_target(url), host=f"127.0.0.1:{open_grenier.port}")
    assert_problem(reply, 400, "host")


@pytest.mark.parametrize("host", ["xn--a-", "%41.example", "a..b"])
def test_malformed_host_in_absolute_form_is_answered(open_grenier: GrenierProcess, origin: Origin, host: str) -> None:
    """An absolute-form target with such a host gets a 400 at once; the handler lives and the connection closes."""
    target = f"http://{host}:{origin.port}/"
    data, closed = raw_roundtrip(open_grenier.port, build("GET", target, host="example.com"), wait=10)
    assert data, "no answer at all: the request handler died"
    assert_problem(parse_raw(data), 400, "host")
    assert closed


def test_url_parameter_with_percent_encoded_host(open_grenier: GrenierProcess, origin: Origin) -> None:
    """The raw query ``?url=http://%3D%28%C3%A9`` (a percent-encoded host once decoded): 400, not 500."""
    reply = request(
        open_grenier.port,
        "GET",
        f"/fetch?url=http://%3D%28%C3%A9:{origin.port}/",
        host=f"127.0.0.1:{open_grenier.port}",
    )
    assert_problem(reply, 400, "host")


@pytest.mark.parametrize("form", ["fetch", "forward"])
def test_unresolvable_name_is_a_502(open_grenier: GrenierProcess, origin: Origin, form: str) -> None:
    """A well-spelt name that does not resolve (``.invalid``, RFC 6761) is a 502 that names the lookup."""
    url = f"http://no-such-host.invalid:{origin.port}{unique('dns')}"
    if form == "fetch":
        reply = request(open_grenier.port, "GET", fetch_target(url), host=f"127.0.0.1:{open_grenier.port}")
    else:
        reply = request(open_grenier.port, "GET", url)
    assert_problem(reply, 502, "resolve", "no-such-host.invalid")
