"""One opt-out policy (issue 12, item 11): STOP, 21610 and unreachable numbers, wherever met.

Before, an opt-out (21610) or an unreachable number reported by a Twilio status
callback blocked the patient without telling the care team, while the same error
met by the dispatcher raised an alert. Now the webhook, the status callback and the
dispatcher all call ``reminders.optout`` and each event raises one alert.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from reminders.data.models import Alert, OutboundMessage, Patient
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import TwilioGateway
from tests.conftest import reread
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    TO_OPTED_OUT,
    inbound_sms_params,
    signed_form_post,
)

BASE = "https://companion.test"
NAME = "Marie-Françoise Van den Bossche-Lefèvre"
TEAM = "Hématologie et oncologie pédiatrique — Cliniques universitaires Saint-Luc"
PHONE = "+32470123456"
NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # 11:00 in Brussels


@pytest.fixture
def patient(app, make_user, make_patient, make_plan, clock) -> Patient:
    """A consenting patient on rituximab maintenance: a welcome SMS and reminders queued."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    clock.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    nurse, _ = make_user(team=TEAM)
    patient = make_patient(nurse.team_id, display_name=NAME, phone=PHONE, language="fr")
    make_plan(patient, "rituximab_fl_maintenance", date(2026, 3, 2))
    return patient


def _sent_welcome(session, patient: Patient, sid: str) -> OutboundMessage:
    message = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id, OutboundMessage.kind == "welcome"
        )
    ).one()
    message.status = "sending"  # claimed, then accepted: the dispatcher's two moves
    message.status, message.provider_sid, message.sent_at = "sent", sid, NOW
    session.add(message)
    session.commit()
    return message


def _status(client, sid: str, code: str):
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": code}
    return signed_form_post(client, f"{BASE}/twilio/status", params, FAKE_AUTH_TOKEN)


def _alerts(session, patient: Patient) -> list[Alert]:
    reread(session)
    return list(session.exec(select(Alert).where(Alert.patient_id == patient.id)).all())


@pytest.mark.parametrize(
    ("code", "kind", "opted_out", "blocked"),
    [("21610", "opted_out", True, None), ("21614", "sms_undeliverable", False, "21614")],
)
def test_a_status_callback_opt_out_or_unreachable_number_tells_the_team_once(
    client, session, patient, clock, code, kind, opted_out, blocked
) -> None:
    message = _sent_welcome(session, patient, "SM" + "d" * 32)
    clock.now = NOW
    assert _status(client, message.provider_sid, code).status_code == 204
    assert _status(client, message.provider_sid, code).status_code == 204  # Twilio retries
    [alert] = _alerts(session, patient)
    assert alert.kind == kind and alert.severity == "high" and alert.team_id == patient.team_id
    assert alert.dedupe_key == f"undeliverable:{message.id}"
    assert "Call them" in alert.reason or "call them" in alert.reason
    assert PHONE not in alert.reason and PHONE not in str(alert.details)
    stored = session.get(Patient, patient.id)
    assert stored.opted_out is opted_out
    assert (
        (blocked in (stored.sms_blocked_reason or "")) if blocked else not stored.sms_blocked_reason
    )
    pending = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id, OutboundMessage.status == "pending"
        )
    ).all()
    assert pending == []


def test_a_delivery_error_that_is_not_the_numbers_fault_blocks_nobody(
    client, session, patient, clock
) -> None:
    message = _sent_welcome(session, patient, "SM" + "e" * 32)
    assert _status(client, message.provider_sid, "30003").status_code == 204  # handset off
    reread(session)
    stored = session.get(Patient, patient.id)
    assert not stored.opted_out and stored.sms_blocked_reason is None


def test_the_dispatchers_refusal_then_the_callback_raise_one_alert(
    app, client, session, patient, fake_twilio, clock
) -> None:
    from backend.db import get_engine

    patient.phone = TO_OPTED_OUT  # a number the fake Twilio refuses with 21610
    session.add(patient)
    session.commit()
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=2,
    )
    report = dispatch_due_messages(get_engine(app), gateway, lambda: NOW, threads=1)
    assert report.failed == 1
    [alert] = _alerts(session, patient)
    assert alert.kind == "opted_out" and "21610" in alert.reason
    failed = session.exec(select(OutboundMessage).where(OutboundMessage.status == "failed")).one()
    failed.provider_sid = "SM" + "f" * 32
    session.add(failed)
    session.commit()
    assert _status(client, failed.provider_sid, "21610").status_code == 204
    assert len(_alerts(session, patient)) == 1


def test_stop_then_start_go_through_the_same_policy(client, session, patient, clock) -> None:
    clock.now = NOW
    stop = inbound_sms_params(PHONE, "STOP", "+32460000000")
    assert signed_form_post(client, f"{BASE}/twilio/sms", stop, FAKE_AUTH_TOKEN).status_code == 200
    [alert] = _alerts(session, patient)
    assert alert.kind == "opted_out" and alert.details["cause"] == "stop_keyword"
    assert session.get(Patient, patient.id).opted_out
    start = inbound_sms_params(PHONE, "START", "+32460000000")
    assert signed_form_post(client, f"{BASE}/twilio/sms", start, FAKE_AUTH_TOKEN).status_code == 200
    reread(session)
    assert not session.get(Patient, patient.id).opted_out


_SETS_BLOCK = re.compile(r"\bpatient\.(opted_out|sms_blocked_reason)\b[^\n=]*=(?!=)[^\n]*")


def test_only_the_policy_module_blocks_a_patients_sms() -> None:
    """No second copy: STOP, 21610 and unreachable numbers are recorded in reminders/optout.py.

    (Clearing is allowed elsewhere: a new number clears the unreachable mark.)
    """
    root = Path(__file__).resolve().parents[2]
    setters = []
    for path in [
        *root.joinpath("backend").rglob("*.py"),
        *root.joinpath("reminders").rglob("*.py"),
    ]:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _SETS_BLOCK.search(line)
            if match and not re.search(r"=\s*(None|False)\b", match.group(0)):
                setters.append(f"{path.relative_to(root)}: {line.strip()}")
    assert setters and all(s.startswith("reminders/optout.py") for s in setters), setters
