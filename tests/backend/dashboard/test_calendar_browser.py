"""The treatment calendar in headless Chromium: the links page, a new link, the printed page.

A French-speaking patient with a long accented name on alemtuzumab s.c. with its two
mandatory prophylaxis courses (the real regimen library). At 360 and 1280 px every page
passes axe-core without horizontal scrolling; the printed page has no script and prints
(Chromium's PDF, A4) on exactly one page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlmodel import Session, select

from backend.schemas import PatientIn, PlanIn, ProphylaxisConfirmIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.prophylaxis import confirm_course
from reminders.core.clinical_rules import urgent_advice
from reminders.core.treatment_calendar import PRINT_WEEKS
from reminders.data.models import ProphylaxisCourse, User
from tests.backend.dashboard.conftest import PLAN_START
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

NAME = "Marie-Françoise Vanden Bossche-Lefèvre"
#: A PDF page object (``/Type /Pages`` is the tree above them).
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-z])")


def seed_french_patient(server: LiveApp) -> int:
    """The patient, her plan and both courses confirmed by the nurse; returns her id."""
    with Session(server.engine, expire_on_commit=False) as session:
        nurse = session.exec(select(User).where(User.email == NURSE)).one()
        now = server.clock.now
        patient = create_patient(
            session,
            nurse.team_id,
            PatientIn(
                display_name=NAME,
                hospital_ref="H-77120",
                phone="+32 470 55 66 77",
                language="fr",
                sms_consent=True,
            ),
            now,
            region="BE",
        )
        plan = start_plan(
            session,
            patient,
            PlanIn(regimen_id="alemtuzumab_sc", start_date=PLAN_START),
            nurse.id,
            now,
        )
        for course in session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all():
            confirm_course(
                session,
                course,
                patient,
                ProphylaxisConfirmIn(
                    drug=course.drug, dose_text="1 comprimé", times=["08:00", "20:00"]
                ),
                nurse.id,
                now,
            )
        session.commit()
        return patient.id


@pytest.mark.parametrize("width", WIDTHS)
def test_the_calendar_pages_are_accessible_and_the_printout_is_one_a4_page(
    live: LiveApp,  # noqa: F811
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
) -> None:
    patient_id = seed_french_patient(live)
    page = fresh_page(page_at, width)
    sign_in(page, live)
    page.goto(live.url(f"/patients/{patient_id}"))
    page.get_by_role("link", name="Calendar", exact=True).click()
    page.wait_for_url(f"**/patients/{patient_id}/calendar")
    check_page(page, artifacts_dir, "calendar-links", width)

    # A refused link first (no label): the error in place, then a link made and shown once.
    page.get_by_role("button", name="Make a link").click()
    assert page.locator("#feed-f-label-error").is_visible()
    check_page(page, artifacts_dir, "calendar-link-error", width)
    page.get_by_label("For whose phone").fill("Téléphone de Jean-Baptiste, son fils")
    page.get_by_role("button", name="Make a link").click()
    link = page.locator("#new-link").inner_text()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/calendar/[A-Za-z0-9_-]{43}\.ics", link)
    check_page(page, artifacts_dir, "calendar-link-new", width)

    page.get_by_role("link", name="Open the page to print").click()
    page.wait_for_url(f"**/patients/{patient_id}/calendar/print")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("script").count() == 0
    assert f"{PRINT_WEEKS} prochaines semaines" in page.locator("main").inner_text()
    assert urgent_advice("fr") in page.locator(".fever").inner_text()
    assert page.locator("table.weeks tbody tr").count() == PRINT_WEEKS
    check_page(page, artifacts_dir, "calendar-print", width)

    pdf = page.pdf(format="A4", print_background=True)
    (artifacts_dir / f"dashboard-calendar-print-{width}.pdf").write_bytes(pdf)
    assert len(_PDF_PAGE.findall(pdf)) == 1, "the printed calendar must fit one A4 page"
    page.emulate_media(media="print")
    assert not page.locator(".staff-bar").is_visible()  # the staff's bar is not printed
    assert not page.js_errors  # type: ignore[attr-defined]
