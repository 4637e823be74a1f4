"""The data-rights page in headless Chromium: an admin reaches it, is refused, then erases.

At 360 and 1280 px the page passes axe-core without horizontal scrolling: before (the
downloads and the erasure form), with the refusal in place, and after (the pseudonym to
note). The patient page then names the pseudonym only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlmodel import Session, select

from backend.schemas import PatientIn
from backend.services.patients import create_patient
from reminders.data.models import Patient, User
from tests.backend.dashboard.test_browser import (  # noqa: F401  (live is a fixture)
    ADMIN,
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
    """The patient, in the admin's team; returns her id."""
    with Session(server.engine, expire_on_commit=False) as session:
        admin = session.exec(select(User).where(User.email == ADMIN)).one()
        patient = create_patient(
            session,
            admin.team_id,
            PatientIn(
                display_name=NAME,
                hospital_ref="HUB-2026-004178",
                phone="+32 470 55 66 78",
                language="fr",
                sms_consent=True,
            ),
            server.clock.now,
            region="BE",
        )
        session.commit()
        return patient.id


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_erases_the_contact_details_from_the_page(
    live: LiveApp,  # noqa: F811
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
) -> None:
    patient_id = seed_patient(live)
    page = fresh_page(page_at, width)
    sign_in(page, live, ADMIN)
    page.goto(live.url(f"/patients/{patient_id}"))
    page.get_by_role("link", name="Data rights", exact=True).click()
    page.wait_for_url(f"**/patients/{patient_id}/rights")
    check_page(page, artifacts_dir, "rights", width)

    page.get_by_label("Type ERASE to confirm").fill("oui")
    page.get_by_role("button", name="Erase contact details").click()
    assert page.locator("#erase-f-confirm-error").is_visible()
    check_page(page, artifacts_dir, "rights-refused", width)

    page.get_by_label("Type ERASE to confirm").fill("ERASE")
    page.get_by_role("button", name="Erase contact details").click()
    pseudonym = page.locator("#pseudonym").inner_text()
    assert pseudonym.startswith("erased-")
    check_page(page, artifacts_dir, "rights-erased", width)
    with Session(live.engine) as session:
        assert session.get(Patient, patient_id).display_name == pseudonym

    page.goto(live.url(f"/patients/{patient_id}"))
    main = page.locator("main").inner_text()
    assert pseudonym in main and "contact details erased" in main
    # (The admin of the fixture is a Vandenbroucke too: her name stays in the staff bar.)
    assert "Marie-Thérèse" not in page.content() and "Delacroix" not in main
    assert not page.js_errors  # type: ignore[attr-defined]
