"""Twilio webhooks: signatures, TwiML answers, duplicate MessageSids, delivery status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from xml.etree import ElementTree

import pytest
from sqlmodel import select
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from backend.webhooks import _FlatForm, signature_matches, twiml
from reminders.core.clinical_rules import urgent_advice
from reminders.data.models import Alert, InboundMessage, OutboundMessage, Patient, Team
from tests.backend.dashboard.conftest import PASSWORD, sign_in
from tests.conftest import bearer, reread
from tests.twilio_fake import (
    FAKE_AUTH_TOKEN,
    FakeTwilio,
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
    assert "<Response><Message action=" in response.text
    assert urgent_advice("en") in response.text
    alert = session.exec(select(Alert)).one()
    assert alert.severity == "urgent" and alert.patient_id == patient.id


def test_the_api_shows_the_rules_that_triaged_an_sms_report(
    twilio_app, client, session, make_user, make_patient, make_plan, clock
) -> None:
    clock.now = datetime(2026, 3, 17, 17, 5, tzinfo=UTC)
    user, token = make_user()
    patient = make_patient(
        user.team_id, phone=PATIENT_PHONE, display_name="Marie-Françoise Van den Bossche-Lefèvre"
    )
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    assert post_sms(client, "38.6 and chills").status_code == 200
    rule_ids = ["fever", "symptom_chills", "fever_cmv_window", "fever_cmv_test"]
    reports = client.get(f"/api/v1/patients/{patient.id}/reports", headers=bearer(token))
    assert reports.status_code == 200, reports.json
    [report] = reports.json
    assert (report["temperature_c"], report["symptoms"], report["severity"]) == (
        38.6,
        ["chills"],
        "urgent",
    )
    assert report["rule_ids"] == rule_ids and report["source"] == "sms"
    [alert] = client.get("/api/v1/alerts", headers=bearer(token)).json["items"]
    assert alert["kind"] == "fever" and alert["details"]["rule_ids"] == rule_ids
    assert alert["details"]["report_id"] == report["id"]


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
    message.status = "sending"  # claimed, then accepted: the dispatcher's two moves
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
    "action",
    [
        f"{BASE}/twilio/status?reply=SM" + "a" * 32,
        "https://companion.test/twilio/status?reply=SM1&other=<2>",
        "https://companion.test/a\"quote's\ttab\nline\rend",
    ],
)
def test_twiml_with_an_action_url_is_byte_for_byte_what_twilio_writes(app, action) -> None:
    message = "Fièvre : appelez tout de suite votre équipe au +32 2 555 01 23 & <vite>."
    expected = MessagingResponse()
    expected.message(message, action=action)
    with app.app_context():
        response = twiml(message, action)
    assert response.get_data() == str(expected).encode("utf-8", "xmlcharrefreplace")


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
    assert response.status_code == 200 and "<Message action=" in response.text
    assert len(session.exec(select(InboundMessage)).all()) == 1


# --- replies cannot be lost (issue 12, item 8) ---------------------------------------------

#: A French patient's fever, in words and as a number with a decimal comma.
FRENCH_FEVERS = ["j'ai de la fièvre et des frissons", "39,2"]
LONG_FRENCH_NAME = "Marie-Françoise Van den Bossche-Lefèvre"


@pytest.fixture
def french_patient(session, make_user, make_patient, make_plan, clock) -> tuple[Patient, str, str]:
    """A French-speaking patient on day 16 of alemtuzumab; the nurse's email and API token."""
    clock.now = datetime(2026, 3, 17, 17, 5, tzinfo=UTC)
    user, token = make_user(password=PASSWORD)
    team = session.get(Team, user.team_id)
    team.oncall_phone = "+32475000111"  # the team's on-call phone, told of urgent alerts
    session.add(team)
    session.commit()
    patient = make_patient(
        user.team_id, phone=PATIENT_PHONE, language="fr", display_name=LONG_FRENCH_NAME
    )
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    return patient, user.email, token


def message_texts(answer: str) -> list[str]:
    """The text of each ``<Message>`` of a TwiML answer."""
    return [m.text or "" for m in ElementTree.fromstring(answer.encode()).iter("Message")]


def through(client) -> Callable[[str, dict[str, str], dict[str, str]], int]:
    """A ``post`` for :meth:`FakeTwilio.send_status_callback` through the Flask test client."""

    def post(url: str, params: dict[str, str], headers: dict[str, str]) -> int:
        base, _, path = url.partition("/twilio/")
        return client.post(
            "/twilio/" + path, base_url=base, data=params, headers=headers
        ).status_code

    return post


def patient_replies(session, sid: str) -> list[OutboundMessage]:
    reread(session)
    return list(
        session.exec(select(OutboundMessage).where(OutboundMessage.dedupe_key == f"reply:{sid}"))
    )


@pytest.mark.parametrize("body", FRENCH_FEVERS)
def test_a_reply_lost_after_its_commit_is_answered_again_to_twilios_retry(
    twilio_app, client, session, french_patient, body
) -> None:
    """The web process dies after the commit: Twilio's retry gets the same answer, once stored."""
    patient, _, _ = french_patient
    sid = "SM" + "f" * 32
    first = post_sms(client, body, sid=sid)  # committed, but this answer never reaches Twilio
    again = post_sms(client, body, sid=sid)  # Twilio retries with the same MessageSid
    assert first.status_code == again.status_code == 200
    assert again.get_data() == first.get_data()
    [text] = message_texts(again.text)
    [stored] = patient_replies(session, sid)
    assert stored.body == text and stored.patient_id == patient.id
    assert stored.kind.startswith(("fever_words_urgent", "fever_urgent"))
    assert "+32 2 555 01 23" in text  # the team's number, to call now
    if body == "39,2":
        assert urgent_advice("fr") in text
    assert len(session.exec(select(InboundMessage)).all()) == 1
    [alert] = session.exec(select(Alert)).all()
    assert alert.severity == "urgent"
    oncall = session.exec(select(OutboundMessage).where(OutboundMessage.recipient == "clinician"))
    assert len(oncall.all()) == 1


@pytest.mark.parametrize("body", FRENCH_FEVERS)
def test_the_delivery_of_the_urgent_advice_shows_on_the_alert(
    twilio_app, client, session, french_patient, body
) -> None:
    """Twilio reports on the TwiML reply through its ``action`` URL; the alert shows it."""
    _, email, token = french_patient
    params = inbound_sms_params(PATIENT_PHONE, body, OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    fake = FakeTwilio()  # acts on the answer as Twilio does; no HTTP server needed
    [twilio_sid] = fake.answer_twiml(answer.text, params)
    assert fake.message(twilio_sid)["to"] == PATIENT_PHONE
    assert fake.send_status_callback(twilio_sid, "sent", post=through(client)) == 204
    [alert] = client.get("/api/v1/alerts", headers=bearer(token)).json["items"]
    assert alert["severity"] == "urgent"
    assert alert["reply_to_patient"]["status"] == "sent"
    assert alert["reply_to_patient"]["delivered_at"] is None

    assert fake.send_status_callback(twilio_sid, "delivered", post=through(client)) == 204
    [alert] = client.get("/api/v1/alerts", headers=bearer(token)).json["items"]
    reply = alert["reply_to_patient"]
    assert reply["status"] == "delivered" and reply["provider_status"] == "delivered"
    assert reply["delivered_at"] is not None and reply["error_code"] is None
    [stored] = patient_replies(session, params["MessageSid"])
    assert stored.provider_sid == twilio_sid and stored.status == "delivered"

    nurse = client.application.test_client()
    sign_in(nurse, email)
    page = nurse.get(f"/alerts/{alert['id']}").get_data(as_text=True)
    assert "Advice to the patient" in page and "Delivered" in page


def test_advice_twilio_could_not_deliver_shows_on_the_alert_and_is_not_sent_twice(
    twilio_app, client, session, french_patient
) -> None:
    """Undelivered advice is plain on the alert; a webhook retry after Twilio made it sends none."""
    _, email, token = french_patient
    params = inbound_sms_params(PATIENT_PHONE, "39,2", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    fake = FakeTwilio()
    [twilio_sid] = fake.answer_twiml(answer.text, params)
    assert (
        fake.send_status_callback(twilio_sid, "undelivered", error_code=30003, post=through(client))
        == 204
    )
    [alert] = client.get("/api/v1/alerts", headers=bearer(token)).json["items"]
    assert alert["reply_to_patient"]["status"] == "undelivered"
    assert alert["reply_to_patient"]["error_code"] == "30003"
    nurse = client.application.test_client()
    sign_in(nurse, email)
    page = nurse.get(f"/alerts/{alert['id']}").get_data(as_text=True)
    assert "Not delivered" in page and "30003" in page

    # Twilio made a message from the first answer: a late re-delivery must not make another.
    again = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert again.status_code == 200 and message_texts(again.text) == []
    assert len(patient_replies(session, params["MessageSid"])) == 1
    assert len(session.exec(select(Alert)).all()) == 1


def test_a_status_callback_cannot_claim_another_reply(
    twilio_app, client, session, french_patient
) -> None:
    """The ``reply`` a callback names links only a reply not yet linked to a Twilio message."""
    params = inbound_sms_params(PATIENT_PHONE, "39,2", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    fake = FakeTwilio()
    [first_sid] = fake.answer_twiml(answer.text, params)
    [second_sid] = fake.answer_twiml(answer.text, params)  # a second message, same action URL
    assert fake.send_status_callback(first_sid, "delivered", post=through(client)) == 204
    assert (
        fake.send_status_callback(second_sid, "undelivered", error_code=30005, post=through(client))
        == 204
    )
    [stored] = patient_replies(session, params["MessageSid"])
    assert stored.provider_sid == first_sid and stored.status == "delivered"
    # An unknown reply, or a reply key that is not a MessageSid, changes nothing either.
    for reply in ("SM" + "0" * 32, "x' OR 1=1"):
        lost = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}
        url = f"{BASE}/twilio/status?reply={reply}"
        assert signed_form_post(client, url, lost, FAKE_AUTH_TOKEN).status_code == 204
    [stored] = patient_replies(session, params["MessageSid"])
    assert stored.provider_sid == first_sid
