"""Issue 12, item 6: hostile input is a 4xx naming the field, never a 500.

The sweep tests send NUL, other control characters, CR/LF and dates in year 1 and 9999 to
every route, found in the URL map and the OpenAPI document, over real HTTP; the other tests
check the refusal names the field, and that a patient's SMS is cleaned and handled, never lost.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from flask import Flask
from sqlmodel import Session, select

from backend.services.teams import create_user
from reminders.data.errors import InvalidInput
from reminders.data.models import Alert, AuditEvent, InboundMessage, User
from tests.conftest import Clock, reread
from tests.security.conftest import (
    LONG_NAME,
    LiveServer,
    Ward,
    fill,
    methods,
    signed_in,
    twilio_post,
)
from tests.security.hostile import HOSTILE, api_attacks
from tests.twilio_fake import inbound_sms_params

API = "/api/v1"


def _document(live_server: LiveServer) -> dict[str, Any]:
    return requests.get(live_server(f"{API}/openapi.json"), timeout=30).json()


def _api_path(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)


# --- the sweep: every route, every text field --------------------------------------------


def test_the_openapi_document_and_the_url_map_list_the_same_api_routes(
    live_server: LiveServer,
) -> None:
    document = _document(live_server)
    documented = {(p, m.upper()) for p, ops in document["paths"].items() for m in ops}
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in live_server.app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in methods(rule)
    }
    assert documented == served


def test_every_api_field_and_query_survives_hostile_values(
    live_server: LiveServer, ward: Ward
) -> None:
    document = _document(live_server)
    tried = 0
    failures = []
    for method, path, what, query, body in api_attacks(document):
        response = requests.request(
            method,
            live_server(_api_path(path, ward.ids)),
            params=query,
            json=body,
            headers=ward.auth,
            timeout=30,
        )
        tried += 1
        if response.status_code >= 500:
            failures.append((method, path, what, response.status_code))
        elif response.status_code >= 400:
            assert response.json().get("error"), (method, path, what)
    assert not failures, failures
    assert tried > 200
    # Hostile path segments too (the one string path parameter).
    for value in ("\x00", "%0d%0a", "0001-01-01"):
        response = requests.get(
            live_server(f"{API}/regimens/{value}"), headers=ward.auth, timeout=30
        )
        assert response.status_code == 404, value


#: Plausible values for the fields the pages read, so that only the hostile ones can be
#: refused (a field a page does not know is ignored).
FORM_VALUES = {
    "email": "marie-francoise@hopital.example",
    "password": "correct horse battery staple",
    "name": "Marie-Françoise Van den Bossche-Lefèvre",
    "role": "nurse",
    "display_name": "Marie-Françoise Van den Bossche-Lefèvre",
    "phone": "+32 470 55 66 77",
    "hospital_ref": "UZ-2026-00417",
    "timezone": "Europe/Brussels",
    "language": "fr",
    "note": "appelée ce matin",
    "reason": "neutropénie",
    "weeks": "1",
    "kind": "anc",
    "value": "900",
    "taken_at": "2026-03-01T08:00",
    "status": "missed",
    "index": "2",
    "body": "Bonjour, comment allez-vous ?",
    "regimen_id": "rituximab_fl_weekly",
    "start_date": "2026-03-09",
    "resume_date": "2026-03-20",
    "stopped_on": "2026-04-01",
    "on_date": "2026-03-04",
    "dose_mg": "30",
    "care_phone": "+32 2 555 01 99",
    "oncall_phone": "+32 470 00 00 01",
    "drug": "valacyclovir",
    "dose_text": "500 mg twice a day",
    "times": "08:00, 20:00",
    "pill_times": "08:00 20:00",
    "height_cm": "165",
    "weight_kg": "61,5",
    "override_reason": "team decision",
    "next": "/queue",
    "q": "Lefèvre",
    "page": "2",
    "days": "30",
    "from": "2026-02-02",
    "to": "2026-03-01",
    "urgent_acknowledge_minutes": "20",
    "high_acknowledge_minutes": "720",
    "resolve_minutes": "1440",
    "user_id": "2",
    "starts_at": "2026-03-29T02:30",
    "ends_at": "2026-03-29T08:00",
    "step-0-after_minutes": "0",
    "step-0-target": "primary",
    "step-0-channels": "sms",
    "step-1-after_minutes": "15",
    "step-1-target": "fallback",
    "step-1-channels": "voice",
    "repeat_every_minutes": "15",
}
DATE_FIELDS = {
    "taken_at",
    "start_date",
    "resume_date",
    "stopped_on",
    "on_date",
    "from",
    "to",
    "starts_at",
    "ends_at",
}


def _hostile_form(kind: str) -> dict[str, str]:
    """Every field hostile for a control-character kind; every date field for a date kind."""
    values = HOSTILE[kind]
    if kind.startswith("year"):
        return {**FORM_VALUES, **{f: values["date"] for f in DATE_FIELDS}}
    return {
        f: values["date"] if f in DATE_FIELDS else FORM_VALUES[f] + values["string"]
        for f in FORM_VALUES
    }


def _not_ready(endpoint: str, response: requests.Response) -> bool:
    """Whether ``response`` is the readiness probe saying "not ready" (503 is its meaning).

    Its checks, not the hostile value, decide it: the body names each check.
    """
    return (
        endpoint == "health.readyz"
        and response.status_code == 503
        and response.json()["status"] == "unavailable"
    )


def _reads_fields(endpoint: str) -> bool:
    """True for the care-team pages (static files and the information site read no field)."""
    return endpoint.startswith("dashboard.") and endpoint != "dashboard.static"


def test_every_page_and_form_survives_hostile_values(live_server: LiveServer, ward: Ward) -> None:
    browser, csrf = signed_in(live_server, ward)
    rules = [
        r
        for r in live_server.app.url_map.iter_rules()
        if not r.endpoint.startswith(("api.", "twilio.")) and r.endpoint != "openapi_document"
    ]
    failures = []
    tried = 0
    for kind in HOSTILE:
        data = _hostile_form(kind)
        for rule in rules:
            url = live_server(fill(rule, ward.ids))
            for method in methods(rule):
                if rule.endpoint.endswith(("logout", "sign_out_everywhere")):
                    continue  # they take no input; signing out would end the sweep
                if method == "GET":
                    response = browser.get(url, params=data, timeout=30)
                else:
                    response = browser.post(
                        url, data={**data, "csrf_token": csrf}, timeout=30, allow_redirects=False
                    )
                tried += 1
                if _not_ready(rule.endpoint, response):
                    pass  # /readyz's own answer (the test app's console SMS is not for production)
                elif response.status_code >= 500:
                    failures.append((kind, method, rule.rule, response.status_code))
                elif kind in ("nul", "control", "crlf") and _reads_fields(rule.endpoint):
                    assert response.status_code == 400, (kind, method, rule.rule)
        # Still signed in (a hostile value never signs anyone out nor in).
        assert "/login" not in browser.get(live_server("/queue"), timeout=30).url
    assert not failures, failures[:20]
    assert tried > 100


def test_every_webhook_survives_hostile_values_in_every_parameter(
    live_server: LiveServer, ward: Ward
) -> None:
    hooks = [r for r in live_server.app.url_map.iter_rules() if r.endpoint.startswith("twilio.")]
    assert hooks
    for rule in hooks:
        path = fill(rule, ward.ids)
        params = inbound_sms_params("+32470123456", "39,5", "+32460000000")
        params.update(MessageStatus="undelivered", ErrorCode="30005")
        for kind, values in HOSTILE.items():
            for name in list(params):
                hostile = {**params, name: params[name] + values["string"]}
                hostile["MessageSid"] = f"SM{kind}{name}"[:34] + hostile["MessageSid"][-2:]
                response = twilio_post(live_server, path, hostile)
                assert response.status_code < 500, (rule.rule, kind, name, response.status_code)


# --- the refusals name the field ---------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x9b"], ids=repr)
def test_control_characters_in_api_text_are_422_naming_the_field(
    live_server: LiveServer, ward: Ward, char: str
) -> None:
    patient, plan = ward.ids["patient_id"], ward.ids["plan_id"]
    cases = [
        ("post", f"{API}/patients", {"display_name": LONG_NAME + char, "phone": "+32470556677"}, "display_name"),
        ("patch", f"{API}/patients/{patient}", {"hospital_ref": f"UZ{char}17"}, "hospital_ref"),
        ("post", f"{API}/patients/{patient}/labs",
         {"kind": "anc", "value": 900, "taken_at": "2026-03-01T08:00:00+01:00", "note": f"a{char}"}, "note"),
        ("post", f"{API}/plans/{plan}/hold", {"reason": f"neutropénie{char}"}, "reason"),
        ("post", f"{API}/patients/{patient}/prophylaxis",
         {"drug": f"acyclovir{char}", "dose_text": "400 mg", "times": ["08:00"], "start_date": "2026-03-02"}, "drug"),
        ("get", f"{API}/alerts?kind=cmv{char}", None, "kind"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        response = requests.request(
            method, live_server(path), json=body, headers=ward.auth, timeout=30
        )
        assert response.status_code in (400, 422), (path, response.status_code, response.text)
        assert response.json()["field"] == field, (path, response.json())


def test_line_breaks_stay_allowed_in_a_note(live_server: LiveServer, ward: Ward) -> None:
    response = requests.post(
        live_server(f"{API}/plans/{ward.ids['plan_id']}/hold"),
        json={"reason": "ANC 0,4 ce matin.\r\nRevoir jeudi.\tAppeler la patiente."},
        headers=ward.auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_a_patients_sms_with_control_characters_is_cleaned_and_still_triggers_the_fever_path(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    params = inbound_sms_params("+32470123456", "38,9\x00", "+32460000000")
    response = twilio_post(live_server, "/twilio/sms", params)
    assert response.status_code == 200, response.text
    assert "<Message " in response.text  # an answer, not the empty acknowledgement
    reread(session)
    stored = session.exec(
        select(InboundMessage).where(InboundMessage.provider_sid == params["MessageSid"])
    ).one()
    assert stored.body == "38,9" and stored.patient_id == ward.ids["patient_id"]
    urgent = session.exec(
        select(Alert).where(Alert.patient_id == ward.ids["patient_id"], Alert.severity == "urgent")
    ).all()
    assert len(urgent) == 1 and "38.9" in str(urgent[0].details), [a.details for a in urgent]


def test_crlf_in_the_login_next_is_refused_before_a_session_is_created(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    from tests.security.conftest import PASSWORD, csrf_of

    browser = requests.Session()
    injected = "/queue\r\nSet-Cookie: session=stolen"
    asked = browser.get(live_server("/login"), params={"next": injected}, timeout=30)
    assert asked.status_code == 400 and "next" in asked.text
    page = browser.get(live_server("/login"), timeout=30)
    response = browser.post(
        live_server("/login"),
        params={"next": injected},
        data={"email": ward.admin.email, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 400, response.status_code
    assert "next" in response.text
    assert "stolen" not in response.headers.get("Set-Cookie", "")
    # Not signed in: no session was created, no sign-in audited.
    assert "/login" in browser.get(live_server("/queue"), timeout=30).url
    reread(session)
    assert not session.exec(select(AuditEvent).where(AuditEvent.action == "login")).all()


# --- dates, phone extensions, emails, strict types ---------------------------------------


@pytest.mark.parametrize("when", ["0001-01-01", "1899-12-31", "2101-01-01", "9999-12-31"], ids=str)
def test_dates_outside_1900_to_2100_are_422_on_every_date_field(
    live_server: LiveServer, ward: Ward, when: str
) -> None:
    patient, plan, course = ward.ids["patient_id"], ward.ids["plan_id"], ward.ids["course_id"]
    cases = [
        ("get", f"{API}/patients/{patient}/schedule?from={when}", None, "from"),
        ("get", f"{API}/patients/{patient}/schedule?to={when}", None, "to"),
        ("post", f"{API}/patients/{patient}/labs",
         {"kind": "cmv_pcr", "value": 100, "taken_at": f"{when}T08:00:00+01:00"}, "taken_at"),
        ("post", f"{API}/patients/{patient}/plans",
         {"regimen_id": "rituximab_fl_weekly", "start_date": when}, "start_date"),
        ("post", f"{API}/patients/{patient}/prophylaxis",
         {"drug": "acyclovir", "dose_text": "400 mg", "times": ["08:00"], "start_date": when}, "start_date"),
        ("post", f"{API}/plans/{plan}/hold", {"reason": "ANC 0,4", "start_date": when}, "start_date"),
        ("post", f"{API}/plans/{plan}/resume", {"resume_date": when}, "resume_date"),
        ("post", f"{API}/plans/{plan}/stop", {"reason": "progression", "stopped_on": when}, "stopped_on"),
        ("post", f"{API}/plans/{plan}/doses/1", {"status": "missed", "on_date": when}, "on_date"),
        ("post", f"{API}/prophylaxis/{course}/confirm",
         {"dose_text": "960 mg", "times": ["08:00"], "start_date": when}, "start_date"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        response = requests.request(
            method, live_server(path), json=body, headers=ward.auth, timeout=30
        )
        assert response.status_code == 422, (path, response.status_code, response.text)
        assert response.json()["field"] == field, (path, response.json())


def test_dates_outside_1900_to_2100_are_refused_by_the_forms(
    live_server: LiveServer, ward: Ward
) -> None:
    browser, csrf = signed_in(live_server, ward)
    patient, plan = ward.ids["patient_id"], ward.ids["plan_id"]
    for when in ("0001-01-01", "9999-12-31"):
        lab = browser.post(
            live_server(f"/patients/{patient}/labs/new"),
            data={"kind": "anc", "value": "900", "taken_at": f"{when}T08:00", "csrf_token": csrf},
            timeout=30,
        )
        assert lab.status_code == 422, lab.status_code
        hold = browser.post(
            live_server(f"/plans/{plan}/hold"),
            data={"reason": "ANC 0,4", "start_date": when, "csrf_token": csrf},
            timeout=30,
        )
        assert hold.status_code == 422, hold.status_code


@pytest.mark.parametrize(
    "phone", ["+32 470 12 34 99 ext. 12", "+32470123499;ext=5", "0470 12 34 99 x 7"], ids=str
)
def test_a_phone_number_with_an_extension_is_refused_not_cut(
    live_server: LiveServer, ward: Ward, phone: str
) -> None:
    created = requests.post(
        live_server(f"{API}/patients"),
        json={"display_name": LONG_NAME, "phone": phone},
        headers=ward.auth,
        timeout=30,
    )
    assert created.status_code == 422, created.text
    assert created.json()["field"] == "phone" and "extension" in created.json()["message"]
    changed = requests.patch(
        live_server(f"{API}/patients/{ward.ids['patient_id']}"),
        json={"phone": phone},
        headers=ward.auth,
        timeout=30,
    )
    assert changed.status_code == 422 and changed.json()["field"] == "phone"
    browser, csrf = signed_in(live_server, ward)
    team = browser.post(
        live_server("/admin/team"), data={"oncall_phone": phone, "csrf_token": csrf}, timeout=30
    )
    assert team.status_code == 422 and "extension" in team.text


@pytest.mark.parametrize(
    "email",
    [
        "<script>alert(1)</script>@hopital.example",
        'marie"><img src=x>@hopital.example',
        "marie@hopital",
        "marie@@hopital.example",
        "marie@hopital..example",
        "marie@-hopital.example",
    ],
    ids=range(6),
)
def test_an_invalid_email_is_refused_by_the_admin_form_and_the_service(
    live_server: LiveServer, ward: Ward, session: Session, clock: Clock, email: str
) -> None:
    browser, csrf = signed_in(live_server, ward)
    before = len(session.exec(select(User)).all())
    response = browser.post(
        live_server("/admin/users"),
        data={"email": email, "name": "Nouvelle", "role": "nurse",
              "password": "correct horse battery", "csrf_token": csrf},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 422, response.status_code
    with pytest.raises(InvalidInput) as refused:
        create_user(session, email=email, team_name="Team A", role="nurse", now=clock.now)
    assert refused.value.field == "email"
    session.rollback()
    assert len(reread(session).exec(select(User)).all()) == before


def test_a_valid_accented_email_is_accepted_and_normalised(
    session: Session, clock: Clock, app: Flask
) -> None:
    user = create_user(
        session,
        email="  Marie-Françoise.Lefèvre@Hôpital-Erasme.example ",
        team_name="Hématologie",
        role="nurse",
        now=clock.now,
    )
    assert user.email == "marie-françoise.lefèvre@hôpital-erasme.example"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/patients", {"display_name": LONG_NAME, "phone": "+32470556677", "sms_consent": "yes"}, "sms_consent"),
        ("/patients", {"display_name": LONG_NAME, "phone": "+32470556677", "discreet": 1}, "discreet"),
        ("/plans/{plan_id}/extend", {"weeks": "2"}, "weeks"),
        ("/plans/{plan_id}/extend", {"weeks": 2.0}, "weeks"),
        ("/plans/{plan_id}/extend", {"weeks": True}, "weeks"),
        ("/plans/{plan_id}/doses/1", {"status": "given", "confirm": "true"}, "confirm"),
        ("/patients/{patient_id}/prophylaxis",
         {"drug": "acyclovir", "dose_text": "400 mg", "times": ["08:00"], "start_date": "2026-03-02",
          "cd4_rule": "no", "min_months_after_last_dose": 6}, "cd4_rule"),
        ("/patients/{patient_id}/prophylaxis",
         {"drug": "acyclovir", "dose_text": "400 mg", "times": ["08:00"], "start_date": "2026-03-02",
          "min_months_after_last_dose": "6"}, "min_months_after_last_dose"),
        ("/patients/{patient_id}/prophylaxis",
         {"drug": "acyclovir", "dose_text": "400 mg", "times": ["08:00"], "start_date": "2026-03-02",
          "weekdays": ["1", "3"]}, "weekdays.0"),
    ],
    ids=range(9),
)  # fmt: skip
def test_api_booleans_and_integers_are_strict(
    live_server: LiveServer, ward: Ward, path: str, body: dict[str, Any], field: str
) -> None:
    response = requests.post(
        live_server(API + _api_path(path, ward.ids)), json=body, headers=ward.auth, timeout=30
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()


def test_real_json_types_and_the_forms_strings_still_work(
    live_server: LiveServer, ward: Ward
) -> None:
    extended = requests.post(
        live_server(f"{API}/plans/{ward.ids['plan_id']}/extend"),
        json={"weeks": 1},
        headers=ward.auth,
        timeout=30,
    )
    assert extended.status_code in (200, 409), extended.text  # 409: the regimen allows none
    created = requests.post(
        live_server(f"{API}/patients"),
        json={"display_name": LONG_NAME, "phone": "+32470556677", "sms_consent": True},
        headers=ward.auth,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    # The forms send strings; the pages convert them before the same schemas check them.
    browser, csrf = signed_in(live_server, ward)
    weeks = browser.post(
        live_server(f"/plans/{ward.ids['plan_id']}/extend"),
        data={"weeks": "1", "csrf_token": csrf},
        timeout=30,
    )
    assert weeks.status_code in (200, 302, 303, 409), weeks.status_code
    dose = browser.post(
        live_server(f"/plans/{ward.ids['plan_id']}/doses"),
        data={"index": "1", "status": "missed", "csrf_token": csrf},
        timeout=30,
    )
    assert dose.status_code in (200, 302, 303, 409), dose.status_code
