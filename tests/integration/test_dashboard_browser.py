"""The operator's page in a real headless Chromium (Debian's ``chromium``, driven by Playwright): fill the fetch form,
watch the job page turn into the page, see the counters and the recent jobs move without a reload, inspect the URL,
purge it from the page. A screenshot of the page is saved as an artefact (its path is printed).

Chromium missing is a failure, never a skip: ``make test`` installs it (Debian's package) when run as root.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.origins import Origin
from tests.support.processes import GrenierProcess, Launcher

CHROMIUM = "/usr/bin/chromium"
#: How long the page may take to show what the test waits for (each wait is a bounded poll in the browser).
WAIT_MS = 15_000


def _browser_parts() -> tuple[Any, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does when run as root)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:  # a dev dependency: pyproject.toml's [dev] extra
        pytest.fail(f"playwright is not installed ({exc}): pip install -e '.[dev]'")
    return sync_playwright, expect


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _stats(serve: GrenierProcess) -> dict[str, Any]:
    status, body = _get(serve.url + "/_grenier/stats")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def _fetch_through_the_form(page: Any, target: str) -> None:
    """The fetch form: a miss, so the job's page, which refreshes itself until the fetched page is there."""
    page.fill("#url", target)
    page.click("form[action='/_grenier/ui/fetch'] button[type=submit]")
    page.wait_for_url("**/_grenier/ui/jobs/*", timeout=WAIT_MS)
    page.wait_for_selector("iframe[title='fetched page']", timeout=WAIT_MS)
    frame = page.frame_locator("iframe[title='fetched page']")
    assert frame.locator("#greeting").text_content(timeout=WAIT_MS) == "hello from the origin"
    assert "stored in the cache" in (page.text_content("p.meta") or "")


def test_fetch_watch_inspect_purge_from_the_operator_page(launcher: Launcher, origin: Origin, tmp_path: Path) -> None:
    sync_playwright, expect = _browser_parts()
    serve = launcher.serve()
    target = origin.route(
        body=b"<!doctype html><title>origin page</title><h1 id=greeting>hello from the origin</h1>",
        content_type="text/html",
        delays=(1.0, 0.0),
    )
    fetch_api = serve.url + "/fetch?url=" + urllib.parse.quote(target, safe="")
    shot = tmp_path / "dashboard.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    errors.append(f"{msg.text} ({msg.location.get('url')})")
                    if msg.type == "error" and not str(msg.location.get("url", "")).endswith("/favicon.ico")
                    else None
                ),
            )

            page.goto(serve.url + "/_grenier/")
            assert page.text_content("#c-misses") == "0"
            assert page.text_content("#c-hits") == "0"

            _fetch_through_the_form(page, target)

            # Back on the operator's page: the miss, the job that ended, and a hit counted live (no reload).
            page.goto(serve.url + "/_grenier/")
            expect(page.locator("#c-misses")).to_have_text("1", timeout=WAIT_MS)
            row = page.locator("#jobs tr", has_text=target)
            assert "done (stored)" in (row.first.text_content(timeout=WAIT_MS) or "")
            status, body = _get(fetch_api)
            assert (status, b"hello from the origin" in body) == (200, True)
            expect(page.locator("#c-hits")).to_have_text("1", timeout=WAIT_MS)
            expect(page.locator("#hit-ratio")).to_have_text("50.0 %", timeout=WAIT_MS)

            # Inspect: what is stored for the URL.
            page.fill("#inspect-url", target)
            page.click("#inspect button[type=submit]")
            expect(page.locator("#inspect-result")).to_have_text(re.compile(r"^200"), timeout=WAIT_MS)
            inspected = page.text_content("#inspect-result") or ""
            assert target in inspected
            assert '"status": 200' in inspected

            page.screenshot(path=str(shot), full_page=True)
            print(f"\noperator page screenshot: {shot}")

            # Purge it from the page: the next request is a miss again, and the page counts it.
            page.select_option("#purge-by", "url")
            page.fill("#purge-value", target)
            page.click("#purge button[type=submit]")
            expect(page.locator("#purge-result")).to_have_text(re.compile(r"^200"), timeout=WAIT_MS)
            assert '"purged": 1' in (page.text_content("#purge-result") or "")
            assert _get(fetch_api)[0] == 202
            expect(page.locator("#c-misses")).to_have_text("2", timeout=WAIT_MS)
            assert errors == [], errors
        finally:
            browser.close()

    assert shot.stat().st_size > 10_000
    totals = _stats(serve)
    assert (totals["hits"], totals["misses"]) == (1, 2)
