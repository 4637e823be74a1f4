"""Expected levels in the SMS conversation: a quieted reading is stored, answered, never a fever.

Issue 14, item 7 (hazard H-55), on SQLite and PostgreSQL, through the real conversation
service, regimen library and templates: a reading within a level in force gets no re-check
SMS and no low-grade alert but is stored and answered; anything else keeps its follow-up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from backend.schemas import ExpectedLevelIn
from backend.services.expected_levels import end_level, set_level
from reminders.core.clinical_rules import clinical_rules, urgent_advice
from reminders.data.models import CheckIn, ExpectedLevel, Patient, SymptomReport, User
from reminders.data.statuses import CheckInState
from tests.reminders.conftest import outbox
from tests.reminders.test_conversations import IN_CMV_WINDOW, alerts, reply, start_checkin

NURSE = "Marie-Françoise Van den Bossche-Lefèvre"
REASON = "rituximab infusion this morning: slight fever expected tonight"
FEVER = clinical_rules().fever


def nurse_of(session, patient: Patient) -> User:
    nurse = session.exec(select(User).where(User.team_id == patient.team_id)).first()
    nurse.name = NURSE
    session.add(nurse)
    session.commit()
    return nurse


def note_level(session, patient: Patient, up_to_c: float, *, at: datetime, hours: int = 24):
    """A level noted by the team's nurse at ``at`` through the service the routes call."""
    level = set_level(
        session,
        patient,
        ExpectedLevelIn(up_to_c=up_to_c, expires_at=at + timedelta(hours=hours), reason=REASON),
        nurse_of(session, patient).id,
        at,
    )
    session.commit()
    return level


def rechecks(session) -> list:
    return [m for m in outbox(session, kind="checkin_temperature") if ":recheck:" in m.dedupe_key]


def reports(session) -> list[SymptomReport]:
    session.commit()
    session.expire_all()
    return list(session.exec(select(SymptomReport).order_by(SymptomReport.id)).all())


NOW = IN_CMV_WINDOW + timedelta(minutes=5)


def test_a_reading_within_the_level_is_stored_and_answered_without_recheck_or_alert(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    note_level(session, patient, 37.8, at=NOW - timedelta(hours=3))
    menu = reply(engine, "37,7", NOW)
    # No re-check: the check-in goes on as for a normal reading (the symptom menu), and a
    # symptom reported now would still be triaged with the 37.7.
    assert "chills" in menu.reply.lower()
    [report] = reports(session)
    assert report.temperature_c == 37.7 and report.severity == "routine"
    assert report.rule_ids == ["low_grade_temperature"]
    assert f"expected: {REASON} (noted by {NURSE})" in report.summary
    answer = reply(engine, "0", NOW + timedelta(minutes=2))
    # Never silence: the patient is told it was expected, and when to call.
    assert "expected" in answer.reply and "37.7" in answer.reply
    assert f"{FEVER.threshold_c:.1f} C" in answer.reply and "+32 2 555 01 23" in answer.reply
    assert rechecks(session) == [] and alerts(session) == []
    assert session.exec(select(CheckIn)).one().state == CheckInState.CLOSED
    assert [r.temperature_c for r in reports(session)] == [37.7, 37.7]


def test_the_patient_is_answered_in_their_language(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(language="fr")
    note_level(session, patient, 37.8, at=NOW - timedelta(hours=1))
    reply(engine, "37,6", NOW)
    answer = reply(engine, "0", NOW + timedelta(minutes=1))
    assert "attendait" in answer.reply and "37,6 C" in answer.reply and "38,0 C" in answer.reply
    assert rechecks(session) == [] and alerts(session) == []


def test_a_reading_above_the_level_keeps_its_recheck(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    note_level(session, patient, 37.6, at=NOW - timedelta(hours=3))
    result = reply(engine, "37.9", NOW)
    assert "37.9" in result.reply and "60" in result.reply
    [recheck] = rechecks(session)
    assert recheck.due_at == NOW + timedelta(minutes=FEVER.recheck_after_minutes)
    [report] = reports(session)
    assert "expected" not in report.summary and report.severity == "routine"


@pytest.mark.parametrize("text", ["38.0", "38,4", "39.1", "100.4F", "37.95"])
def test_a_fever_is_never_quieted_even_by_a_stored_level_the_service_would_refuse(
    engine, session, console, clock, treated_patient, text
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    # A row written around the service (an old script, a hand edit): the rule still holds.
    session.add(
        ExpectedLevel(
            patient_id=patient.id,
            team_id=patient.team_id,
            up_to_c=39.5,
            reason=REASON,
            expires_at=NOW + timedelta(days=1),
            created_at=NOW - timedelta(hours=1),
        )
    )
    session.commit()
    result = reply(engine, text, NOW)
    assert urgent_advice("en") in result.reply
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert alert.kind in ("fever", "cmv_test_advised")
    assert outbox(session, recipient="clinician")
    [report] = reports(session)
    assert report.severity == "urgent" and "expected" not in report.summary


@pytest.mark.parametrize(
    "text", ["37.6 and chest pain", "37,6 et je saigne sans arrêt", "37.6 and a rash"]
)
def test_a_red_flag_or_symptom_with_a_low_grade_temperature_is_never_quieted(
    engine, session, console, clock, treated_patient, text
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    note_level(session, patient, 37.9, at=NOW - timedelta(hours=1))
    reply(engine, text, NOW)
    [report] = reports(session)
    assert report.severity in ("urgent", "high") and "expected" not in report.summary
    assert alerts(session, patient_id=patient.id)


def test_a_symptom_reported_after_a_quieted_reading_is_triaged_with_it(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    note_level(session, patient, 37.8, at=NOW - timedelta(hours=1))
    reply(engine, "37.7", NOW)
    reply(engine, "1", NOW + timedelta(minutes=2))  # chills
    [alert] = alerts(session, patient_id=patient.id)
    assert alert.severity == "high" and alert.details["temperature_c"] == 37.7
    assert len(rechecks(session)) == 1


@pytest.mark.parametrize("how", ["expired", "ended"])
def test_an_expired_or_ended_level_quiets_nothing(
    engine, session, console, clock, treated_patient, how
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    if how == "expired":
        note_level(session, patient, 37.8, at=NOW - timedelta(hours=3), hours=3)
    else:
        note_level(session, patient, 37.8, at=NOW - timedelta(hours=3))
        end_level(session, patient, nurse_of(session, patient).id, NOW - timedelta(minutes=1))
        session.commit()
    result = reply(engine, "37.7", NOW)
    assert "60" in result.reply
    assert len(rechecks(session)) == 1
    assert "expected" not in reports(session)[0].summary


def test_persistent_low_grade_is_quieted_while_expected_and_alerts_once_the_level_ends(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    note_level(session, patient, 37.8, at=NOW - timedelta(hours=1))
    reply(engine, "37.6", NOW)
    reply(engine, "37.7", NOW + timedelta(hours=3))  # a second one within 24 h: persistent
    readings = [(r.temperature_c, r.rule_ids) for r in reports(session)]
    assert readings == [
        (37.6, ["low_grade_temperature"]),
        (37.7, ["low_grade_temperature", "persistent_low_grade"]),
    ]
    assert alerts(session) == [] and rechecks(session) == []
    end_level(session, patient, nurse_of(session, patient).id, NOW + timedelta(hours=4))
    session.commit()
    reply(engine, "37.6", NOW + timedelta(hours=5))
    [alert] = alerts(session, patient_id=patient.id)
    # The quieted readings were kept: the pattern is seen as soon as the level ends.
    assert alert.kind == "persistent_low_grade" and alert.severity == "high"
    assert "37.6, 37.7, 37.6" in alert.reason
