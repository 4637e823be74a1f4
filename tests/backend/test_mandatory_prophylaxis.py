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
from typing import Any

import pytest
from sqlalchemy import delete
from sqlmodel import Session, select

from backend.db import get_engine
from backend.schemas import PlanIn
from backend.services.plans import start_plan
from reminders.data.errors import Conflict
from reminders.data.models import Alert, OutboundMessage, Patient, ProphylaxisCourse
from reminders.data.prophylaxis import propose_regimen_courses
from reminders.gateways import ConsoleGateway
from reminders.jobs import prophylaxis_check_job, run_due
from tests.conftest import Clock, bearer, reread

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
        "aciclovir",
    }, "starting the plan proposed no prophylaxis course"
    # Two days later, nobody confirmed them: the team must have been told.
    later = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    run_due(get_engine(app), ConsoleGateway(io.StringIO()), later)
    alerts = reread(session).exec(select(Alert).where(Alert.patient_id == patient.id)).all()
    assert [a.kind for a in alerts if a.severity == "high"] == ["prophylaxis_missing"]


# --- helpers --------------------------------------------------------------------------------

#: The plan was entered at 10:00 UTC on its start date (tests/conftest.py FIXED_NOW), later
#: than the local start of that date (23:00 UTC the day before): checked 24 h after that.
DUE = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
DRUGS = {"cotrimoxazole": "cotrimoxazole (trimethoprim/sulfamethoxazole)", "acyclovir": "aciclovir"}


@pytest.fixture
def on_alemtuzumab(app, session: Session, make_user, make_patient, make_plan) -> dict[str, Any]:
    """A consenting patient of team A on alemtuzumab s.c. from today; team A's and B's tokens."""
    user, token = make_user(team="Team A")
    _, other = make_user(team="Team B")
    patient = make_patient(
        user.team_id,
        display_name=NAME,
        hospital_ref="UZ-2026-004711",
        pill_times=["08:00", "20:00"],
    )
    plan = make_plan(patient, "alemtuzumab_sc", START)
    courses = {
        c.regimen_entry: c
        for c in session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
    }
    return {
        "user": user,
        "token": token,
        "other": other,
        "patient": patient,
        "plan": plan,
        "courses": courses,
    }


def _alerts(session: Session, patient: Patient) -> list[Alert]:
    return list(
        reread(session).exec(
            select(Alert).where(Alert.patient_id == patient.id, Alert.kind == "prophylaxis_missing")
        )
    )


def _pill_rows(session: Session, patient: Patient) -> list[OutboundMessage]:
    return list(
        reread(session).exec(
            select(OutboundMessage)
            .where(OutboundMessage.patient_id == patient.id, OutboundMessage.course_id.is_not(None))
            .order_by(OutboundMessage.due_at)
        )
    )


def _confirm(client, token: str, course_id: int, **body: Any) -> Any:
    payload = {"dose_text": "960 mg three times a week", "times": ["08:00"]} | body
    return client.post(
        f"/api/v1/prophylaxis/{course_id}/confirm", json=payload, headers=bearer(token)
    )


# --- proposed at the start ------------------------------------------------------------------


def test_starting_the_plan_proposes_each_regimen_course_without_a_dose(on_alemtuzumab) -> None:
    courses = on_alemtuzumab["courses"]
    assert set(courses) == {"cotrimoxazole", "acyclovir"}
    for entry_id, course in courses.items():
        assert course.status == "proposed"
        assert course.drug == DRUGS[entry_id]
        assert course.dose_text == ""  # the sources give no dose: the team enters it
        assert course.times == ["08:00", "20:00"]  # the patient's pill times
        assert course.start_date == START  # start_day = 1
        assert course.min_months_after_last_dose == 6 and course.cd4_rule is True
        assert course.patient_id == on_alemtuzumab["patient"].id


def test_proposing_again_does_not_duplicate(on_alemtuzumab, session: Session, clock: Clock) -> None:
    plan, patient = on_alemtuzumab["plan"], on_alemtuzumab["patient"]
    assert propose_regimen_courses(session, plan, patient, clock.now) == []
    with pytest.raises(Conflict):  # the same plan cannot be started twice either
        start_plan(
            session, patient, PlanIn(regimen_id="alemtuzumab_sc", start_date=START), None, clock.now
        )
    session.rollback()
    count = (
        reread(session)
        .exec(select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id))
        .all()
    )
    assert len(count) == 2


def test_a_regimen_without_prophylaxis_proposes_nothing_and_never_alerts(
    app, session: Session, make_user, make_patient, make_plan
) -> None:
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    make_plan(patient, "rituximab_fl_maintenance", START)
    assert reread(session).exec(select(ProphylaxisCourse)).all() == []
    assert prophylaxis_check_job(get_engine(app), DUE + timedelta(days=30)) == 0
    assert _alerts(session, patient) == []


def test_proposed_courses_show_in_the_api_as_proposed_and_not_eligible_to_stop(
    client, on_alemtuzumab
) -> None:
    patient = on_alemtuzumab["patient"]
    response = client.get(
        f"/api/v1/patients/{patient.id}/prophylaxis", headers=bearer(on_alemtuzumab["token"])
    )
    assert response.status_code == 200
    by_entry = {c["regimen_entry"]: c for c in response.json}
    assert set(by_entry) == {"cotrimoxazole", "acyclovir"}
    for course in by_entry.values():
        assert course["status"] == "proposed"
        assert course["dose_text"] == ""
        assert course["confirmed_at"] is None
        assert course["stop_eligibility"]["eligible"] is False
        assert "proposed" in course["stop_eligibility"]["missing"][0]


# --- no pill while proposed; pills once confirmed -------------------------------------------


def test_no_pill_reminder_while_proposed_and_pills_flow_once_confirmed(
    app, client, session: Session, on_alemtuzumab, clock: Clock
) -> None:
    patient, token = on_alemtuzumab["patient"], on_alemtuzumab["token"]
    engine, gateway = get_engine(app), ConsoleGateway(io.StringIO())
    run_due(engine, gateway, datetime(2026, 3, 2, 19, 30, tzinfo=UTC))  # past 20:00 Brussels
    assert _pill_rows(session, patient) == []
    # Tuesday 11:00 Brussels: the nurse confirms acyclovir; the 08:00 pill of the morning
    # had not been prescribed yet, so nothing is sent (or counted missed) for it.
    clock.now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    course = on_alemtuzumab["courses"]["acyclovir"]
    response = _confirm(
        client, token, course.id, dose_text="400 mg twice a day", times=["08:00", "20:00"]
    )
    assert response.status_code == 200, response.json
    assert response.json["status"] == "active"
    assert response.json["dose_text"] == "400 mg twice a day"
    assert response.json["confirmed_at"].startswith("2026-03-03T10:00")
    rows = _pill_rows(session, patient)
    assert rows and {r.course_id for r in rows} == {course.id}
    assert min(r.due_at for r in rows) == datetime(2026, 3, 3, 19, 0, tzinfo=UTC)  # 20:00 local
    assert rows[0].body.startswith("Time for your aciclovir (20:00).")  # the INN in the SMS
    # The still-proposed cotrimoxazole sends nothing, on any later pass.
    run_due(engine, gateway, datetime(2026, 3, 4, 6, 0, tzinfo=UTC))
    assert {r.course_id for r in _pill_rows(session, patient)} == {course.id}


def test_confirm_may_change_the_drug_and_weekdays(client, on_alemtuzumab) -> None:
    course = on_alemtuzumab["courses"]["acyclovir"]
    response = _confirm(
        client,
        on_alemtuzumab["token"],
        course.id,
        drug="valacyclovir",
        dose_text="500 mg twice a day",
        times=["08:00", "20:00"],
        weekdays=[0, 2, 4],
    )
    assert response.status_code == 200, response.json
    assert response.json["drug"] == "valacyclovir"
    assert response.json["weekdays"] == [0, 2, 4]
    assert response.json["regimen_entry"] == "acyclovir"


# --- the alert ------------------------------------------------------------------------------


def test_the_alert_fires_24_hours_after_the_start_not_before_and_only_once(
    app, session: Session, on_alemtuzumab
) -> None:
    engine, patient = get_engine(app), on_alemtuzumab["patient"]
    assert prophylaxis_check_job(engine, DUE - timedelta(minutes=1)) == 0
    assert _alerts(session, patient) == []
    assert prophylaxis_check_job(engine, DUE) == 1
    assert prophylaxis_check_job(engine, DUE + timedelta(hours=5)) == 0
    run_due(engine, ConsoleGateway(io.StringIO()), DUE + timedelta(days=3))
    [alert] = _alerts(session, patient)
    assert alert.severity == "high" and alert.status == "open"
    assert alert.details == {
        "plan_id": on_alemtuzumab["plan"].id,
        "missing": ["cotrimoxazole", "acyclovir"],
    }
    assert DRUGS["cotrimoxazole"] in alert.reason and DRUGS["acyclovir"] in alert.reason
    assert "003_a1949903592dbecf.txt (Table 4)" in alert.reason
    assert "003_a1949903592dbecf.txt" in alert.source and "002_56971d7eaf23c097.txt" in alert.source
    assert "issue 11 (care-team operating policy)" in alert.source
    assert NAME not in alert.reason  # the alert names the plan, not the patient (logs, SMS)


def test_no_alert_when_the_team_decided_in_time(
    app, client, session: Session, on_alemtuzumab, clock: Clock
) -> None:
    token, courses = on_alemtuzumab["token"], on_alemtuzumab["courses"]
    clock.now = DUE - timedelta(hours=2)
    assert _confirm(client, token, courses["acyclovir"].id).status_code == 200
    declined = client.post(
        f"/api/v1/prophylaxis/{courses['cotrimoxazole'].id}/decline",
        json={"reason": "allergic to cotrimoxazole: pentamidine inhalation, entered as a course"},
        headers=bearer(token),
    )
    assert declined.status_code == 200, declined.json
    assert declined.json["status"] == "declined"
    assert declined.json["decline_reason"].startswith("allergic to cotrimoxazole")
    assert declined.json["stop_eligibility"]["eligible"] is False
    assert prophylaxis_check_job(get_engine(app), DUE + timedelta(days=2)) == 0
    assert _alerts(session, on_alemtuzumab["patient"]) == []


def test_one_confirmed_course_still_leaves_the_other_missing(
    app, client, session: Session, on_alemtuzumab, clock: Clock
) -> None:
    clock.now = DUE - timedelta(hours=1)
    assert _confirm(client, on_alemtuzumab["token"], on_alemtuzumab["courses"]["acyclovir"].id)
    assert prophylaxis_check_job(get_engine(app), DUE) == 1
    [alert] = _alerts(session, on_alemtuzumab["patient"])
    assert alert.details["missing"] == ["cotrimoxazole"]
    assert "acyclovir" not in alert.reason


def test_deciding_after_the_alert_resolves_it_and_no_alert_follows(
    app, client, session: Session, on_alemtuzumab, clock: Clock
) -> None:
    engine, token, courses = get_engine(app), on_alemtuzumab["token"], on_alemtuzumab["courses"]
    assert prophylaxis_check_job(engine, DUE) == 1
    clock.now = DUE + timedelta(hours=1)
    assert _confirm(client, token, courses["acyclovir"].id).status_code == 200
    [alert] = _alerts(session, on_alemtuzumab["patient"])
    assert alert.status == "open"  # cotrimoxazole is still undecided
    assert _confirm(client, token, courses["cotrimoxazole"].id).status_code == 200
    [alert] = _alerts(session, on_alemtuzumab["patient"])
    assert alert.status == "resolved"
    assert alert.resolved_by == on_alemtuzumab["user"].id
    assert prophylaxis_check_job(engine, DUE + timedelta(days=5)) == 0


def test_a_plan_entered_mid_treatment_gets_a_day_from_its_entry(
    app, session: Session, make_user, make_patient, clock: Clock
) -> None:
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    start_plan(
        session,
        patient,
        PlanIn(regimen_id="alemtuzumab_iv", start_date=date(2026, 2, 9)),
        user.id,
        clock.now,
    )
    session.commit()
    engine = get_engine(app)
    assert prophylaxis_check_job(engine, clock.now + timedelta(hours=23, minutes=59)) == 0
    assert prophylaxis_check_job(engine, clock.now + timedelta(hours=24)) == 1


def test_a_plan_from_before_proposals_gets_them_and_the_alert(
    app, session: Session, on_alemtuzumab
) -> None:
    plan = on_alemtuzumab["plan"]
    session.execute(delete(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id))
    session.commit()
    assert prophylaxis_check_job(get_engine(app), DUE) == 1
    courses = (
        reread(session)
        .exec(select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id))
        .all()
    )
    assert sorted((c.regimen_entry, c.status) for c in courses) == [
        ("acyclovir", "proposed"),
        ("cotrimoxazole", "proposed"),
    ]


def test_a_stopped_plan_is_not_checked(app, client, session: Session, on_alemtuzumab) -> None:
    response = client.post(
        f"/api/v1/plans/{on_alemtuzumab['plan'].id}/stop",
        json={"reason": "patient declined treatment"},
        headers=bearer(on_alemtuzumab["token"]),
    )
    assert response.status_code == 200, response.json
    assert prophylaxis_check_job(get_engine(app), DUE) == 0


# --- the routes: team scoping, bad input, wrong state ---------------------------------------


@pytest.mark.parametrize("action", ["confirm", "decline"])
def test_another_team_gets_404_and_changes_nothing(
    client, session: Session, on_alemtuzumab, action: str
) -> None:
    course = on_alemtuzumab["courses"]["acyclovir"]
    body = (
        {"dose_text": "400 mg", "times": ["08:00"]}
        if action == "confirm"
        else {"reason": "not needed"}
    )
    response = client.post(
        f"/api/v1/prophylaxis/{course.id}/{action}",
        json=body,
        headers=bearer(on_alemtuzumab["other"]),
    )
    assert response.status_code == 404
    assert reread(session).get(ProphylaxisCourse, course.id).status == "proposed"


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("confirm", {"times": ["08:00"]}, "dose_text"),
        ("confirm", {"dose_text": "", "times": ["08:00"]}, "dose_text"),
        ("confirm", {"dose_text": "400 mg", "times": []}, "times"),
        ("confirm", {"dose_text": "400 mg", "times": ["25:00"]}, "times"),
        ("confirm", {"dose_text": "400 mg", "times": ["08:00"], "weekdays": [7]}, "weekdays"),
        ("confirm", {"dose_text": "400 mg", "times": ["08:00"], "status": "active"}, "status"),
        (
            "confirm",
            {"dose_text": "400 mg", "times": ["08:00"], "start_date": "2026-02-30"},
            "start_date",
        ),
        ("decline", {}, "reason"),
        ("decline", {"reason": ""}, "reason"),
        ("decline", {"reason": "x" * 501}, "reason"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client, session: Session, on_alemtuzumab, action: str, body: dict, field: str
) -> None:
    course = on_alemtuzumab["courses"]["cotrimoxazole"]
    response = client.post(
        f"/api/v1/prophylaxis/{course.id}/{action}",
        json=body,
        headers=bearer(on_alemtuzumab["token"]),
    )
    assert response.status_code == 422, response.json
    assert response.json["field"].split(".")[0] == field
    assert reread(session).get(ProphylaxisCourse, course.id).status == "proposed"


def test_a_start_before_the_plan_is_refused(client, on_alemtuzumab) -> None:
    response = _confirm(
        client,
        on_alemtuzumab["token"],
        on_alemtuzumab["courses"]["acyclovir"].id,
        start_date="2026-02-27",
    )
    assert response.status_code == 422
    assert response.json["field"] == "start_date"


def test_only_a_proposed_course_is_confirmed_or_declined_and_a_proposal_is_never_stopped(
    client, on_alemtuzumab
) -> None:
    token, course = on_alemtuzumab["token"], on_alemtuzumab["courses"]["acyclovir"]
    stop = client.post(
        f"/api/v1/prophylaxis/{course.id}/stop",
        json={"override_reason": "team decision"},
        headers=bearer(token),
    )
    assert stop.status_code == 409 and "proposed" in stop.json["message"]
    assert _confirm(client, token, course.id).status_code == 200
    assert _confirm(client, token, course.id).status_code == 409
    again = client.post(
        f"/api/v1/prophylaxis/{course.id}/decline",
        json={"reason": "changed mind"},
        headers=bearer(token),
    )
    assert again.status_code == 409
