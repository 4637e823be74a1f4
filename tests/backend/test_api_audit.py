"""The API's audit trail: every patient route declares its action and leaves exactly one row.

Routes are enumerated from the URL map and the OpenAPI document, so a new route without
an action (and not in the short exemption list) fails here and stops the app at start.
Each route is driven with a real token through the test client, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, text
from sqlmodel import Session, select

from backend.api import API_PREFIX
from backend.api.auditing import (
    AUDIT_EXEMPT,
    audit,
    audited,
    check_audit_declarations,
    declared_action,
)
from backend.db import get_engine, get_session
from reminders.data.models import AuditEvent, Patient, User
from reminders.data.statuses import AuditAction
from tests.conftest import bearer, reread

LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"


def api_rules(app: Flask) -> list[Any]:
    """Every rule under /api/v1."""
    return [r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX + "/")]


def audited_endpoints(app: Flask) -> set[str]:
    """The endpoints that declare an audit action."""
    return {r.endpoint for r in api_rules(app) if r.endpoint not in AUDIT_EXEMPT}


def new_rows(session: Session, after: int) -> list[AuditEvent]:
    """The audit rows written since row id ``after``, oldest first.

    Each helper ends its read transaction: a test that changes the schema (triggers,
    a renamed table) on PostgreSQL would otherwise wait for it forever.
    """
    reread(session)
    rows = list(
        session.exec(select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id))
    )
    session.commit()
    return rows


def last_id(session: Session) -> int:
    """The newest audit row's id (0 when there is none)."""
    reread(session)
    newest = session.exec(select(func.coalesce(func.max(AuditEvent.id), 0))).one()
    session.commit()
    return newest


def stored(session: Session, patient_id: int) -> Patient:
    """The patient as committed, read in a transaction that is ended at once."""
    patient = reread(session).get(Patient, patient_id)
    session.commit()
    return patient


# --- declarations -----------------------------------------------------------------------------


def test_every_api_route_declares_an_action_or_is_exempt(app: Flask, client: FlaskClient) -> None:
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX)]
    for rule in rules:
        action = declared_action(app.view_functions[rule.endpoint])
        assert (action is None) == (rule.endpoint in AUDIT_EXEMPT), rule.rule
    # The exemptions hold no patient data and stay few; each still exists.
    assert {"openapi_document", "api.list_regimens", "api.get_regimen"} == AUDIT_EXEMPT
    assert {r.endpoint for r in rules} >= AUDIT_EXEMPT
    # The OpenAPI document lists the same operations, each reaching a declared route.
    document = client.get(f"{API_PREFIX}/openapi.json").json
    adapter = app.url_map.bind("companion.test")
    operations = 0
    for path, methods in document["paths"].items():
        concrete = re.sub(
            r"\{(\w+)\}", lambda m: "alemtuzumab_sc" if "regimen" in m[1] else "7", path
        )
        for method in methods:
            endpoint, _ = adapter.match(concrete, method=method.upper())
            assert endpoint in AUDIT_EXEMPT or declared_action(app.view_functions[endpoint]), (
                method,
                path,
            )
            operations += 1
    served = [r for r in api_rules(app) if r.endpoint != "openapi_document"]  # not in itself
    assert operations == sum(len(r.methods - {"HEAD", "OPTIONS"}) for r in served)
    # Patient data routes all declare one: 23 of them today.
    assert len(audited_endpoints(app)) >= 23


def test_an_api_route_without_an_action_stops_the_app(app: Flask) -> None:
    app.add_url_rule(f"{API_PREFIX}/patients/<int:patient_id>/notes", "api.notes", lambda: "")
    with pytest.raises(RuntimeError, match=r"/api/v1/patients/<int:patient_id>/notes"):
        check_audit_declarations(app, API_PREFIX)


def test_a_route_that_forgets_audit_or_commits_itself_answers_500_and_writes_nothing(
    app: Flask, client: FlaskClient, make_user, make_patient, session: Session
) -> None:
    # Routes added the way a careless new route would be: the decorator refuses both.
    @audited(AuditAction.VIEW_PATIENT)
    def forgets(patient_id: int) -> dict[str, int]:
        return {"id": patient_id}

    @audited(AuditAction.UPDATE_PATIENT)
    def commits_itself(patient_id: int) -> dict[str, int]:
        db = get_session()
        patient = db.get(Patient, patient_id)
        patient.display_name = "Changed Without Audit"
        db.commit()
        audit(patient_id, f"patient:{patient_id}")
        return {"id": patient_id}

    # Endpoints named "api.*" get the API blueprint's token check, as real routes do.
    app.add_url_rule(f"{API_PREFIX}/t/<int:patient_id>/forgets", "api.t_forgets", forgets)
    app.add_url_rule(
        f"{API_PREFIX}/t/<int:patient_id>/commits",
        "api.t_commits",
        commits_itself,
        methods=["POST"],
    )
    user, token = make_user(team="Hématologie — Saint-Luc")
    patient = make_patient(user.team_id, display_name=LONG_NAME)
    before = last_id(session)
    assert (
        client.get(f"{API_PREFIX}/t/{patient.id}/forgets", headers=bearer(token)).status_code == 500
    )
    assert new_rows(session, before) == []
    response = client.post(f"{API_PREFIX}/t/{patient.id}/commits", headers=bearer(token))
    assert response.status_code == 500
    assert new_rows(session, before) == []
    # The guard can only report a change committed behind its back, loudly: every route
    # is driven by the tests below, so such a route never passes them.
    assert reread(session).get(Patient, patient.id).display_name == "Changed Without Audit"


# --- every route, one row each ----------------------------------------------------------------


@pytest.fixture
def team(make_user, session: Session) -> dict[str, Any]:
    """An admin of a team with an accented name, her phone (she can be on call) and her token."""
    user, token = make_user(
        team="Hématologie — Saint-Luc", role="admin", name=LONG_NAME, phone="+32 470 11 22 33"
    )
    return {"user": user, "token": token}


def test_every_patient_route_leaves_one_row_naming_user_team_patient_and_action(
    app: Flask, client: FlaskClient, session: Session, team: dict[str, Any]
) -> None:
    user, headers = team["user"], bearer(team["token"])
    seen: dict[str, tuple[str, int | None, str]] = {}

    def call(method: str, url: str, body: Any = None, status: int = 200) -> Any:
        before = last_id(session)
        response = client.open(url, method=method, json=body, headers=headers)
        assert response.status_code == status, (method, url, response.json)
        rows = new_rows(session, before)
        assert len(rows) == 1, (method, url, [(r.action, r.target) for r in rows])
        row = rows[0]
        assert (row.user_id, row.team_id, row.channel) == (user.id, user.team_id, "api")
        seen[app.url_map.bind("x").match(url.split("?")[0], method=method)[0]] = (
            row.action,
            row.patient_id,
            row.target,
        )
        return response.json

    prefix = API_PREFIX
    enrolled = call(
        "POST",
        f"{prefix}/patients",
        {
            "display_name": LONG_NAME,
            "phone": "+32 470 12 34 56",
            "sms_consent": True,
            "height_cm": 168,
            "weight_kg": 61.5,
        },
        201,
    )
    pid = enrolled["id"]
    call("GET", f"{prefix}/patients")
    call("GET", f"{prefix}/patients/{pid}")
    call("PATCH", f"{prefix}/patients/{pid}", {"language": "fr"})
    call("GET", f"{prefix}/patients/{pid}/schedule?from=2026-03-02&to=2026-03-09")
    lab = call(
        "POST",
        f"{prefix}/patients/{pid}/labs",
        {"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-01T08:00:00+01:00"},
        201,
    )
    call("GET", f"{prefix}/patients/{pid}/labs")
    plan = call(
        "POST",
        f"{prefix}/patients/{pid}/plans",
        {"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02"},
        201,
    )
    plan_id = plan["id"]
    call("GET", f"{prefix}/plans/{plan_id}")
    call("POST", f"{prefix}/plans/{plan_id}/doses/1", {"status": "missed"})
    call("POST", f"{prefix}/plans/{plan_id}/hold", {"reason": "CMV reactivation"})
    call("POST", f"{prefix}/plans/{plan_id}/resume", {})
    call("POST", f"{prefix}/plans/{plan_id}/extend", {"weeks": 1})
    courses = call("GET", f"{prefix}/patients/{pid}/prophylaxis")
    proposed = [c["id"] for c in courses if c["status"] == "proposed"]
    assert len(proposed) == 2
    call(
        "POST",
        f"{prefix}/prophylaxis/{proposed[0]}/confirm",
        {"dose_text": "as prescribed", "times": ["08:00", "20:00"]},
    )
    call(
        "POST",
        f"{prefix}/prophylaxis/{proposed[1]}/decline",
        {"reason": "allergic to cotrimoxazole: pentamidine inhalation instead"},
    )
    added = call(
        "POST",
        f"{prefix}/patients/{pid}/prophylaxis",
        {
            "drug": "pentamidine",
            "dose_text": "300 mg inhaled every 4 weeks",
            "times": ["10:00"],
            "start_date": "2026-03-02",
        },
        201,
    )
    call("GET", f"{prefix}/patients/{pid}/reports")
    call("GET", f"{prefix}/alerts")
    alert_id = lab["alerts"][0]["id"]
    call("GET", f"{prefix}/alerts/{alert_id}")
    call("POST", f"{prefix}/alerts/{alert_id}/acknowledge")
    call("POST", f"{prefix}/alerts/{alert_id}/resolve", {"note": "Called: valganciclovir started"})
    level = call(
        "POST",
        f"{prefix}/patients/{pid}/expected-levels",
        {
            "up_to_c": 37.8,
            "expires_at": "2026-03-03T10:00:00+01:00",
            "reason": "infusion this morning: slight fever expected",
        },
        201,
    )
    call("GET", f"{prefix}/patients/{pid}/expected-levels")
    call("POST", f"{prefix}/patients/{pid}/expected-levels/end")
    family = f"{prefix}/patients/{pid}/family-contacts"
    contact = call(
        "POST",
        family,
        {
            "name": "Zoë Peeters",
            "phone": "+32 471 98 76 54",
            "relationship": "daughter",
            "consent_method": "verbal",
        },
        201,
    )
    call("GET", family)
    call("PATCH", f"{family}/{contact['id']}", {"language": "nl"})
    call("POST", f"{family}/{contact['id']}/consent/withdraw")
    call("POST", f"{family}/{contact['id']}/consent", {"method": "written"})
    call("DELETE", f"{family}/{contact['id']}")
    call("POST", f"{prefix}/plans/{plan_id}/stop", {"reason": "No response at week 4"})
    for course in (proposed[0], added["id"]):
        call("POST", f"{prefix}/prophylaxis/{course}/stop", {"override_reason": "team decision"})
    call("POST", f"{prefix}/patients/{pid}/discharge", {"reason": "follow-up moved to Leuven"})
    call("GET", f"{prefix}/response-times?from=2026-02-02&to=2026-03-01")
    call("GET", f"{prefix}/response-targets")
    # Only an admin changes the team's targets.
    reread(session).get(User, user.id).role = "admin"
    session.commit()
    call(
        "PUT",
        f"{prefix}/response-targets",
        {
            "urgent_acknowledge_minutes": 10,
            "high_acknowledge_minutes": 720,
            "resolve_minutes": 2880,
        },
    )
    # The rota, on call now, the escalation policy and the user's own profile.
    call("PATCH", f"{prefix}/me", {"language": "fr"})
    shift = call(
        "POST",
        f"{prefix}/oncall/shifts",
        {
            "user_id": user.id,
            "role": "primary",
            "starts_at": "2026-03-03T08:00",
            "ends_at": "2026-03-03T20:00",
        },
        201,
    )["shift"]
    call("PATCH", f"{prefix}/oncall/shifts/{shift['id']}", {"ends_at": "2026-03-03T21:00"})
    call("GET", f"{prefix}/oncall/shifts")
    call("GET", f"{prefix}/oncall/now")
    call("DELETE", f"{prefix}/oncall/shifts/{shift['id']}")
    call("GET", f"{prefix}/oncall/policy")
    policy = {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms", "voice"]},
            {"after_minutes": 10, "target": "fallback", "channels": ["voice"]},
        ],
        "repeat_every_minutes": 10,
    }
    call("PUT", f"{prefix}/oncall/policy", policy)
    call("DELETE", f"{prefix}/oncall/policy")
    # The data rights (admins): the record in both formats, then the erasure.
    call("GET", f"{prefix}/patients/{pid}/record")
    call("GET", f"{prefix}/patients/{pid}/record/fhir")
    call("POST", f"{prefix}/patients/{pid}/erase", {"confirm": "ERASE"})
    # Retention (no patient: the counts of what the rules deleted and trimmed).
    call("POST", f"{prefix}/retention/run")

    # Every declared route was driven (a new route must be added to this walk).
    assert set(seen) == audited_endpoints(app)
    expected = {
        "api.create_patient": ("enrol_patient", pid, f"patient:{pid}"),
        "api.list_patients": ("list_patients", None, "patients:list"),
        "api.get_patient": ("view_patient", pid, f"patient:{pid}"),
        "api.update_patient": ("update_patient", pid, f"patient:{pid}"),
        "api.discharge_patient": ("discharge_patient", pid, f"patient:{pid}"),
        "api.get_schedule": ("view_schedule", pid, f"patient:{pid}"),
        "api.record_lab": ("record_lab", pid, f"lab:{lab['lab']['id']}"),
        "api.list_labs": ("view_labs", pid, f"patient:{pid}"),
        "api.list_reports": ("view_reports", pid, f"patient:{pid}"),
        "api.start_plan": ("start_plan", pid, f"plan:{plan_id}"),
        "api.get_plan": ("view_plan", pid, f"plan:{plan_id}"),
        "api.record_dose": ("record_dose", pid, f"plan:{plan_id}"),
        "api.hold_plan": ("hold_plan", pid, f"plan:{plan_id}"),
        "api.resume_plan": ("resume_plan", pid, f"plan:{plan_id}"),
        "api.extend_plan": ("extend_plan", pid, f"plan:{plan_id}"),
        "api.stop_plan": ("stop_plan", pid, f"plan:{plan_id}"),
        "api.list_prophylaxis": ("view_prophylaxis", pid, f"patient:{pid}"),
        "api.confirm_prophylaxis": ("confirm_prophylaxis", pid, f"course:{proposed[0]}"),
        "api.decline_prophylaxis": ("decline_prophylaxis", pid, f"course:{proposed[1]}"),
        "api.add_prophylaxis": ("add_prophylaxis", pid, f"course:{added['id']}"),
        "api.stop_prophylaxis": ("stop_prophylaxis", pid, f"course:{added['id']}"),
        "api.list_alerts": ("list_alerts", None, "alerts:list"),
        "api.get_alert": ("view_alert", pid, f"alert:{alert_id}"),
        "api.acknowledge_alert": ("acknowledge_alert", pid, f"alert:{alert_id}"),
        "api.resolve_alert": ("resolve_alert", pid, f"alert:{alert_id}"),
        "api.get_response_times": ("view_response_times", None, f"team:{user.team_id}"),
        "api.get_response_targets": ("view_response_times", None, f"team:{user.team_id}"),
        "api.put_response_targets": ("update_response_targets", None, f"team:{user.team_id}"),
        "api.update_profile": ("update_profile", None, f"user:{user.id}"),
        "api.add_shift": ("edit_oncall_rota", None, f"shift:{shift['id']}"),
        "api.edit_shift": ("edit_oncall_rota", None, f"shift:{shift['id']}"),
        "api.remove_shift": ("edit_oncall_rota", None, f"shift:{shift['id']}"),
        "api.list_shifts": ("view_oncall", None, "rota:list"),
        "api.on_call_now": ("view_oncall", None, "oncall:now"),
        "api.get_policy": ("view_oncall", None, f"policy:team:{user.team_id}"),
        "api.put_policy": ("update_escalation_policy", None, f"policy:team:{user.team_id}"),
        "api.reset_policy": ("update_escalation_policy", None, f"policy:team:{user.team_id}"),
        "api.set_expected_level": ("set_expected_level", pid, f"expected_level:{level['id']}"),
        "api.list_expected_levels": ("view_expected_levels", pid, f"patient:{pid}"),
        "api.end_expected_level": ("end_expected_level", pid, f"expected_level:{level['id']}"),
        "api.export_record": ("export_record", pid, f"patient:{pid}:json"),
        "api.export_record_fhir": ("export_record", pid, f"patient:{pid}:fhir"),
        "api.erase_contact_details": ("erase_contact_details", pid, f"patient:{pid}"),
        "api.run_retention_now": ("run_retention", None, "unknown_sms:0,delivery_details:0"),
        "api.add_family_contact": ("add_family_contact", pid, f"family_contact:{contact['id']}"),
        "api.list_family_contacts": ("view_family_contacts", pid, f"patient:{pid}"),
        "api.update_family_contact": (
            "update_family_contact",
            pid,
            f"family_contact:{contact['id']}",
        ),
        "api.withdraw_family_consent": (
            "withdraw_family_consent",
            pid,
            f"family_contact:{contact['id']}",
        ),
        "api.record_family_consent": (
            "record_family_consent",
            pid,
            f"family_contact:{contact['id']}",
        ),
        "api.remove_family_contact": (
            "remove_family_contact",
            pid,
            f"family_contact:{contact['id']}",
        ),
    }
    assert seen == expected
    # Each row's action is the one its route declares.
    for endpoint, (action, _, _) in seen.items():
        assert declared_action(app.view_functions[endpoint]) == action
    # No health data, name or number in the trail.
    dumped = " ".join(f"{r.action} {r.target}" for r in new_rows(session, 0))
    secrets = (
        LONG_NAME,
        "+32470123456",
        "+32470112233",
        "25000",
        "CMV",
        "pentamidine",
        "Leuven",
        "37.8",
        "Zoë",
        "+32471987654",
    )
    for secret in secrets:
        assert secret not in dumped


def test_a_confirmed_dose_warning_is_audited_through_the_api_channel(
    client: FlaskClient, session: Session, team: dict[str, Any], make_patient
) -> None:
    user, headers = team["user"], bearer(team["token"])
    patient = make_patient(user.team_id, display_name=LONG_NAME, height_cm=200, weight_kg=122)
    plan = client.post(
        f"{API_PREFIX}/patients/{patient.id}/plans",
        json={"regimen_id": "rituximab_fl_weekly", "start_date": "2026-03-02"},
        headers=headers,
    ).json
    before = last_id(session)
    done = client.post(
        f"{API_PREFIX}/plans/{plan['id']}/doses/1",
        json={"status": "given", "dose_mg": 975, "confirm": True},
        headers=headers,
    )
    assert done.status_code == 200, done.json
    rows = [(r.action, r.channel, r.patient_id) for r in new_rows(session, before)]
    assert rows == [
        ("confirm_dose_warning", "api", patient.id),
        ("record_dose", "api", patient.id),
    ]


# --- failures ---------------------------------------------------------------------------------


def test_refused_requests_leave_no_row(
    client: FlaskClient, session: Session, team: dict[str, Any], make_patient, make_plan
) -> None:
    user, headers = team["user"], bearer(team["token"])
    patient = make_patient(user.team_id, display_name=LONG_NAME)
    plan = make_plan(patient)
    before = last_id(session)
    refused = [
        client.patch(
            f"{API_PREFIX}/patients/{patient.id}", json={"language": "xx"}, headers=headers
        ),
        client.post(f"{API_PREFIX}/plans/{plan.id}/resume", json={}, headers=headers),  # 409
        client.post(
            f"{API_PREFIX}/plans/{plan.id}/doses/99", json={"status": "missed"}, headers=headers
        ),
        client.get(f"{API_PREFIX}/patients/987654", headers=headers),  # exists nowhere
        client.get(f"{API_PREFIX}/patients/{patient.id}"),  # no token
        client.get(f"{API_PREFIX}/patients/{patient.id}/schedule?from=never", headers=headers),
        client.post(
            f"{API_PREFIX}/patients/{patient.id}/discharge", json={"reason": "x"}, headers=headers
        ),
    ]
    assert [r.status_code for r in refused] == [422, 409, 404, 404, 401, 422, 409]
    assert new_rows(session, before) == []


def test_another_teams_patient_is_a_404_like_any_other_and_kept_in_the_owners_trail(
    client: FlaskClient, session: Session, team: dict[str, Any], make_user, make_patient
) -> None:
    owner = team["user"]
    patient = make_patient(owner.team_id, display_name=LONG_NAME)
    stranger, token = make_user(team="Onco-hématologie — CHU Liège")
    before = last_id(session)
    theirs = client.get(f"{API_PREFIX}/patients/{patient.id}", headers=bearer(token))
    nobody = client.get(f"{API_PREFIX}/patients/987654", headers=bearer(token))
    # The same answer: the stranger cannot tell an existing patient from none.
    assert (
        (theirs.status_code, theirs.json)
        == (nobody.status_code, nobody.json)
        == (
            404,
            {"error": "not_found", "message": "no such patient"},
        )
    )
    change = client.patch(
        f"{API_PREFIX}/patients/{patient.id}", json={"display_name": "X"}, headers=bearer(token)
    )
    assert change.status_code == 404
    rows = new_rows(session, before)
    assert [(r.action, r.team_id, r.user_id, r.patient_id, r.target, r.channel) for r in rows] == [
        (
            "refused_other_team",
            owner.team_id,
            stranger.id,
            patient.id,
            f"patient:{patient.id}",
            "api",
        )
    ] * 2
    assert session.get(Patient, patient.id).display_name == LONG_NAME
    # The stranger's team trail holds nothing about it.
    stranger_trail = select(AuditEvent).where(
        AuditEvent.team_id == stranger.team_id,
        AuditEvent.action != AuditAction.CREATE_API_TOKEN,  # the fixture gave a token
    )
    assert not session.exec(stranger_trail).all()


@pytest.fixture
def audit_table_gone(app: Flask, session: Session) -> Iterator[Callable[[], None]]:
    """Rename the audit table away (a real failure of the audit write); put it back after."""
    engine = get_engine(app)
    moved: list[bool] = []

    def take_away() -> None:
        session.commit()  # no read transaction of the test may hold the table
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE auditevent RENAME TO auditevent_away"))
        moved.append(True)

    yield take_away
    if moved:
        session.commit()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE auditevent_away RENAME TO auditevent"))


def test_a_failed_audit_write_leaves_no_change_and_no_data_goes_out(
    client: FlaskClient,
    session: Session,
    team: dict[str, Any],
    make_patient,
    audit_table_gone: Callable[[], None],
) -> None:
    user, headers = team["user"], bearer(team["token"])
    pid = make_patient(user.team_id, display_name=LONG_NAME).id
    audit_table_gone()
    change = client.patch(
        f"{API_PREFIX}/patients/{pid}",
        json={"display_name": "Marie Lefèvre", "language": "nl"},
        headers=headers,
    )
    assert change.status_code == 500
    read = client.get(f"{API_PREFIX}/patients/{pid}", headers=headers)
    assert read.status_code == 500
    assert LONG_NAME not in read.get_data(as_text=True)
    listed = client.get(f"{API_PREFIX}/patients", headers=headers)
    assert listed.status_code == 500 and LONG_NAME not in listed.get_data(as_text=True)
    patient = stored(session, pid)
    assert (patient.display_name, patient.language) == (LONG_NAME, "en")


def test_a_change_the_database_refuses_leaves_no_audit_row(
    app: Flask, client: FlaskClient, session: Session, team: dict[str, Any], make_patient
) -> None:
    user, headers = team["user"], bearer(team["token"])
    pid = make_patient(user.team_id, display_name=LONG_NAME).id
    engine = get_engine(app)
    sqlite = engine.dialect.name == "sqlite"
    install = (
        [
            "CREATE TRIGGER test_refuse_patient BEFORE UPDATE ON patient "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        if sqlite
        else [
            "CREATE OR REPLACE FUNCTION test_refuse_patient() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
            "CREATE TRIGGER test_refuse_patient BEFORE UPDATE ON patient "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_patient()",
        ]
    )
    before = last_id(session)
    with engine.begin() as conn:
        for statement in install:
            conn.execute(text(statement))
    try:
        change = client.patch(
            f"{API_PREFIX}/patients/{pid}", json={"language": "nl"}, headers=headers
        )
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DROP TRIGGER test_refuse_patient" + ("" if sqlite else " ON patient"))
            )
    assert change.status_code in (409, 500)  # SQLite reports a trigger's refusal as a conflict
    assert new_rows(session, before) == []
    assert stored(session, pid).language == "en"


@pytest.mark.postgresql_only
def test_a_change_refused_at_commit_takes_its_audit_row_with_it(
    app: Flask, client: FlaskClient, session: Session, team: dict[str, Any], make_patient
) -> None:
    # A deferred constraint fails at COMMIT, after the audit row was written in the same
    # transaction: both go, so the trail never records a change that did not happen.
    user, headers = team["user"], bearer(team["token"])
    pid = make_patient(user.team_id, display_name=LONG_NAME).id
    engine = get_engine(app)
    before = last_id(session)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION test_refuse_at_commit() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER UPDATE ON patient "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_at_commit()"
            )
        )
    try:
        change = client.patch(
            f"{API_PREFIX}/patients/{pid}", json={"language": "nl"}, headers=headers
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_refuse_at_commit ON patient"))
    assert change.status_code == 500
    assert new_rows(session, before) == []
    assert stored(session, pid).language == "en"
