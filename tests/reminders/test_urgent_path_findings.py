"""The clinical review's findings on the urgent path (issue 11), each as a test.

Each test sends real SMS replies through ``handle_inbound_sms`` for a patient on the
real alemtuzumab s.c. (or inotuzumab weekly) regimen, with a real-length accented
name, and checks what the care team and the patient get. They failed before the
red flags, the fever in words and the persistence rule existed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from reminders.conversations import handle_inbound_sms
from reminders.data.db import session_scope
from reminders.data.models import Alert, CheckIn
from reminders.jobs import run_due
from tests.reminders.conftest import outbox

PHONE = "+32470123456"
NAME = "Marie-Françoise Van den Bossche-Lefèvre"
TEAM_PHONE = "+32 2 555 01 23"
# Tuesday 17 March 2026, 18:00 Brussels: day 16 of alemtuzumab s.c., inside weeks 3-8.
IN_CMV_WINDOW = datetime(2026, 3, 17, 17, 0, tzinfo=UTC)
# Thursday 30 April 2026: day 60, treatment running (36 doses to 22 May), after weeks 3-8
# and after day 58, the last day of the reported range (002).
ON_TREATMENT = datetime(2026, 4, 30, 17, 0, tzinfo=UTC)


def send(engine, body: str, now: datetime, sid: str):
    with session_scope(engine) as session:
        return handle_inbound_sms(session, provider_sid=sid, from_phone=PHONE, body=body, now=now)


def patient_alerts(session, patient_id: int) -> list[Alert]:
    session.commit()  # see what the replies committed (SQLite keeps a snapshot)
    session.expire_all()
    return list(session.exec(select(Alert).where(Alert.patient_id == patient_id)).all())


@pytest.fixture
def on_alemtuzumab(engine, console, clock, treated_patient):
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(display_name=NAME)
    run_due(engine, console, IN_CMV_WINDOW)  # the day's check-in asks for the temperature
    return patient


@pytest.mark.parametrize(
    "body",
    ["I have a fever and chills", "koorts en rillingen", "j'ai de la fièvre et des frissons"],
)
def test_fever_in_words_pages_on_call_and_keeps_asking_for_the_number(
    engine, session, on_alemtuzumab, body
) -> None:
    result = send(engine, body, IN_CMV_WINDOW + timedelta(minutes=4), "SMwords")
    # Before: the check-in closed, the alert was "high", nobody paged, "if you feel worse".
    assert TEAM_PHONE in result.reply and "worse" not in result.reply
    [alert] = patient_alerts(session, on_alemtuzumab.id)
    assert alert.severity == "urgent" and alert.oncall_notified_at is not None
    assert alert.details["cmv_test_advised"] is True
    assert len(outbox(session, recipient="clinician")) == 1
    checkin = session.exec(select(CheckIn)).one()
    assert checkin.state == "awaiting_temperature"


@pytest.mark.parametrize("body", ["chest pain", "I fainted this morning", "I feel confused"])
def test_red_flags_in_words_page_on_call(engine, session, on_alemtuzumab, body) -> None:
    result = send(engine, body, IN_CMV_WINDOW + timedelta(minutes=4), "SMflag")
    assert TEAM_PHONE in result.reply and "call" in result.reply.lower()
    [alert] = patient_alerts(session, on_alemtuzumab.id)
    assert alert.severity == "urgent" and alert.oncall_notified_at is not None
    assert len(outbox(session, recipient="clinician")) == 1


def test_low_grade_temperature_that_keeps_coming_back_in_the_cmv_window_is_a_high_alert(
    engine, session, on_alemtuzumab
) -> None:
    send(engine, "37.8", IN_CMV_WINDOW + timedelta(minutes=2), "SMlow1")
    assert patient_alerts(session, on_alemtuzumab.id) == []  # one reading: a re-check only
    send(engine, "37,8", IN_CMV_WINDOW + timedelta(hours=1, minutes=5), "SMlow2")
    [alert] = patient_alerts(session, on_alemtuzumab.id)
    assert alert.severity == "high" and "37.8, 37.8" in alert.reason
    send(engine, "37.8", IN_CMV_WINDOW + timedelta(hours=2, minutes=10), "SMlow3")
    high = [a for a in patient_alerts(session, on_alemtuzumab.id) if a.severity == "high"]
    assert high and "37.8, 37.8, 37.8" in high[-1].reason


def test_any_fever_during_treatment_asks_the_team_for_a_cmv_test(
    engine, session, on_alemtuzumab
) -> None:
    # Day 60: outside weeks 3-8, but 002 asks for a CMV test in every febrile patient.
    send(engine, "38,3", ON_TREATMENT, "SMfever60")
    urgent = [a for a in patient_alerts(session, on_alemtuzumab.id) if a.severity == "urgent"]
    assert urgent and urgent[0].details["cmv_test_advised"] is True
    assert "CMV test advised" in urgent[0].reason


def test_inotuzumab_patient_can_report_the_signs_of_veno_occlusive_disease(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient("inotuzumab_weekly", display_name=NAME, language="fr")
    send(engine, "j'ai le ventre gonflé et j'ai pris du poids", ON_TREATMENT, "SMvod")
    [alert] = patient_alerts(session, patient.id)
    assert alert.severity == "urgent" and alert.oncall_notified_at is not None


def test_a_reply_nobody_can_read_lands_in_the_queue_as_needing_review(
    engine, session, on_alemtuzumab
) -> None:
    result = send(engine, "my cat scratched me, is that ok?", IN_CMV_WINDOW, "SMcat")
    assert "care team" in result.reply and TEAM_PHONE in result.reply
    [alert] = patient_alerts(session, on_alemtuzumab.id)
    assert alert.severity == "high" and alert.reason.startswith("Needs review")


def test_positive_cmv_pcr_after_a_fever_reply_reads_symptomatic(
    engine, session, on_alemtuzumab, make_user
) -> None:
    from backend.schemas import LabIn
    from backend.services.labs import record_lab
    from reminders.data.models import Patient

    send(engine, "38,4", IN_CMV_WINDOW + timedelta(minutes=3), "SMfeverpcr")
    session.commit()
    patient = session.get(Patient, on_alemtuzumab.id)
    taken = IN_CMV_WINDOW + timedelta(days=1)
    _, alerts = record_lab(
        session, patient, LabIn(kind="cmv_pcr", value=850, taken_at=taken), None, taken
    )
    # Before: "a single positive test ... does not by itself require stopping".
    assert [a.kind for a in alerts] == ["cmv_symptomatic"]
    assert alerts[0].details["suggest_hold"] and "consider withholding" in alerts[0].reason
