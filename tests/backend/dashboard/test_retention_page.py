"""The retention page for admins: the rules and what is due, and the button that applies them.

With the test client on both engines (the counts, the run and its audit row, a nurse's
403), and in headless Chromium (axe-core at 360 and 1280 px, the button and its message).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from sqlmodel import Session

from reminders.data.models import AuditEvent, Patient, User
from reminders.data.statuses import AuditAction, AuditChannel
from tests.backend.dashboard.conftest import post_form
from tests.backend.dashboard.test_browser import (  # noqa: F401  (live is a fixture)
    ADMIN,
    WIDTHS,
    LiveApp,
    check_page,
    fresh_page,
    live,
    sign_in,
)
from tests.backend.test_retention_admin import NAME, PHONE, STRANGER, seed_expired, state

if TYPE_CHECKING:
    from playwright.sync_api import Page


def signed_in_with_expired_rows(signed_in, make_patient, session: Session, now, role: str) -> User:
    """Sign in as a new ``role`` of a team whose patient has rows past their periods."""
    user = signed_in(role=role)
    patient = make_patient(user.team_id, display_name=NAME, phone=PHONE)
    seed_expired(session, user.team_id, patient.id, now)
    return user


def test_an_admin_sees_what_is_due_and_applies_the_rules(
    client, session: Session, signed_in, make_patient, clock
) -> None:
    admin = signed_in_with_expired_rows(signed_in, make_patient, session, clock.now, "admin")
    page = client.get("/admin/retention")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "30 days" in text and "90 days" in text
    # One SMS from an unknown number and one sent SMS past their periods.
    assert '<dd id="due-unknown">1</dd>' in text and '<dd id="due-details">1</dd>' in text
    assert PHONE not in text and STRANGER not in text and NAME not in text

    answer = post_form(client, "/admin/retention/run", {}, page="/admin/retention")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/admin/retention")
    assert state(session) == (["SMrecent"], [None, PHONE])
    shown = client.get("/admin/retention").get_data(as_text=True)
    assert "1 SMS from unknown numbers deleted" in shown
    rows = session.execute(
        select(AuditEvent).where(AuditEvent.action == AuditAction.RUN_RETENTION)
    ).scalars()
    (row,) = list(rows)
    assert (row.user_id, row.channel, row.target) == (
        admin.id,
        AuditChannel.DASHBOARD,
        "unknown_sms:1,delivery_details:1",
    )


def test_a_nurse_is_refused_the_page_and_the_button(
    client, session: Session, signed_in, make_patient, clock
) -> None:
    signed_in_with_expired_rows(signed_in, make_patient, session, clock.now, "nurse")
    assert client.get("/admin/retention").status_code == 403
    answer = post_form(client, "/admin/retention/run", {}, page="/account")
    assert answer.status_code == 403
    assert state(session) == (["SMold", "SMrecent"], [PHONE, PHONE])


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_the_retention_page_in_a_browser(
    live: LiveApp,  # noqa: F811
    page_at: Callable[..., Page],
    artifacts_dir: Path,
    width: int,
) -> None:
    with Session(live.engine, expire_on_commit=False) as session:
        patient = session.get(Patient, live.patient_id)
        admin = session.execute(select(User).where(User.email == ADMIN)).scalar_one()
        assert admin.team_id == patient.team_id
        seed_expired(session, patient.team_id, patient.id, live.clock.now)
    page = fresh_page(page_at, width)
    sign_in(page, live, ADMIN)
    page.goto(live.url("/admin"))
    page.get_by_role("link", name="Retention").click()
    page.wait_for_url("**/admin/retention")
    check_page(page, artifacts_dir, "retention", width)
    page.get_by_role("button", name="Apply the rules now").click()
    page.wait_for_url("**/admin/retention")
    assert "1 SMS from unknown numbers deleted" in page.locator(".flashes").inner_text()
    check_page(page, artifacts_dir, "retention-applied", width)
    assert not page.js_errors  # type: ignore[attr-defined]
