"""The response-time page in headless Chromium at 360 and 1280 px, on SQLite and PostgreSQL.

The seeded month (``tests/backend/response_times_month.py``) is served by a real HTTP server
on 127.0.0.1. A nurse and an admin sign in through the form; the page, its refused period,
the admins' targets form with its errors in place and after saving are screenshotted to
``test-artifacts/screenshots/dashboard-response-times-*.png`` and checked by axe-core (no
violation) and for horizontal scrolling. The figures read in the browser are the hand-worked
ones of ``tests/backend/test_response_times.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from sqlmodel import Session
from werkzeug.serving import make_server

from tests.backend.dashboard.test_browser import WIDTHS, check_page, fresh_page
from tests.backend.response_times_month import (
    ADMIN_EMAIL,
    NURSE_EMAIL,
    PASSWORD,
    Month,
    seed_month,
)
from tests.conftest import Clock

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app: Flask, session: Session, clock: Clock) -> Iterator[tuple[str, Month]]:
    """The app (this run's database) with the seeded month, on 127.0.0.1 and a free port."""
    month = seed_month(session, clock.now)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", month
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/queue")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_response_time_page_is_accessible_and_shows_the_month(
    served: tuple[str, Month],
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
    db_engine_name: str,
) -> None:
    base, _ = served
    page = fresh_page(page_at, width)
    sign_in(page, base, NURSE_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Response times").click()
    page.wait_for_url("**/response-times")
    assert page.get_by_label("From (first day)").input_value() == "2026-02-02"
    assert page.get_by_label("To (last day)").input_value() == "2026-03-01"
    chart = page.locator("svg#response-chart")
    assert chart.get_attribute("role") == "img"
    assert "5 of 8 within target (62.5%)" in page.locator("#response-chart-desc").text_content()
    urgent = page.locator("#by-severity tbody tr").first.inner_text()
    assert "5 of 8 (62.5%)" in urgent and "3 d 7 h" in urgent, urgent
    check_page(page, artifacts_dir, f"response-times-{db_engine_name}", width)

    # A week chosen by hand: W08 (a8, a9 urgent; a10 high).
    page.get_by_label("From (first day)").fill("2026-02-16")
    page.get_by_label("To (last day)").fill("2026-02-22")
    page.get_by_role("button", name="Show figures").click()
    page.wait_for_url("**/response-times?from=2026-02-16&to=2026-02-22")
    assert page.locator("#by-severity tbody tr").count() == 2
    assert "3 alerts" in page.locator("#response-summary").inner_text()
    # The end before the start: refused in place, still accessible.
    page.get_by_label("To (last day)").fill("2026-02-01")
    page.get_by_role("button", name="Show figures").click()
    assert page.locator(".error-summary").is_visible()
    assert page.locator("#f-to").get_attribute("aria-invalid") == "true"
    check_page(page, artifacts_dir, f"response-times-period-error-{db_engine_name}", width)
    assert not page.js_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_edits_the_targets_accessibly(
    served: tuple[str, Month],
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
    db_engine_name: str,
) -> None:
    base, _ = served
    page = fresh_page(page_at, width)
    sign_in(page, base, ADMIN_EMAIL)
    page.goto(base + "/response-times")
    page.get_by_label("Urgent: acknowledge within (minutes)").fill("0")
    page.get_by_label("Any alert: resolve within (minutes)").fill("")
    page.get_by_role("button", name="Save targets").click()
    assert page.locator(".error-summary").is_visible()
    assert page.locator("#targets-f-urgent_acknowledge_minutes-error").is_visible()
    assert page.locator("#targets-f-resolve_minutes-error").is_visible()
    check_page(page, artifacts_dir, f"response-times-targets-error-{db_engine_name}", width)
    page.get_by_label("Urgent: acknowledge within (minutes)").fill("10")
    page.get_by_label("Any alert: resolve within (minutes)").fill("1440")
    page.get_by_role("button", name="Save targets").click()
    page.wait_for_url("**/response-times")
    assert "Response-time targets saved." in page.locator(".flashes").inner_text()
    # Urgent acknowledged within 10 minutes: a2 8, a8 5, a11 10 of the 8 judged.
    assert "3 of 8 (37.5%)" in page.locator("#by-severity tbody tr").first.inner_text()
    check_page(page, artifacts_dir, f"response-times-admin-{db_engine_name}", width)
    assert not page.js_errors  # type: ignore[attr-defined]
