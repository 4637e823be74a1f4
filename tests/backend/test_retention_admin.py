"""Retention as an admin action: the API route and the CLI command, each audited.

``POST /api/v1/retention/run`` (admins; 403 for others, nothing changed, no row) and
``flask --app backend retention run [--now]`` apply the rules with the configured periods
and write a ``run_retention`` row naming the counts, never a number or a text.
The dashboard's button is in ``tests/backend/dashboard/test_retention_page.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlmodel import Session

from reminders.conversations import handle_inbound_sms
from reminders.data.models import AuditEvent, InboundMessage, OutboundMessage
from reminders.data.statuses import AuditAction, AuditChannel, OutboxStatus
from reminders.outbox import insert_ignoring_duplicates, outbox_row
from tests.conftest import Clock, bearer

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
PHONE = "+32470123456"
STRANGER = "+32471987654"


def seed_expired(session: Session, team_id: int, patient_id: int, now: datetime) -> None:
    """One SMS from an unknown number 40 days old and one from 10 days ago; an SMS sent to the
    patient 100 days ago and one 10 days ago, both with their delivery details."""
    for sid, days in (("SMold", 40), ("SMrecent", 10)):
        handle_inbound_sms(
            session,
            provider_sid=sid,
            from_phone=STRANGER,
            body="Bonjour, qui est-ce ?",
            now=now - timedelta(days=days),
        )
    insert_ignoring_duplicates(
        session,
        [
            outbox_row(
                team_id=team_id,
                patient_id=patient_id,
                kind="one_off",
                body="Votre prise de sang est demain à 8 h.",
                dedupe_key=f"sent-{days}",
                now=now - timedelta(days=days),
                status=OutboxStatus.SENT,
                to_phone=PHONE,
                provider_sid=f"SM{days:032d}",
                claimed_at=now - timedelta(days=days),
                claimed_by="dispatcher-1",
                sent_at=now - timedelta(days=days),
                attempts=1,
            )
            for days in (100, 10)
        ],
    )
    session.commit()


def state(session: Session) -> tuple[list[str], list[str | None]]:
    """(the inbound MessageSids left, the seeded sent SMS' numbers), oldest first."""
    session.commit()
    session.expire_all()
    inbound = session.execute(select(InboundMessage.provider_sid).order_by(InboundMessage.id))
    numbers = session.execute(
        select(OutboundMessage.to_phone)
        .where(OutboundMessage.dedupe_key.like("sent-%"))
        .order_by(OutboundMessage.id)
    )
    return list(inbound.scalars()), list(numbers.scalars())


def retention_rows(session: Session) -> list[AuditEvent]:
    session.commit()
    query = select(AuditEvent).where(AuditEvent.action == AuditAction.RUN_RETENTION)
    return list(session.execute(query).scalars())


def setup(make_user, make_patient, session: Session, clock: Clock, role: str) -> tuple[Any, str]:
    user, token = make_user(team="Hématologie — Saint-Luc", role=role)
    patient = make_patient(user.team_id, display_name=NAME, phone=PHONE)
    seed_expired(session, user.team_id, patient.id, clock.now)
    return user, token


def test_an_admin_runs_retention_through_the_api_and_it_is_audited(
    client, session: Session, make_user, make_patient, clock: Clock
) -> None:
    admin, token = setup(make_user, make_patient, session, clock, "admin")
    answer = client.post("/api/v1/retention/run", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"unknown_sender_sms_deleted": 1, "delivery_details_trimmed": 1}
    assert state(session) == (["SMrecent"], [None, PHONE])
    (row,) = retention_rows(session)
    assert (row.user_id, row.team_id, row.patient_id, row.channel) == (
        admin.id,
        admin.team_id,
        None,
        AuditChannel.API,
    )
    assert row.target == "unknown_sms:1,delivery_details:1"
    again = client.post("/api/v1/retention/run", headers=bearer(token))
    assert again.get_json() == {"unknown_sender_sms_deleted": 0, "delivery_details_trimmed": 0}


def test_a_nurse_gets_403_and_nothing_changes(
    client, session: Session, make_user, make_patient, clock: Clock
) -> None:
    _, token = setup(make_user, make_patient, session, clock, "nurse")
    answer = client.post("/api/v1/retention/run", headers=bearer(token))
    assert answer.status_code == 403
    assert state(session) == (["SMold", "SMrecent"], [PHONE, PHONE])
    assert retention_rows(session) == []


def test_the_cli_runs_retention_as_of_now_and_is_audited(
    app: Flask, session: Session, make_user, make_patient, clock: Clock
) -> None:
    setup(make_user, make_patient, session, clock, "nurse")
    runner = app.test_cli_runner()
    earlier = (clock.now - timedelta(days=5)).isoformat()
    result = runner.invoke(args=["retention", "run", "--now", earlier])
    assert result.exit_code == 0, result.output
    # Five days earlier the old SMS was 35 days old and the old delivery 95: both go.
    assert result.output.strip() == "unknown_sender_sms_deleted=1 delivery_details_trimmed=1"
    assert PHONE not in result.output and STRANGER not in result.output
    assert state(session) == (["SMrecent"], [None, PHONE])
    (row,) = retention_rows(session)
    assert (row.user_id, row.channel, row.target) == (
        None,
        AuditChannel.CLI,
        "unknown_sms:1,delivery_details:1",
    )
    refused = runner.invoke(args=["retention", "run", "--now", "2026-03-02T10:00:00"])
    assert refused.exit_code == 2 and "UTC offset" in refused.output


def test_the_configured_periods_are_the_ones_applied(
    app: Flask, client, session: Session, make_user, make_patient, clock: Clock
) -> None:
    _, token = setup(make_user, make_patient, session, clock, "admin")
    app.config.update(UNKNOWN_SENDER_SMS_RETENTION_DAYS=60, DELIVERY_DETAILS_RETENTION_DAYS=7)
    answer = client.post("/api/v1/retention/run", headers=bearer(token))
    assert answer.get_json() == {"unknown_sender_sms_deleted": 0, "delivery_details_trimmed": 2}
    assert state(session) == (["SMold", "SMrecent"], [None, None])


def test_a_retention_period_out_of_range_stops_the_app_naming_it(tmp_path) -> None:
    from backend import create_app
    from backend.config import load_environment

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    for key, value in (
        ("DELIVERY_DETAILS_RETENTION_DAYS", 3),
        ("UNKNOWN_SENDER_SMS_RETENTION_DAYS", 0),
    ):
        with pytest.raises(ValueError, match=key):
            create_app({"TESTING": True, "DATABASE_URL": url, key: value})
    assert load_environment({"DELIVERY_DETAILS_RETENTION_DAYS": "120"}) == {
        "DELIVERY_DETAILS_RETENTION_DAYS": 120
    }
