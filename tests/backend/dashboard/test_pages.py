"""The care-team pages with the Flask test client (SQLite and PostgreSQL): queue, patient,
actions, validation in place, CSV export, audit rows, admin and the phone simulator."""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from backend.dashboard.queries import DOSE_REMINDER_KINDS
from reminders.conversations import handle_inbound_sms
from reminders.core.clinical_rules import urgent_advice
from reminders.data.alerts import raise_alert
from reminders.data.models import (
    Alert,
    AuditEvent,
    DoseRecord,
    InboundMessage,
    LabResult,
    OutboundMessage,
    Patient,
    Plan,
    PlanHold,
    Team,
    User,
)
from reminders.decision_tasks import raise_due_decision_tasks
from tests.backend.dashboard.conftest import PLAN_START, TUESDAY, post_form, sign_in
from tests.conftest import reread


def text(response) -> str:
    return response.get_data(as_text=True)


def pending_kinds(session, patient_id: int) -> set[str]:
    reread(session)
    return set(
        session.exec(
            select(OutboundMessage.kind).where(
                OutboundMessage.patient_id == patient_id, OutboundMessage.status == "pending"
            )
        ).all()
    )


@pytest.fixture
def nurse_and_patient(signed_in, treated, clock):
    """A signed-in nurse of Team A and a patient on treatment, on the Tuesday of week 1."""
    clock.now = TUESDAY
    nurse = signed_in("Team A", "nurse")
    patient, plan = treated(nurse.team_id)
    return nurse, patient, plan


def fever_by_sms(
    session, patient: Patient, clock, body: str = "38.6", sid: str = "SMfever"
) -> None:
    handle_inbound_sms(
        session, provider_sid=sid, from_phone=patient.phone, body=body, now=clock.now
    )
    session.commit()


# --- queue and alerts -----------------------------------------------------------------------


def test_queue_orders_by_urgency_then_age_and_flags_waiting_urgent_alerts(
    client, nurse_and_patient, session, clock, make_patient
) -> None:
    nurse, patient, _ = nurse_and_patient
    other = make_patient(nurse.team_id, display_name="Bert Jansen", phone="+32 470 22 33 44")
    raise_alert(
        session,
        other,
        severity="routine",
        kind="x",
        reason="Routine thing",
        now=clock.now,
    )
    clock.advance(minutes=1)
    raise_alert(
        session,
        other,
        severity="high",
        kind="x",
        reason="High thing",
        now=clock.now,
    )
    session.commit()
    clock.advance(minutes=1)
    fever_by_sms(session, patient, clock)
    clock.advance(minutes=10)
    page = text(client.get("/queue"))
    order = [page.index(s) for s in ("Temperature 38.6", "High thing", "Routine thing")]
    assert order == sorted(order)
    assert "overdue" not in page  # urgent, but only 10 minutes old
    clock.advance(minutes=6)
    page = text(client.get("/queue"))
    assert 'class="card alert-card sev-urgent overdue"' in page
    assert "Waiting 16 min: over 15 min" in page


def test_week4_review_task_shows_in_the_queue_with_its_decision_and_source(
    client, signed_in, treated, session, clock
) -> None:
    # Issue 11, item 9: the week-4 response review is a task for the team on day 29.
    nurse = signed_in("Team A", "nurse")
    _, plan = treated(nurse.team_id, display_name="Marie-Françoise Van den Bossche-Lefèvre")
    clock.now = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)  # 08:00 in Brussels, day 29
    assert raise_due_decision_tasks(session, clock.now) == 1
    session.commit()
    assert sign_in(client, nurse.email).status_code == 302  # four weeks on: a new session
    queue = text(client.get("/queue"))
    assert "decision task" in queue and "Van den Bossche-Lef" in queue
    assert "sign of response in the blood after 4 weeks" in queue
    assert "due 2026-03-30" in queue and "003_a1949903592dbecf.txt, Table 3" in queue
    task = session.exec(select(Alert).where(Alert.kind == "decision_task")).one()
    page = text(client.get(f"/alerts/{task.id}"))
    assert f"/plans/{plan.id}" in page and "Decision" in page


def test_acknowledge_then_resolve_keeps_who_and_when(
    client, nurse_and_patient, session, clock
) -> None:
    nurse, patient, _ = nurse_and_patient
    fever_by_sms(session, patient, clock)
    alert = session.exec(select(Alert).where(Alert.severity == "urgent")).one()
    clock.advance(minutes=3)
    assert post_form(client, f"/alerts/{alert.id}/acknowledge", {}).status_code == 302
    acknowledged_at = clock.now
    clock.advance(minutes=5)
    empty = post_form(client, f"/alerts/{alert.id}/resolve", {"note": "  "})
    assert empty.status_code == 422
    assert 'id="f-note-error"' in text(empty)
    assert 'aria-describedby="f-note-hint f-note-error" aria-invalid="true"' in text(empty)
    done = post_form(client, f"/alerts/{alert.id}/resolve", {"note": "Called, to day unit"})
    assert done.status_code == 302
    reread(session)
    alert = session.get(Alert, alert.id)
    assert (alert.status, alert.acknowledged_by, alert.resolved_by) == (
        "resolved",
        nurse.id,
        nurse.id,
    )
    assert alert.acknowledged_at == acknowledged_at and alert.resolved_at == clock.now
    assert alert.resolution_note == "Called, to day unit"
    again = post_form(client, f"/alerts/{alert.id}/resolve", {"note": "again"})
    assert again.status_code == 409 and "already resolved" in text(again)
    assert "Temperature 38.6" not in text(client.get("/queue"))


# --- the patient page -----------------------------------------------------------------------


def test_patient_page_shows_plan_charts_thread_and_alerts(
    client, nurse_and_patient, session, clock
) -> None:
    _, patient, _ = nurse_and_patient
    fever_by_sms(session, patient, clock)
    page = text(client.get(f"/patients/{patient.id}"))
    for part in (
        'id="plan-timeline"',
        'id="temperature-chart"',
        'id="adherence-chart"',
        '<title id="temperature-chart-title">Temperature over the course</title>',
        "Readings as a table",
        '<td data-label="Rules" class="small">fever',  # the rules that triaged it
        "Alemtuzumab under the skin",
        "cotrimoxazole",
        "Not yet eligible to stop",
        "Temperature 38.6",
        "38.6",  # the patient's SMS in the thread
        "Dose reminder (evening before)",
    ):
        assert part in page, part
    reread(session)
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "view_patient")).one()


def test_hold_stops_the_dose_reminders_and_resume_brings_them_back(
    client, nurse_and_patient, session
) -> None:
    _, patient, plan = nurse_and_patient
    assert DOSE_REMINDER_KINDS & pending_kinds(session, patient.id)
    response = post_form(client, f"/plans/{plan.id}/hold", {"reason": "CMV reactivation"})
    assert response.status_code == 302
    assert not DOSE_REMINDER_KINDS & pending_kinds(session, patient.id)
    page = text(client.get(f"/patients/{patient.id}"))
    upcoming = page[page.index('id="upcoming-title"') : page.index('id="prophylaxis-title"')]
    assert "Dose reminder" not in upcoming and "Pill reminder" in upcoming
    reread(session)
    assert session.exec(select(PlanHold)).one().reason == "CMV reactivation"
    assert post_form(client, f"/plans/{plan.id}/hold", {"reason": "again"}).status_code == 409
    assert post_form(client, f"/plans/{plan.id}/resume", {}).status_code == 302
    assert DOSE_REMINDER_KINDS & pending_kinds(session, patient.id)


def test_plan_actions_validate_in_place(client, nurse_and_patient, session) -> None:
    _, _, plan = nurse_and_patient
    empty = post_form(client, f"/plans/{plan.id}/hold", {"reason": ""})
    assert empty.status_code == 422
    assert 'id="hold-f-reason-error"' in text(empty) and "Enter a value." in text(empty)
    too_long = post_form(client, f"/plans/{plan.id}/extend", {"weeks": "40"})
    assert too_long.status_code == 422
    assert "above the maximum of 6 extra weeks" in text(too_long)
    not_a_number = post_form(client, f"/plans/{plan.id}/extend", {"weeks": "two"})
    assert not_a_number.status_code == 422 and "Enter a whole number." in text(not_a_number)
    future = post_form(
        client,
        f"/plans/{plan.id}/doses",
        {"index": "3", "status": "given", "on_date": "2026-04-01"},
    )
    assert future.status_code == 422 and "future date" in text(future)
    given = post_form(
        client, f"/plans/{plan.id}/doses", {"index": "1", "status": "given", "dose_mg": "30"}
    )
    assert given.status_code == 302
    reread(session)
    record = session.exec(select(DoseRecord)).one()
    assert (record.dose_index, record.status, record.dose_mg) == (1, "given", 30.0)
    stop = post_form(client, f"/plans/{plan.id}/stop", {"reason": "No response at week 4"})
    assert stop.status_code == 302
    reread(session)
    assert session.get(Plan, plan.id).status == "stopped"


def test_small_mg_m2_doses_are_shown_within_one_percent(
    client, signed_in, make_patient, make_plan, session
) -> None:
    # Issue 11, item 10: 0.5 mg/m2 x 1.29 m2 = 0.645 mg was shown as 0.6 mg (-7%).
    nurse = signed_in("Team A", "nurse")
    patient = make_patient(
        nurse.team_id,
        display_name="Marie-Françoise Van den Bossche-Lefèvre",
        height_cm=158,
        weight_kg=37.9,  # Mosteller 1.29 m2
    )
    plan = make_plan(patient, "inotuzumab_weekly", PLAN_START)
    page = text(client.get(f"/plans/{plan.id}"))
    assert "0.5 mg/m² × 1.29 m² = 0.65 mg" in page
    assert "0.8 mg/m² × 1.29 m² = 1.03 mg" in page
    assert "= 1.03 mg" in text(client.get(f"/patients/{patient.id}"))
    recorded = post_form(
        client, f"/plans/{plan.id}/doses", {"index": "1", "status": "given", "dose_mg": "1.03"}
    )
    assert recorded.status_code == 302
    assert "given 1.03 mg" in text(client.get(f"/plans/{plan.id}"))


def test_a_large_bsa_asks_the_team_to_confirm_the_dose_in_the_form(
    client, signed_in, make_patient, session
) -> None:
    nurse = signed_in("Team A", "nurse")
    patient = make_patient(nurse.team_id, height_cm=200, weight_kg=122)  # 2.60 m2
    form = text(client.get(f"/patients/{patient.id}/plans/new?regimen_id=rituximab_fl_weekly"))
    assert "above 2.5 m²" in form
    started = post_form(
        client,
        f"/patients/{patient.id}/plans/new",
        {"regimen_id": "rituximab_fl_weekly", "start_date": "2026-03-02"},
    )
    assert started.status_code == 302  # never blocks
    plan = session.exec(select(Plan).where(Plan.patient_id == patient.id)).one()
    page = text(client.get(f"/plans/{plan.id}"))
    assert "check height and weight" in page
    asked = post_form(
        client, f"/plans/{plan.id}/doses", {"index": "1", "status": "given", "dose_mg": "975"}
    )
    assert asked.status_code == 409 and 'id="dose-f-confirm-error"' in text(asked)
    confirmed = post_form(
        client,
        f"/plans/{plan.id}/doses",
        {"index": "1", "status": "given", "dose_mg": "975", "confirm": "on"},
    )
    assert confirmed.status_code == 302
    reread(session)
    record = session.exec(select(DoseRecord).where(DoseRecord.plan_id == plan.id)).one()
    assert record.dose_mg == 975.0


# --- enrolment, regimen, preferences, labs, SMS ----------------------------------------------


def test_enrol_with_errors_in_place_then_start_a_regimen_with_bsa(
    client, signed_in, session
) -> None:
    signed_in()
    bad = post_form(
        client,
        "/patients/new",
        {
            "display_name": "",
            "phone": "12",
            "timezone": "Mars/Olympus",
            "height_cm": "tall",
            "quiet_start": "25:00",
            "pill_times": "8 o'clock",
        },
    )
    assert bad.status_code == 422
    page = text(bad)
    assert "There is a problem" in page
    for field in ("display_name", "timezone", "height_cm", "quiet_start", "pill_times"):
        assert f'id="f-{field}-error"' in page, field
        assert re.search(rf'id="f-{field}"[^>]*aria-invalid="true"', page), field
    bad_phone = post_form(
        client,
        "/patients/new",
        {
            "display_name": "Carla",
            "phone": "12345",
            "timezone": "Europe/Brussels",
            "language": "en",
        },
    )
    assert bad_phone.status_code == 422 and 'id="f-phone-error"' in text(bad_phone)
    assert "Not a valid phone number" in text(bad_phone) or "Not a phone number" in text(bad_phone)
    done = post_form(
        client,
        "/patients/new",
        {
            "display_name": "Carla Maes",
            "phone": "0470 55 66 77",
            "timezone": "Europe/Brussels",
            "language": "fr",
            "sms_consent": "on",
            "height_cm": "170",
            "weight_kg": "70,5",
            "pill_times": "08:00, 20:00",
        },
    )
    assert done.status_code == 302
    reread(session)
    patient = session.exec(select(Patient).where(Patient.display_name == "Carla Maes")).one()
    assert (patient.phone, patient.weight_kg, patient.pill_times) == (
        "+32470556677",
        70.5,
        ["08:00", "20:00"],
    )
    form = text(client.get(f"/patients/{patient.id}/plans/new?regimen_id=rituximab_cll_chemo"))
    assert "sqrt(170 cm × 70.5 kg / 3600) = 1.82 m²" in form
    assert "375 mg/m² x 1.82 m² = 682.5 mg" in form.replace("×", "x")
    started = post_form(
        client,
        f"/patients/{patient.id}/plans/new",
        {"regimen_id": "rituximab_cll_chemo", "start_date": "2026-03-09"},
    )
    assert started.status_code == 302, text(started)
    twice = post_form(
        client,
        f"/patients/{patient.id}/plans/new",
        {
            "regimen_id": "alemtuzumab_sc",
            "start_date": "2026-03-09",
            "opt-weekdays": ["mon", "wed", "fri"],
        },
    )
    assert twice.status_code == 409 and "already has an open plan" in text(twice)
    weekdays = post_form(
        client,
        f"/patients/{patient.id}/plans/new",
        {"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-09", "opt-weekdays": ["mon"]},
    )
    assert weekdays.status_code == 422 and "Choose exactly 3 days." in text(weekdays)


def test_contact_preferences_and_quiet_hours(client, nurse_and_patient, session) -> None:
    _, patient, _ = nurse_and_patient
    form = text(client.get(f"/patients/{patient.id}/edit"))
    assert 'value="22:00"' in form and 'value="08:00, 20:00"' in form
    response = post_form(
        client,
        f"/patients/{patient.id}/edit",
        {
            "display_name": "Anna Peeters",
            "phone": "+32 470 12 34 56",
            "timezone": "Europe/Brussels",
            "language": "nl",
            "sms_consent": "on",
            "discreet": "on",
            "quiet_start": "21:00",
            "quiet_end": "08:30",
            "dose_time": "09:00",
            "checkin_time": "18:00",
            "pill_times": "09:00",
            "height_cm": "",
            "weight_kg": "71",
        },
    )
    assert response.status_code == 302, text(response)
    reread(session)
    saved = session.get(Patient, patient.id)
    assert (saved.language, saved.discreet, saved.quiet_start.hour, saved.quiet_end.minute) == (
        "nl",
        True,
        21,
        30,
    )
    assert saved.height_cm is None and saved.weight_kg == 71 and saved.pill_times == ["09:00"]


def test_record_a_lab_result_raises_the_lab_alert(client, nurse_and_patient, session) -> None:
    _, patient, _ = nurse_and_patient
    future = post_form(
        client,
        f"/patients/{patient.id}/labs/new",
        {"kind": "cmv_pcr", "value": "100", "taken_at": "2026-03-09T08:00"},
    )
    assert future.status_code == 422 and "in the future" in text(future)
    missing = post_form(
        client,
        f"/patients/{patient.id}/labs/new",
        {"kind": "cmv_pcr", "value": "x", "taken_at": ""},
    )
    assert missing.status_code == 422
    assert 'id="f-value-error"' in text(missing) and 'id="f-taken_at-error"' in text(missing)
    done = post_form(
        client,
        f"/patients/{patient.id}/labs/new",
        {"kind": "cmv_pcr", "value": "25000", "taken_at": "2026-03-03T08:00"},
    )
    assert done.status_code == 302
    reread(session)
    lab = session.exec(select(LabResult)).one()
    assert lab.taken_at.isoformat() == "2026-03-03T07:00:00+00:00"  # Brussels time
    assert session.exec(select(Alert).where(Alert.patient_id == patient.id)).all()
    assert 'id="cmv-chart"' in text(client.get(f"/patients/{patient.id}"))


def test_one_off_sms_is_queued_and_respects_opt_out(client, nurse_and_patient, session) -> None:
    _, patient, _ = nurse_and_patient
    assert post_form(client, f"/patients/{patient.id}/sms/new", {"body": ""}).status_code == 422
    response = post_form(
        client, f"/patients/{patient.id}/sms/new", {"body": "Please call us today."}
    )
    assert response.status_code == 302
    reread(session)
    message = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "one_off")).one()
    assert (message.body, message.status, message.patient_id) == (
        "Please call us today.",
        "pending",
        patient.id,
    )
    row = session.get(Patient, patient.id)
    row.opted_out = True
    session.add(row)
    session.commit()
    refused = post_form(client, f"/patients/{patient.id}/sms/new", {"body": "Another one"})
    assert refused.status_code == 422 and "cannot receive SMS" in text(refused)
    reread(session)
    assert (
        len(session.exec(select(OutboundMessage).where(OutboundMessage.kind == "one_off")).all())
        == 1
    )


# --- export and audit -------------------------------------------------------------------------


def test_csv_export_has_reports_and_messages(client, nurse_and_patient, session, clock) -> None:
    _, patient, _ = nurse_and_patient
    fever_by_sms(session, patient, clock, body='=HYPERLINK("x") 38.4', sid="SMcsv")
    response = client.get(f"/patients/{patient.id}/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith(
        f'attachment; filename="patient-{patient.id}-reports-and-messages-'
    )
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(text(response).lstrip("\ufeff"))))
    assert rows[0].keys() >= {"at_utc", "at_local", "record", "direction", "text"}
    records = {(r["record"], r["direction"]) for r in rows}
    assert ("symptom_report", "") in records
    assert ("sms", "from_patient") in records and ("sms", "to_patient") in records
    incoming = next(r for r in rows if r["direction"] == "from_patient")
    assert incoming["text"].startswith("'=HYPERLINK")  # never run as a formula
    assert next(r for r in rows if r["record"] == "symptom_report")["temperature_c"] == "38.4"
    reread(session)
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "export_patient")).one()


def test_audit_rows_name_who_and_which_patient_and_hold_no_health_data(
    client, nurse_and_patient, session, team_user
) -> None:
    nurse, patient, plan = nurse_and_patient
    client.get(f"/patients/{patient.id}")
    post_form(client, f"/plans/{plan.id}/hold", {"reason": "Neutropenic fever 38.9"})
    post_form(client, f"/patients/{patient.id}/sms/new", {"body": "Secret words"})
    reread(session)
    events = session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    actions = [(e.action, e.user_id, e.patient_id) for e in events if e.patient_id]
    assert ("view_patient", nurse.id, patient.id) in actions
    assert ("hold_plan", nurse.id, patient.id) in actions
    assert ("send_sms", nurse.id, patient.id) in actions
    dumped = " ".join(f"{e.action} {e.target}" for e in events)
    for secret in ("38.9", "Secret", patient.phone, "Neutropenic"):
        assert secret not in dumped
    admin = team_user("Team A", "admin")
    post_form(client, "/logout", {})
    sign_in(client, admin.email)
    page = text(client.get("/audit"))
    assert "view patient" in page and "hold plan" in page and "Anna Peeters" in page


def test_no_sms_text_phone_numbers_or_values_in_logs(
    client, nurse_and_patient, session, clock, caplog
) -> None:
    _, patient, plan = nurse_and_patient
    caplog.set_level(logging.DEBUG)
    fever_by_sms(session, patient, clock, body="39.4 and cough", sid="SMlog")
    post_form(client, f"/patients/{patient.id}/sms/new", {"body": "Private text"})
    post_form(
        client,
        f"/patients/{patient.id}/labs/new",
        {"kind": "anc", "value": "123", "taken_at": "2026-03-03T08:00"},
    )
    post_form(client, f"/plans/{plan.id}/hold", {"reason": "ANC low"})
    client.post(f"/plans/{plan.id}/stop", data={"reason": "no token"})
    logged = caplog.text
    for secret in ("39.4", "Private text", "+32470123456", "123 cells", "ANC low"):
        assert secret not in logged


# --- admin -----------------------------------------------------------------------------------


def test_admin_manages_members_and_phones(client, signed_in, session, team_user) -> None:
    admin = signed_in("Team A", "admin")
    weak = post_form(
        client,
        "/admin/users",
        {"email": "new@a.example", "role": "nurse", "password": "short"},
        "/admin",
    )
    assert weak.status_code == 422 and 'id="user-f-password-error"' in text(weak)
    made = post_form(
        client,
        "/admin/users",
        {
            "email": "New@A.example",
            "name": "Nel",
            "role": "physician",
            "password": "long enough pass",
        },
        "/admin",
    )
    assert made.status_code == 302
    reread(session)
    member = session.exec(select(User).where(User.email == "new@a.example")).one()
    assert (member.team_id, member.role) == (admin.team_id, "physician")
    dupe = post_form(
        client,
        "/admin/users",
        {"email": "new@a.example", "role": "nurse", "password": "long enough pass"},
        "/admin",
    )
    assert dupe.status_code == 409 and "already exists" in text(dupe)
    assert (
        post_form(client, f"/admin/users/{member.id}/role", {"role": "nurse"}, "/admin").status_code
        == 302
    )
    assert (
        post_form(client, f"/admin/users/{member.id}/active", {"active": "0"}, "/admin").status_code
        == 302
    )
    reread(session)
    assert (
        session.get(User, member.id).role == "nurse" and not session.get(User, member.id).is_active
    )
    myself = post_form(client, f"/admin/users/{admin.id}/active", {"active": "0"}, "/admin")
    assert myself.status_code == 409
    last_admin = post_form(client, f"/admin/users/{admin.id}/role", {"role": "nurse"}, "/admin")
    assert last_admin.status_code == 409 and "at least one admin" in text(last_admin)
    bad = post_form(
        client, "/admin/team", {"care_phone": "02 555 01 23", "oncall_phone": "123"}, "/admin"
    )
    assert bad.status_code == 422 and 'id="phones-f-oncall_phone-error"' in text(bad)
    good = post_form(
        client,
        "/admin/team",
        {"care_phone": "02 555 01 23", "oncall_phone": "0470 99 99 99"},
        "/admin",
    )
    assert good.status_code == 302
    reread(session)
    team = session.get(Team, admin.team_id)
    assert (team.care_phone, team.oncall_phone) == ("+3225550123", "+32470999999")


# --- the phone simulator ---------------------------------------------------------------------


def test_phone_simulator_replies_through_the_inbound_service(
    client, nurse_and_patient, session
) -> None:
    _, patient, _ = nurse_and_patient
    page = client.get(f"/patients/{patient.id}/phone")
    assert page.status_code == 200 and "Reply as the patient" in text(page)
    assert post_form(client, f"/patients/{patient.id}/phone", {"body": ""}).status_code == 422
    response = post_form(client, f"/patients/{patient.id}/phone", {"body": "38.7"})
    assert response.status_code == 302
    reread(session)
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.provider_sid.startswith("SIM") and inbound.patient_id == patient.id
    assert inbound.body == "38.7" and inbound.intent == "temperature"
    assert (
        session.exec(select(Alert).where(Alert.severity == "urgent")).one().patient_id == patient.id
    )
    thread = text(client.get(f"/patients/{patient.id}/phone"))
    assert "38.7" in thread and urgent_advice(patient.language) in thread  # the advice came back
    assert "Temperature 38.7" in text(client.get("/queue"))


def test_phone_simulator_does_not_exist_with_twilio(client, nurse_and_patient, app) -> None:
    _, patient, _ = nurse_and_patient
    app.config["SMS_BACKEND"] = "twilio"
    assert client.get(f"/patients/{patient.id}/phone").status_code == 404
    assert (
        post_form(client, f"/patients/{patient.id}/phone", {"body": "38.7"}, "/queue").status_code
        == 404
    )
    assert "Phone simulator" not in text(client.get(f"/patients/{patient.id}"))


def test_plan_page_offers_the_actions_of_an_active_plan(client, nurse_and_patient) -> None:
    _, _, plan = nurse_and_patient
    page = text(client.get(f"/plans/{plan.id}"))
    assert "Put plan on hold" in page and "Record a dose" in page and "Extend" in page
    assert PLAN_START.strftime("%-d %b %Y") in page
