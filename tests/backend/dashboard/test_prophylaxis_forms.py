"""The patient page's proposed prophylaxis: marked "proposed — confirm", confirmed or declined.

Starting alemtuzumab proposes cotrimoxazole and acyclovir (mandatory: 003, Patient
management issues and Table 4; 002); the nurse confirms them with the prescribed dose, or
declines one with a reason. Forms carry the CSRF token; another team gets 404.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, OutboundMessage, Patient, ProphylaxisCourse
from tests.backend.dashboard.conftest import PLAN_START, TUESDAY, post_form
from tests.conftest import reread

NAME = "Marie-Françoise Van den Bossche-Lefèvre"


def text(response: Any) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def proposed(client, signed_in, make_patient, make_plan, session: Session, clock) -> dict[str, Any]:
    """A signed-in nurse of Team A; her patient just started alemtuzumab s.c. (courses proposed)."""
    clock.now = TUESDAY
    nurse = signed_in("Team A", "nurse")
    patient = make_patient(nurse.team_id, display_name=NAME, pill_times=["08:00", "20:00"])
    plan = make_plan(patient, "alemtuzumab_sc", PLAN_START)
    courses = {
        c.regimen_entry: c
        for c in session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
    }
    return {"nurse": nurse, "patient": patient, "plan": plan, "courses": courses}


def _course(session: Session, course_id: int) -> ProphylaxisCourse:
    return reread(session).get(ProphylaxisCourse, course_id)


def _pills(session: Session, patient: Patient) -> list[OutboundMessage]:
    return list(
        reread(session).exec(
            select(OutboundMessage).where(
                OutboundMessage.patient_id == patient.id, OutboundMessage.course_id.is_not(None)
            )
        )
    )


def test_the_patient_page_marks_proposals_with_their_source_and_forms(client, proposed) -> None:
    patient, courses = proposed["patient"], proposed["courses"]
    page = text(client.get(f"/patients/{patient.id}"))
    section = page[page.index('id="prophylaxis-title"') : page.index('id="adherence-title"')]
    assert section.count("proposed — confirm") == 2
    assert "cotrimoxazole (trimethoprim/sulfamethoxazole)" in section
    assert "every patient on this regimen must receive it" in section
    assert "003_a1949903592dbecf.txt" in section and "Table 4" in section
    assert "pentamidine inhalation (if allergic to cotrimoxazole)" in section
    assert "No pill reminder is sent until it is confirmed" in section
    for course in courses.values():
        assert f'action="/prophylaxis/{course.id}/confirm"' in section
        assert f'action="/prophylaxis/{course.id}/decline"' in section
        assert (
            f'id="c{course.id}-f-times" name="times" type="text" class="narrow" value="08:00, 20:00"'
            in section
        )
    assert section.count('name="csrf_token"') == 4


def test_confirming_makes_the_course_active_and_plans_its_pills(
    client, proposed, session: Session
) -> None:
    patient, course = proposed["patient"], proposed["courses"]["acyclovir"]
    assert _pills(session, patient) == []
    response = post_form(
        client,
        f"/prophylaxis/{course.id}/confirm",
        {"drug": "acyclovir", "dose_text": "400 mg twice a day", "times": "08:00, 20:00"},
        page=f"/patients/{patient.id}",
    )
    assert response.status_code == 302, text(response)
    stored = _course(session, course.id)
    assert (stored.status, stored.dose_text, stored.times) == (
        "active",
        "400 mg twice a day",
        ["08:00", "20:00"],
    )
    assert stored.confirmed_by == proposed["nurse"].id and stored.weekdays is None
    assert {m.course_id for m in _pills(session, patient)} == {course.id}
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "confirm_prophylaxis")).one()
    assert (audit.patient_id, audit.target) == (patient.id, f"course:{course.id}")
    page = text(client.get(f"/patients/{patient.id}"))
    assert page.count("proposed — confirm") == 1


def test_confirm_with_days_and_another_drug(client, proposed, session: Session) -> None:
    patient, course = proposed["patient"], proposed["courses"]["cotrimoxazole"]
    response = client.post(
        f"/prophylaxis/{course.id}/confirm",
        data={
            "drug": "cotrimoxazole",
            "dose_text": "960 mg",
            "times": "08:00",
            "weekdays": ["0", "2", "4"],
            "csrf_token": _token(client, patient),
        },
    )
    assert response.status_code == 302, text(response)
    stored = _course(session, course.id)
    assert (stored.drug, stored.weekdays, stored.status) == ("cotrimoxazole", [0, 2, 4], "active")


def _token(client, patient: Patient) -> str:
    from tests.backend.dashboard.conftest import csrf_of

    return csrf_of(client, f"/patients/{patient.id}")


def test_confirm_errors_show_in_place_and_change_nothing(
    client, proposed, session: Session
) -> None:
    patient, course = proposed["patient"], proposed["courses"]["acyclovir"]
    response = post_form(
        client,
        f"/prophylaxis/{course.id}/confirm",
        {"drug": "acyclovir", "dose_text": "", "times": "8h"},
        page=f"/patients/{patient.id}",
    )
    assert response.status_code == 422
    page = text(response)
    assert f'id="c{course.id}-f-dose_text-error"' in page and "Enter a value." in page
    assert "Time must be HH:MM" in page
    assert 'value="8h"' in page  # what was typed is kept
    before = post_form(
        client,
        f"/prophylaxis/{course.id}/confirm",
        {"drug": "acyclovir", "dose_text": "400 mg", "times": "08:00", "start_date": "2026-02-20"},
        page=f"/patients/{patient.id}",
    )
    assert before.status_code == 422 and "cannot start before its plan" in text(before)
    assert _course(session, course.id).status == "proposed"
    assert _pills(session, patient) == []


def test_declining_needs_a_reason_and_keeps_it(client, proposed, session: Session) -> None:
    patient, course = proposed["patient"], proposed["courses"]["cotrimoxazole"]
    empty = post_form(
        client, f"/prophylaxis/{course.id}/decline", {"reason": ""}, page=f"/patients/{patient.id}"
    )
    assert empty.status_code == 422 and f'id="d{course.id}-f-reason-error"' in text(empty)
    assert _course(session, course.id).status == "proposed"
    reason = "Allergic to cotrimoxazole: pentamidine inhalation monthly, entered as its own course"
    response = post_form(
        client,
        f"/prophylaxis/{course.id}/decline",
        {"reason": reason},
        page=f"/patients/{patient.id}",
    )
    assert response.status_code == 302
    stored = _course(session, course.id)
    assert (stored.status, stored.decline_reason) == ("declined", reason)
    assert stored.declined_by == proposed["nurse"].id
    page = text(client.get(f"/patients/{patient.id}"))
    assert reason in page and "declined" in page
    again = post_form(
        client,
        f"/prophylaxis/{course.id}/confirm",
        {"dose_text": "960 mg", "times": "08:00"},
        page=f"/patients/{patient.id}",
    )
    assert again.status_code == 409


def test_another_team_gets_404(
    client, signed_in, make_patient, make_plan, session: Session, clock
) -> None:
    clock.now = TUESDAY
    owner = signed_in("Team A", "nurse")
    patient = make_patient(owner.team_id, display_name=NAME)
    plan = make_plan(patient, "alemtuzumab_sc", PLAN_START)
    course = session.exec(
        select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
    ).first()
    signed_in("Team B", "nurse")
    for action, body in (
        ("confirm", {"dose_text": "400 mg", "times": "08:00"}),
        ("decline", {"reason": "not needed"}),
    ):
        response = post_form(client, f"/prophylaxis/{course.id}/{action}", body)
        assert response.status_code == 404, action
    assert _course(session, course.id).status == "proposed"
