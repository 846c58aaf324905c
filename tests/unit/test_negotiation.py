"""Does a client prefer HTML to JSON for grenier's 202 (proxy/negotiation.py, RFC 9110 §12.5.1)?"""

from __future__ import annotations

import pytest

from proxy.negotiation import prefers_html, quality

PREFERS_HTML: list[tuple[str, list[str], bool]] = [
    ("§12.5.1 no Accept: JSON, the default", [], False),
    ("§12.5.1 */*: a tie goes to JSON", ["*/*"], False),
    ("§12.5.1 Firefox navigation", ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"], True),
    (
        "§12.5.1 Chrome navigation",
        ["text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"],
        True,
    ),
    ("§12.5.1 JSON asked for", ["application/json"], False),
    ("§12.5.1 JSON ranked over HTML", ["text/html;q=0.5, application/json"], False),
    ("§12.5.1 text/* covers text/html", ["text/*, */*;q=0.1"], True),
    ("§12.5.1 the most specific range wins", ["text/html;q=0, text/*"], False),
    ("§12.5.1 several field lines", ["application/json;q=0.2", "text/html"], True),
    ("§12.4.2 an invalid qvalue is not acceptable", ["text/html;q=abc, */*;q=0.5"], False),
    ("§12.5.1 media types are caseless", ["TEXT/HTML"], True),
]


@pytest.mark.parametrize(("section", "accept", "html"), PREFERS_HTML, ids=[c[0] for c in PREFERS_HTML])
def test_prefers_html(section: str, accept: list[str], html: bool) -> None:
    assert prefers_html(accept) is html, section


def test_quality_of_an_unlisted_type_is_zero() -> None:
    assert quality(["text/html"], "application/json") == 0.0
