"""Acknowledging from the phone: ACK replies, page calls through Twilio's Calls API, outcomes."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import pytest
from sqlalchemy import update
from sqlmodel import select

from backend.db import get_engine
from reminders.core.oncall_text import alert_code
from reminders.data.alerts import alert_timeline
from reminders.data.db import session_scope
from reminders.data.models import (
    Alert,
    AuditEvent,
    OnCallShift,
    OutboundMessage,
    Patient,
    Team,
    User,
)
from reminders.dispatch import dispatch_due_messages
from reminders.escalation import escalate_alerts
from reminders.gateways import TwilioGateway
from tests.backend.dashboard.conftest import PASSWORD, sign_in
from tests.conftest import bearer, reread
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    FakeTwilio,
    inbound_sms_params,
    signed_form_post,
)

BASE = "https://companion.test"
PATIENT_PHONE = "+32470123456"
PRIMARY_PHONE = "+32475112233"
FALLBACK_PHONE = "+32470999999"
OUR_NUMBER = "+32460000000"
T0 = datetime(2026, 3, 17, 2, 55, tzinfo=UTC)  # 03:55 in Brussels


@pytest.fixture
def twilio_app(app):
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    app.config["PUBLIC_BASE_URL"] = BASE
    return app


@pytest.fixture
def ward(session, make_user, make_patient, make_plan, clock) -> tuple[Patient, User]:
    """A patient on alemtuzumab and the team's primary on call (French, her own mobile)."""
    clock.now = T0
    nurse, _ = make_user("Hématologie — Cliniques universitaires Saint-Luc")
    team = session.get(Team, nurse.team_id)
    team.oncall_phone = FALLBACK_PHONE
    primary, _ = make_user(team.name, role="physician", name="Dr Anne-Sophie Lefèvre-Dubois")
    primary.phone, primary.language = PRIMARY_PHONE, "fr"
    session.add_all([team, primary])
    session.add(
        OnCallShift(
            team_id=team.id,
            user_id=primary.id,
            role="primary",
            starts_at=T0 - timedelta(hours=4),
            ends_at=T0 + timedelta(hours=8),
            created_at=T0,
        )
    )
    session.commit()
    patient = make_patient(
        team.id,
        phone=PATIENT_PHONE,
        display_name="Marie-Françoise Van den Bossche-Lefèvre",
        hospital_ref="CUSL-0042117",
    )
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    return patient, primary


def sms(client, from_: str, body: str):
    params = inbound_sms_params(from_, body, OUR_NUMBER)
    return signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)


def said(response) -> list[str]:
    return [m.text or "" for m in ElementTree.fromstring(response.data).iter("Message")]


def fever_alert(client, session) -> Alert:
    assert sms(client, PATIENT_PHONE, "39,2 et des frissons").status_code == 200
    return reread(session).exec(select(Alert)).one()


def test_ack_from_the_primarys_phone_acknowledges_as_her_and_stops_the_escalation(
    twilio_app, client, session, ward
) -> None:
    patient, primary = ward
    alert = fever_alert(client, session)
    code = alert_code(alert.id)
    answer = sms(client, PRIMARY_PHONE, f"ack {code.lower()}")
    assert said(answer) == [
        f"Alerte {code} prise en charge : escalade arrêtée. Appelez le patient maintenant ; "
        "détails sur le tableau de bord."
    ]
    alert = reread(session).get(Alert, alert.id)
    assert (alert.status, alert.acknowledged_by, alert.acknowledged_at) == (
        "acknowledged",
        primary.id,
        T0,
    )
    [audit] = session.exec(select(AuditEvent).where(AuditEvent.action == "acknowledge_alert"))
    assert (audit.user_id, audit.patient_id, audit.channel, audit.target) == (
        primary.id,
        patient.id,
        "sms",
        f"alert:{alert.id}",
    )
    with session_scope(get_engine(twilio_app)) as job:
        assert escalate_alerts(job, T0 + timedelta(minutes=30)) == 0
    assert [e.event for e in alert_timeline(session, alert.id)] == ["paged", "acknowledged"]
    again = sms(client, PRIMARY_PHONE, f"ACK {code}")
    assert said(again) == [f"L'alerte {code} était déjà prise en charge."]


@pytest.mark.parametrize(
    "sender", ["+32499887766", PATIENT_PHONE], ids=["unknown number", "the patient"]
)
def test_ack_from_a_number_that_is_no_clinicians_acknowledges_nothing(
    twilio_app, client, session, ward, sender
) -> None:
    alert = fever_alert(client, session)
    response = sms(client, sender, f"ACK {alert_code(alert.id)}")
    assert response.status_code == 200
    assert reread(session).get(Alert, alert.id).status == "open"
    assert (
        session.exec(select(AuditEvent).where(AuditEvent.action == "acknowledge_alert")).all() == []
    )


def test_ack_from_another_teams_clinician_or_with_a_mistyped_code_acknowledges_nothing(
    twilio_app, client, session, ward, make_user
) -> None:
    alert = fever_alert(client, session)
    stranger, _ = make_user("Hematologie — AZ Sint-Jan Brugge", name="Dr Pieter Claes")
    stranger.phone, stranger.language = "+32478000111", "nl"
    session.add(stranger)
    session.commit()
    code = alert_code(alert.id)
    answer = sms(client, "+32478000111", f"ACK {code}")
    assert said(answer)[0].startswith(f"Geen open melding van uw team heeft de code {code}")
    typo = code[:-1] + ("2" if code[-1] != "2" else "3")
    assert said(sms(client, PRIMARY_PHONE, f"ACK {typo}"))[0].startswith("Aucune alerte ouverte")
    assert reread(session).get(Alert, alert.id).status == "open"


@pytest.fixture
def fake(twilio_app, client):
    """The test Twilio server, posting its webhooks (TwiML, keys, progress) into the app."""

    def post(url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = client.post(
            path, base_url=f"{parts.scheme}://{parts.netloc}", data=params, headers=headers
        )
        return response.status_code, response.get_data(as_text=True)

    with FakeTwilio() as server:
        server.webhook_post = post
        yield server


def twilio_gateway(fake: FakeTwilio) -> TwilioGateway:
    """The real twilio client, pointed at the test Twilio server, with the app's public URL."""
    return TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake.base_url,
        public_base_url=BASE,
    )


def call_the_primary(twilio_app, client, session, fake, clock) -> tuple[Alert, dict]:
    """A fever at T0, nobody acknowledges: at 5 minutes the primary's phone rings."""
    alert = fever_alert(client, session)
    engine = get_engine(twilio_app)
    gateway = twilio_gateway(fake)
    at = T0 + timedelta(minutes=5)
    with session_scope(engine) as job:
        assert escalate_alerts(job, at) == 1
    report = dispatch_due_messages(engine, gateway, lambda: at)
    clock.now = at + timedelta(seconds=20)  # the app's time when Twilio calls back
    assert report.sent == 2  # the first SMS page and the call
    [call] = fake.calls
    page = (
        reread(session)
        .exec(select(OutboundMessage).where(OutboundMessage.channel == "voice"))
        .one()
    )
    assert (call["to"], call["from"], call["url"], call["status_callback"]) == (
        PRIMARY_PHONE,
        FROM_VALID,
        f"{BASE}/twilio/voice/page/{page.id}",
        f"{BASE}/twilio/voice/status",
    )
    assert page.provider_sid == call["sid"] and page.status == "sent"
    return alert, call


def test_pressing_1_on_the_call_acknowledges_as_the_clinician_called(
    twilio_app, client, session, ward, fake, clock
) -> None:
    patient, primary = ward
    alert, call = call_the_primary(twilio_app, client, session, fake, clock)
    played = fake.play_call(call["sid"], "answer", digits="1")
    assert played["webhook_statuses"] == [200, 200, 204]
    first, second, *answer = played["spoken"]
    # The call is in her language and names the patient by initials and hospital reference.
    assert first == second and first.startswith("Alerte urgente")
    assert "Patient M.B., référence hospitalière CUSL-0042117" in first
    assert "3 2 4, 7 0 1, 2 3 4, 5 6" in first and "fièvre, 39,2 C" in first
    assert "Marie" not in first and "Bossche" not in first
    assert answer == [
        "Merci. L'alerte est prise en charge et l'escalade est arrêtée. "
        "Appelez le patient maintenant. Au revoir."
    ]
    alert = reread(session).get(Alert, alert.id)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", primary.id)
    [audit] = session.exec(select(AuditEvent).where(AuditEvent.action == "acknowledge_alert"))
    assert (audit.user_id, audit.channel, audit.patient_id) == (primary.id, "phone", patient.id)
    timeline = [(e.event, e.channel, e.outcome) for e in alert_timeline(session, alert.id)]
    assert timeline == [
        ("paged", "sms", "queued"),
        ("paged", "voice", "queued"),
        ("acknowledged", "voice", None),
        ("outcome", "voice", "answered"),
    ]
    page = session.exec(select(OutboundMessage).where(OutboundMessage.channel == "voice")).one()
    assert (page.status, page.provider_status) == ("delivered", "completed")


@pytest.mark.parametrize(
    ("outcome", "recorded"), [("no-answer", "no_answer"), ("busy", "busy"), ("failed", "failed")]
)
def test_a_call_nobody_answers_is_on_the_timeline_and_the_alert_stays_open(
    twilio_app, client, session, ward, fake, clock, outcome, recorded
) -> None:
    alert, call = call_the_primary(twilio_app, client, session, fake, clock)
    played = fake.play_call(call["sid"], outcome)
    assert played["webhook_statuses"] == [204] and played["spoken"] == []
    alert = reread(session).get(Alert, alert.id)
    assert alert.status == "open"
    *_, last = alert_timeline(session, alert.id)
    assert (last.event, last.channel, last.outcome) == ("outcome", "voice", recorded)
    page = session.exec(select(OutboundMessage).where(OutboundMessage.channel == "voice")).one()
    assert page.status == "undelivered"
    # The same callback again (Twilio retries) writes nothing more.
    fake.play_call(call["sid"], outcome)
    assert len(alert_timeline(session, alert.id)) == 3


def test_another_key_asks_again_and_acknowledges_nothing(
    twilio_app, client, session, ward, fake, clock
) -> None:
    alert, call = call_the_primary(twilio_app, client, session, fake, clock)
    played = fake.play_call(call["sid"], "answer", digits="9")
    assert played["spoken"][-2:] == [
        "Appuyez sur 1 pour prendre en charge cette alerte.",
        "Aucune touche n'a été pressée. L'alerte reste ouverte et sera transmise plus loin. "
        "Au revoir.",
    ]
    assert reread(session).get(Alert, alert.id).status == "open"


def test_a_call_answered_after_the_alert_was_acknowledged_says_so_and_hangs_up(
    twilio_app, client, session, ward, fake, clock
) -> None:
    alert, call = call_the_primary(twilio_app, client, session, fake, clock)
    sms(client, PRIMARY_PHONE, f"ACK {alert_code(alert.id)}")
    played = fake.play_call(call["sid"], "answer", digits="1")
    assert played["spoken"] == ["Cette alerte a déjà été prise en charge. Au revoir."]


def test_the_voice_webhooks_refuse_unsigned_requests_and_unknown_pages(
    twilio_app, client, session, ward, fake, clock
) -> None:
    _, call = call_the_primary(twilio_app, client, session, fake, clock)
    page = session.exec(select(OutboundMessage).where(OutboundMessage.channel == "voice")).one()
    sms_page = session.exec(select(OutboundMessage).where(OutboundMessage.channel == "sms")).first()
    params = {"CallSid": call["sid"], "CallStatus": "in-progress", "Digits": "1"}
    for path in (f"/twilio/voice/page/{page.id}", f"/twilio/voice/page/{page.id}/key"):
        assert client.post(path, base_url=BASE, data=params).status_code == 403
        forged = client.post(
            path, base_url=BASE, data=params, headers={"X-Twilio-Signature": "forged"}
        )
        assert forged.status_code == 403
    assert client.post("/twilio/voice/status", base_url=BASE, data=params).status_code == 403
    for missing in (sms_page.id, 999_999):
        url = f"{BASE}/twilio/voice/page/{missing}"
        assert signed_form_post(client, url, params, FAKE_AUTH_TOKEN).status_code == 404
    assert reread(session).exec(select(Alert)).one().status == "open"


def test_a_key_pressed_on_the_fallback_numbers_call_acknowledges_with_no_user(
    twilio_app, client, session, ward, fake, clock
) -> None:
    _, primary = ward
    primary.is_active = False  # nobody on the rota: every step goes to the fallback number
    session.add(primary)
    session.commit()
    alert = fever_alert(client, session)
    engine = get_engine(twilio_app)
    gateway = twilio_gateway(fake)
    with session_scope(engine) as job:
        escalate_alerts(job, T0 + timedelta(minutes=5))
    dispatch_due_messages(engine, gateway, lambda: T0 + timedelta(minutes=5))
    [call] = fake.calls_to(FALLBACK_PHONE)
    played = fake.play_call(call["sid"], "answer", digits="1")
    assert played["spoken"][0].startswith("Urgent alert from the patient companion")
    alert = reread(session).get(Alert, alert.id)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", None)
    ack = next(e for e in alert_timeline(session, alert.id) if e.event == "acknowledged")
    assert ack.detail == "key pressed on the call to the fallback number"


def test_the_api_and_the_alert_page_show_the_timeline_and_the_code(
    twilio_app, client, session, ward, make_user
) -> None:
    patient, primary = ward
    nurse, token = make_user(session.get(Team, patient.team_id).name, password=PASSWORD)
    _, other_token = make_user("Hematologie — AZ Sint-Jan Brugge")
    alert = fever_alert(client, session)
    code = alert_code(alert.id)
    sms(client, PRIMARY_PHONE, f"ACK {code}")
    answer = client.get(f"/api/v1/alerts/{alert.id}", headers=bearer(token))
    assert answer.status_code == 200, answer.json
    assert answer.json["code"] == code and answer.json["status"] == "acknowledged"
    assert [
        (line["event"], line["step"], line["target"], line["channel"], line["user_id"])
        for line in answer.json["timeline"]
    ] == [
        ("paged", 0, "primary", "sms", primary.id),
        ("acknowledged", None, None, "sms", primary.id),
    ]
    assert PRIMARY_PHONE not in answer.get_data(as_text=True)
    assert client.get(f"/api/v1/alerts/{alert.id}", headers=bearer(other_token)).status_code == 404
    assert sign_in(client, nurse.email).status_code == 302
    page = client.get(f"/alerts/{alert.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Timeline" in text and f"ACK {code}" in text
    assert "Dr Anne-Sophie Lefèvre-Dubois" in text and "(primary)" in text


def test_a_call_whose_dispatcher_died_after_twilio_placed_it_is_not_placed_again(
    twilio_app, client, session, ward, fake, clock
) -> None:
    """Crash recovery asks Twilio's call list before calling again (no second ring at 04:00)."""
    _, call = call_the_primary(twilio_app, client, session, fake, clock)
    page = session.exec(select(OutboundMessage).where(OutboundMessage.channel == "voice")).one()
    claimed_at = T0 + timedelta(minutes=5)
    # What a dispatcher killed between Twilio's answer and its record leaves behind.
    session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id == page.id)
        .values(status="sending", provider_sid=None, sent_at=None, claimed_at=claimed_at)
    )
    session.commit()
    gateway = twilio_gateway(fake)
    later = claimed_at + timedelta(minutes=3)
    report = dispatch_due_messages(get_engine(twilio_app), gateway, lambda: later)
    assert report.reconciled == 1 and len(fake.calls) == 1
    page = reread(session).get(OutboundMessage, page.id)
    assert (page.status, page.provider_sid) == ("sent", call["sid"])
