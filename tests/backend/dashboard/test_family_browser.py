"""The family contacts page in headless Chromium: axe-clean, no horizontal scroll.

A French-speaking patient with a long accented name; the page empty, with a refusal in
place (no consent given), and with a Dutch-speaking contact added, at 360 and 1280 px.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlmodel import Session, select

from backend.schemas import PatientIn
from backend.services.patients import create_patient
from reminders.data.models import User
from tests.backend.dashboard.test_browser import (  # noqa: F401  (live is a fixture)
    NURSE,
    WIDTHS,
    LiveApp,
    check_page,
    fresh_page,
    live,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"


def seed_patient(server: LiveApp) -> int:
    with Session(server.engine, expire_on_commit=False) as session:
        nurse = session.exec(select(User).where(User.email == NURSE)).one()
        patient = create_patient(
            session,
            nurse.team_id,
            PatientIn(display_name=NAME, phone="+32 470 55 66 77", language="fr", sms_consent=True),
            server.clock.now,
            region="BE",
        )
        session.commit()
        return patient.id


@pytest.mark.parametrize("width", WIDTHS)
def test_the_family_page_is_accessible(
    live: LiveApp,  # noqa: F811
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
) -> None:
    patient_id = seed_patient(live)
    page = fresh_page(page_at, width)
    sign_in(page, live)
    page.goto(live.url(f"/patients/{patient_id}"))
    page.get_by_role("link", name="Family", exact=True).click()
    page.wait_for_url(f"**/patients/{patient_id}/family")
    check_page(page, artifacts_dir, "family-empty", width)

    page.get_by_label("Name", exact=True).fill("Zoë Vandenbroucke-Delacroix")
    page.get_by_label("Mobile number").fill("0471 98 76 54")
    page.get_by_label("Relationship to the patient").fill("dochter")
    page.get_by_label("Language of their SMS").select_option("nl")
    page.get_by_role("button", name="Add the contact").click()
    assert page.locator("#family-f-consent_method-error").is_visible()
    check_page(page, artifacts_dir, "family-no-consent", width)

    page.get_by_label("The patient’s consent to share with this person").select_option("verbal")
    page.get_by_role("button", name="Add the contact").click()
    page.wait_for_url(f"**/patients/{patient_id}/family")
    assert "Zoë Vandenbroucke-Delacroix" in page.locator("main").inner_text()
    check_page(page, artifacts_dir, "family-contact", width)
    assert not page.js_errors  # type: ignore[attr-defined]
