"""Issue 12, item 10: every API answer is private (no-store, nosniff); HSTS when served over https.

The routes are enumerated from the URL map, so a new API route cannot be forgotten.
"""

from __future__ import annotations

import requests

from backend.hardening import HSTS
from tests.security.conftest import LiveServer, Ward, fill, methods, signed_in


def _api_answers(live_server: LiveServer, ward: Ward) -> list[tuple[str, requests.Response]]:
    """One answer per API route and method, with the token (patient data) and without (401)."""
    answers = []
    for rule in live_server.app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        url = live_server(fill(rule, ward.ids))
        for method in methods(rule):
            body = None if method == "GET" else {}
            for headers in (ward.auth, {}):
                response = requests.request(method, url, json=body, headers=headers, timeout=30)
                answers.append((f"{method} {rule.rule} {bool(headers)}", response))
    # An error raised before the view (413) and a body refused as too deep carry them too.
    answers.append(
        (
            "413",
            requests.post(
                live_server("/api/v1/patients"),
                data=b"{" + b" " * (live_server.app.config["MAX_CONTENT_LENGTH"] + 1) + b"}",
                headers={**ward.auth, "Content-Type": "application/json"},
                timeout=30,
            ),
        )
    )
    return answers


def test_every_api_answer_is_never_stored_nor_sniffed(live_server: LiveServer, ward: Ward) -> None:
    answers = _api_answers(live_server, ward)
    assert len(answers) > 40
    statuses = {response.status_code for _, response in answers}
    assert {200, 401, 413} <= statuses, statuses
    for what, response in answers:
        assert response.headers.get("Cache-Control") == "no-store", what
        assert response.headers.get("X-Content-Type-Options") == "nosniff", what


def test_hsts_on_every_answer_when_published_over_https(
    live_server: LiveServer, ward: Ward
) -> None:
    assert live_server.app.config["PUBLIC_BASE_URL"].startswith("https://")
    browser, _ = signed_in(live_server, ward)
    pages = [
        browser.get(live_server(path), timeout=30)
        for path in ("/queue", f"/patients/{ward.ids['patient_id']}", "/login")
    ]
    for what, response in [*_api_answers(live_server, ward), *(("page", p) for p in pages)]:
        assert response.headers.get("Strict-Transport-Security") == HSTS, what


def test_no_hsts_when_published_over_plain_http(live_server: LiveServer, ward: Ward) -> None:
    # A development server on http: HSTS there would lock the browser out of it.
    live_server.app.config["PUBLIC_BASE_URL"] = "http://127.0.0.1:5000"
    response = requests.get(live_server("/api/v1/patients"), headers=ward.auth, timeout=30)
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
