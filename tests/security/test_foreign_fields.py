"""Fields an upstream sends that act on the origin serving them, attacked through a running grenier: pages grenier
serves from its own origin (``/fetch``, job results, the form's frame) never carry them, while forward and reverse
mode, where the upstream's own host serves them, keep them."""

from __future__ import annotations

from tests.support.http import Reply, fetch_target, request
from tests.support.origins import Origin
from tests.support.polling import wait_until
from tests.support.processes import GrenierProcess

#: What a hostile upstream sends to act on whatever origin serves its page.
ORIGIN_FIELDS = {
    "Set-Cookie": "sid=planted; Domain=127.0.0.1; Path=/",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Clear-Site-Data": '"cookies", "storage"',
    "Refresh": "0; url=http://evil.example/",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "*",
    "Alt-Svc": 'h2="evil.example:443"',
    "NEL": '{"report_to":"x","max_age":86400}',
    "Report-To": '{"group":"x","max_age":86400,"endpoints":[{"url":"http://evil.example/r"}]}',
    "Service-Worker-Allowed": "/",
}


def _hostile(origin: Origin) -> str:
    return origin.route(headers=ORIGIN_FIELDS)


def _assert_none_of_them(headers: object) -> None:
    present = [name for name in ORIGIN_FIELDS if name in headers]  # type: ignore[operator]
    assert not present, f"grenier's own origin carries {present}"


def test_fetch_strips_origin_fields(open_grenier: GrenierProcess, origin: Origin) -> None:
    reply = request(open_grenier.port, "GET", fetch_target(_hostile(origin)), host=f"127.0.0.1:{open_grenier.port}")
    assert reply.status == 200, reply
    _assert_none_of_them(reply.headers)
    assert reply.header("Content-Security-Policy") == "sandbox"


def test_job_result_strips_origin_fields(open_grenier: GrenierProcess, origin: Origin) -> None:
    """The job endpoint (also the form's frame) serves the fetched response from grenier's origin too."""
    url = _hostile(origin)
    first = request(
        open_grenier.port,
        "GET",
        fetch_target(url),
        [("Prefer", "respond-async")],
        host=f"127.0.0.1:{open_grenier.port}",
    )
    assert first.status == 202, first
    location = first.location

    def done() -> Reply | None:
        reply = request(open_grenier.port, "GET", location, host=f"127.0.0.1:{open_grenier.port}")
        return None if reply.status == 202 else reply

    result: Reply = wait_until(done, 20, f"job {location} to end")
    assert result.status == 200, result
    _assert_none_of_them(result.headers)
    assert result.header("Content-Security-Policy") == "sandbox"


def test_forward_mode_keeps_them(open_grenier: GrenierProcess, origin: Origin) -> None:
    """In forward mode the page is served as the upstream's own host: its fields are its own business."""
    reply = request(open_grenier.port, "GET", _hostile(origin))
    assert reply.status == 200, reply
    for name in ORIGIN_FIELDS:
        assert name in reply.headers, name
