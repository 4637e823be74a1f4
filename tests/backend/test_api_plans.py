"""Plans through the API: start, hold/resume keeping the dose count, extend, stop, doses, labs."""

from __future__ import annotations

from datetime import date, timedelta

from tests.conftest import bearer


def start(client, token, patient_id, **body):
    payload = {"regimen_id": "alemtuzumab_sc", "start_date": "2026-03-02", **body}
    response = client.post(
        f"/api/v1/patients/{patient_id}/plans", json=payload, headers=bearer(token)
    )
    assert response.status_code == 201, response.json
    return response.json


def test_alemtuzumab_plan_has_36_doses_mon_wed_fri(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    plan = start(client, token, patient.id)
    dates = [date.fromisoformat(d["date"]) for d in plan["doses"]]
    assert plan["doses_total"] == 36 and len(dates) == 36
    assert dates[0] == date(2026, 3, 2) and dates[-1] == date(2026, 5, 22)
    assert {d.weekday() for d in dates} == {0, 2, 4}
    first = plan["doses"][0]
    assert first["in_hospital"] is True and first["observation_hours"] >= 2
    assert plan["doses"][0]["local_time"].startswith("2026-03-02T09:00:00+01:00")


def test_hold_and_resume_keep_the_dose_count(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    plan = start(client, token, patient.id)
    held = client.post(
        f"/api/v1/plans/{plan['id']}/hold",
        json={"reason": "ANC 200/uL", "start_date": "2026-03-16"},
        headers=bearer(token),
    )
    assert held.status_code == 200, held.json
    assert held.json["status"] == "on_hold"
    on_hold = [d for d in held.json["doses"] if d["status"] == "on_hold"]
    assert len(on_hold) == 30 and all(d["date"] is None for d in on_hold)

    resumed = client.post(
        f"/api/v1/plans/{plan['id']}/resume",
        json={"resume_date": "2026-03-25"},
        headers=bearer(token),
    )
    assert resumed.status_code == 200, resumed.json
    doses = resumed.json["doses"]
    dates = [date.fromisoformat(d["date"]) for d in doses]
    assert len(dates) == 36 and len(set(dates)) == 36
    assert dates[:6] == [date(2026, 3, d) for d in (2, 4, 6, 9, 11, 13)]
    assert dates[6] == date(2026, 3, 25)
    assert all(d >= date(2026, 3, 25) for d in dates[6:])
    assert dates[-1] == date(2026, 6, 1)
    assert resumed.json["holds"][0]["resume_date"] == "2026-03-25"
    # The risk windows the care team sees are those the planner uses: moved by the
    # 9-day hold, the CMV window to a week after the last dose (issue 11, item 5).
    windows = {w["id"]: (w["first_date"], w["last_date"]) for w in resumed.json["risk_windows"]}
    assert windows["cmv"] == ("2026-03-15", "2026-06-08")  # day 14 fell before the hold
    assert windows["first_week"] == ("2026-03-02", "2026-03-08")

    again = client.post(f"/api/v1/plans/{plan['id']}/resume", json={}, headers=bearer(token))
    assert again.status_code == 409


def test_extend_within_the_limit_and_refuse_beyond(client, make_user, make_patient) -> None:
    user, token = make_user()
    plan = start(client, token, make_patient(user.team_id).id)
    extended = client.post(
        f"/api/v1/plans/{plan['id']}/extend", json={"weeks": 6}, headers=bearer(token)
    )
    assert extended.status_code == 200, extended.json
    assert extended.json["doses_total"] == 54
    beyond = client.post(
        f"/api/v1/plans/{plan['id']}/extend", json={"weeks": 1}, headers=bearer(token)
    )
    assert beyond.status_code == 422 and beyond.json["field"] == "weeks"


def test_stop_early_cancels_the_remaining_doses(client, make_user, make_patient) -> None:
    user, token = make_user()
    plan = start(client, token, make_patient(user.team_id).id)
    stopped = client.post(
        f"/api/v1/plans/{plan['id']}/stop",
        json={"reason": "no response at week 4", "stopped_on": "2026-03-30"},
        headers=bearer(token),
    )
    assert stopped.status_code == 200, stopped.json
    statuses = [d["status"] for d in stopped.json["doses"]]
    assert statuses.count("cancelled") == 36 - 12
    assert stopped.json["status"] == "stopped"
    assert (
        client.post(
            f"/api/v1/plans/{plan['id']}/hold", json={"reason": "x"}, headers=bearer(token)
        ).status_code
        == 409
    )


def test_record_doses_given_and_missed(client, make_user, make_patient) -> None:
    user, token = make_user()
    plan = start(client, token, make_patient(user.team_id).id)
    given = client.post(
        f"/api/v1/plans/{plan['id']}/doses/1",
        json={"status": "given", "dose_mg": 30},
        headers=bearer(token),
    )
    assert given.status_code == 200, given.json
    assert (
        given.json["doses"][0]["status"] == "given" and given.json["doses"][0]["recorded_mg"] == 30
    )
    future = client.post(
        f"/api/v1/plans/{plan['id']}/doses/2",
        json={"status": "given", "on_date": "2026-03-04"},
        headers=bearer(token),
    )
    assert future.status_code == 422 and future.json["field"] == "on_date"
    missing = client.post(
        f"/api/v1/plans/{plan['id']}/doses/99", json={"status": "missed"}, headers=bearer(token)
    )
    assert missing.status_code == 404


def test_mg_per_m2_doses_show_the_bsa_calculation(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id, height_cm=180, weight_kg=80)
    plan = start(client, token, patient.id, regimen_id="rituximab_cll_chemo")
    assert "sqrt" in plan["body_surface_area"]
    first = plan["doses"][0]
    assert first["unit"] == "mg/m2" and first["amount"] == 375
    assert first["calculated_mg"] == round(375 * 2.0, 1)
    assert "375" in first["calculation"]


def test_only_one_open_plan_per_patient(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    start(client, token, patient.id)
    second = client.post(
        f"/api/v1/patients/{patient.id}/plans",
        json={"regimen_id": "alemtuzumab_iv", "start_date": "2026-03-02"},
        headers=bearer(token),
    )
    assert second.status_code == 409


def test_schedule_lists_events_in_local_time(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    start(client, token, patient.id)
    response = client.get(
        f"/api/v1/patients/{patient.id}/schedule?from=2026-03-02&to=2026-03-08",
        headers=bearer(token),
    )
    assert response.status_code == 200, response.json
    events = response.json["events"]
    kinds = {e["kind"] for e in events}
    assert {"dose", "checkin"} <= kinds
    doses = [e for e in events if e["kind"] == "dose"]
    assert [e["local_time"][:16] for e in doses] == [
        "2026-03-02T09:00",
        "2026-03-04T09:00",
        "2026-03-06T09:00",
    ]
    assert all(e["local_time"].endswith("+01:00") for e in events)
    bad = client.get(
        f"/api/v1/patients/{patient.id}/schedule?from=2026-03-08&to=2026-03-02",
        headers=bearer(token),
    )
    assert bad.status_code == 422


def test_lab_rules_raise_alerts_sorted_by_urgency(client, make_user, make_patient) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    url = f"/api/v1/patients/{patient.id}/labs"
    low_anc = client.post(
        url,
        json={"kind": "anc", "value": 200, "taken_at": "2026-03-01T08:00:00+01:00"},
        headers=bearer(token),
    )
    assert low_anc.status_code == 201
    assert low_anc.json["alerts"][0]["kind"] == "anc_below_hold"
    cmv1 = client.post(
        url,
        json={"kind": "cmv_pcr", "value": 900, "taken_at": "2026-02-20T08:00:00+01:00"},
        headers=bearer(token),
    )
    assert cmv1.json["alerts"][0]["severity"] == "routine"
    cmv2 = client.post(
        url,
        json={"kind": "cmv_pcr", "value": 3100, "taken_at": "2026-02-27T08:00:00+01:00"},
        headers=bearer(token),
    )
    assert cmv2.json["alerts"][0]["kind"] == "cmv_rising_positive"
    alerts = client.get("/api/v1/alerts", headers=bearer(token)).json["items"]
    assert [a["severity"] for a in alerts] == ["high", "high", "routine"]
    assert all(a["patient_id"] == patient.id and a["reason"] for a in alerts)
    first = alerts[0]["id"]
    ack = client.post(f"/api/v1/alerts/{first}/acknowledge", headers=bearer(token))
    assert (
        ack.status_code == 200
        and ack.json["status"] == "acknowledged"
        and ack.json["acknowledged_by"] == user.id
    )
    resolved = client.post(
        f"/api/v1/alerts/{first}/resolve", json={"note": "called patient"}, headers=bearer(token)
    )
    assert (
        resolved.json["status"] == "resolved"
        and resolved.json["resolution_note"] == "called patient"
    )
    assert client.get("/api/v1/alerts", headers=bearer(token)).json["total"] == 2
    assert client.get("/api/v1/alerts?status=resolved", headers=bearer(token)).json["total"] == 1
    future = client.post(
        url,
        json={"kind": "cd4", "value": 300, "taken_at": "2027-01-01T08:00:00+01:00"},
        headers=bearer(token),
    )
    assert future.status_code == 422 and future.json["field"] == "taken_at"


def test_prophylaxis_stop_rule_through_the_api(client, make_user, make_patient, clock) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)
    plan = start(client, token, patient.id)
    course = client.post(
        f"/api/v1/patients/{patient.id}/prophylaxis",
        json={
            "drug": "cotrimoxazole",
            "dose_text": "as prescribed",
            "times": ["08:00"],
            "start_date": "2026-03-02",
            "plan_id": plan["id"],
        },
        headers=bearer(token),
    ).json
    assert course["stop_eligibility"]["eligible"] is False
    refused = client.post(
        f"/api/v1/prophylaxis/{course['id']}/stop", json={}, headers=bearer(token)
    )
    assert refused.status_code == 409 and "not eligible" in refused.json["message"]

    # Give dose 1, stop the plan, then wait six months and record a CD4 of 250.
    client.post(
        f"/api/v1/plans/{plan['id']}/doses/1", json={"status": "given"}, headers=bearer(token)
    )
    client.post(
        f"/api/v1/plans/{plan['id']}/stop",
        json={"reason": "toxicity", "stopped_on": "2026-03-03"},
        headers=bearer(token),
    )
    clock.advance(days=190)
    still = client.get(f"/api/v1/patients/{patient.id}/prophylaxis", headers=bearer(token)).json[0]
    assert still["stop_eligibility"]["eligible"] is False  # CD4 rule not met yet
    assert still["status"] == "active"  # never ends by itself
    taken = (clock.now - timedelta(days=1)).isoformat()
    client.post(
        f"/api/v1/patients/{patient.id}/labs",
        json={"kind": "cd4", "value": 250, "taken_at": taken},
        headers=bearer(token),
    )
    ready = client.get(f"/api/v1/patients/{patient.id}/prophylaxis", headers=bearer(token)).json[0]
    assert ready["stop_eligibility"]["eligible"] is True and ready["status"] == "active"
    stopped = client.post(
        f"/api/v1/prophylaxis/{course['id']}/stop",
        json={"note": "CD4 recovered"},
        headers=bearer(token),
    )
    assert stopped.status_code == 200 and stopped.json["status"] == "stopped"


def test_regimen_catalogue_carries_sources(client, make_user) -> None:
    _, token = make_user()
    catalogue = client.get("/api/v1/regimens", headers=bearer(token)).json
    ids = {r["id"] for r in catalogue}
    assert {
        "alemtuzumab_sc",
        "alemtuzumab_iv",
        "ofatumumab_retreatment",
        "ofatumumab_lenalidomide",
        "rituximab_cll_chemo",
        "rituximab_fl_maintenance",
        "inotuzumab_weekly",
        "inotuzumab_single",
    } <= ids
    assert all(r["sources"] for r in catalogue)


def test_a_large_body_surface_area_asks_to_confirm_and_never_blocks(
    client, make_user, make_patient, session
) -> None:
    # Issue 11, item 10: BSA above 2.5 m2 (care-team setting) asks the team to confirm.
    from sqlmodel import select

    from reminders.data.models import AuditEvent

    user, token = make_user()
    patient = make_patient(
        user.team_id,
        display_name="Marie-Françoise Van den Bossche-Lefèvre",
        height_cm=200,
        weight_kg=122,  # Mosteller 2.60 m2
    )
    plan = start(client, token, patient.id, regimen_id="rituximab_fl_weekly")  # not blocked
    first = plan["doses"][0]
    assert first["calculated_mg"] == 975.0  # 375 mg/m2 x 2.60 m2
    assert [w["code"] for w in first["warnings"]] == ["bsa_above_limit"]
    url = f"/api/v1/plans/{plan['id']}/doses/1"
    asked = client.post(url, json={"status": "given", "dose_mg": 975}, headers=bearer(token))
    assert asked.status_code == 409, asked.json
    assert asked.json["field"] == "confirm" and "2.60 m2" in asked.json["message"]
    confirmed = client.post(
        url, json={"status": "given", "dose_mg": 975, "confirm": True}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.json
    recorded = confirmed.json["doses"][0]
    assert (recorded["status"], recorded["recorded_mg"]) == ("given", 975.0)  # unchanged
    session.expire_all()
    actions = session.exec(select(AuditEvent.action, AuditEvent.target)).all()
    assert ("confirm_dose_warning", f"plan:{plan['id']}:dose:1:bsa_above_limit") in actions


def test_a_dose_above_the_usual_maximum_is_recorded_only_when_confirmed(
    client, make_user, make_patient
) -> None:
    user, token = make_user()
    patient = make_patient(user.team_id)  # 170 cm, 70 kg: 1.82 m2
    plan = start(client, token, patient.id)  # alemtuzumab 30 mg
    url = f"/api/v1/plans/{plan['id']}/doses/1"
    asked = client.post(url, json={"status": "given", "dose_mg": 300}, headers=bearer(token))
    assert asked.status_code == 409 and "usual maximum" in asked.json["message"]
    ok = client.post(url, json={"status": "given", "dose_mg": 30}, headers=bearer(token))
    assert ok.status_code == 200 and ok.json["doses"][0]["warnings"] == []
    corrected = client.post(
        url, json={"status": "given", "dose_mg": 300, "confirm": True}, headers=bearer(token)
    )
    assert corrected.status_code == 200
    dose = corrected.json["doses"][0]
    assert dose["recorded_mg"] == 300.0
    assert [w["code"] for w in dose["warnings"]] == ["dose_above_usual_max"]
