"""Every API route: team scoping, authentication, and no 500 for any bad input.

The routes are enumerated from the app's URL map, so a new route cannot be forgotten.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import pytest
from sqlalchemy import func
from sqlmodel import SQLModel, select

from backend.services.oncall import add_shift
from reminders.data.models import AuditEvent, Team
from tests.conftest import FIXED_NOW, bearer, reread

BAD_BODIES: list[object] = [
    b"{not json",
    b"[]",
    b"null",
    b"{}",
    b'{"unknown_field": 1}',
    b'{"display_name": 123, "phone": ["x"], "reason": null}',
    json.dumps({"reason": "x" * 5000, "weeks": 10**12, "value": -1, "status": "maybe"}).encode(),
    json.dumps(
        {"start_date": "2026-02-30", "regimen_id": "nope", "kind": "cmv_pcr", "value": "NaN"}
    ).encode(),
    json.dumps({"taken_at": "2026-03-01T08:00:00", "times": ["25:00"], "weekdays": [9]}).encode(),
    json.dumps({"display_name": "\u0000\ud800", "phone": "+0000000000000000000000"}).encode(
        "utf-8", "surrogatepass"
    ),
]
BAD_QUERIES = [
    "page=-1",
    "per_page=abc",
    "from=yesterday",
    "to=2026-13-01",
    "status=weird",
    "page=99999999999999999999",
    "x=1",
]


VALID_BODIES = {
    "api.update_patient": {"display_name": "Someone Else"},
    "api.record_lab": {"kind": "anc", "value": 100, "taken_at": "2026-03-01T08:00:00+01:00"},
    "api.add_prophylaxis": {
        "drug": "acyclovir",
        "dose_text": "x",
        "times": ["08:00"],
        "start_date": "2026-03-02",
    },
    "api.start_plan": {"regimen_id": "alemtuzumab_iv", "start_date": "2026-03-02"},
    "api.hold_plan": {"reason": "x"},
    "api.resume_plan": {},
    "api.extend_plan": {"weeks": 1},
    "api.stop_plan": {"reason": "x"},
    "api.record_dose": {"status": "missed"},
    "api.resolve_alert": {"note": "x"},
    "api.stop_prophylaxis": {"override_reason": "team decision"},
    "api.confirm_prophylaxis": {"dose_text": "960 mg", "times": ["08:00"]},
    "api.decline_prophylaxis": {"reason": "allergic to cotrimoxazole: pentamidine inhalation"},
    "api.discharge_patient": {"reason": "follow-up moved to another team"},
    "api.set_expected_level": {
        "up_to_c": 37.8,
        "expires_at": "2026-03-02T20:00:00+01:00",
        "reason": "rituximab infusion this morning",
    },
    "api.add_family_contact": {
        "name": "Zoë Peeters",
        "phone": "+32471987654",
        "relationship": "daughter",
        "consent_method": "verbal",
    },
    "api.update_family_contact": {"copies_nudges": False},
    "api.record_family_consent": {"method": "written"},
    "api.erase_contact_details": {"confirm": "ERASE"},
}


def valid_body(endpoint: str, method: str) -> dict | None:
    """A body that would succeed for the owning team, so only scoping can refuse it."""
    if method == "GET":
        return None
    return VALID_BODIES.get(endpoint, {})


def api_rules(app) -> list:
    return [
        r
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/api/v1/") and not r.rule.endswith("openapi.json")
    ]


def fill(rule: str, ids: dict[str, int]) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), "alemtuzumab_sc")), rule)


def row_counts(session) -> dict[str, int]:
    counts = {}
    for table in SQLModel.metadata.sorted_tables:
        counts[table.name] = session.exec(select(func.count()).select_from(table)).one()
    return counts


@pytest.fixture
def two_teams(client, make_user, make_patient, make_plan, session):
    """Team A with a patient, a plan, a lab-raised alert and a course; team B's token."""
    user_a, token_a = make_user(team="Team A")
    _, token_b = make_user(team="Team B")
    patient = make_patient(user_a.team_id)
    plan = make_plan(patient, start_date=date(2026, 3, 2))
    lab = client.post(
        f"/api/v1/patients/{patient.id}/labs",
        json={"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-01T08:00:00+01:00"},
        headers=bearer(token_a),
    )
    assert lab.status_code == 201, lab.json
    course = client.post(
        f"/api/v1/patients/{patient.id}/prophylaxis",
        json={
            "drug": "acyclovir",
            "dose_text": "as prescribed",
            "times": ["08:00"],
            "start_date": "2026-03-02",
        },
        headers=bearer(token_a),
    )
    assert course.status_code == 201, course.json
    # A shift of team A's rota (its nurse has a phone to be paged on).
    user_a.phone = "+32470112233"
    shift, _ = add_shift(
        session,
        session.get(Team, user_a.team_id),
        user_id=user_a.id,
        role="primary",
        starts_at=datetime(2026, 3, 3, 8, 0),
        ends_at=datetime(2026, 3, 3, 20, 0),
        actor=None,
        now=FIXED_NOW,
    )
    session.commit()  # before the next request: SQLite has one writer at a time
    contact = client.post(
        f"/api/v1/patients/{patient.id}/family-contacts",
        json={
            "name": "Pieter Peeters",
            "phone": "+32472123456",
            "relationship": "son",
            "consent_method": "verbal",
        },
        headers=bearer(token_a),
    )
    assert contact.status_code == 201, contact.json
    ids = {
        "team_id": user_a.team_id,  # not a URL argument: for the audit checks
        "patient_id": patient.id,
        "plan_id": plan.id,
        "alert_id": lab.json["alerts"][0]["id"],
        "course_id": course.json["id"],
        "shift_id": shift.id,
        "contact_id": contact.json["id"],
        "index": 1,
        "regimen_id": "alemtuzumab_sc",
    }
    return token_a, token_b, ids


def test_another_teams_token_never_reaches_a_patient(app, client, two_teams, session) -> None:
    token_a, token_b, ids = two_teams
    checked = 0
    for rule in api_rules(app):
        if not any(k in rule.arguments for k in ("patient_id", "plan_id", "alert_id", "course_id")):
            continue
        url = fill(rule.rule, ids)
        before = row_counts(reread(session))
        tries = 0
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            body = valid_body(rule.endpoint, method)
            response = client.open(url, method=method, json=body, headers=bearer(token_b))
            assert response.status_code == 404, (method, url, response.status_code, response.json)
            checked += 1
            tries += 1
        after = row_counts(reread(session))
        # Nothing changed but team A's audit trail, which keeps each attempt on its patient.
        refused = after.pop("auditevent") - before.pop("auditevent")
        assert after == before, f"{url} changed data for another team"
        assert refused == tries, url
    assert checked >= 15
    rows = session.exec(select(AuditEvent).where(AuditEvent.action == "refused_other_team")).all()
    assert {(r.team_id, r.patient_id, r.channel) for r in rows} == {
        (ids["team_id"], ids["patient_id"], "api")
    }
    # The alert list of team B is empty; team A sees its alert.
    assert client.get("/api/v1/alerts", headers=bearer(token_b)).json["total"] == 0
    assert client.get("/api/v1/alerts", headers=bearer(token_a)).json["total"] == 1


def test_every_route_refuses_a_missing_token(app, client, two_teams) -> None:
    _, _, ids = two_teams
    for rule in api_rules(app):
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(fill(rule.rule, ids), method=method, json={})
            assert response.status_code == 401, (method, rule.rule)


def test_bad_input_never_yields_a_500_nor_leaves_data(app, client, two_teams, session) -> None:
    token_a, _, ids = two_teams
    tried = 0
    for rule in api_rules(app):
        url = fill(rule.rule, ids)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                for query in BAD_QUERIES:
                    response = client.get(f"{url}?{query}", headers=bearer(token_a))
                    assert response.status_code < 500, (url, query, response.json)
                    tried += 1
                continue
            for body in BAD_BODIES:
                before = row_counts(session)
                response = client.open(
                    url,
                    method=method,
                    data=body,
                    headers={**bearer(token_a), "Content-Type": "application/json"},
                )
                assert response.status_code < 500, (method, url, body, response.json)
                assert response.is_json, (method, url)
                if response.status_code >= 400:
                    assert "error" in response.json and "message" in response.json
                    session.expire_all()
                    assert row_counts(session) == before, (method, url, body)
                tried += 1
            wrong_type = client.open(
                url,
                method=method,
                data="a=b",
                headers={**bearer(token_a), "Content-Type": "text/plain"},
            )
            # 403: a nurse may not reset the escalation policy (a DELETE reads no body).
            assert wrong_type.status_code in (400, 403, 404, 409, 415, 422), (
                method,
                url,
                wrong_type.status_code,
            )
    # unknown ids are 404, not 500
    for url in ["/api/v1/patients/999999", "/api/v1/plans/999999", "/api/v1/regimens/nope"]:
        assert client.get(url, headers=bearer(token_a)).status_code == 404
    assert tried > 100


def test_validation_errors_name_the_field(client, two_teams) -> None:
    token_a, _, ids = two_teams
    response = client.post(
        f"/api/v1/plans/{ids['plan_id']}/extend", json={"weeks": "many"}, headers=bearer(token_a)
    )
    assert response.status_code == 422
    assert response.json["field"] == "weeks"
    response = client.post(
        f"/api/v1/patients/{ids['patient_id']}/plans",
        json={"regimen_id": "nope", "start_date": "2026-03-02"},
        headers=bearer(token_a),
    )
    assert response.status_code in (409, 422)


def test_openapi_document_lists_every_route(app, client) -> None:
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    for rule in api_rules(app):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    assert "bearerAuth" in document["components"]["securitySchemes"]
