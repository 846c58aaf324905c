"""The ``Prefer`` request field, RFC 7240 (proxy/prefer.py)."""

from __future__ import annotations

import pytest

from proxy.prefer import preferences, wait_requested, wait_seconds

PREFERENCES = [
    ("none", [], {}),
    ("empty-field", [""], {}),
    ("wait", ["wait=10"], {"wait": "10"}),
    ("name-case-folded", ["Wait=10"], {"wait": "10"}),
    ("upper-respond-async", ["RESPOND-ASYNC"], {"respond-async": None}),
    ("value-case-kept", ["return=Minimal"], {"return": "Minimal"}),
    ("two-in-one-field", ["respond-async, wait=5"], {"respond-async": None, "wait": "5"}),
    # §2: "the first occurrence ... wins" whether in one field line or several
    ("first-wins-same-line", ["wait=10, WAIT=20"], {"wait": "10"}),
    ("first-wins-across-lines", ["wait=10", "wait=20"], {"wait": "10"}),
    ("parameters-ignored", ["wait=10; foo=bar"], {"wait": "10"}),
    ("parameters-ignored-spaced", ["wait=5 ; x ; y=z"], {"wait": "5"}),
    ("quoted-value", ['wait="10"'], {"wait": "10"}),
    ("quoted-value-with-comma", ['foo="a,b", wait=3'], {"foo": "a,b", "wait": "3"}),
    ("bws-around-equals", ["wait = 5"], {"wait": "5"}),
    ("bare-token", ["wait"], {"wait": None}),
    ("empty-value", ["wait="], {"wait": ""}),
    ("several", ["handling=lenient, return=minimal"], {"handling": "lenient", "return": "minimal"}),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in PREFERENCES], ids=[c[0] for c in PREFERENCES])
def test_preferences(raw: list[str], expected: dict[str, str | None]) -> None:
    assert preferences(raw) == expected


DEFAULT = 25.0
CAP = 30.0

WAITS = [
    ("absent", [], DEFAULT),
    ("other-preference", ["return=minimal"], DEFAULT),
    ("wait", ["wait=10"], 10.0),
    ("wait-fraction", ["wait=2.5"], 2.5),
    ("wait-zero", ["wait=0"], 0.0),
    ("wait-quoted", ['wait="7"'], 7.0),
    ("wait-capped", ["wait=100"], CAP),
    ("wait-inf-capped", ["wait=inf"], CAP),
    ("wait-first-wins", ["wait=3", "wait=20"], 3.0),
    ("wait-not-a-number", ["wait=abc"], DEFAULT),
    ("wait-hex", ["wait=0x10"], DEFAULT),
    ("wait-empty", ["wait="], DEFAULT),
    ("wait-bare", ["wait"], DEFAULT),
    ("wait-negative", ["wait=-1"], DEFAULT),
    ("wait-minus-inf", ["wait=-inf"], DEFAULT),
    ("wait-nan", ["wait=nan"], DEFAULT),
    ("wait-NaN", ["wait=NaN"], DEFAULT),
    # §4.1: respond-async asks for the 202 at once
    ("respond-async", ["respond-async"], 0.0),
    ("respond-async-case", ["Respond-Async"], 0.0),
    # §4.3: with an explicit wait, respond-async means "answer asynchronously after that long"
    ("respond-async-with-wait", ["respond-async, wait=5"], 5.0),
    ("respond-async-with-wait-two-lines", ["wait=5", "respond-async"], 5.0),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in WAITS], ids=[c[0] for c in WAITS])
def test_wait_seconds(raw: list[str], expected: float) -> None:
    assert wait_seconds(raw, DEFAULT, CAP) == expected


@pytest.mark.parametrize(
    ("default", "cap", "expected"),
    [(40.0, 30.0, 30.0), (0.0, 30.0, 0.0), (5.0, 0.0, 0.0)],
    ids=["default-capped", "zero-default", "zero-cap"],
)
def test_wait_seconds_default_is_capped_too(default: float, cap: float, expected: float) -> None:
    assert wait_seconds([], default, cap) == expected


WAIT_REQUESTED = [
    ("§4.3 wait=N", ["wait=5"], True),
    ("§4.3 wait=0 is a wait asked for", ["wait=0"], True),
    ("§4.3 no wait", ["respond-async"], False),
    ("§4.3 no Prefer", [], False),
    ("§4.3 a wait that is no number is ignored", ["wait=soon"], False),
    ("§4.3 a negative wait is ignored", ["wait=-1"], False),
    ("§4.3 NaN is ignored", ["wait=nan"], False),
]


@pytest.mark.parametrize(("section", "raw", "asked"), WAIT_REQUESTED, ids=[c[0] for c in WAIT_REQUESTED])
def test_wait_requested(section: str, raw: list[str], asked: bool) -> None:
    assert wait_requested(raw) is asked, section
