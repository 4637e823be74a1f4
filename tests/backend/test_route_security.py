"""Every route of the app, enumerated from its URL map: none lets an unauthorised request in.

Each route falls in exactly one class, and a route that fits none fails
:func:`test_every_route_is_classified`, so a new route cannot be forgotten:

* ``public``: pages anyone may read (sign-in page, static files, the information site,
  the OpenAPI document). Only GET; nothing behind them is private.
* ``api``: the JSON API, bearer tokens only. ``test_api_access_and_errors.py`` already
  proves that a missing token gets 401 and another team's token 404 on every API route;
  here every API route also refuses forged, revoked and deactivated users' tokens, other
  schemes, a token in the query string, and a signed-in dashboard session without a token
  (cookies never authenticate the API, so the API needs no CSRF defence).
* ``webhook``: Twilio's callbacks: only a valid ``X-Twilio-Signature`` over our public URL
  and the exact parameters gets in; missing, forged (other token), tampered or other-URL
  signatures get 403 and change nothing.
* ``session``: the care-team pages. Without a session every page sends the browser to the
  sign-in page; with a signed-in session, every POST form (any POST route outside
  ``/api/`` and ``/twilio/``, found automatically) is refused (400/403) without the
  session's CSRF token or with a wrong one, and changes nothing in the database.
* ``metrics``: Prometheus's ``/metrics``: off (404) until the operator sets its bearer
  token or allowed networks, then only those (``tests/backend/test_metrics.py``). Only GET.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlmodel import Session, SQLModel, select
from werkzeug.routing import Rule

from backend.security import CSRF_FIELD, SESSION_ID_KEY
from backend.services.sessions import start_user_session
from reminders.data.models import ApiToken, OutboundMessage, Team, User
from reminders.outbox import enqueue_message
from tests.conftest import Clock, bearer, issue_test_token
from tests.twilio_fake import FAKE_AUTH_TOKEN, inbound_sms_params, twilio_signature

BASE = "https://companion.test"
#: Endpoints anyone may GET.
PUBLIC_ENDPOINTS = {
    "static",
    "openapi_document",
    "infosite.serve",
    "dashboard.static",
    "dashboard.login",
    # A family's calendar link: the unguessable token in the path is the credential (a
    # phone's calendar app cannot sign in); tests/backend/dashboard/test_calendar.py.
    "calendar.feed",
    # Probes of a load balancer or an orchestrator: nothing but the checks' names and
    # results, no patient data, no secret; tests/backend/test_health.py.
    "health.healthz",
    "health.readyz",
}
#: Blueprints and how their routes are protected.
PROTECTED_BLUEPRINTS = {
    "api": "api",
    "twilio": "webhook",
    "dashboard": "session",
    "metrics": "metrics",
}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def classify(rule: Rule) -> str | None:
    """The class of a route (see the module docstring), or None when it fits none."""
    if rule.endpoint in PUBLIC_ENDPOINTS:
        return "public"
    blueprint = rule.endpoint.rpartition(".")[0]
    return PROTECTED_BLUEPRINTS.get(blueprint)


def methods(rule: Rule) -> list[str]:
    """The methods a route really serves (HEAD and OPTIONS are Flask's own)."""
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def routes(app: Flask, kind: str) -> list[Rule]:
    """Every route of class ``kind``."""
    return [r for r in app.url_map.iter_rules() if classify(r) == kind]


def fill(rule: Rule, ids: dict[str, Any]) -> str:
    """The rule's path with each ``<converter:name>`` replaced by a real id (1 if unknown)."""
    return re.sub(r"<(?:[^:>]+:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), rule.rule)


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (all small here), to prove a request changed nothing."""
    session.commit()  # a fresh read transaction: see what requests committed
    session.expire_all()
    tables = {}
    for table in SQLModel.metadata.sorted_tables:
        rows = session.execute(text(f'SELECT * FROM "{table.name}"')).all()
        tables[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return tables


@pytest.fixture
def team_a(
    app: Flask, client: FlaskClient, session: Session, make_user, make_patient, make_plan, clock
) -> dict[str, Any]:
    """An admin of team A and its token, a nurse, a patient, a plan, an alert, a course."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    app.config["PUBLIC_BASE_URL"] = BASE
    admin, token = make_user(team="Team A", role="admin")
    nurse, _ = make_user(team="Team A", role="nurse")
    team = session.get(Team, admin.team_id)
    team.oncall_phone = "+32470999999"
    session.add(team)
    session.commit()
    patient = make_patient(admin.team_id, phone="+32 470 12 34 56")
    plan = make_plan(patient, start_date=date(2026, 3, 2))
    lab = client.post(
        f"/api/v1/patients/{patient.id}/labs",
        json={"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-01T08:00:00+01:00"},
        headers=bearer(token),
    )
    assert lab.status_code == 201, lab.json
    course = client.post(
        f"/api/v1/patients/{patient.id}/prophylaxis",
        json={
            "drug": "acyclovir",
            "dose_text": "x",
            "times": ["08:00"],
            "start_date": "2026-03-02",
        },
        headers=bearer(token),
    )
    assert course.status_code == 201, course.json
    # A voice page about the alert, as the escalation queues one (the voice webhooks' id).
    alert_id = lab.json["alerts"][0]["id"]
    enqueue_message(
        session,
        team_id=team.id,
        patient_id=patient.id,
        recipient="clinician",
        to_phone="+32475112233",
        channel="voice",
        user_id=nurse.id,
        kind="oncall_call",
        body="Urgent alert from the patient companion of Team A.",
        dedupe_key="route-security-page",
        now=clock.now,
        urgent=True,
        alert_id=alert_id,
    )
    session.commit()
    page_id = session.exec(
        select(OutboundMessage.id).where(OutboundMessage.dedupe_key == "route-security-page")
    ).one()
    return {
        "admin": admin,
        "token": token,
        "ids": {
            "page_id": page_id,
            "patient_id": patient.id,
            "plan_id": plan.id,
            "alert_id": alert_id,
            "course_id": course.json["id"],
            "user_id": nurse.id,
            "index": 2,
            "regimen_id": "alemtuzumab_sc",
            "filename": "index.html",
        },
    }


def sign_in(
    client: FlaskClient,
    session: Session,
    user: User,
    clock: Clock,
    csrf: str = "the-csrf-token",
) -> str:
    """Give ``client`` a signed-in session of ``user`` (as the sign-in form would) and its CSRF token."""
    session_id = start_user_session(session, user, clock.now, "pytest")
    session.commit()
    with client.session_transaction() as browser:
        browser.clear()
        browser.permanent = True
        browser[SESSION_ID_KEY] = session_id
        browser[CSRF_FIELD] = csrf
    return csrf


# --- every route has a class ---------------------------------------------------------------


def test_every_route_is_classified(app: Flask) -> None:
    unclassified = [
        f"{','.join(methods(r))} {r.rule} ({r.endpoint})"
        for r in app.url_map.iter_rules()
        if classify(r) is None
    ]
    assert not unclassified, (
        "routes nobody has classified: add them to PUBLIC_ENDPOINTS or PROTECTED_BLUEPRINTS "
        f"in {__name__} and make sure they are protected: {unclassified}"
    )
    # Public routes only read.
    for rule in routes(app, "public"):
        if rule.endpoint != "dashboard.login":  # the sign-in form posts (CSRF-checked below)
            assert set(methods(rule)) <= {"GET"}, rule
    assert routes(app, "api") and routes(app, "webhook")
    for rule in routes(app, "metrics"):
        assert set(methods(rule)) <= {"GET"}, rule


def test_metrics_routes_answer_nothing_without_their_credentials(
    app: Flask, client: FlaskClient
) -> None:
    app.config["METRICS_TOKEN"] = "t" * 40
    for rule in routes(app, "metrics"):
        assert client.get(rule.rule).status_code == 401, rule
        forged = client.get(rule.rule, headers={"Authorization": "Bearer mabc_forged"})
        assert forged.status_code == 401, rule


def test_public_routes_serve_without_credentials(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200 and document.json["openapi"].startswith("3.")
    if any(r.endpoint == "dashboard.login" for r in app.url_map.iter_rules()):
        assert client.get("/login").status_code == 200


# --- the API -----------------------------------------------------------------------------


def _bad_credentials(session: Session, team_a: dict[str, Any], clock: Clock) -> list[Any]:
    """Authorization headers (and query strings) that must never authenticate."""
    good = team_a["token"]
    _, revoked = _extra_token(session, team_a, clock, "revoked")
    _, inactive = _extra_token(session, team_a, clock, "inactive")
    return [
        ({"Authorization": "Bearer mabc_forged" + "x" * 40}, ""),
        ({"Authorization": "Bearer " + good[:-1] + ("A" if good[-1] != "A" else "B")}, ""),
        ({"Authorization": "Bearer " + good.upper()}, ""),
        ({"Authorization": f"Basic {good}"}, ""),
        ({"Authorization": good}, ""),
        ({"Authorization": "Bearer "}, ""),
        ({"Authorization": f"Bearer {revoked}"}, ""),
        ({"Authorization": f"Bearer {inactive}"}, ""),
        ({}, f"?token={good}&access_token={good}"),
        ({"X-Api-Key": good, "Cookie": f"token={good}"}, ""),
    ]


def _extra_token(
    session: Session, team_a: dict[str, Any], clock: Clock, kind: str
) -> tuple[User, str]:
    from backend.services.teams import create_user

    user = create_user(
        session, email=f"{kind}@teama.example", team_name="Team A", role="nurse", now=clock.now
    )
    token = issue_test_token(session, user, clock.now)
    session.commit()
    if kind == "revoked":
        row = session.exec(select(ApiToken).where(ApiToken.user_id == user.id)).one()
        row.revoked_at = clock.now
        session.add(row)
    else:
        user.is_active = False
        session.add(user)
    session.commit()
    return user, token


def test_every_api_route_refuses_every_kind_of_bad_credentials(
    app: Flask, client: FlaskClient, session: Session, team_a: dict[str, Any], clock: Clock
) -> None:
    credentials = _bad_credentials(session, team_a, clock)
    before = snapshot(session)
    tried = 0
    for rule in routes(app, "api"):
        url = fill(rule, team_a["ids"])
        for method in methods(rule):
            body = None if method == "GET" else {}
            for headers, query in credentials:
                response = client.open(url + query, method=method, json=body, headers=headers)
                assert response.status_code == 401, (method, url, headers, response.status_code)
                assert response.is_json and response.json["error"] == "unauthorized"
                tried += 1
    assert tried >= 20 * len(credentials)
    assert snapshot(session) == before


def test_a_signed_in_dashboard_session_does_not_authenticate_the_api(
    app: Flask, client: FlaskClient, session: Session, team_a: dict[str, Any], clock: Clock
) -> None:
    csrf = sign_in(client, session, team_a["admin"], clock)
    before = snapshot(session)
    for rule in routes(app, "api"):
        url = fill(rule, team_a["ids"])
        for method in methods(rule):
            body = None if method == "GET" else {}
            response = client.open(url, method=method, json=body, headers={"X-CSRF-Token": csrf})
            assert response.status_code == 401, (method, url)
    assert snapshot(session) == before


# --- the webhooks ------------------------------------------------------------------------


def _webhook_params(rule: Rule) -> dict[str, str]:
    if rule.endpoint.startswith("twilio.voice"):
        return {"CallSid": "CA" + "c" * 32, "CallStatus": "in-progress", "Digits": "1"}
    if rule.endpoint == "twilio.delivery_status":
        return {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", "ErrorCode": "21610"}
    # An inbound SMS (and the default for any new webhook): a fever that would alert.
    return inbound_sms_params("+32470123456", "39.5", "+32460000000")


def test_every_webhook_refuses_missing_forged_and_tampered_signatures(
    app: Flask, client: FlaskClient, session: Session, team_a: dict[str, Any], clock: Clock
) -> None:
    sign_in(client, session, team_a["admin"], clock)  # a session cookie must not help either
    before = snapshot(session)
    hooks = routes(app, "webhook")
    for rule in hooks:
        path = fill(rule, team_a["ids"])
        url = BASE + path
        params = _webhook_params(rule)
        good = twilio_signature(url, params, FAKE_AUTH_TOKEN)
        attempts = {
            "no signature": (params, {}),
            "empty signature": (params, {"X-Twilio-Signature": ""}),
            "signed with another token": (
                params,
                {"X-Twilio-Signature": twilio_signature(url, params, "not-our-token")},
            ),
            "signed for another host": (
                params,
                {
                    "X-Twilio-Signature": twilio_signature(
                        "https://evil.example" + path, params, FAKE_AUTH_TOKEN
                    )
                },
            ),
            "tampered parameters": (
                {**params, "Body": "36.5", "MessageStatus": "delivered"},
                {"X-Twilio-Signature": good},
            ),
            "an extra parameter": ({**params, "Extra": "1"}, {"X-Twilio-Signature": good}),
            "a signature of other parameters": (
                params,
                {"X-Twilio-Signature": twilio_signature(url, {"a": "b"}, FAKE_AUTH_TOKEN)},
            ),
        }
        for what, (data, headers) in attempts.items():
            response = client.post(path, base_url=BASE, data=data, headers=headers)
            assert response.status_code == 403, (rule.rule, what, response.status_code)
    assert hooks
    assert snapshot(session) == before
    # The same requests correctly signed get in: the refusals above were the signature's.
    for rule in hooks:
        path = fill(rule, team_a["ids"])
        params = _webhook_params(rule)
        signature = twilio_signature(BASE + path, params, FAKE_AUTH_TOKEN)
        accepted = client.post(
            path, base_url=BASE, data=params, headers={"X-Twilio-Signature": signature}
        )
        assert accepted.status_code < 300, (rule.rule, accepted.status_code)


def test_webhooks_refuse_everything_without_a_configured_auth_token(
    app: Flask, client: FlaskClient, session: Session, team_a: dict[str, Any]
) -> None:
    app.config["TWILIO_AUTH_TOKEN"] = None
    before = snapshot(session)
    for rule in routes(app, "webhook"):
        path = fill(rule, team_a["ids"])
        params = _webhook_params(rule)
        signature = twilio_signature(BASE + path, params, FAKE_AUTH_TOKEN)
        response = client.post(
            path, base_url=BASE, data=params, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 403, rule.rule
    assert snapshot(session) == before


# --- the care-team pages -----------------------------------------------------------------


def form_posts(app: Flask) -> list[Rule]:
    """Every POST route outside the API and the webhooks (found, never listed by hand)."""
    return [
        r
        for r in app.url_map.iter_rules()
        if UNSAFE_METHODS & set(methods(r))
        and not r.rule.startswith(("/api/", "/twilio/"))
        and classify(r) != "api"
        and classify(r) != "webhook"
    ]


def test_every_page_sends_a_visitor_without_a_session_to_sign_in(
    app: Flask, client: FlaskClient, session: Session, team_a: dict[str, Any]
) -> None:
    pages = routes(app, "session")
    if not pages:
        pytest.skip("no care-team pages in this app")
    before = snapshot(session)
    for rule in pages:
        url = fill(rule, team_a["ids"])
        for method in methods(rule):
            response = client.open(url, method=method, data={"csrf_token": "x"})
            assert response.status_code in (302, 303, 400, 401, 403), (method, url)
            if response.status_code in (302, 303):
                assert "/login" in response.headers["Location"], (method, url)
    assert snapshot(session) == before


@pytest.mark.parametrize(
    "csrf",
    [None, "", "a-wrong-token", "the-csrf-token "],
    ids=["no-token", "empty", "wrong", "almost"],
)
def test_no_form_post_succeeds_without_the_sessions_csrf_token(
    app: Flask,
    client: FlaskClient,
    session: Session,
    team_a: dict[str, Any],
    clock: Clock,
    csrf: str | None,
) -> None:
    posts = form_posts(app)
    if not posts:
        pytest.skip("no HTML form routes in this app yet")
    token = sign_in(client, session, team_a["admin"], clock)
    # The session is really signed in: a page opens, not the sign-in form.
    pages = [r for r in routes(app, "session") if "GET" in methods(r) and not r.arguments]
    if pages:
        page = client.get(fill(pages[0], team_a["ids"]), follow_redirects=True)
        assert page.status_code == 200 and page.request.path != "/login", page.request.path
    before = snapshot(session)
    for rule in posts:
        url = fill(rule, team_a["ids"])
        # Plausible form data, so that only the missing token can be the reason to refuse.
        data = dict(_FORM_VALUES)
        headers = {}
        if csrf is not None:
            data[CSRF_FIELD] = csrf
        response = client.post(url, data=data, headers=headers)
        assert response.status_code in (400, 403), (url, csrf, response.status_code)
        # Nor through the header a script could set.
        if csrf is not None:
            data.pop(CSRF_FIELD)
            response = client.post(url, data=data, headers={"X-CSRF-Token": csrf})
            assert response.status_code in (400, 403), (url, csrf, response.status_code)
    assert snapshot(session) == before
    # With the right token the same session's POST goes through (sign-out, last).
    logout = [r for r in posts if r.endpoint.endswith("logout")]
    if logout:
        done = client.post(fill(logout[0], team_a["ids"]), data={CSRF_FIELD: token})
        assert done.status_code in (302, 303), done.status_code


#: Values that would pass the forms' validation if the CSRF token were there.
_FORM_VALUES = {
    "email": "new.member@teama.example",
    "password": "correct horse battery",
    "name": "New Member",
    "role": "physician",
    "display_name": "Changed Name",
    "phone": "+32 470 99 88 77",
    "timezone": "Europe/Brussels",
    "language": "en",
    "sms_consent": "on",
    "note": "resolved by forged post",
    "reason": "forged",
    "weeks": "1",
    "kind": "anc",
    "value": "100",
    "taken_at": "2026-03-01T08:00",
    "status": "missed",
    "index": "2",
    "body": "a forged message",
    "regimen_id": "alemtuzumab_iv",
    "start_date": "2026-03-02",
    "care_phone": "+32 2 555 01 99",
    "oncall_phone": "+32 470 00 00 01",
    "active": "0",
    "urgent_acknowledge_minutes": "20",
    "high_acknowledge_minutes": "720",
    "resolve_minutes": "1440",
    "user_id": "2",
    "starts_at": "2026-03-03T08:00",
    "ends_at": "2026-03-03T20:00",
    "step-0-after_minutes": "0",
    "step-0-target": "fallback",
    "step-0-channels": "sms",
    "repeat_every_minutes": "15",
}
