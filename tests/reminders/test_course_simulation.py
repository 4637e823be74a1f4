"""A whole 12-week alemtuzumab course, day by day in Brussels time, through the real twilio client.

The clock runs at every instant a message is planned for (and at 22:00 each
night); the simulated patient answers every check-in and confirms every pill.
Every SMS Twilio received must be one the plan asked for, at its planned local
time, exactly once, across the daylight-saving change of 29 March 2026.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from reminders.conversations import handle_inbound_sms
from reminders.core.messaging import ContactPrefs, messages_for_event
from reminders.core.planner import plan_doses, plan_events, prophylaxis_events
from reminders.data.db import session_scope
from reminders.data.models import Alert, OutboundMessage, Patient, PillConfirmation, Plan
from reminders.gateways import TwilioGateway
from reminders.jobs import run_due
from reminders.specs import build_plan_spec, build_prophylaxis_spec
from tests.conftest import reread
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID

BRUSSELS = ZoneInfo("Europe/Brussels")
START = date(2026, 3, 2)  # a Monday; DST starts on Sunday 29 March
END = date(2026, 5, 31)


def expected_messages(session, patient: Patient) -> dict[str, datetime]:
    """dedupe key suffix -> planned send instant, for every plan and pill message of the course."""
    plan = session.exec(select(Plan).where(Plan.patient_id == patient.id)).one()
    spec = build_plan_spec(plan, patient, (), ())
    prefs = ContactPrefs(patient.timezone, patient.quiet_start, patient.quiet_end)
    window = (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime.combine(END, time(0), BRUSSELS).astimezone(UTC),
    )
    events = plan_events(spec, *window)
    from backend.services.prophylaxis import courses_of

    for course in courses_of(session, patient.id):
        events += prophylaxis_events(build_prophylaxis_spec(course, patient.timezone), *window)
    expected = {}
    for event in events:
        for message in messages_for_event(event, prefs):
            if window[0] <= message.send_at < window[1]:
                expected[message.key] = message.send_at
    return expected


@pytest.mark.slow
def test_a_full_12_week_course(app, engine, session, treated_patient, clock, fake_twilio) -> None:
    clock.now = datetime(2026, 2, 25, 9, 0, tzinfo=UTC)
    patient = treated_patient(start=START, quiet_start=time(22, 0), quiet_end=time(7, 0))
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=5,
    )
    expected = expected_messages(session, patient)
    nightly = {
        datetime.combine(START + timedelta(days=d), time(22, 0), BRUSSELS).astimezone(UTC)
        for d in range(-1, (END - START).days)
    }
    instants = sorted(set(expected.values()) | nightly)
    replies = 0
    for now in instants:
        run_due(engine, gateway, now)
        with session_scope(engine) as s:
            just_sent = s.exec(
                select(OutboundMessage).where(
                    OutboundMessage.sent_at == now, OutboundMessage.recipient == "patient"
                )
            ).all()
            answers = []
            for message in just_sent:
                if message.expects == "temperature":
                    answers += [("36.8", 2), ("0", 3)]
                elif message.expects == "taken":
                    answers.append(("TAKEN", 5))
        for number, (text, minutes) in enumerate(answers):
            replies += 1
            with session_scope(engine) as s:
                result = handle_inbound_sms(
                    s,
                    provider_sid=f"SMsim{replies}",
                    from_phone=patient.phone,
                    body=text,
                    now=now + timedelta(minutes=minutes + number),
                )
                assert result.reply, (now, text)

    reread(session)
    sent = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id, OutboundMessage.provider_sid.is_not(None)
        )
    ).all()
    planned = [m for m in sent if m.plan_id or m.course_id]
    by_key = {m.dedupe_key.split(":", 2)[2]: m for m in planned}

    # Every planned message was sent once, at its planned instant, and nothing else was.
    assert len(by_key) == len(planned)
    assert set(by_key) == set(expected)
    for key, message in by_key.items():
        assert message.sent_at == expected[key], key
    assert {m.kind for m in sent if not (m.plan_id or m.course_id)} == {"welcome"}

    # Twilio received exactly these messages (the real client, a real HTTP server), once each.
    received = fake_twilio.messages
    assert len(received) == len(sent)
    assert Counter(r["body"] for r in received) == Counter(m.body for m in sent)
    assert {m.provider_sid for m in sent} == {r["sid"] for r in received}
    assert all(r["to"] == patient.phone for r in received)

    # Pinned against the regimen: 36 doses, Mon/Wed/Fri, reminders at 07:30 local across DST.
    doses = plan_doses(build_plan_spec(session.exec(select(Plan)).one(), patient, (), ()))
    assert len(doses) == 36 and doses[-1].date == date(2026, 5, 22)
    mornings = sorted(
        m.sent_at.astimezone(BRUSSELS) for m in planned if m.kind == "dose_reminder_morning"
    )
    assert len(mornings) == 36
    assert {m.time() for m in mornings} == {time(7, 30)}
    assert {m.weekday() for m in mornings} == {0, 2, 4}
    evenings = [
        m for m in planned if m.kind in ("dose_reminder_evening_before", "first_dose_in_hospital")
    ]
    assert len(evenings) == 36 and sum(m.kind == "first_dose_in_hospital" for m in evenings) == 1
    assert {m.sent_at.astimezone(BRUSSELS).time() for m in evenings} == {time(19, 0)}
    assert all("09:00" in m.body for m in planned if m.kind == "dose_reminder_morning")
    labs = [m for m in planned if m.kind == "lab_reminder"]
    assert len(labs) == 12  # weekly CMV PCR during the 12 weeks of therapy
    checkins = sorted(
        m.sent_at.astimezone(BRUSSELS).date() for m in planned if m.kind == "checkin_temperature"
    )
    assert checkins[:56] == [START + timedelta(days=d) for d in range(56)]  # daily in weeks 1-8
    assert all(
        c.hour == 18
        for c in (
            m.sent_at.astimezone(BRUSSELS) for m in planned if m.kind == "checkin_temperature"
        )
    )

    # The patient answered everything: no alert about the patient, full adherence recorded.
    # The decisions of the course reach the team as tasks on their day (issue 11, item 9):
    # the week-4 response review and the week-12 marrow (003, Table 3).
    alerts = session.exec(select(Alert).order_by(Alert.created_at)).all()
    assert [(a.kind, a.details["milestone"], a.details["due_date"]) for a in alerts] == [
        ("decision_task", "week4_review", "2026-03-30"),
        ("decision_task", "week12_marrow", "2026-05-18"),
    ]
    assert all(
        a.created_at.astimezone(BRUSSELS).date().isoformat() == a.details["due_date"]
        for a in alerts
    )
    pills = [m for m in planned if m.kind == "pill_reminder"]
    assert len(session.exec(select(PillConfirmation)).all()) == len(pills)
