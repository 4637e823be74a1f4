"""Retention: SMS from unknown numbers deleted after 30 days, delivery details trimmed after 90.

Rows come from the real paths (a planning pass and the dispatcher sending through the
console gateway, replies through ``handle_inbound_sms``), with ``now`` injected; the rows
left in flight are written as the dispatcher leaves them (a retry pending with its
number, an unanswered send ``unconfirmed``). Both engines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from reminders.clock import JobSpec
from reminders.conversations import handle_inbound_sms
from reminders.data.db import session_scope
from reminders.data.models import InboundMessage, OutboundMessage
from reminders.data.retention import (
    DELIVERY_DETAIL_COLUMNS,
    apply_retention,
    delete_unknown_sender_sms,
    retention_due,
    trim_delivery_details,
)
from reminders.data.statuses import OutboxStatus
from reminders.jobs import retention_jobs, run_due
from reminders.outbox import insert_ignoring_duplicates, outbox_row

PHONE = "+32470123456"
STRANGER = "+32471987654"
SENT_DAY = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # the 08:00 pills go out


def inbound(engine, body: str, at: datetime, phone: str, sid: str) -> None:
    with session_scope(engine) as session:
        handle_inbound_sms(session, provider_sid=sid, from_phone=phone, body=body, now=at)


def rows(session: Session, model) -> list:
    session.commit()
    session.expire_all()
    return list(session.exec(select(model).order_by(model.id)).scalars())


def test_sms_from_unknown_numbers_go_after_30_days_and_the_patients_stay(
    engine, session, clock, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient(display_name="Marie-Thérèse Vandenbroucke-Delacroix", phone=PHONE)
    received = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    inbound(engine, "Bonjour, c'est Luc ? Rappelle-moi", received, STRANGER, "SMstranger1")
    inbound(engine, "Mauvais numéro", received + timedelta(days=2), STRANGER, "SMstranger2")
    inbound(engine, "Pris", received, PHONE, "SMpatient1")

    day_30 = received + timedelta(days=30)
    assert delete_unknown_sender_sms(session, day_30) == 0  # exactly 30 days: still kept
    session.commit()
    assert delete_unknown_sender_sms(session, day_30 + timedelta(seconds=1)) == 1
    session.commit()
    left = rows(session, InboundMessage)
    assert [m.provider_sid for m in left] == ["SMstranger2", "SMpatient1"]

    a_year_on = received + timedelta(days=365)
    assert delete_unknown_sender_sms(session, a_year_on) == 1
    session.commit()
    assert [m.provider_sid for m in rows(session, InboundMessage)] == ["SMpatient1"]


def test_delivery_details_of_settled_sms_go_after_the_period_and_the_record_stays(
    engine, session, clock, console, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(display_name="Marie-Thérèse Vandenbroucke-Delacroix", phone=PHONE)
    run_due(engine, console, SENT_DAY)
    sent = [m for m in rows(session, OutboundMessage) if m.status == OutboxStatus.SENT]
    assert sent and all(m.to_phone == PHONE and m.provider_sid for m in sent)

    # What the dispatcher leaves in flight: a retry waiting with its number and last
    # error, an unanswered send waiting for crash recovery; and a send Twilio refused.
    def attempted(key: str, **columns) -> dict:
        return outbox_row(
            team_id=patient.team_id,
            patient_id=patient.id,
            kind="one_off",
            body="Votre prise de sang est demain.",
            dedupe_key=key,
            now=SENT_DAY,
            to_phone=PHONE,
            attempts=1,
            **columns,
        )

    claim = {"claimed_at": SENT_DAY, "claimed_by": "dispatcher-1"}
    insert_ignoring_duplicates(
        session,
        [
            attempted("retry", error_code="20429", error_reason="too many requests"),
            attempted("in-doubt", status=OutboxStatus.UNCONFIRMED, **claim),
            attempted(
                "refused",
                status=OutboxStatus.FAILED,
                error_code="21211",
                error_reason=f"The 'To' number {PHONE} is not a valid phone number.",
                **claim,
            ),
        ],
    )
    session.commit()
    before = {m.id: m for m in rows(session, OutboundMessage)}
    last_sent = max(m.sent_at for m in sent)

    inside = last_sent + timedelta(days=90)
    assert trim_delivery_details(session, inside) == 0  # 90 days exactly: kept
    session.commit()
    after = last_sent + timedelta(days=90, seconds=1)
    due = retention_due(session, after)
    trimmed = trim_delivery_details(session, after)
    assert trimmed == len(sent) + 1 == due.delivery_details_trimmed  # and the refused one
    session.commit()

    for message in rows(session, OutboundMessage):
        old = before[message.id]
        kept = (message.status, message.sent_at, message.body, message.kind, message.attempts)
        assert kept == (old.status, old.sent_at, old.body, old.kind, old.attempts)
        details = [getattr(message, name) for name in DELIVERY_DETAIL_COLUMNS]
        if message.dedupe_key in ("retry", "in-doubt"):
            assert details == [getattr(old, name) for name in DELIVERY_DETAIL_COLUMNS]
            assert message.to_phone == PHONE  # crash recovery and the retry need it
        elif old.status in (OutboxStatus.SENT, OutboxStatus.FAILED):
            assert details == [None] * len(DELIVERY_DETAIL_COLUMNS)
            assert message.error_reason is None  # the carrier's text may quote the number
        else:  # planned, or never sent: the companion's own reason why stays in the record
            assert details == [getattr(old, name) for name in DELIVERY_DETAIL_COLUMNS]
            assert message.error_reason == old.error_reason
    missed = [m for m in rows(session, OutboundMessage) if m.status == OutboxStatus.MISSED]
    assert missed and all(m.error_reason for m in missed)  # "no longer useful" ...
    assert trim_delivery_details(session, after + timedelta(days=1)) == 0  # nothing left


def test_a_late_delivery_report_keeps_the_details_until_it_is_old_too(
    engine, session, clock, console, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient(phone=PHONE)
    run_due(engine, console, SENT_DAY)
    message = next(m for m in rows(session, OutboundMessage) if m.status == OutboxStatus.SENT)
    message.status = OutboxStatus.DELIVERED
    message.delivered_at = message.sent_at + timedelta(days=20)
    session.add(message)
    session.commit()
    reported = message.delivered_at
    sent_count = sum(1 for m in rows(session, OutboundMessage) if m.status == OutboxStatus.SENT)

    trimmed = trim_delivery_details(session, message.sent_at + timedelta(days=95))
    session.commit()
    assert trimmed == sent_count  # the others; this one's report is 75 days old
    assert session.get(OutboundMessage, message.id).provider_sid is not None
    assert trim_delivery_details(session, reported + timedelta(days=91)) == 1
    session.commit()
    session.expire_all()
    row = session.get(OutboundMessage, message.id)
    assert (row.provider_sid, row.to_phone, row.status) == (None, None, "delivered")
    assert row.delivered_at == reported


def test_the_clock_jobs_apply_the_configured_periods(
    engine, session, clock, console, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient(phone=PHONE)
    run_due(engine, console, SENT_DAY)
    inbound(engine, "Qui est-ce ?", SENT_DAY, STRANGER, "SMstranger")
    jobs = {spec.id: spec for spec in (JobSpec(*job) for job in retention_jobs(10, 20))}
    assert set(jobs) == {"delete-unknown-sender-sms", "trim-delivery-details"}
    assert {spec.every_seconds for spec in jobs.values()} == {86_400}

    eleven_days_on = SENT_DAY + timedelta(days=11)
    assert jobs["delete-unknown-sender-sms"].func(engine, eleven_days_on) == 1
    assert jobs["trim-delivery-details"].func(engine, eleven_days_on) == 0  # 20 days
    assert jobs["trim-delivery-details"].func(engine, SENT_DAY + timedelta(days=21)) > 0
    assert rows(session, InboundMessage) == []


def test_apply_retention_reports_both_counts_and_refuses_a_too_short_period(
    engine, session, clock, console, treated_patient
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    treated_patient(phone=PHONE)
    run_due(engine, console, SENT_DAY)
    inbound(engine, "Qui est-ce ?", SENT_DAY, STRANGER, "SMstranger")
    later = SENT_DAY + timedelta(days=120)
    preview = retention_due(session, later)
    report = apply_retention(session, later)
    session.commit()
    assert report == preview and report.unknown_sender_sms_deleted == 1
    assert report.delivery_details_trimmed > 0
    with pytest.raises(ValueError, match="at least 7 days"):
        trim_delivery_details(session, later, older_than_days=2)
