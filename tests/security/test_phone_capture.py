"""The phone-capture attack of issue 12, item 1, replayed through the API and a signed webhook.

Team B enrols a patient with the phone number of team A's patient. Before the fix it
was accepted (201) and A's patient's fever SMS went to team B: the reply told the
patient to call team B and the urgent alert reached team B only. Now the number is
refused with a 409 that names neither team A nor its patient (API and dashboard), and
the reply, the alert and the stored message stay with team A; once team A discharges
its patient, the number is free for another enrolment.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from backend.models import Alert, InboundMessage, OutboundMessage, Patient
from reminders.core.clinical_rules import urgent_advice
from reminders.outbox import display_phone
from tests.backend.dashboard.conftest import PASSWORD, post_form, sign_in
from tests.conftest import bearer, reread
from tests.twilio_fake import FAKE_AUTH_TOKEN, inbound_sms_params, signed_form_post

BASE = "https://companion.test"
OUR_NUMBER = "+32 460 00 00 00"
TEAM_A = "Hématologie et oncologie pédiatrique — Cliniques universitaires Saint-Luc"
TEAM_B = "Dienst hematologie, AZ Sint-Jan Brugge-Oostende AV"
CARE_PHONE_A = "+32 2 764 11 11"
CARE_PHONE_B = "+32 50 45 21 11"
PATIENT_A = "Marie-Françoise Van den Bossche-Lefèvre"
PATIENT_B = "Jean-Baptiste Vandermeersch-Dubois d'Ursel"
NATIONAL = "0470 12 34 56"
E164 = "+32470123456"


@pytest.fixture
def teams(app, make_user, clock):
    """Two care teams with their own numbers, each with a nurse who has an API token."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    clock.now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    nurse_a, token_a = make_user(team=TEAM_A, care_phone=CARE_PHONE_A, password=PASSWORD)
    nurse_b, token_b = make_user(team=TEAM_B, care_phone=CARE_PHONE_B, password=PASSWORD)
    return {"a": (nurse_a, token_a), "b": (nurse_b, token_b)}


def enrol(client, token: str, name: str, phone: str):
    return client.post(
        "/api/v1/patients",
        json={"display_name": name, "phone": phone, "language": "fr", "sms_consent": True},
        headers=bearer(token),
    )


def _names_nobody(text: str, victim_id: int) -> None:
    for secret in (TEAM_A, PATIENT_A, "Saint-Luc", "Van den Bossche", CARE_PHONE_A):
        assert secret not in text
    assert f"patient {victim_id}" not in text and f"id {victim_id}" not in text


def test_a_number_in_use_is_refused_and_the_fever_reply_stays_with_its_team(
    client, session, teams, clock
) -> None:
    (_, token_a), (nurse_b, token_b) = teams["a"], teams["b"]
    victim = enrol(client, token_a, PATIENT_A, NATIONAL)
    assert victim.status_code == 201 and victim.json["phone"] == E164
    plan = client.post(
        f"/api/v1/patients/{victim.json['id']}/plans",
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
        headers=bearer(token_a),
    )
    assert plan.status_code == 201

    # The capture: the same number, typed another way, by another team.
    captured = enrol(client, token_b, PATIENT_B, "+32 (0)470 12.34.56")
    assert captured.status_code == 409
    assert captured.json["error"] == "conflict" and captured.json["field"] == "phone"
    _names_nobody(captured.text, victim.json["id"])
    # Nor by changing an existing patient of team B to that number.
    own = enrol(client, token_b, PATIENT_B, "0470 98 76 54")
    assert own.status_code == 201
    changed = client.patch(
        f"/api/v1/patients/{own.json['id']}", json={"phone": NATIONAL}, headers=bearer(token_b)
    )
    assert changed.status_code == 409 and changed.json["field"] == "phone"
    _names_nobody(changed.text, victim.json["id"])
    # Nor through the dashboard's enrolment form.
    assert sign_in(client, nurse_b.email).status_code == 302
    form = post_form(
        client,
        "/patients/new",
        {
            "display_name": PATIENT_B,
            "phone": NATIONAL,
            "timezone": "Europe/Brussels",
            "language": "nl",
            "sms_consent": "on",
        },
        page="/patients/new",
    )
    assert form.status_code == 409
    assert "already in use by another patient" in form.get_data(as_text=True)
    _names_nobody(form.get_data(as_text=True), victim.json["id"])
    assert len(session.exec(select(Patient).where(Patient.phone == E164)).all()) == 1

    # The patient of team A reports a fever: the reply, the alert and the message are A's.
    clock.now = datetime(2026, 3, 4, 17, 30, tzinfo=UTC)
    params = inbound_sms_params(E164, "39.6", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert answer.status_code == 200
    assert display_phone("+3227641111") in answer.text
    assert display_phone("+3250452111") not in answer.text
    assert urgent_advice("fr")[:40] in answer.text
    reread(session)
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.patient_id == victim.json["id"]
    assert inbound.team_id == victim.json["team_id"]
    [alert] = session.exec(select(Alert).where(Alert.severity == "urgent")).all()
    assert alert.team_id == victim.json["team_id"] and alert.patient_id == victim.json["id"]
    assert client.get("/api/v1/alerts", headers=bearer(token_b)).json["items"] == []
    seen_by_a = client.get("/api/v1/alerts", headers=bearer(token_a)).json["items"]
    assert [a["id"] for a in seen_by_a if a["severity"] == "urgent"] == [alert.id]


def test_a_discharged_patient_frees_the_number_for_another_team(
    client, session, teams, clock
) -> None:
    (_, token_a), (_, token_b) = teams["a"], teams["b"]
    victim = enrol(client, token_a, PATIENT_A, NATIONAL).json
    plan = client.post(
        f"/api/v1/patients/{victim['id']}/plans",
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
        headers=bearer(token_a),
    ).json
    discharge = f"/api/v1/patients/{victim['id']}/discharge"
    reason = {"reason": "Suivi transféré à Bruges à la demande de la patiente"}
    # Not while treatment and the proposed prophylaxis are still open.
    early = client.post(discharge, json=reason, headers=bearer(token_a))
    assert early.status_code == 409
    assert "stop the open plan" in early.json["message"]
    assert "prophylaxis" in early.json["message"]
    # Team B cannot discharge team A's patient, nor learn that they exist.
    assert client.post(discharge, json=reason, headers=bearer(token_b)).status_code == 404
    stopped = client.post(f"/api/v1/plans/{plan['id']}/stop", json=reason, headers=bearer(token_a))
    assert stopped.status_code == 200
    courses = client.get(
        f"/api/v1/patients/{victim['id']}/prophylaxis", headers=bearer(token_a)
    ).json
    assert courses and all(c["status"] == "proposed" for c in courses)
    for course in courses:
        declined = client.post(
            f"/api/v1/prophylaxis/{course['id']}/decline",
            json={"reason": "Prophylaxie prise en charge par l'équipe de Bruges"},
            headers=bearer(token_a),
        )
        assert declined.status_code == 200
    done = client.post(discharge, json=reason, headers=bearer(token_a))
    assert done.status_code == 200 and done.json["discharged_at"]
    assert client.post(discharge, json=reason, headers=bearer(token_a)).status_code == 409

    moved = enrol(client, token_b, PATIENT_A, NATIONAL)
    assert moved.status_code == 201
    clock.now = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)
    params = inbound_sms_params(E164, "39,6", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert display_phone("+3250452111") in answer.text
    reread(session)
    [alert] = session.exec(select(Alert).where(Alert.severity == "urgent")).all()
    assert alert.team_id == moved.json["team_id"] and alert.patient_id == moved.json["id"]
    # The discharged patient gets no SMS any more: their welcome SMS was cancelled.
    pending = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == victim["id"], OutboundMessage.status == "pending"
        )
    ).all()
    assert pending == []
    welcome = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == victim["id"], OutboundMessage.kind == "welcome"
        )
    ).one()
    assert welcome.status == "cancelled" and welcome.error_reason == "patient discharged"
