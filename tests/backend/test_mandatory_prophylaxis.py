"""Mandatory prophylaxis (issue 11, item 6): proposed at plan start, confirmed by the team, alerted on.

All alemtuzumab patients must receive anti-infective prophylaxis
(003_a1949903592dbecf.txt, "Patient management issues" and Table 4; 002_56971d7eaf23c097.txt
calls it mandatory). Starting a plan proposes the courses; the team confirms or declines
them; a plan whose mandatory courses are still not active 24 hours after its start raises
one high alert.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, select

from backend.db import get_engine
from backend.models import Alert, ProphylaxisCourse
from reminders.gateways import ConsoleGateway
from reminders.jobs import run_due
from tests.conftest import reread

NAME = "Marie-Françoise Van den Bossche-Lefèvre"
#: Monday 2 March 2026, 10:00 UTC (11:00 in Brussels): the plan starts today.
START = date(2026, 3, 2)


def test_finding_a_plan_on_alemtuzumab_sc_runs_with_no_course_and_nothing_warns(
    app, session: Session, make_user, make_patient, make_plan, clock
) -> None:
    """The finding behind issue 11, item 6, reproduced with the real regimen."""
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    plan = make_plan(patient, "alemtuzumab_sc", START)
    courses = session.exec(
        select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
    ).all()
    assert {c.drug for c in courses} == {
        "cotrimoxazole (trimethoprim/sulfamethoxazole)",
        "acyclovir",
    }, "starting the plan proposed no prophylaxis course"
    # Two days later, nobody confirmed them: the team must have been told.
    later = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    run_due(get_engine(app), ConsoleGateway(io.StringIO()), later)
    alerts = reread(session).exec(select(Alert).where(Alert.patient_id == patient.id)).all()
    assert [a.kind for a in alerts if a.severity == "high"] == ["prophylaxis_missing"]
    assert timedelta(0) < later - datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
