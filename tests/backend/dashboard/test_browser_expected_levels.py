"""The patient page's expected-temperature section in headless Chromium, at 360 and 1280 px.

A nurse notes a level (after a refused one: errors in place), a 37.7 reading arrives as a
signed Twilio SMS and is shown marked "expected" with the reason and who noted it, and the
nurse ends the level. Each state is checked by axe-core and for horizontal scrolling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.backend.dashboard.test_browser import (  # noqa: F401  (live is a fixture)
    WIDTHS,
    LiveApp,
    check_page,
    fresh_page,
    live,
    send_sms,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

REASON = "Rituximab infusion this morning: slight fever expected tonight"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_nurse_notes_a_level_sees_a_quieted_reading_and_ends_it(
    live: LiveApp,  # noqa: F811
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
) -> None:
    page = fresh_page(page_at, width)
    sign_in(page, live)
    page.goto(live.url(f"/patients/{live.patient_id}#expected"))
    section = page.locator("#expected")
    section.get_by_label("Expected up to (°C)").fill("38.0")
    section.get_by_label("Reason").fill(REASON)
    section.get_by_role("button", name="Note expected level").click()
    assert page.locator(".error-summary").is_visible()
    assert page.locator("#expected-f-up_to_c-error").is_visible()
    assert "below 38.0 C" in page.locator("#expected-f-up_to_c-error").inner_text()
    check_page(page, artifacts_dir, "expected-level-errors", width)

    section = page.locator("#expected")
    section.get_by_label("Expected up to (°C)").fill("37.8")
    section.get_by_role("button", name="Note expected level").click()
    page.wait_for_url(f"**/patients/{live.patient_id}#expected")
    assert "Expected up to 37.8 °C" in page.locator("#expected").inner_text()

    answer = send_sms(live, "37.7", f"SMexpected{width}")
    assert "Any of these?" in answer  # no re-check: the check-in goes on to the symptom menu
    page.reload()
    page.locator("#temperatures summary").click()
    marked = page.locator("#temperatures tr[data-expected-level]")
    assert marked.count() == 1
    assert f"{REASON}, noted by Nora Nurse" in marked.inner_text()
    check_page(page, artifacts_dir, "expected-level-in-force", width)

    page.locator("#expected").get_by_role("button", name="End this level now").click()
    page.wait_for_url(f"**/patients/{live.patient_id}#expected")
    page.locator("#expected summary").click()
    assert "ended by Nora Nurse" in page.locator("#expected").inner_text()
    check_page(page, artifacts_dir, "expected-level-ended", width)
    assert not page.js_errors  # type: ignore[attr-defined]
