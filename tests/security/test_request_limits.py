"""Issue 12, item 5: credentials are checked before a body is read; bodies and JSON are bounded.

Every request here goes over real HTTP to the live server (``conftest.live_server``).
"""

from __future__ import annotations

import json

import requests
from flask import Flask

from backend.config import default_config, load_environment
from tests.security.conftest import LiveServer, Ward

#: A JSON body nested 1,000 levels deep: Python's decoder recurses once per level.
DEEP = ("[" * 1000 + "]" * 1000).encode()
#: 10 MB of valid JSON.
HUGE = json.dumps({"display_name": "x" * 10_000_000}).encode()


def _post(live_server: LiveServer, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(
        live_server(path),
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=60,
    )


def test_an_api_body_is_not_read_before_the_token_is_checked(
    live_server: LiveServer, ward: Ward
) -> None:
    # Bodies that a parser would refuse (400) get 401: the token came first, the body was
    # never parsed.
    for body in (b"{not json", DEEP, b"\x00" * 100):
        response = _post(live_server, "/api/v1/patients", body)
        assert response.status_code == 401, (body[:10], response.status_code, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_oversize_body_is_refused_with_413_or_401_never_parsed(
    live_server: LiveServer, ward: Ward
) -> None:
    without_token = _post(live_server, "/api/v1/patients", HUGE)
    assert without_token.status_code in (401, 413), without_token.status_code
    with_token = _post(live_server, "/api/v1/patients", HUGE, **ward.auth)
    assert with_token.status_code == 413, with_token.text
    assert with_token.json()["error"] == "request_entity_too_large"
    # The limit is the configured one: a body just under it is read (and validated).
    limit = live_server.app.config["MAX_CONTENT_LENGTH"]
    padding = limit - len(b'{"display_name": ""}') - 1
    under = _post(
        live_server,
        "/api/v1/patients",
        json.dumps({"display_name": "x" * padding}).encode(),
        **ward.auth,
    )
    assert under.status_code == 422, under.status_code


def test_oversize_form_posts_to_pages_and_webhooks_get_4xx(
    live_server: LiveServer, ward: Ward
) -> None:
    big = {"email": "x" * 10_000_000, "password": "y"}
    for path in ("/login", "/patients/new", "/twilio/sms", "/twilio/status"):
        response = requests.post(live_server(path), data=big, timeout=60, allow_redirects=False)
        assert response.status_code in (302, 303, 400, 403, 413), (path, response.status_code)


def test_deeply_nested_json_with_a_token_is_a_400_naming_the_depth(
    live_server: LiveServer, ward: Ward
) -> None:
    patient = ward.ids["patient_id"]
    paths = (
        "/api/v1/patients",
        f"/api/v1/patients/{patient}/plans",
        f"/api/v1/plans/{ward.ids['plan_id']}/hold",
    )
    for path in paths:
        response = _post(live_server, path, DEEP, **ward.auth)
        assert response.status_code == 400, (path, response.status_code, response.text[:200])
        assert response.json()["error"] == "too_deep"
        assert "deep" in response.json()["message"]
    # A plan's options are a free dictionary: nesting inside them is refused too.
    options: object = "x"
    for _ in range(200):
        options = {"a": options}
    response = requests.post(
        live_server(f"/api/v1/patients/{patient}/plans"),
        json={"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02", "options": options},
        headers=ward.auth,
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"] == "too_deep"


def test_the_body_limit_is_a_default_the_environment_overrides() -> None:
    defaults = default_config("/tmp/instance")
    assert defaults["MAX_CONTENT_LENGTH"] >= 64 * 1024
    assert defaults["MAX_JSON_DEPTH"] >= 8
    assert load_environment({"MAX_CONTENT_LENGTH": "2048"})["MAX_CONTENT_LENGTH"] == 2048
    assert load_environment({"MAX_JSON_DEPTH": "12"})["MAX_JSON_DEPTH"] == 12


def test_a_configured_limit_is_the_one_applied(live_server: LiveServer, ward: Ward) -> None:
    app: Flask = live_server.app
    app.config["MAX_CONTENT_LENGTH"] = 2048
    body = json.dumps({"reason": "r" * 3000}).encode()
    response = _post(live_server, f"/api/v1/plans/{ward.ids['plan_id']}/hold", body, **ward.auth)
    assert response.status_code == 413
