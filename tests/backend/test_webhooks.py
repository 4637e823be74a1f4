"""Twilio webhooks: signatures, TwiML answers, duplicate MessageSids, delivery status."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import select
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from backend.models import Alert, InboundMessage, OutboundMessage, Patient
from backend.webhooks import _FlatForm, signature_matches, twiml
from reminders.core.clinical_rules import urgent_advice
from tests.conftest import reread
from tests.twilio_fake import (
    FAKE_AUTH_TOKEN,
    inbound_sms_params,
    signed_form_post,
    twilio_signature,
)

BASE = "https://companion.test"
PATIENT_PHONE = "+32470123456"
OUR_NUMBER = "+32460000000"


@pytest.fixture
def twilio_app(app):
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    app.config["PUBLIC_BASE_URL"] = BASE
    return app


@pytest.fixture
def patient(make_user, make_patient, make_plan, clock) -> Patient:
    clock.now = datetime(2026, 3, 17, 17, 5, tzinfo=UTC)
    user, _ = make_user()
    patient = make_patient(user.team_id, phone=PATIENT_PHONE)
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    return patient


def post_sms(client, body: str, sid: str | None = None, token: str = FAKE_AUTH_TOKEN):
    params = inbound_sms_params(PATIENT_PHONE, body, OUR_NUMBER, sid=sid)
    return signed_form_post(client, f"{BASE}/twilio/sms", params, token)


def test_a_signed_fever_sms_is_answered_in_twiml_and_alerts(
    twilio_app, client, session, patient
) -> None:
    response = post_sms(client, "38.6")
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert "<Response><Message>" in response.text
    assert urgent_advice("en") in response.text
    alert = session.exec(select(Alert)).one()
    assert alert.severity == "urgent" and alert.patient_id == patient.id


def test_forged_or_missing_signatures_are_refused(twilio_app, client, session, patient) -> None:
    params = inbound_sms_params(PATIENT_PHONE, "38.6", OUR_NUMBER)
    assert client.post("/twilio/sms", base_url=BASE, data=params).status_code == 403
    forged = {"X-Twilio-Signature": twilio_signature(f"{BASE}/twilio/sms", params, "not-our-token")}
    assert client.post("/twilio/sms", base_url=BASE, data=params, headers=forged).status_code == 403
    # A valid signature for other parameters does not cover tampered ones.
    signature = twilio_signature(f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    tampered = {**params, "Body": "36.5"}
    assert (
        client.post(
            "/twilio/sms", base_url=BASE, data=tampered, headers={"X-Twilio-Signature": signature}
        ).status_code
        == 403
    )
    # A signature for another URL (host) is refused too.
    other = signed_form_post(client, "https://evil.example/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert other.status_code == 403
    assert session.exec(select(InboundMessage)).all() == []
    assert session.exec(select(Alert)).all() == []


def test_without_an_auth_token_every_webhook_is_refused(app, client, patient) -> None:
    params = inbound_sms_params(PATIENT_PHONE, "38.6", OUR_NUMBER)
    assert (
        signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN).status_code == 403
    )


def test_a_repeated_message_sid_is_acknowledged_and_ignored(
    twilio_app, client, session, patient
) -> None:
    first = post_sms(client, "39.0", sid="SM" + "a" * 32)
    again = post_sms(client, "39.0", sid="SM" + "a" * 32)
    assert first.status_code == again.status_code == 200
    assert "<Message>" in first.text and "<Message>" not in again.text
    assert len(session.exec(select(Alert)).all()) == 1
    assert len(session.exec(select(InboundMessage)).all()) == 1


def test_malformed_webhooks_get_a_4xx(twilio_app, client, patient) -> None:
    params = inbound_sms_params(PATIENT_PHONE, "38", OUR_NUMBER)
    del params["MessageSid"]
    assert (
        signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN).status_code == 400
    )


def test_status_callbacks_record_delivery_and_block_unreachable_numbers(
    twilio_app, client, session, patient
) -> None:
    message = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "welcome")).one()
    message.status, message.provider_sid = "sent", "SM" + "b" * 32
    session.add(message)
    session.commit()
    delivered = {
        "MessageSid": message.provider_sid,
        "MessageStatus": "delivered",
        "AccountSid": "AC1",
    }
    assert (
        signed_form_post(client, f"{BASE}/twilio/status", delivered, FAKE_AUTH_TOKEN).status_code
        == 204
    )
    reread(session)
    assert session.get(OutboundMessage, message.id).status == "delivered"
    failed = {
        "MessageSid": message.provider_sid,
        "MessageStatus": "undelivered",
        "ErrorCode": "21614",
    }
    assert (
        signed_form_post(client, f"{BASE}/twilio/status", failed, FAKE_AUTH_TOKEN).status_code
        == 204
    )
    reread(session)
    assert "cannot receive SMS" in session.get(Patient, patient.id).sms_blocked_reason
    unknown = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"}
    assert (
        signed_form_post(client, f"{BASE}/twilio/status", unknown, FAKE_AUTH_TOKEN).status_code
        == 204
    )


# --- the hand-written TwiML and the one-HMAC signature check ---------------------------------


@pytest.mark.parametrize(
    "message",
    [
        None,
        "",
        "Thank you, Anna.",
        "38.6 °C: call +32 2 555 01 23 <now> & keep this SMS",
        "quotes \" and ' stay, ]]> too",
        "lines\r\nand\ttabs",
        "emoji 🌡️ and accents é",
        "a lone surrogate \ud83d",
    ],
)
def test_twiml_is_byte_for_byte_what_twilio_writes(app, message) -> None:
    expected = MessagingResponse()
    if message:
        expected.message(message)
    with app.app_context():
        response = twiml(message)
    assert response.get_data() == str(expected).encode("utf-8", "xmlcharrefreplace")
    assert response.mimetype == "application/xml"


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/twilio/sms",
        "https://companion.test:443/twilio/sms",
        "http://companion.test:8080/twilio/sms?a=1",
    ],
)
def test_the_signature_check_agrees_with_twilios_validator(url) -> None:
    params = inbound_sms_params(PATIENT_PHONE, "36.8", OUR_NUMBER, sid="SM" + "d" * 32)
    validator = RequestValidator(FAKE_AUTH_TOKEN)
    with_port = url.replace("companion.test/", "companion.test:443/")
    without_port = url.replace(":443", "").replace(":8080", "")
    for signed in (url, with_port, without_port, "https://evil.example/twilio/sms"):
        signature = twilio_signature(signed, params, FAKE_AUTH_TOKEN)
        for candidate in (signature, signature[:-2] + "==", ""):
            assert signature_matches(
                FAKE_AUTH_TOKEN, url, _FlatForm(params), candidate
            ) == validator.validate(url, params, candidate)


def test_a_webhook_signed_over_the_url_with_its_port_is_accepted(
    twilio_app, client, session, patient
) -> None:
    """Twilio may sign ``https://host:443/...``: accepted, as ``RequestValidator`` accepts it."""
    params = inbound_sms_params(PATIENT_PHONE, "36.8", OUR_NUMBER, sid="SM" + "e" * 32)
    signature = twilio_signature("https://companion.test:443/twilio/sms", params, FAKE_AUTH_TOKEN)
    response = client.post(
        "/twilio/sms", base_url=BASE, data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200 and "<Message>" in response.text
    assert len(session.exec(select(InboundMessage)).all()) == 1
