"""Patient replies: fever, re-check, symptom menu, pills, STOP/START, free text, duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from backend.schemas import HoldIn, ResumeIn
from backend.services.plans import hold_plan, resume_plan
from reminders.conversations import (
    CHECKIN_CONTEXT,
    conversation,
    find_patient_by_phone,
    handle_inbound_sms,
)
from reminders.core.clinical_rules import urgent_advice
from reminders.core.triage import AlertKind, load_triage_rules
from reminders.data.db import session_scope
from reminders.data.models import (
    Alert,
    CheckIn,
    InboundMessage,
    PillConfirmation,
    Plan,
    SymptomReport,
)
from reminders.followups import OPEN_CHECKIN_STATES
from reminders.jobs import run_due
from reminders.rendering import patient_context
from tests.reminders.conftest import outbox

# Tuesday 17 March 2026: day 16 of alemtuzumab, inside the CMV window (weeks 3-8).
IN_CMV_WINDOW = datetime(2026, 3, 17, 17, 0, tzinfo=UTC)  # 18:00 Brussels


def reply(engine, body: str, now: datetime, sid: str | None = None, phone: str = "+32470123456"):
    with session_scope(engine) as session:
        return handle_inbound_sms(
            session,
            provider_sid=sid or f"SM{abs(hash((body, now)))}",
            from_phone=phone,
            body=body,
            now=now,
        )


def start_checkin(engine, console, clock, treated_patient, **patient_overrides):
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(**patient_overrides)
    run_due(engine, console, IN_CMV_WINDOW)
    return patient


def alerts(session, **filters):
    session.commit()  # see what other sessions committed
    session.expire_all()
    query = select(Alert)
    for name, value in filters.items():
        query = query.where(getattr(Alert, name) == value)
    return list(session.exec(query).all())


def test_a_fever_reply_tells_the_patient_and_alerts_the_team_at_once(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    result = reply(engine, "38,4", IN_CMV_WINDOW + timedelta(minutes=5))
    assert urgent_advice("en") in result.reply
    assert "CMV" in result.reply and "+32 2 555 01 23" in result.reply
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert (
        alert.kind == "fever"
        and "38.4" in alert.reason
        and alert.details["cmv_test_advised"] is True
    )
    [oncall] = outbox(session, recipient="clinician")
    assert oncall.urgent and oncall.status == "pending" and "+3247012" not in oncall.body
    report = session.exec(select(SymptomReport)).one()
    assert report.temperature_c == 38.4 and report.severity == "urgent"
    assert session.exec(select(CheckIn)).one().state == "closed"


def test_the_report_and_its_alert_keep_the_rules_that_decided_and_their_kind(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    reply(engine, "38.6 and chills", IN_CMV_WINDOW + timedelta(minutes=5))
    rule_ids = ["fever", "symptom_chills", "fever_cmv_window", "fever_cmv_test"]
    report = session.exec(select(SymptomReport)).one()
    assert (report.patient_id, report.severity, report.source) == (patient.id, "urgent", "sms")
    assert report.rule_ids == rule_ids
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert alert.details["rule_ids"] == rule_ids and alert.details["report_id"] == report.id
    # The kind is the rules file's, read from the most severe rule that alerts (the
    # first of the four urgent ones), not parsed out of a reason's text.
    kinds = {rule.id: rule.kind for rule in load_triage_rules().rules}
    assert alert.kind == kinds["fever"] == AlertKind.FEVER


def test_a_symptom_with_a_slightly_raised_temperature_is_a_symptom_alert(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    reply(engine, "37.6 and a rash", IN_CMV_WINDOW + timedelta(minutes=5))
    report = session.exec(select(SymptomReport)).one()
    assert report.rule_ids == ["low_grade_temperature", "symptom_rash"]
    [alert] = alerts(session, patient_id=patient.id)
    assert (alert.severity, alert.kind) == ("high", "symptom")
    assert alert.details["rule_ids"] == report.rule_ids


def test_fahrenheit_and_unprompted_fever_are_triaged_too(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient()
    result = reply(engine, "temp 101.2F and cough", datetime(2026, 4, 20, 10, 0, tzinfo=UTC))
    assert urgent_advice("en") in result.reply
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert alert.details["temperature_c"] == 38.4 and "breathing" in alert.details["symptoms"]


@pytest.mark.parametrize(
    ("region", "language", "told", "not_told"),
    [
        ("BE", "fr", ["112", "38,0 C", "37,6 C"], [" F", "911"]),
        ("US", "en", ["911", "100.4 F (38.0 C)", "99.7 F (37.6 C)"], ["112"]),
    ],
)
def test_the_safety_text_names_the_patients_emergency_number_and_units(
    engine, console, clock, treated_patient, region, language, told, not_told
) -> None:
    """112 and Celsius for a Belgian patient; 911 and Fahrenheit first for an American one."""
    start_checkin(engine, console, clock, treated_patient, region=region, language=language)
    now = IN_CMV_WINDOW + timedelta(minutes=5)
    recheck = reply(engine, "37.6", now).reply
    urgent = reply(engine, "38.4", now + timedelta(hours=1, minutes=3), "SMregion2").reply
    for words in told:
        assert words in recheck + urgent, (words, recheck, urgent)
    for words in not_told:
        assert words not in recheck + urgent, (words, recheck, urgent)


def test_a_slightly_raised_temperature_is_asked_again_in_an_hour(
    engine, session, console, clock, treated_patient
) -> None:
    start_checkin(engine, console, clock, treated_patient)
    now = IN_CMV_WINDOW + timedelta(minutes=5)
    result = reply(engine, "37.6", now)
    assert "37.6" in result.reply and "60" in result.reply
    [recheck] = [m for m in outbox(session, kind="checkin_temperature") if m.checkin_id]
    assert recheck.due_at == now + timedelta(hours=1)
    assert alerts(session) == []
    second = reply(engine, "37.4", now + timedelta(hours=1, minutes=3))
    assert "1" in second.reply and "chills" in second.reply.lower()  # the symptom menu


def test_normal_temperature_then_symptom_menu_then_red_flag(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    menu = reply(engine, "36.8", IN_CMV_WINDOW + timedelta(minutes=5))
    assert "chills" in menu.reply.lower()
    answer = reply(engine, "2 4", IN_CMV_WINDOW + timedelta(minutes=7))
    assert "at once" in answer.reply or "now" in answer.reply
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert set(alert.details["symptoms"]) == {"breathing", "bleeding"}


def test_no_symptoms_closes_the_check_in_with_thanks(
    engine, session, console, clock, treated_patient
) -> None:
    start_checkin(engine, console, clock, treated_patient)
    reply(engine, "36.9", IN_CMV_WINDOW + timedelta(minutes=5))
    thanks = reply(engine, "0", IN_CMV_WINDOW + timedelta(minutes=6))
    assert "thank" in thanks.reply.lower()
    assert alerts(session) == []
    assert session.exec(select(CheckIn)).one().state == "closed"


def test_other_symptoms_reach_the_queue_without_on_call(
    engine, session, console, clock, treated_patient
) -> None:
    start_checkin(engine, console, clock, treated_patient)
    reply(engine, "36.9", IN_CMV_WINDOW + timedelta(minutes=5))
    reply(engine, "3, 5", IN_CMV_WINDOW + timedelta(minutes=6))
    [alert] = alerts(session)
    assert alert.severity == "high"
    assert outbox(session, recipient="clinician") == []


def test_implausible_values_are_asked_again_politely(
    engine, session, console, clock, treated_patient
) -> None:
    start_checkin(engine, console, clock, treated_patient)
    result = reply(engine, "380", IN_CMV_WINDOW + timedelta(minutes=5))
    assert result.intent == "implausible_temperature"
    assert (
        alerts(session) == []
        and session.exec(select(CheckIn)).one().state == "awaiting_temperature"
    )


def test_taken_confirms_every_pill_of_the_latest_round(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient()
    run_due(engine, console, datetime(2026, 3, 3, 7, 0, tzinfo=UTC))  # 08:00 pills go out
    result = reply(engine, "Taken", datetime(2026, 3, 3, 7, 20, tzinfo=UTC))
    assert result.intent == "taken"
    confirmations = session.exec(select(PillConfirmation)).all()
    assert len(confirmations) == 2  # cotrimoxazole and acyclovir, both reminded at 08:00
    assert len({c.course_id for c in confirmations}) == 2


def test_a_second_taken_for_the_same_round_adds_nothing_and_is_answered(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient()
    run_due(engine, console, datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    reply(engine, "Taken", datetime(2026, 3, 3, 7, 20, tzinfo=UTC))
    # Another message (its own MessageSid), the same round: the insert skips both pairs.
    again = reply(engine, "pris", datetime(2026, 3, 3, 7, 40, tzinfo=UTC))
    assert again.intent == "taken" and again.reply
    confirmations = session.exec(select(PillConfirmation)).all()
    assert len(confirmations) == 2
    assert {c.confirmed_at for c in confirmations} == {datetime(2026, 3, 3, 7, 20, tzinfo=UTC)}


def test_stop_stops_everything_and_alerts_start_resumes(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient()
    run_due(engine, console, datetime(2026, 3, 3, 5, 0, tzinfo=UTC))
    assert outbox(session, patient_id=patient.id, status="pending")
    stop = reply(engine, "STOP", datetime(2026, 3, 3, 5, 10, tzinfo=UTC))
    assert stop.reply is None
    assert outbox(session, patient_id=patient.id, status="pending") == []
    [alert] = alerts(session, kind="opted_out")
    assert alert.severity == "high"
    report = run_due(engine, console, datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    assert report["planned"] == 0
    start = reply(engine, "START", datetime(2026, 3, 4, 9, 0, tzinfo=UTC))
    assert start.reply and outbox(session, patient_id=patient.id, status="pending")


def test_a_duplicate_message_sid_is_answered_as_the_first_time_and_acted_on_once(
    engine, session, console, clock, treated_patient
) -> None:
    """Twilio re-delivers a webhook whose answer it never got: it gets the same answer again."""
    start_checkin(engine, console, clock, treated_patient)
    first = reply(engine, "38.9", IN_CMV_WINDOW + timedelta(minutes=5), sid="SMdup")
    again = reply(engine, "38.9", IN_CMV_WINDOW + timedelta(minutes=6), sid="SMdup")
    assert urgent_advice("en") in first.reply
    assert again.duplicate and again.reply == first.reply and again.intent == first.intent
    assert len(alerts(session, severity="urgent")) == 1
    assert len(session.exec(select(InboundMessage)).all()) == 1
    assert len(outbox(session, dedupe_key="reply:SMdup")) == 1


def test_free_text_goes_to_the_team_inbox_with_an_acknowledgement(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient()
    result = reply(
        engine, "Can I move Friday's injection to Saturday?", datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    )
    assert result.reply
    [alert] = alerts(session, patient_id=patient.id, kind="patient_message")
    assert "Friday" in alert.reason


def test_unknown_numbers_raise_no_alert_and_get_only_the_unknown_number_answer(
    engine, session, console, clock, treated_patient
) -> None:
    """Nobody's message reaches no team; the sender is told so (test_unknown_senders.py)."""
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient()
    result = reply(engine, "38.5", datetime(2026, 3, 3, 9, 0, tzinfo=UTC), phone="+32470000001")
    assert result.intent == "unknown_sender_answered" and result.patient_id is None
    assert result.reply.endswith("Bel 112.") and "+32 2 555 01 23" not in result.reply
    assert alerts(session) == []


def test_unanswered_check_in_is_resent_once_then_flagged(
    engine, session, console, clock, treated_patient
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    run_due(engine, console, IN_CMV_WINDOW + timedelta(hours=2))
    assert len(outbox(session, kind="checkin_resend", status="sent")) == 1
    run_due(engine, console, IN_CMV_WINDOW + timedelta(hours=3))
    assert alerts(session) == []
    run_due(engine, console, IN_CMV_WINDOW + timedelta(hours=4))
    [alert] = alerts(session, patient_id=patient.id)
    assert alert.kind == "checkin_unanswered"
    assert len(outbox(session, kind="checkin_resend")) == 1
    assert len(session.exec(select(CheckIn)).all()) == 1


def test_without_a_rota_every_escalation_step_pages_the_fallback_number(
    engine, session, console, clock, treated_patient
) -> None:
    """No shift on the rota: each step falls through to the team's fallback number at once."""
    start_checkin(engine, console, clock, treated_patient)
    t = IN_CMV_WINDOW + timedelta(minutes=5)
    reply(engine, "39.1", t)
    run_due(engine, console, t + timedelta(minutes=1))
    [first] = outbox(session, recipient="clinician", status="sent")
    assert (first.channel, first.to_phone, first.user_id) == ("sms", "+32470999999", None)
    run_due(engine, console, t + timedelta(minutes=4))
    assert len(outbox(session, recipient="clinician")) == 1
    run_due(engine, console, t + timedelta(minutes=5))
    assert [p.channel for p in outbox(session, recipient="clinician")] == ["sms", "voice"]
    run_due(engine, console, t + timedelta(minutes=15))
    assert len(outbox(session, recipient="clinician", status="sent")) == 6
    [alert] = alerts(session, severity="urgent")
    alert.status = "acknowledged"
    session.add(alert)
    session.commit()
    run_due(engine, console, t + timedelta(minutes=40))
    assert len(outbox(session, recipient="clinician")) == 6


# --- the one-statement look-up and the writes without model instances ------------------------


def open_checkin(session, patient_id: int, now: datetime) -> CheckIn | None:
    """The patient's most recent check-in still waiting for an answer, looked up alone."""
    return session.exec(
        select(CheckIn)
        .where(
            CheckIn.patient_id == patient_id,
            CheckIn.state.in_(OPEN_CHECKIN_STATES),
            CheckIn.opened_at >= now - CHECKIN_CONTEXT,
        )
        .order_by(CheckIn.opened_at.desc(), CheckIn.id.desc())
    ).first()


def test_one_look_up_finds_the_rows_of_the_separate_ones(
    session, clock, make_user, make_patient, make_plan
) -> None:
    """``conversation`` reads what find_patient_by_phone, patient_context and open_checkin read."""
    now = datetime(2026, 3, 17, 17, 0, tzinfo=UTC)
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    user, _ = make_user()
    other_team, _ = make_user("Team B")
    enrolled_first = make_patient(user.team_id, phone="+32 470 11 11 11")
    make_plan(enrolled_first, "alemtuzumab_sc", date(2026, 3, 2))
    enrolled_first.discharged_at = clock.now  # their team discharged them: the number is free
    session.add(enrolled_first)
    session.commit()
    clock.now += timedelta(hours=1)
    # The same number, enrolled later in another team: the look-ups route it here.
    patient = make_patient(other_team.team_id, phone="+32 470 11 11 11", display_name="Bert Jansen")
    first_plan = make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    first_plan.status = "stopped"
    session.add(first_plan)
    session.commit()
    clock.now += timedelta(hours=1)
    make_plan(patient, "inotuzumab_weekly", date(2026, 3, 3))  # the current plan
    without_anything = make_patient(user.team_id, phone="+32 470 22 22 22")
    for key, state, opened in [
        ("too-old", "awaiting_temperature", now - timedelta(hours=25)),
        ("older-open", "awaiting_temperature", now - timedelta(hours=3)),
        ("newest-open", "awaiting_symptoms", now - timedelta(hours=2)),
        ("closed", "closed", now - timedelta(hours=1)),
    ]:
        session.add(
            CheckIn(
                patient_id=patient.id,
                event_key=key,
                state=state,
                temperature_c=36.9,
                symptoms=["cough"],
                opened_at=opened,
                last_prompt_at=opened,
            )
        )
    session.commit()

    for phone in (patient.phone, without_anything.phone, "+32470999000"):
        found_patient, team, plan, checkin = conversation(session, phone, now)
        expected = find_patient_by_phone(session, phone)
        assert found_patient is expected
        if expected is None:
            assert team is None and plan is None and checkin is None
            continue
        context = patient_context(session, expected)
        assert team is context.team and plan is context.plan
        expected_checkin = open_checkin(session, expected.id, now)
        if expected_checkin is None:
            assert checkin is None
            continue
        assert checkin is not None
        for name in ("id", "state", "temperature_c", "symptoms", "last_prompt_at"):
            assert getattr(checkin, name) == getattr(expected_checkin, name)
    assert conversation(session, patient.phone, now)[3].state == "awaiting_symptoms"
    assert conversation(session, patient.phone, now)[2].regimen_id == "inotuzumab_weekly"


def test_a_check_in_held_by_the_callers_session_shows_the_answer(
    engine, session, console, clock, treated_patient
) -> None:
    """The check-in is written without its model instance; one loaded by the caller reloads."""
    start_checkin(engine, console, clock, treated_patient)
    with session_scope(engine) as own:
        loaded = own.exec(select(CheckIn)).one()
        assert loaded.state == "awaiting_temperature"
        handle_inbound_sms(
            own,
            provider_sid="SMheld",
            from_phone="+32470123456",
            body="36.8",
            now=IN_CMV_WINDOW + timedelta(minutes=5),
        )
        assert loaded.state == "awaiting_symptoms" and loaded.temperature_c == 36.8
    session.expire_all()
    stored = session.exec(select(CheckIn)).one()
    assert stored.state == "awaiting_symptoms" and stored.temperature_c == 36.8
    assert stored.last_prompt_at == IN_CMV_WINDOW + timedelta(minutes=5)


def test_an_unprompted_report_opens_a_check_in_that_the_message_points_to(
    engine, session, console, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient()
    reply(engine, "37.6", datetime(2026, 4, 20, 10, 0, tzinfo=UTC), sid="SMadhoc")
    session.expire_all()
    checkin = session.exec(select(CheckIn)).one()
    assert checkin.event_key == "adhoc:SMadhoc" and checkin.temperature_c == 37.6
    assert checkin.state == "awaiting_temperature" and checkin.recheck_due_at is not None
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.checkin_id == checkin.id and inbound.intent == "temperature"
    report = session.exec(select(SymptomReport)).one()
    assert report.checkin_id == checkin.id and report.temperature_c == 37.6
    [recheck] = outbox(session, kind="checkin_temperature")
    assert recheck.checkin_id == checkin.id
    [answer] = outbox(session, provider_status="twiml")
    assert answer.checkin_id == checkin.id and answer.dedupe_key == "reply:SMadhoc"


def test_a_repeated_message_sid_from_an_unknown_number_is_stored_once_and_answered_alike(
    engine, session, console, clock, treated_patient
) -> None:
    """The answer to an unknown number (tests/reminders/test_unknown_senders.py) is made
    again for a retry, word for word; the message is stored once."""
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient()
    now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    first = reply(engine, "38.5", now, sid="SMstranger", phone="+32470000001")
    again = reply(engine, "38.5", now, sid="SMstranger", phone="+32470000001")
    assert first.intent == "unknown_sender_answered" and not first.duplicate
    assert again.duplicate and again.reply == first.reply and "112" in first.reply
    session.expire_all()
    [inbound] = session.exec(select(InboundMessage)).all()
    assert inbound.patient_id is None and inbound.intent == "unknown_sender_answered"
    # No team: the answer is the webhook's TwiML only, no outbox row.
    assert outbox(session, to_phone="+32470000001") == []


def test_a_fever_after_a_hold_moved_the_cmv_window_advises_a_cmv_test(
    engine, session, console, clock, treated_patient
) -> None:
    # Issue 11, item 5: the triage reads the CMV window from the doses given and the holds.
    # A two-week hold in week 2 (9 to 23 March) moves the last injection from 22 May to
    # 5 June, and the CMV window with it (to a week after the last dose, 002).
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(display_name="Marie-Françoise Van den Bossche-Lefèvre")
    plan = session.exec(select(Plan).where(Plan.patient_id == patient.id)).one()
    hold_plan(
        session,
        plan,
        patient,
        HoldIn(reason="febrile neutropenia", start_date=date(2026, 3, 9)),
        None,
        clock.now,
    )
    resume_plan(session, plan, patient, ResumeIn(resume_date=date(2026, 3, 23)), None, clock.now)
    session.commit()
    result = reply(engine, "38,3", datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    assert urgent_advice("en") in result.reply and "CMV" in result.reply
    [alert] = alerts(session, patient_id=patient.id, severity="urgent")
    assert alert.details["cmv_test_advised"] is True
