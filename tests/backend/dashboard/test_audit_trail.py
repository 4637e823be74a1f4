"""The same operation leaves the same audit row through the care-team pages and the API.

Only the channel differs ("dashboard" or "api"); the audit page shows both, and the
attempts of another team on the team's patients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.models import Alert, AuditEvent, Patient, ProphylaxisCourse
from reminders.data.statuses import AuditAction
from tests.backend.dashboard.conftest import PASSWORD, csrf_of, sign_in
from tests.conftest import bearer, reread

LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"
API = "/api/v1"


def rows_since(session: Session, after: int) -> list[AuditEvent]:
    """Audit rows newer than id ``after``."""
    reread(session)
    rows = list(
        session.exec(select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id))
    )
    session.commit()
    return rows


def newest(session: Session) -> int:
    """The newest audit row id."""
    rows = rows_since(session, 0)
    return rows[-1].id if rows else 0


def shape(row: AuditEvent, patients: dict[int | None, str]) -> tuple[str, str, str]:
    """A row without its ids: the action, which patient (by role) and the target's kind."""
    return (row.action, patients.get(row.patient_id, "?"), re.sub(r"\d+", "#", row.target or ""))


@pytest.fixture
def ward(
    client: FlaskClient, make_user, make_patient, make_plan, session: Session
) -> dict[str, Any]:
    """A nurse signed in to the pages who also holds an API token; a twin setup per channel."""
    nurse, token = make_user(team="Hématologie — Saint-Luc", password=PASSWORD, name=LONG_NAME)
    assert sign_in(client, nurse.email).status_code == 302
    twins: dict[str, dict[str, Any]] = {}
    for channel in ("dashboard", "api"):
        patient = make_patient(nurse.team_id, display_name=f"{LONG_NAME} ({channel})")
        plan = make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
        courses = session.exec(
            select(ProphylaxisCourse.id).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
        fresh = make_patient(nurse.team_id, display_name=f"Jan Janssens ({channel})")
        twins[channel] = {
            "patient": patient.id,
            "phone": patient.phone,
            "plan": plan.id,
            "courses": sorted(courses),
            "fresh": fresh.id,
        }
    session.commit()
    return {"nurse": nurse, "headers": bearer(token), "twins": twins}


def test_pages_and_api_record_the_same_action_for_the_same_operation(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    headers, twins = ward["headers"], ward["twins"]
    enrolled: dict[str, int] = {}
    csrf = csrf_of(client, "/queue")  # once: reading it from a page is a page view

    def page(url: str, data: dict[str, Any] | None = None, status: int = 302) -> None:
        if data is None:
            response = client.get(url)
        else:
            response = client.post(url, data={**data, "csrf_token": csrf})
        assert response.status_code == (status if data is not None else 200), (url, status)

    def api(method: str, url: str, body: Any = None, status: int = 200) -> Any:
        response = client.open(API + url, method=method, json=body, headers=headers)
        assert response.status_code == status, (url, response.json)
        return response.json

    def alert_of(patient_id: int) -> int:
        reread(session)
        found = session.exec(select(Alert.id).where(Alert.patient_id == patient_id)).one()
        session.commit()
        return found

    def enrol_page(t: dict[str, Any]) -> None:
        page(
            "/patients/new",
            {
                "display_name": "Els Vermeulen",
                "phone": "0470 55 66 77",
                "timezone": "Europe/Brussels",
                "language": "nl",
                "pill_times": "08:00, 20:00",
            },
        )
        reread(session)
        enrolled["dashboard"] = session.exec(
            select(Patient.id).where(Patient.display_name == "Els Vermeulen")
        ).one()
        session.commit()

    def enrol_api(t: dict[str, Any]) -> None:
        body = {"display_name": "Els Peeters", "phone": "0470 55 66 88", "language": "nl"}
        enrolled["api"] = api("POST", "/patients", body, 201)["id"]

    # (name, through the pages, through the API); each gets its channel's twin objects.
    operations: list[tuple[str, Callable[[dict], None], Callable[[dict], None]]] = [
        ("enrol", enrol_page, enrol_api),
        ("list patients", lambda t: page("/patients"), lambda t: api("GET", "/patients")),
        (
            "view patient",
            lambda t: page(f"/patients/{t['patient']}"),
            lambda t: api("GET", f"/patients/{t['patient']}"),
        ),
        (
            "update patient",
            lambda t: page(
                f"/patients/{t['patient']}/edit",
                {
                    "display_name": LONG_NAME,
                    "phone": t["phone"],
                    "timezone": "Europe/Brussels",
                    "language": "fr",
                    "pill_times": "08:00, 20:00",
                },
            ),
            lambda t: api("PATCH", f"/patients/{t['patient']}", {"language": "fr"}),
        ),
        (
            "record lab",
            lambda t: page(
                f"/patients/{t['patient']}/labs/new",
                {"kind": "cmv_pcr", "value": "25000", "taken_at": "2026-03-02T08:00"},
            ),
            lambda t: api(
                "POST",
                f"/patients/{t['patient']}/labs",
                {"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-02T08:00:00+01:00"},
                201,
            ),
        ),
        ("list alerts", lambda t: page("/queue"), lambda t: api("GET", "/alerts")),
        (
            "acknowledge alert",
            lambda t: page(f"/alerts/{alert_of(t['patient'])}/acknowledge", {}),
            lambda t: api("POST", f"/alerts/{alert_of(t['patient'])}/acknowledge"),
        ),
        (
            "resolve alert",
            lambda t: page(f"/alerts/{alert_of(t['patient'])}/resolve", {"note": "Called"}),
            lambda t: api("POST", f"/alerts/{alert_of(t['patient'])}/resolve", {"note": "Called"}),
        ),
        (
            "view plan",
            lambda t: page(f"/plans/{t['plan']}"),
            lambda t: api("GET", f"/plans/{t['plan']}"),
        ),
        (
            "record dose",
            lambda t: page(f"/plans/{t['plan']}/doses", {"index": "1", "status": "missed"}),
            lambda t: api("POST", f"/plans/{t['plan']}/doses/1", {"status": "missed"}),
        ),
        (
            "hold plan",
            lambda t: page(f"/plans/{t['plan']}/hold", {"reason": "CMV reactivation"}),
            lambda t: api("POST", f"/plans/{t['plan']}/hold", {"reason": "CMV reactivation"}),
        ),
        (
            "resume plan",
            lambda t: page(f"/plans/{t['plan']}/resume", {}),
            lambda t: api("POST", f"/plans/{t['plan']}/resume", {}),
        ),
        (
            "extend plan",
            lambda t: page(f"/plans/{t['plan']}/extend", {"weeks": "1"}),
            lambda t: api("POST", f"/plans/{t['plan']}/extend", {"weeks": 1}),
        ),
        (
            "confirm prophylaxis",
            lambda t: page(
                f"/prophylaxis/{t['courses'][0]}/confirm",
                {"dose_text": "as prescribed", "times": "08:00, 20:00"},
            ),
            lambda t: api(
                "POST",
                f"/prophylaxis/{t['courses'][0]}/confirm",
                {"dose_text": "as prescribed", "times": ["08:00", "20:00"]},
            ),
        ),
        (
            "decline prophylaxis",
            lambda t: page(
                f"/prophylaxis/{t['courses'][1]}/decline", {"reason": "allergic: pentamidine"}
            ),
            lambda t: api(
                "POST",
                f"/prophylaxis/{t['courses'][1]}/decline",
                {"reason": "allergic: pentamidine"},
            ),
        ),
        (
            "stop plan",
            lambda t: page(f"/plans/{t['plan']}/stop", {"reason": "No response at week 4"}),
            lambda t: api("POST", f"/plans/{t['plan']}/stop", {"reason": "No response at week 4"}),
        ),
        (
            "start plan",
            lambda t: page(
                f"/patients/{t['fresh']}/plans/new",
                {"regimen_id": "rituximab_fl_weekly", "start_date": "2026-03-02"},
            ),
            lambda t: api(
                "POST",
                f"/patients/{t['fresh']}/plans",
                {"regimen_id": "rituximab_fl_weekly", "start_date": "2026-03-02"},
                201,
            ),
        ),
        (
            "discharge",
            lambda t: page(f"/patients/{enrolled['dashboard']}/discharge", {"reason": "moved"}),
            lambda t: api("POST", f"/patients/{enrolled['api']}/discharge", {"reason": "moved"}),
        ),
    ]
    compared = []
    for name, through_page, through_api in operations:
        recorded = {}
        for channel, run in (("dashboard", through_page), ("api", through_api)):
            before = newest(session)
            run(twins[channel])
            rows = rows_since(session, before)
            assert [r.channel for r in rows] == [channel], (name, channel, rows)
            assert rows[0].user_id == ward["nurse"].id, (name, channel)
            roles = {
                twins[channel]["patient"]: "patient",
                twins[channel]["fresh"]: "fresh",
                enrolled.get(channel): "enrolled",
                None: "none",
            }
            recorded[channel] = shape(rows[0], roles)
        assert recorded["dashboard"] == recorded["api"], name
        compared.append(recorded["api"][0])
    assert compared == [
        "enrol_patient",
        "list_patients",
        "view_patient",
        "update_patient",
        "record_lab",
        "list_alerts",
        "acknowledge_alert",
        "resolve_alert",
        "view_plan",
        "record_dose",
        "hold_plan",
        "resume_plan",
        "extend_plan",
        "confirm_prophylaxis",
        "decline_prophylaxis",
        "stop_plan",
        "start_plan",
        "discharge_patient",
    ]


def test_the_audit_page_shows_api_and_page_rows_and_another_teams_attempts(
    client: FlaskClient, session: Session, make_user, make_patient
) -> None:
    admin, token = make_user(team="Hématologie — Saint-Luc", role="admin", password=PASSWORD)
    patient = make_patient(admin.team_id, display_name=LONG_NAME)
    stranger, stranger_token = make_user(team="Onco-hématologie — CHU Liège", name="Pieter Claes")
    assert client.get(f"{API}/patients/{patient.id}", headers=bearer(token)).status_code == 200
    refused = client.get(f"{API}/plans/987654", headers=bearer(stranger_token))
    assert refused.status_code == 404  # exists nowhere: no row
    refused = client.get(f"{API}/patients/{patient.id}", headers=bearer(stranger_token))
    assert refused.status_code == 404
    assert sign_in(client, admin.email).status_code == 302
    assert client.get(f"/patients/{patient.id}").status_code == 200
    page = client.get("/audit")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r)).strip() for r in rows]
    viewed = [c for c in cells if "view patient" in c]
    assert len(viewed) == 2
    assert any("care-team pages" in c for c in viewed) and any("API" in c for c in viewed)
    attempt = [c for c in cells if "refused other team" in c]
    assert len(attempt) == 1
    assert "Pieter Claes (another team)" in attempt[0] and LONG_NAME in attempt[0]
    # The page only reads: no form but sign-out's.
    assert re.findall(r'<form[^>]*action="([^"]+)"', body) == ["/logout"]
    # The stranger's team sees nothing of it.
    reread(session)
    stranger_trail = select(AuditEvent).where(
        AuditEvent.team_id == stranger.team_id,
        AuditEvent.action != AuditAction.CREATE_API_TOKEN,  # the fixture gave a token
    )
    assert not session.exec(stranger_trail).all()
    session.commit()
