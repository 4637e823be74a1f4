"""Demo data for the embedded quickstart: a care team, a nurse, a haematologist on call and a
patient mid-treatment."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlmodel import Session, select

from backend.schemas import PatientIn, PlanIn, ProphylaxisConfirmIn
from backend.services.oncall import add_shift
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.prophylaxis import confirm_course
from backend.services.teams import create_user
from backend.services.tokens import create_token
from reminders.core.dates import local_today
from reminders.data.models import ProphylaxisCourse, Team, User

DEMO_EMAIL = "nurse@demo.example"
DEMO_PASSWORD = "demo-password-123"
DEMO_TEAM = "Demo haematology"
DEMO_ONCALL_EMAIL = "oncall@demo.example"


def ensure_demo_data(session: Session, now: datetime, *, token_days: int) -> str | None:
    """Create the demo team, user and patient once; return the demo API token when created.

    The token is named "demo" and works ``token_days`` days (it is shown once, by the caller).
    """
    if session.exec(select(User).where(User.email == DEMO_EMAIL)).first() is not None:
        return None
    user = create_user(
        session,
        email=DEMO_EMAIL,
        team_name=DEMO_TEAM,
        role="admin",
        now=now,
        password=DEMO_PASSWORD,
        name="Demo Nurse",
        care_phone="+32 2 555 01 23",
    )
    team = session.get(Team, user.team_id)
    team.oncall_phone = "+32470999999"  # the ward's fallback number (the console prints pages)
    session.add(team)
    # The haematologist on call for the next four weeks (week-long shifts, the longest
    # the rota takes), so that an urgent reply shows the whole escalation in the console.
    doctor = create_user(
        session,
        email=DEMO_ONCALL_EMAIL,
        team_name=DEMO_TEAM,
        role="physician",
        now=now,
        name="Dr Demo On-Call",
        phone="+32 475 00 00 01",
    )
    for week in range(4):
        add_shift(
            session,
            team,
            user_id=doctor.id,
            role="primary",
            starts_at=now + timedelta(weeks=week),
            ends_at=now + timedelta(weeks=week + 1),
            actor=user,
            now=now,
        )
    patient = create_patient(
        session,
        user.team_id,
        PatientIn(
            display_name="Demo Patient",
            phone="+32 470 12 34 56",
            timezone="Europe/Brussels",
            language="en",
            sms_consent=True,
            # No quiet hours, so that the demo shows messages whatever the time of day.
            quiet_start=time(0, 0),
            quiet_end=time(0, 0),
            height_cm=172,
            weight_kg=70,
        ),
        now,
        region="BE",
    )
    # Started three weeks ago: inside the CMV risk window of alemtuzumab (days 14-58).
    start = local_today(patient.timezone, now) - timedelta(days=21)
    plan = start_plan(
        session, patient, PlanIn(regimen_id="alemtuzumab_sc", start_date=start), user.id, now
    )
    # The demo nurse has confirmed the courses the plan proposed (both mandatory).
    for course in session.exec(
        select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
    ).all():
        confirm_course(
            session,
            course,
            patient,
            ProphylaxisConfirmIn(
                dose_text="dose as prescribed by your care team", times=["08:00", "20:00"]
            ),
            user.id,
            now,
        )
    return create_token(session, user, name="demo", now=now, days=token_days, actor=None).secret
