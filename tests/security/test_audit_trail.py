"""The audit trail over real HTTP: API reads and writes, pages, and another team's attempts.

A live server (werkzeug in a thread) and ``requests``, as an integration or a browser on
the network would use it, on SQLite and PostgreSQL. Every answer that carried or changed
patient data left its row; nothing over HTTP edits or deletes one.
"""

from __future__ import annotations

import requests
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, Patient
from tests.conftest import bearer, reread
from tests.security.conftest import LONG_NAME, LiveServer, Ward, signed_in


def trail(session: Session, after: int = 0) -> list[tuple]:
    """(action, user, team, patient, target, channel) of the rows after id ``after``."""
    reread(session)
    rows = session.exec(select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id))
    found = [(r.action, r.user_id, r.team_id, r.patient_id, r.target, r.channel) for r in rows]
    session.commit()
    return found


def newest(session: Session) -> int:
    """The newest audit row id."""
    reread(session)
    ids = session.exec(select(AuditEvent.id).order_by(AuditEvent.id.desc())).first()
    session.commit()
    return ids or 0


def test_an_api_read_and_write_over_http_leave_their_rows(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    pid, admin = ward.ids["patient_id"], ward.admin
    before = newest(session)
    read = requests.get(live_server(f"/api/v1/patients/{pid}"), headers=ward.auth, timeout=30)
    assert read.status_code == 200 and read.json()["display_name"] == LONG_NAME
    write = requests.patch(
        live_server(f"/api/v1/patients/{pid}"),
        json={"language": "nl", "quiet_start": "21:30"},
        headers=ward.auth,
        timeout=30,
    )
    assert write.status_code == 200, write.text
    listed = requests.get(live_server("/api/v1/alerts"), headers=ward.auth, timeout=30)
    assert listed.status_code == 200
    assert trail(session, before) == [
        ("view_patient", admin.id, admin.team_id, pid, f"patient:{pid}", "api"),
        ("update_patient", admin.id, admin.team_id, pid, f"patient:{pid}", "api"),
        ("list_alerts", admin.id, admin.team_id, None, "alerts:list", "api"),
    ]
    # The fixture's own API calls (a lab, a course) were audited too, after its users'
    # tokens were issued.
    actions = [row[0] for row in trail(session) if row[0] != "create_api_token"]
    assert actions[:2] == ["record_lab", "add_prophylaxis"]


def test_another_teams_probe_is_a_plain_404_kept_in_the_owners_trail(
    live_server: LiveServer, ward: Ward, session: Session, make_user
) -> None:
    stranger, token = make_user(team="Dienst hematologie, AZ Sint-Jan Brugge-Oostende AV")
    before = newest(session)
    answers = {}
    for kind, path in (
        ("patient", f"/api/v1/patients/{ward.ids['patient_id']}"),
        ("plan", f"/api/v1/plans/{ward.ids['plan_id']}/hold"),
        ("alert", f"/api/v1/alerts/{ward.ids['alert_id']}/acknowledge"),
        ("course", f"/api/v1/prophylaxis/{ward.ids['course_id']}/stop"),
    ):
        method = "GET" if kind == "patient" else "POST"
        # Valid bodies: only the team scoping refuses them (validation comes first).
        body = {"plan": {"reason": "probe"}, "course": {"override_reason": "probe"}}.get(kind)
        answer = requests.request(
            method, live_server(path), json=body, headers=bearer(token), timeout=30
        )
        answers[kind] = (answer.status_code, answer.json()["error"])
    assert set(answers.values()) == {(404, "not_found")}
    pid, team = ward.ids["patient_id"], ward.admin.team_id
    assert trail(session, before) == [
        ("refused_other_team", stranger.id, team, pid, f"patient:{pid}", "api"),
        ("refused_other_team", stranger.id, team, pid, f"plan:{ward.ids['plan_id']}", "api"),
        ("refused_other_team", stranger.id, team, pid, f"alert:{ward.ids['alert_id']}", "api"),
        ("refused_other_team", stranger.id, team, pid, f"course:{ward.ids['course_id']}", "api"),
    ]
    reread(session)
    assert session.get(Patient, pid).display_name == LONG_NAME
    session.commit()


def test_a_page_view_leaves_the_same_row_and_no_http_request_edits_the_trail(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    browser, csrf = signed_in(live_server, ward)
    pid = ward.ids["patient_id"]
    before = newest(session)
    page = browser.get(live_server(f"/patients/{pid}"), timeout=30)
    assert page.status_code == 200 and LONG_NAME in page.text
    admin = ward.admin
    assert trail(session, before) == [
        ("view_patient", admin.id, admin.team_id, pid, f"patient:{pid}", "dashboard")
    ]
    audit_page = browser.get(live_server("/audit"), timeout=30)
    assert audit_page.status_code == 200 and "view patient" in audit_page.text
    assert "API" in audit_page.text and "care-team pages" in audit_page.text
    kept = trail(session)
    # Neither the pages nor the API offer to change or delete a row.
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = browser.request(
            method, live_server("/audit"), data={"csrf_token": csrf, "id": "1"}, timeout=30
        )
        assert answer.status_code == 405, method
    for path in ("/api/v1/audit", "/api/v1/audit/1"):
        for method in ("GET", "DELETE"):
            answer = requests.request(method, live_server(path), headers=ward.auth, timeout=30)
            assert answer.status_code in (404, 405), (method, path)
    assert trail(session)[: len(kept)] == kept
