"""The care-team pages in headless Chromium, at phone (360x800) and desktop (1280x900) sizes.

A real server (werkzeug, in a thread, on 127.0.0.1) runs the app on SQLite with
an injectable clock. The fever alert arrives as an SMS: a Twilio webhook signed
with the app's auth token is posted to the running server. Then a nurse signs
in, sees the urgent alert stand out in the queue, opens the patient,
acknowledges and resolves the alert, puts the plan on hold and sees the dose
reminders leave the upcoming messages. Every page is screenshotted to
``test-artifacts/screenshots/dashboard-*.png`` and checked by axe-core and for
horizontal scrolling.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlmodel import Session, SQLModel, select
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from backend import create_app
from backend.dashboard.queries import DOSE_REMINDER_KINDS
from backend.db import get_engine
from backend.schemas import PatientIn, PlanIn, ProphylaxisIn
from backend.services.oncall import add_shift
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.prophylaxis import add_course
from backend.services.teams import create_user
from reminders.data.models import Alert, OnCallShift, Patient, Plan, Team, User
from tests.backend.dashboard.conftest import PASSWORD, PLAN_START, TUESDAY
from tests.browser import (
    DESKTOP,
    MOBILE,
    check_accessibility,
    format_violations,
    no_horizontal_scroll,
    overflowing_elements,
)
from tests.conftest import Clock

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

TWILIO_TOKEN = "browser-test-auth-token"
WIDTHS = [MOBILE[0], DESKTOP[0]]
NURSE = "nurse@ward.example"
ADMIN = "admin@ward.example"
#: A real-length accented name, as the rota and the queue must show it at 360 px.
ON_CALL_NAME = "Dr Anne-Sophie Vandenbroucke-Lefèvre"


@dataclass
class LiveApp:
    """The running server, its clock and database, and the demo rows."""

    base_url: str
    clock: Clock
    engine: object
    patient_id: int
    plan_id: int
    patient_phone: str

    def url(self, path: str) -> str:
        return self.base_url + path


def _seed(session: Session, now) -> tuple[Patient, Plan]:
    nurse = create_user(
        session,
        email=NURSE,
        team_name="Ward 5",
        role="nurse",
        now=now,
        password=PASSWORD,
        name="Nora Nurse",
        care_phone="+32 2 555 01 23",
    )
    admin = create_user(
        session,
        email=ADMIN,
        team_name="Ward 5",
        role="admin",
        now=now,
        password=PASSWORD,
        name=ON_CALL_NAME,
        phone="+32 470 11 22 33",
        language="fr",
    )
    # The admin is primary on call today and tomorrow; nobody is backup: the queue says so.
    team = session.get(Team, admin.team_id)
    team.oncall_phone = "+3227641111"
    add_shift(
        session,
        team,
        user_id=admin.id,
        role="primary",
        starts_at=datetime(2026, 3, 3, 8, 0),
        ends_at=datetime(2026, 3, 4, 8, 0),
        actor=admin,
        now=now,
    )
    patient = create_patient(
        session,
        nurse.team_id,
        PatientIn(
            display_name="Anna Peeters",
            hospital_ref="H-2041",
            phone="+32 470 12 34 56",
            sms_consent=True,
            height_cm=168,
            weight_kg=64,
        ),
        now,
        region="BE",
    )
    plan = start_plan(
        session, patient, PlanIn(regimen_id="alemtuzumab_sc", start_date=PLAN_START), None, now
    )
    for drug in ("cotrimoxazole", "acyclovir"):
        add_course(
            session,
            patient,
            ProphylaxisIn(
                drug=drug,
                dose_text="as prescribed",
                times=["08:00", "20:00"],
                start_date=PLAN_START,
                plan_id=plan.id,
            ),
            now,
        )
    # A patient of another team, who must never show up.
    other = create_user(
        session, email="other@elsewhere.example", team_name="Other", role="nurse", now=now,
        care_phone="+32 9 332 21 11",
    )  # fmt: skip
    create_patient(
        session,
        other.team_id,
        PatientIn(display_name="Somebody Else", phone="+32 470 99 88 77", sms_consent=True),
        now,
        region="BE",
    )
    session.commit()
    return patient, plan


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    """The app on a fresh SQLite file, served on 127.0.0.1 by a real HTTP server."""
    clock = Clock(TUESDAY)
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'live.sqlite3'}",
            "SECRET_KEY": "browser-test-secret",
            "SESSION_COOKIE_SECURE": False,  # plain http on 127.0.0.1
            "SMS_BACKEND": "console",
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "DEFAULT_REGION": "BE",
            "CLOCK": clock,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    engine = get_engine(app)
    SQLModel.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        patient, plan = _seed(session, clock.now)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base  # what Twilio would sign
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(base, clock, engine, patient.id, plan.id, patient.phone)
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()


def send_sms(live: LiveApp, body: str, sid: str) -> str:
    """Post a Twilio-signed incoming SMS to the running server; return the TwiML answer."""
    url = live.url("/twilio/sms")
    params = {"MessageSid": sid, "From": live.patient_phone, "To": "+3225550123", "Body": body}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def check_page(page: Page, artifacts: Path, name: str, width: int) -> None:
    """Screenshot the page, then require no axe violation and no horizontal scrolling."""
    page.screenshot(path=str(artifacts / f"dashboard-{name}-{width}.png"), full_page=True)
    violations = check_accessibility(page)
    assert not violations, f"{name} at {width}px:\n{format_violations(violations)}"
    assert no_horizontal_scroll(page), f"{name} wider than {width}px: {overflowing_elements(page)}"


def fresh_page(page_at: Callable[..., Page], width: int) -> Page:
    """A tab with no cookies from an earlier test (contexts are shared by the session)."""
    page = page_at(width)
    page.context.clear_cookies()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            # A form refused with 422 (errors in place) or the not-found page is expected.
            if msg.type == "error" and not re.search(r"status of 40[04]|status of 422", msg.text)
            else None
        ),
    )
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, live: LiveApp, email: str = NURSE) -> None:
    page.goto(live.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/queue")


def upcoming_kinds(page: Page) -> list[str]:
    return page.eval_on_selector_all("#upcoming-list li", "els => els.map(e => e.dataset.kind)")


@pytest.mark.parametrize("width", WIDTHS)
def test_fever_by_sms_to_hold(
    live: LiveApp, page_at: Callable[..., Page], artifacts_dir: Path, width: int
) -> None:
    # 1. The patient texts a fever: the webhook answers with the urgent advice.
    twiml = send_sms(live, "38,6", f"SMbrowser{width}")
    assert "<Message " in twiml
    live.clock.advance(minutes=20)  # nobody has looked yet: the alert must stand out

    page = fresh_page(page_at, width)
    page.goto(live.url("/login"))
    check_page(page, artifacts_dir, "login", width)
    sign_in(page, live)

    # 2. The queue shows the urgent fever alert, flagged as waiting too long.
    card = page.locator(".alert-card").first
    assert "urgent" in card.get_attribute("class")
    assert "overdue" in card.get_attribute("class")
    assert "Anna Peeters" in card.inner_text()
    assert "38.6" in card.inner_text()
    assert "Somebody Else" not in page.content()
    on_call = page.locator(".oncall-now").inner_text()
    assert ON_CALL_NAME in on_call and "Nobody is backup now." in on_call
    check_page(page, artifacts_dir, "queue", width)

    # 3. The patient page: timeline, charts, thread with the fever SMS, dose reminders due.
    card.get_by_role("link", name="Anna Peeters", exact=True).click()
    page.wait_for_url(f"**/patients/{live.patient_id}")
    assert page.locator("svg#temperature-chart").count() == 1
    assert page.locator("svg#plan-timeline").count() == 1
    assert "38,6" in page.locator("#messages").inner_text()
    before = upcoming_kinds(page)
    assert DOSE_REMINDER_KINDS & set(before), before
    check_page(page, artifacts_dir, "patient", width)

    # 4. Acknowledge from the queue, then resolve with a note on the alert page.
    page.goto(live.url("/queue"))
    page.locator(".alert-card").first.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**/queue")
    assert "acknowledged" in page.locator(".alert-card").first.inner_text().lower()
    assert "Nora Nurse" in page.locator(".alert-card").first.inner_text()
    page.locator(".alert-card").first.get_by_role("link", name="Resolve").click()
    page.get_by_role("button", name="Resolve alert").click()  # no note: refused in place
    assert page.locator("#f-note-error").is_visible()
    assert page.locator("#f-note").get_attribute("aria-invalid") == "true"
    check_page(page, artifacts_dir, "alert-error", width)
    page.get_by_label("Resolution note").fill("Called patient, sent to day unit; CMV PCR taken.")
    page.get_by_role("button", name="Resolve alert").click()
    page.wait_for_url("**/queue")
    assert page.locator(".alert-card").count() == 0
    check_page(page, artifacts_dir, "queue-empty", width)
    with Session(live.engine) as session:
        alert = session.exec(select(Alert).where(Alert.kind != "patient_message")).one()
        nurse = session.exec(select(User).where(User.email == NURSE)).one()
        assert alert.status == "resolved"
        assert alert.acknowledged_by == nurse.id and alert.resolved_by == nurse.id
        assert alert.resolved_at == live.clock.now

    # 5. Hold the plan: the dose reminders leave the upcoming messages.
    page.goto(live.url(f"/plans/{live.plan_id}"))
    check_page(page, artifacts_dir, "plan", width)
    page.get_by_label("Reason").first.fill("Febrile episode: hold until CMV PCR result")
    page.get_by_role("button", name="Put plan on hold").click()
    page.wait_for_url(f"**/patients/{live.patient_id}")
    assert "dose reminders have stopped" in page.locator(".flashes").inner_text()
    after = upcoming_kinds(page)
    assert not DOSE_REMINDER_KINDS & set(after), after
    assert "on hold" in page.locator("#treatment").inner_text()
    check_page(page, artifacts_dir, "patient-on-hold", width)
    assert not page.js_errors  # type: ignore[attr-defined]


#: Every other page, as (screenshot name, path); ``{p}`` and ``{plan}`` are filled in.
PAGES = [
    ("patients", "/patients"),
    ("enrol", "/patients/new"),
    ("edit", "/patients/{p}/edit"),
    ("lab", "/patients/{p}/labs/new"),
    ("sms", "/patients/{p}/sms/new"),
    ("phone", "/patients/{p}/phone"),
    ("start-regimen", "/patients/{p}/plans/new?regimen_id=rituximab_cll_chemo"),
    ("admin", "/admin"),
    ("oncall", "/admin/oncall"),
    ("escalation", "/admin/escalation"),
    ("account", "/account"),
    ("audit", "/audit"),
    ("not-found", "/patients/999999"),
]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_is_accessible(
    live: LiveApp, page_at: Callable[..., Page], artifacts_dir: Path, width: int
) -> None:
    page = fresh_page(page_at, width)
    sign_in(page, live, ADMIN)
    for name, path in PAGES:
        page.goto(live.url(path.format(p=live.patient_id, plan=live.plan_id)))
        assert page.locator("h1").count() == 1, name
        check_page(page, artifacts_dir, name, width)
    # Forms with errors in place are accessible too.
    page.goto(live.url("/patients/new"))
    page.get_by_label("Mobile phone").fill("12")
    page.get_by_label("Height (cm)").fill("tall")
    page.get_by_role("button", name="Enrol patient").click()
    assert page.locator(".error-summary").is_visible()
    assert page.locator("#f-display_name-error").is_visible()
    assert page.locator("#f-height_cm-error").is_visible()
    check_page(page, artifacts_dir, "enrol-errors", width)
    assert not page.js_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_edits_the_rota_and_the_policy(
    live: LiveApp, page_at: Callable[..., Page], artifacts_dir: Path, width: int
) -> None:
    page = fresh_page(page_at, width)
    sign_in(page, live, ADMIN)
    page.get_by_role("link", name="On call", exact=True).click()
    page.wait_for_url("**/admin/oncall")
    assert ON_CALL_NAME in page.locator(".rota").inner_text()
    # A shift ending before it starts is refused in place.
    page.get_by_label("Member").select_option(label="Nora Nurse (no phone)")
    page.get_by_label("Role").select_option("backup")
    page.get_by_label("Starts").fill("2026-03-29T02:30")
    page.get_by_label("Ends").fill("2026-03-28T20:00")
    page.get_by_role("button", name="Add shift").click()
    assert page.locator("#shift-f-ends_at-error").is_visible()
    check_page(page, artifacts_dir, "oncall-error", width)
    # The nurse has no phone yet: she sets it on her account page.
    with Session(live.engine) as session:
        nurse = session.exec(select(User).where(User.email == NURSE)).one()
        nurse.phone = f"+3247055{width:04d}"
        session.add(nurse)
        session.commit()
    page.get_by_label("Ends").fill("2026-03-29T08:00")
    page.get_by_label("Starts").fill("2026-03-28T20:00")
    page.get_by_role("button", name="Add shift").click()
    page.wait_for_url("**/admin/oncall")
    assert "Shift added: backup" in page.locator(".flashes").inner_text()
    with Session(live.engine) as session:
        added = session.exec(select(OnCallShift).where(OnCallShift.role == "backup")).one()
        assert added.ends_at - added.starts_at == timedelta(hours=11)  # the short night
        session.delete(added)
        session.commit()
    # The policy: a second step without a later time is refused next to its field.
    page.goto(live.url("/admin/escalation"))
    page.locator("#f-step-1-after_minutes").fill("0")
    page.get_by_role("button", name="Save policy").click()
    assert page.locator("#f-step-1-after_minutes-error").is_visible()
    check_page(page, artifacts_dir, "escalation-error", width)
    assert not page.js_errors  # type: ignore[attr-defined]


def test_phone_simulator_reply_reaches_the_queue(
    live: LiveApp, page_at: Callable[..., Page], artifacts_dir: Path
) -> None:
    page = fresh_page(page_at, MOBILE[0])
    sign_in(page, live)
    page.goto(live.url(f"/patients/{live.patient_id}/phone"))
    page.get_by_label("Reply as the patient").fill("39.1 and cough")
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_url(f"**/patients/{live.patient_id}/phone#latest")
    thread = page.locator(".thread").inner_text()
    assert "39.1 and cough" in thread
    check_page(page, artifacts_dir, "phone-after-reply", MOBILE[0])
    page.goto(live.url("/queue"))
    assert "39.1" in page.locator(".alert-card.sev-urgent").first.inner_text()


def test_keyboard_only_sign_in_and_skip_link(live: LiveApp, page_at: Callable[..., Page]) -> None:
    page = fresh_page(page_at, DESKTOP[0])
    page.goto(live.url("/login"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    page.keyboard.type(NURSE)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/queue")
    # A visible focus ring on the first control after the skip link.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_idle_session_ends(live: LiveApp, page_at: Callable[..., Page]) -> None:
    page = fresh_page(page_at, MOBILE[0])
    sign_in(page, live)
    live.clock.advance(minutes=31)
    page.goto(live.url("/queue"))
    assert "/login" in page.url
    assert "session ended" in page.locator(".flashes").inner_text()
