"""The phone-capture attack of issue 12, item 1, replayed against a live server.

Team B enrols a patient with the phone number of team A's patient. Before the fix it
was accepted (201) and A's patient's fever SMS went to team B: the reply told the
patient to call team B and the urgent alert reached team B only. Now the number is
refused with a 409 that names neither team A nor its patient (API and dashboard), and
the reply, the alert and the stored message stay with team A; once team A discharges
its patient, the number is free for another enrolment. Everything goes over real HTTP to
the ``live_server`` (API, the dashboard's sign-in and form, the signed Twilio webhook).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from sqlmodel import select

from reminders.core.clinical_rules import urgent_advice
from reminders.data.models import Alert, InboundMessage, OutboundMessage, Patient
from reminders.rendering import display_phone
from tests.conftest import bearer, reread
from tests.security.conftest import PASSWORD, LiveServer, browser_signed_in, twilio_post
from tests.twilio_fake import inbound_sms_params

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
def teams(live_server, make_user, clock):
    """Two care teams with their own numbers, each with a nurse who has an API token."""
    clock.now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    nurse_a, token_a = make_user(team=TEAM_A, care_phone=CARE_PHONE_A, password=PASSWORD)
    nurse_b, token_b = make_user(team=TEAM_B, care_phone=CARE_PHONE_B, password=PASSWORD)
    return {"a": (nurse_a, token_a), "b": (nurse_b, token_b)}


def api(live_server: LiveServer, method: str, path: str, token: str, **kwargs) -> requests.Response:
    """One API call over HTTP with ``token``."""
    return requests.request(method, live_server(path), headers=bearer(token), timeout=30, **kwargs)


def enrol(live_server: LiveServer, token: str, name: str, phone: str) -> requests.Response:
    body = {"display_name": name, "phone": phone, "language": "fr", "sms_consent": True}
    return api(live_server, "POST", "/api/v1/patients", token, json=body)


def _names_nobody(text: str, victim_id: int) -> None:
    for secret in (TEAM_A, PATIENT_A, "Saint-Luc", "Van den Bossche", CARE_PHONE_A):
        assert secret not in text
    assert f"patient {victim_id}" not in text and f"id {victim_id}" not in text


def test_a_number_in_use_is_refused_and_the_fever_reply_stays_with_its_team(
    live_server, session, teams, clock
) -> None:
    (_, token_a), (nurse_b, token_b) = teams["a"], teams["b"]
    victim = enrol(live_server, token_a, PATIENT_A, NATIONAL)
    assert victim.status_code == 201 and victim.json()["phone"] == E164
    victim_id, victim_team = victim.json()["id"], victim.json()["team_id"]
    plan = api(
        live_server,
        "POST",
        f"/api/v1/patients/{victim_id}/plans",
        token_a,
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
    )
    assert plan.status_code == 201

    # The capture: the same number, typed another way, by another team.
    captured = enrol(live_server, token_b, PATIENT_B, "+32 (0)470 12.34.56")
    assert captured.status_code == 409
    assert captured.json()["error"] == "conflict" and captured.json()["field"] == "phone"
    _names_nobody(captured.text, victim_id)
    # Nor by changing an existing patient of team B to that number.
    own = enrol(live_server, token_b, PATIENT_B, "0470 98 76 54")
    assert own.status_code == 201
    changed = api(
        live_server,
        "PATCH",
        f"/api/v1/patients/{own.json()['id']}",
        token_b,
        json={"phone": NATIONAL},
    )
    assert changed.status_code == 409 and changed.json()["field"] == "phone"
    _names_nobody(changed.text, victim_id)
    # Nor through the dashboard's enrolment form, signed in through the real sign-in page.
    browser, csrf = browser_signed_in(live_server, nurse_b.email, PASSWORD)
    form = browser.post(
        live_server("/patients/new"),
        data={
            "display_name": PATIENT_B,
            "phone": NATIONAL,
            "timezone": "Europe/Brussels",
            "language": "nl",
            "sms_consent": "on",
            "csrf_token": csrf,
        },
        timeout=30,
    )
    assert form.status_code == 409
    assert "already in use by another patient" in form.text
    _names_nobody(form.text, victim_id)
    assert len(session.exec(select(Patient).where(Patient.phone == E164)).all()) == 1

    # The patient of team A reports a fever: the reply, the alert and the message are A's.
    clock.now = datetime(2026, 3, 4, 17, 30, tzinfo=UTC)
    answer = twilio_post(live_server, "/twilio/sms", inbound_sms_params(E164, "39.6", OUR_NUMBER))
    assert answer.status_code == 200
    assert display_phone("+3227641111") in answer.text
    assert display_phone("+3250452111") not in answer.text
    assert urgent_advice("fr")[:40] in answer.text
    reread(session)
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.patient_id == victim_id
    assert inbound.team_id == victim_team
    [alert] = session.exec(select(Alert).where(Alert.severity == "urgent")).all()
    assert alert.team_id == victim_team and alert.patient_id == victim_id
    assert api(live_server, "GET", "/api/v1/alerts", token_b).json()["items"] == []
    seen_by_a = api(live_server, "GET", "/api/v1/alerts", token_a).json()["items"]
    assert [a["id"] for a in seen_by_a if a["severity"] == "urgent"] == [alert.id]


def test_a_discharged_patient_frees_the_number_for_another_team(
    live_server, session, teams, clock
) -> None:
    (_, token_a), (_, token_b) = teams["a"], teams["b"]
    victim = enrol(live_server, token_a, PATIENT_A, NATIONAL).json()
    plan = api(
        live_server,
        "POST",
        f"/api/v1/patients/{victim['id']}/plans",
        token_a,
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
    ).json()
    discharge = f"/api/v1/patients/{victim['id']}/discharge"
    reason = {"reason": "Suivi transféré à Bruges à la demande de la patiente"}
    # Not while treatment and the proposed prophylaxis are still open.
    early = api(live_server, "POST", discharge, token_a, json=reason)
    assert early.status_code == 409
    assert "stop the open plan" in early.json()["message"]
    assert "prophylaxis" in early.json()["message"]
    # Team B cannot discharge team A's patient, nor learn that they exist.
    assert api(live_server, "POST", discharge, token_b, json=reason).status_code == 404
    stopped = api(live_server, "POST", f"/api/v1/plans/{plan['id']}/stop", token_a, json=reason)
    assert stopped.status_code == 200
    courses = api(
        live_server, "GET", f"/api/v1/patients/{victim['id']}/prophylaxis", token_a
    ).json()
    assert courses and all(c["status"] == "proposed" for c in courses)
    for course in courses:
        declined = api(
            live_server,
            "POST",
            f"/api/v1/prophylaxis/{course['id']}/decline",
            token_a,
            json={"reason": "Prophylaxie prise en charge par l'équipe de Bruges"},
        )
        assert declined.status_code == 200
    done = api(live_server, "POST", discharge, token_a, json=reason)
    assert done.status_code == 200 and done.json()["discharged_at"]
    assert api(live_server, "POST", discharge, token_a, json=reason).status_code == 409

    moved = enrol(live_server, token_b, PATIENT_A, NATIONAL)
    assert moved.status_code == 201
    clock.now = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)
    answer = twilio_post(live_server, "/twilio/sms", inbound_sms_params(E164, "39,6", OUR_NUMBER))
    assert display_phone("+3250452111") in answer.text
    reread(session)
    [alert] = session.exec(select(Alert).where(Alert.severity == "urgent")).all()
    assert alert.team_id == moved.json()["team_id"] and alert.patient_id == moved.json()["id"]
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
