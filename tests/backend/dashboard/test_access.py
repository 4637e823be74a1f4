"""Team scoping, CSRF and roles for every dashboard route, enumerated from the URL map.

A new route that takes a patient, plan, alert, user, course, API token or shift id is checked here
without anyone having to remember to add it.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy import func
from sqlmodel import SQLModel, select

from backend.schemas_family import FamilyContactIn
from backend.services.family import add_contact
from backend.services.oncall import add_shift
from reminders.data.calendar_feeds import create_feed
from reminders.data.models import Alert, ApiToken, AuditEvent, ProphylaxisCourse, Team
from tests.backend.dashboard.conftest import csrf_of, sign_in
from tests.conftest import reread

ID_ARGUMENTS = (
    "patient_id", "plan_id", "alert_id", "user_id", "course_id", "token_id", "shift_id",
)  # fmt: skip
#: Form bodies that would succeed for the owning team, so only scoping can refuse them.
VALID_FORMS = {
    "dashboard.edit_patient": {
        "display_name": "Changed",
        "phone": "+32470123456",
        "timezone": "Europe/Brussels",
        "language": "en",
    },
    "dashboard.new_lab": {"kind": "anc", "value": "100", "taken_at": "2026-03-02T08:00"},
    "dashboard.new_sms": {"body": "Hello"},
    "dashboard.phone_simulator": {"body": "38.5"},
    "dashboard.new_plan": {"regimen_id": "alemtuzumab_iv", "start_date": "2026-03-02"},
    "dashboard.hold_plan": {"reason": "x"},
    "dashboard.resume_plan": {},
    "dashboard.extend_plan": {"weeks": "1"},
    "dashboard.stop_plan": {"reason": "x"},
    "dashboard.record_dose": {"index": "1", "status": "missed"},
    "dashboard.resolve_alert": {"note": "x"},
    "dashboard.acknowledge_alert": {},
    "dashboard.change_role": {"role": "physician"},
    "dashboard.set_active": {"active": "0"},
    "dashboard.confirm_prophylaxis": {"dose_text": "400 mg twice a day", "times": "08:00, 20:00"},
    "dashboard.decline_prophylaxis": {"reason": "allergic: pentamidine inhalation instead"},
    "dashboard.create_account_token": {"name": "Lab import", "days": "30"},
    "dashboard.revoke_account_token": {},
    "dashboard.revoke_team_token": {},
    "dashboard.set_expected_level": {
        "up_to_c": "37,8",
        "expires_at": "2026-03-03T09:00",
        "reason": "rituximab infusion this morning",
    },
    "dashboard.end_expected_level": {},
    "dashboard.create_calendar_feed": {"label": "Daughter's phone"},
    "dashboard.revoke_calendar_feed": {},
    "dashboard.add_family_contact": {
        "name": "Zoë Peeters",
        "phone": "+32471987654",
        "relationship": "daughter",
        "copies_urgent": "on",
        "consent_method": "verbal",
    },
    "dashboard.family_copies": {"copies_urgent": "on"},
    "dashboard.record_family_consent": {"method": "written"},
    "dashboard.withdraw_family_consent": {},
    "dashboard.remove_family_contact": {},
}


def dashboard_rules(app) -> list:
    return [
        r
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith("dashboard.") and r.endpoint != "dashboard.static"
    ]


def fill(rule: str, ids: dict[str, int]) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), rule)


def row_counts(session) -> dict[str, int]:
    reread(session)
    counts = {
        table.name: session.exec(select(func.count()).select_from(table)).one()
        for table in SQLModel.metadata.sorted_tables
    }
    session.commit()
    return counts


@pytest.fixture
def team_a(client, team_user, treated, session, clock):
    """Team A (an admin, a treated patient with an open lab alert); a client signed in to B."""
    admin_a = team_user("Team A", "admin")
    patient, plan = treated(admin_a.team_id)
    sign_in(client, admin_a.email)
    token = csrf_of(client, "/queue")
    response = client.post(
        f"/patients/{patient.id}/labs/new",
        data={
            "kind": "cmv_pcr",
            "value": "25000",
            "taken_at": "2026-03-02T08:00",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    reread(session)
    alert = session.exec(select(Alert).where(Alert.patient_id == patient.id)).first()
    course = session.exec(
        select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
    ).first()
    api_token = session.exec(select(ApiToken).where(ApiToken.user_id == admin_a.id)).first()
    admin_a.phone = "+32470112233"  # on call tomorrow: a shift for the routes that name one
    shift, _ = add_shift(
        session,
        session.get(Team, admin_a.team_id),
        user_id=admin_a.id,
        role="primary",
        starts_at=datetime(2026, 3, 3, 8, 0),
        ends_at=datetime(2026, 3, 3, 20, 0),
        actor=admin_a,
        now=clock.now,
    )
    feed = create_feed(session, patient, "Son's phone", admin_a.id, clock.now).row
    contact = add_contact(
        session,
        patient,
        FamilyContactIn(
            name="Pieter Peeters",
            phone="+32472123456",
            relationship="son",
            consent_method="verbal",
        ),
        admin_a.id,
        clock.now,
        region="BE",
    )
    session.commit()  # end the read transaction: the next writer must not find it stale
    client.post("/logout", data={"csrf_token": token})
    ids = {
        "patient_id": patient.id,
        "plan_id": plan.id,
        "alert_id": alert.id,
        "user_id": admin_a.id,
        "course_id": course.id,
        "token_id": api_token.id,
        "shift_id": shift.id,
        "feed_id": feed.id,
        "contact_id": contact.id,
        "team_id": admin_a.team_id,  # not a URL argument: for the audit checks
    }
    return ids


def test_another_team_never_reaches_a_patient_plan_alert_or_user(
    app, client, team_a, signed_in, session
) -> None:
    outsider = signed_in("Team B", "admin")  # an admin of B: the most powerful outsider
    token = csrf_of(client, "/queue")
    checked = 0
    for rule in dashboard_rules(app):
        if not any(name in rule.arguments for name in ID_ARGUMENTS):
            continue
        url = fill(rule.rule, team_a)
        before = row_counts(session)
        tries = 0
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {**VALID_FORMS.get(rule.endpoint, {}), "csrf_token": token}
            response = client.open(url, method=method, data=data if method == "POST" else None)
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Anna Peeters" not in response.get_data(as_text=True)
            checked += 1
            tries += 1
        after = row_counts(session)
        # Nothing changed but the trail of team A, which keeps each attempt on its patient.
        refused = after.pop("auditevent") - before.pop("auditevent")
        assert after == before, f"{url} changed data for another team"
        # Users, tokens and shifts are not patient data: a refused look-up leaves no row.
        refused_rows = 0 if {"user_id", "token_id", "shift_id"} & set(rule.arguments) else tries
        assert refused == refused_rows, url
    assert checked >= 20
    rows = reread(session).exec(select(AuditEvent).where(AuditEvent.user_id == outsider.id)).all()
    refused = [r for r in rows if r.action == "refused_other_team"]
    assert refused and all(
        (r.team_id, r.patient_id, r.channel)
        == (team_a["team_id"], team_a["patient_id"], "dashboard")
        for r in refused
    )
    # Nor do lists show them.
    for page in ("/queue", "/patients", "/audit"):
        assert "Anna Peeters" not in client.get(page).get_data(as_text=True)


def test_the_owning_team_reaches_every_page(app, client, team_a, team_user) -> None:
    user = team_user("Team A", "admin")
    sign_in(client, user.email)
    for rule in dashboard_rules(app):
        if "GET" not in rule.methods or rule.endpoint in ("dashboard.login",):
            continue
        response = client.get(fill(rule.rule, team_a))
        assert response.status_code in (200, 302), (rule.rule, response.status_code)


def test_every_post_needs_the_csrf_token(app, client, team_a, team_user, session) -> None:
    user = team_user("Team A", "admin")
    sign_in(client, user.email)
    checked = 0
    for rule in dashboard_rules(app):
        if "POST" not in rule.methods:
            continue
        url = fill(rule.rule, team_a)
        before = row_counts(session)
        for token in (None, "forged-token"):
            data = dict(VALID_FORMS.get(rule.endpoint, {}))
            if token:
                data["csrf_token"] = token
            response = client.post(url, data=data)
            assert response.status_code == 400, (url, token, response.status_code)
            assert "This form has expired" in response.get_data(as_text=True)
            checked += 1
        assert row_counts(session) == before, url
    assert checked >= 2 * 15
    # The same user with the token gets through (the refusal was the token, nothing else).
    response = client.post(
        f"/alerts/{team_a['alert_id']}/acknowledge", data={"csrf_token": csrf_of(client, "/queue")}
    )
    assert response.status_code == 302


def test_unsigned_visitors_are_sent_to_sign_in(app, client, team_a) -> None:
    for rule in dashboard_rules(app):
        if rule.endpoint == "dashboard.login":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(fill(rule.rule, team_a), method=method)
            assert response.status_code == 302, (method, rule.rule)
            assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("role", ["nurse", "physician"])
def test_admin_pages_are_for_admins(client, team_a, signed_in, role) -> None:
    signed_in("Team A", role)
    assert client.get("/admin").status_code == 403
    assert client.get("/audit").status_code == 403
    token = csrf_of(client, "/queue")
    response = client.post(
        "/admin/users",
        data={"email": "x@y.example", "role": "admin", "password": "x" * 12, "csrf_token": token},
    )
    assert response.status_code == 403
    # Clinical pages are theirs.
    assert client.get(f"/patients/{team_a['patient_id']}").status_code == 200
