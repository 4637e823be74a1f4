"""A copy to a family contact that Twilio refuses or fails: the contact's, not the patient's.

Before, a copy to a relative refused with 21610 (opted out at the carrier) raised a high
``sms_undeliverable`` alert on the patient, "SMS refused by the provider (code 21610)",
which reads as if the patient could not be reached; each later copy raised another, and
copies went on to a number that refused them. Now the one opt-out policy
(``reminders/optout.py``) stops that contact's copies and tells the team once, with an
alert of its own kind; the patient's SMS go on.

On SQLite and PostgreSQL, through the dispatcher, the real twilio client and the test
Twilio server, and through signed status callbacks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.family_contacts import FAMILY_UNDELIVERABLE_KIND
from reminders.data.models import Alert, FamilyContact, OutboundMessage, Patient
from reminders.data.statuses import OutboxStatus
from reminders.delivery import DispatchReport, fail_out_of_attempts
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import TwilioGateway
from reminders.planning import materialise_due_messages
from tests.backend.dashboard.conftest import PASSWORD, sign_in
from tests.backend.test_webhooks import through
from tests.conftest import reread
from tests.reminders.test_family_contacts import (
    DAUGHTER_PHONE,
    PATIENT_NAME,
    SON_PHONE,
    add,
    sms,
    to_family,
)
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    TO_NO_PERMISSION,
    TO_NOT_MOBILE,
    TO_OPTED_OUT,
    FakeTwilio,
)

TEAM = "Hématologie — Cliniques universitaires Saint-Luc"
BASE = "https://companion.test"
STATUS_URL = f"{BASE}/twilio/status"
#: The kinds that would say the patient cannot be reached.
PATIENT_KINDS = {"sms_undeliverable", "opted_out"}


@pytest.fixture
def ward(app, make_user, treated, clock) -> dict[str, Any]:
    """A French-speaking patient on alemtuzumab; a nurse of their team who can sign in."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    nurse, _ = make_user(team=TEAM, password=PASSWORD)
    patient, _ = treated(nurse.team_id, display_name=PATIENT_NAME, language="fr")
    return {"nurse": nurse, "patient": patient}


def gateway(fake: FakeTwilio) -> TwilioGateway:
    return TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake.base_url,
        timeout=2,
    )


def dispatch(engine, fake: FakeTwilio, now) -> DispatchReport:
    return dispatch_due_messages(
        engine, gateway(fake), lambda: now, threads=1, status_callback=STATUS_URL
    )


def alerts(session: Session, patient: Patient) -> list[Alert]:
    reread(session)
    query = select(Alert).where(Alert.patient_id == patient.id).order_by(Alert.id)
    return list(session.exec(query).all())


def family_alerts(session: Session, patient: Patient) -> list[Alert]:
    return [a for a in alerts(session, patient) if a.kind == FAMILY_UNDELIVERABLE_KIND]


def assert_the_patients_sms_go_on(
    session: Session, engine, fake: FakeTwilio, patient: Patient, now
) -> None:
    """Nothing blocked, nothing of theirs cancelled, tomorrow's SMS planned and sent to them."""
    stored = reread(session).get(Patient, patient.id)
    assert stored.opted_out is False and stored.sms_blocked_reason is None
    assert not [a for a in alerts(session, patient) if a.kind in PATIENT_KINDS]
    cancelled = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == OutboxStatus.CANCELLED,
        )
    ).all()
    assert cancelled == []
    sent_before = len(fake.bodies_to(patient.phone))
    tomorrow = now + timedelta(days=1)
    materialise_due_messages(session, tomorrow)
    session.commit()
    dispatch(engine, fake, tomorrow)
    assert len(fake.bodies_to(patient.phone)) > sent_before


def assert_one_stop_alert(alert: Alert, contact: FamilyContact, code: str, cause: str) -> None:
    assert (alert.severity, alert.kind, alert.status) == ("high", FAMILY_UNDELIVERABLE_KIND, "open")
    assert "family contact (dochter)" in alert.reason and code in alert.reason
    assert "copies" in alert.reason and "have stopped" in alert.reason
    assert "Check the number with the patient" in alert.reason
    assert "patient's own SMS go on" in alert.reason
    assert contact.phone not in alert.reason and contact.phone not in str(alert.details)
    assert contact.name not in alert.reason
    assert alert.details == {
        "message_id": alert.details["message_id"],
        "error_code": code,
        "family_contact_id": contact.id,
        "cause": cause,
    }


def family_page(client: FlaskClient, ward: dict[str, Any]) -> str:
    assert sign_in(client, ward["nurse"].email).status_code == 302
    page = client.get(f"/patients/{ward['patient'].id}/family")
    assert page.status_code == 200
    return page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("number", "code", "cause", "page_says"),
    [
        (TO_OPTED_OUT, "21610", "carrier_opt_out", "opted out at the carrier (Twilio 21610)"),
        (TO_NOT_MOBILE, "21614", "unreachable", "the number cannot get SMS"),
    ],
)
def test_a_copy_refused_at_dispatch_stops_that_contacts_copies_with_one_alert(
    client, session, ward, engine, fake_twilio, clock, number, code, cause, page_says
) -> None:
    patient = ward["patient"]
    daughter = add(session, patient, "Zoë Vandenbroucke", number, "nl", "dochter")
    son = add(session, patient, "Jean-Christophe Delacroix", SON_PHONE, "en", "son")
    # A fever: the urgent copies join the welcome SMS (family_info) to each contact, so
    # the dispatcher meets two copies to the refusing number in the same pass.
    sms(session, patient.phone, "39,2 et des frissons", clock.now, sid="SMfever1")
    report = dispatch(engine, fake_twilio, clock.now)
    assert report.failed == 2

    refused = [m for m in to_family(session) if m.to_phone == number]
    assert {m.kind for m in refused} == {"family_info", "family_urgent_copy"}
    assert {(m.status, m.error_code) for m in refused} == {(OutboxStatus.FAILED, code)}
    # One alert for the stop; the second refusal found the contact stopped already.
    [alert] = family_alerts(session, patient)
    stopped = session.get(FamilyContact, daughter.id)
    assert stopped.opted_out_at == clock.now
    assert_one_stop_alert(alert, stopped, code, cause)
    assert alert.details["message_id"] in {m.id for m in refused}
    [fever] = [a for a in alerts(session, patient) if a.kind != FAMILY_UNDELIVERABLE_KIND]
    assert fever.severity == "urgent"  # the patient's own alert, untouched

    # The son's copies went; the next fever is copied to him only.
    assert session.get(FamilyContact, son.id).opted_out_at is None
    assert {m.status for m in to_family(session) if m.to_phone == SON_PHONE} == {OutboxStatus.SENT}
    later = clock.now + timedelta(hours=2)
    sms(session, patient.phone, "39,4", later, sid="SMfever2")
    copies = to_family(session, "family_urgent_copy")
    assert [m.to_phone for m in copies if m.dedupe_key.endswith("SMfever2")] == [SON_PHONE]
    dispatch(engine, fake_twilio, later)
    assert len(family_alerts(session, patient)) == 1
    assert_the_patients_sms_go_on(session, engine, fake_twilio, patient, later)

    # The family page says why the copies stopped, not "replied STOP" (the son's own
    # STOP still reads as his).
    sms(session, SON_PHONE, "STOP", later)
    shown = family_page(client, ward)
    assert page_says in shown and shown.count("replied STOP") == 1
    assert len(family_alerts(session, patient)) == 1  # a relative's STOP raises nothing


def test_an_undelivered_status_callback_21610_on_a_copy_stops_the_contact_once(
    client, session, ward, engine, fake_twilio, clock
) -> None:
    patient = ward["patient"]
    daughter = add(session, patient, "Zoë Vandenbroucke", DAUGHTER_PHONE, "nl", "dochter")
    sms(session, patient.phone, "39,2 et des frissons", clock.now, sid="SMfever1")
    assert dispatch(engine, fake_twilio, clock.now).failed == 0
    info, copy = sorted(
        (m for m in to_family(session) if m.to_phone == DAUGHTER_PHONE), key=lambda m: m.kind
    )
    assert (info.kind, copy.kind) == ("family_info", "family_urgent_copy")
    assert info.status == copy.status == OutboxStatus.SENT
    nudge = OutboundMessage(  # a nudge queued before the report comes in: cancelled by the stop
        team_id=patient.team_id,
        patient_id=patient.id,
        recipient="family",
        to_phone=DAUGHTER_PHONE,
        kind="family_checkin_nudge",
        body="Zorgteam: kijk even naar Marie-Thérèse.",
        dedupe_key="family:test-nudge",
        due_at=clock.now + timedelta(hours=3),
        next_attempt_at=clock.now + timedelta(hours=3),
        created_at=clock.now,
    )
    session.add(nudge)
    session.commit()

    later = clock.now + timedelta(minutes=5)
    clock.now = later
    post = through(client)
    assert (
        fake_twilio.send_status_callback(
            copy.provider_sid, "undelivered", error_code=21610, post=post
        )
        == 204
    )
    # Twilio retries the same report, then reports the earlier copy undelivered too.
    assert (
        fake_twilio.send_status_callback(
            copy.provider_sid, "undelivered", error_code=21610, post=post
        )
        == 204
    )
    assert (
        fake_twilio.send_status_callback(
            info.provider_sid, "undelivered", error_code=21610, post=post
        )
        == 204
    )

    [alert] = family_alerts(session, patient)
    stopped = reread(session).get(FamilyContact, daughter.id)
    assert stopped.opted_out_at == later
    assert_one_stop_alert(alert, stopped, "21610", "carrier_opt_out")
    assert alert.details["message_id"] == copy.id and alert.created_at == later
    assert session.get(OutboundMessage, copy.id).status == OutboxStatus.UNDELIVERED
    assert session.get(OutboundMessage, nudge.id).status == OutboxStatus.CANCELLED
    assert_the_patients_sms_go_on(session, engine, fake_twilio, patient, later)
    assert "opted out at the carrier (Twilio 21610)" in family_page(client, ward)


def test_another_refusal_or_running_out_of_attempts_on_a_copy_says_it_was_a_copy(
    session, ward, engine, fake_twilio, clock
) -> None:
    """Not the number's fault (21408: no permission for the region): the copy failed, the
    contact is not stopped, and the alert names the copy, not the patient's SMS."""
    patient = ward["patient"]
    daughter = add(session, patient, "Zoë Vandenbroucke", TO_NO_PERMISSION, "nl", "dochter")
    son = add(session, patient, "Jean-Christophe Delacroix", SON_PHONE, "en", "son")
    report = dispatch(engine, fake_twilio, clock.now)
    assert report.failed == 1
    [refused] = [a for a in alerts(session, patient) if a.kind == FAMILY_UNDELIVERABLE_KIND]
    assert refused.severity == "high" and "cause" not in refused.details
    assert refused.reason.startswith("A copy to the patient's family contact (dochter) failed")
    assert "not the patient's own SMS" in refused.reason and "21408" in refused.reason
    assert TO_NO_PERMISSION not in refused.reason + str(refused.details)
    assert refused.details["family_contact_id"] == daughter.id
    assert reread(session).get(FamilyContact, daughter.id).opted_out_at is None

    # A copy out of attempts (transient errors each time): the same words.
    copy = OutboundMessage(
        team_id=patient.team_id,
        patient_id=patient.id,
        recipient="family",
        to_phone=SON_PHONE,
        kind="family_checkin_nudge",
        body="Care team: please check on Marie-Thérèse.",
        dedupe_key="family:test-out-of-attempts",
        due_at=clock.now,
        next_attempt_at=clock.now,
        attempts=6,
        status=OutboxStatus.SENDING,
        error_code="20500",
        created_at=clock.now,
    )
    session.add(copy)
    session.commit()
    fail_out_of_attempts(session, copy, clock.now, DispatchReport())
    session.commit()
    [_, exhausted] = family_alerts(session, patient)
    assert exhausted.reason == (
        "A copy to the patient's family contact (son) failed, not the patient's own SMS: "
        "SMS could not be delivered after 6 attempts."
    )
    assert exhausted.details["family_contact_id"] == son.id
    assert not [a for a in alerts(session, patient) if a.kind in PATIENT_KINDS]
