"""No patient SMS without the team's care phone, through the API (SQLite and PostgreSQL).

Every SMS tells the patient to call the team's care phone; a team may exist without one
(``create-user`` without ``--team-phone``). Enrolling with SMS consent, or turning it on,
is refused (409, the API's error body, field ``sms_consent``) until the team has one;
without consent the patient is enrolled and treated as before, and gets no SMS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlmodel import Session, select

from backend.dashboard.team_admin import set_team_phones
from backend.db import get_engine
from backend.schemas import PatientIn
from backend.services.care_phone import SET_CARE_PHONE_FIRST, sms_patient_count
from backend.services.patients import create_patient
from reminders.data.db import writer
from reminders.data.errors import Conflict
from reminders.data.models import OutboundMessage, Patient, Team
from tests.conftest import bearer, reread

TEAM = "Hématologie — Cliniques universitaires Saint-Luc"
PATIENT = {
    "display_name": "Marie-Thérèse Vandenbroucke-Delacroix",
    "phone": "0470 12 34 56",
    "language": "fr",
}
REFUSAL = {"error": "conflict", "message": SET_CARE_PHONE_FIRST, "field": "sms_consent"}


def patient_messages(session, patient_id: int) -> list[OutboundMessage]:
    reread(session)
    return list(
        session.exec(select(OutboundMessage).where(OutboundMessage.patient_id == patient_id)).all()
    )


def test_sms_consent_is_refused_until_the_team_has_a_care_phone(client, make_user, session) -> None:
    user, token = make_user(team=TEAM, care_phone=None)

    with_sms = client.post(
        "/api/v1/patients", json={**PATIENT, "sms_consent": True}, headers=bearer(token)
    )

    assert with_sms.status_code == 409, with_sms.json
    assert with_sms.json == REFUSAL
    assert "Team settings" in with_sms.json["message"]
    reread(session)
    assert session.exec(select(Patient)).all() == []

    # Without SMS: enrolled, a plan started, nothing for the patient in the outbox.
    created = client.post("/api/v1/patients", json=PATIENT, headers=bearer(token))
    assert created.status_code == 201, created.json
    patient_id = created.json["id"]
    plan = client.post(
        f"/api/v1/patients/{patient_id}/plans",
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
        headers=bearer(token),
    )
    assert plan.status_code == 201, plan.json
    assert patient_messages(session, patient_id) == []

    turned_on = client.patch(
        f"/api/v1/patients/{patient_id}", json={"sms_consent": True}, headers=bearer(token)
    )
    assert turned_on.status_code == 409 and turned_on.json == REFUSAL
    reread(session)
    assert session.get(Patient, patient_id).sms_consent is False
    assert patient_messages(session, patient_id) == []

    # Other changes of the same patient are not held up.
    moved = client.patch(
        f"/api/v1/patients/{patient_id}", json={"language": "nl"}, headers=bearer(token)
    )
    assert moved.status_code == 200, moved.json

    team = reread(session).get(Team, user.team_id)
    team.care_phone = "+3227641111"
    session.add(team)
    session.commit()
    consented = client.patch(
        f"/api/v1/patients/{patient_id}", json={"sms_consent": True}, headers=bearer(token)
    )
    assert consented.status_code == 200, consented.json
    assert consented.json["sms_consent"] is True
    kinds = {m.kind for m in patient_messages(session, patient_id)}
    assert "welcome" in kinds


def test_a_team_with_a_care_phone_enrols_with_sms_as_before(client, make_user, session) -> None:
    _, token = make_user(team=TEAM, care_phone="+32 2 764 11 11")

    created = client.post(
        "/api/v1/patients", json={**PATIENT, "sms_consent": True}, headers=bearer(token)
    )

    assert created.status_code == 201, created.json
    [welcome] = patient_messages(session, created.json["id"])
    assert welcome.kind == "welcome"


def test_the_refusal_is_about_the_callers_team_only(client, make_user) -> None:
    """Another team's missing number does not hold up a team that has one, and vice versa."""
    _, without = make_user(team=TEAM, care_phone=None)
    _, with_phone = make_user(team="AZ Sint-Jan Hematologie", care_phone="+32 50 45 21 11")

    refused = client.post(
        "/api/v1/patients", json={**PATIENT, "sms_consent": True}, headers=bearer(without)
    )
    enrolled = client.post(
        "/api/v1/patients", json={**PATIENT, "sms_consent": True}, headers=bearer(with_phone)
    )

    assert refused.status_code == 409 and enrolled.status_code == 201, enrolled.json


def _at_once(app, calls: list[Callable[[Session], object]]) -> list[str]:
    """Run each call at once in its own thread and session (a web worker each), committing
    each: "done", or the field of the Conflict that refused it."""
    engine = writer(get_engine(app))
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def run(index: int) -> None:
        with Session(engine, expire_on_commit=False) as own:
            barrier.wait(timeout=30)
            try:
                calls[index](own)
                own.commit()
                outcomes[index] = "done"
            except Conflict as refused:
                own.rollback()
                outcomes[index] = refused.field or "conflict"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_an_enrolment_with_sms_and_the_numbers_removal_at_once_never_both_happen(
    app, make_user, session, clock
) -> None:
    """A nurse enrols with SMS while an admin clears the number: one of them is refused.

    The enrolment reads the team's row FOR SHARE, the removal locks it before counting
    (PostgreSQL); SQLite serialises the two write transactions.
    """
    for attempt in range(4):
        user, _ = make_user(team=f"{TEAM} {attempt}", care_phone="+32 2 764 11 11")
        patient = PatientIn(
            display_name="Marie-Thérèse Vandenbroucke-Delacroix",
            phone=f"+32 470 55 66 {attempt:02d}",
            sms_consent=True,
        )

        def enrol(own: Session, patient: PatientIn = patient, team_id: int = user.team_id) -> None:
            create_patient(own, team_id, patient, clock.now, region="BE")

        def remove(own: Session, team_id: int = user.team_id) -> None:
            team = own.get(Team, team_id)
            set_team_phones(own, team, care_phone=None, oncall_phone=None, region="BE")

        outcomes = _at_once(app, [enrol, remove])

        assert sorted(outcomes) in (["care_phone", "done"], ["done", "sms_consent"]), outcomes
        team = reread(session).get(Team, user.team_id)
        assert team.care_phone or sms_patient_count(session, team.id) == 0
