"""Patients through the API: enrolment, E.164 phones, updates, pagination."""

from __future__ import annotations

from tests.conftest import bearer


def test_create_read_update_patient(client, make_user) -> None:
    _, token = make_user()
    created = client.post(
        "/api/v1/patients",
        json={
            "display_name": "Jan Janssens",
            "phone": "0470 12 34 56",
            "language": "nl",
            "sms_consent": True,
        },
        headers=bearer(token),
    )
    assert created.status_code == 201, created.json
    patient = created.json
    assert patient["phone"] == "+32470123456"  # national number read in DEFAULT_REGION BE
    assert patient["timezone"] == "Europe/Brussels"
    assert patient["region"] == "BE"  # DEFAULT_REGION: 112 and Celsius in the SMS
    assert patient["created_at"].endswith("Z") or patient["created_at"].endswith("+00:00")

    got = client.get(f"/api/v1/patients/{patient['id']}", headers=bearer(token))
    assert got.status_code == 200 and got.json["display_name"] == "Jan Janssens"

    updated = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={
            "timezone": "America/New_York",
            "phone": "+1 212 555 0199",
            "quiet_start": "22:30",
            "region": "us",
        },
        headers=bearer(token),
    )
    assert updated.status_code == 200, updated.json
    assert updated.json["timezone"] == "America/New_York"
    assert updated.json["region"] == "US"
    twice = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={"pill_times": ["20:00", "08:00", "20:00"]},
        headers=bearer(token),
    )
    assert twice.status_code == 422 and twice.json["field"] == "pill_times"
    ordered = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={"pill_times": ["20:00", "08:00"]},
        headers=bearer(token),
    )
    assert ordered.status_code == 200 and ordered.json["pill_times"] == ["08:00", "20:00"]
    assert updated.json["phone"] == "+12125550199"
    assert updated.json["quiet_start"] == "22:30:00"


def test_invalid_phone_and_time_zone_name_the_field(client, make_user) -> None:
    _, token = make_user()
    bad_phone = client.post(
        "/api/v1/patients", json={"display_name": "X", "phone": "12"}, headers=bearer(token)
    )
    assert bad_phone.status_code == 422 and bad_phone.json["field"] == "phone"
    bad_zone = client.post(
        "/api/v1/patients",
        json={"display_name": "X", "phone": "+32470123456", "timezone": "Mars/Olympus"},
        headers=bearer(token),
    )
    assert bad_zone.status_code == 422 and bad_zone.json["field"] == "timezone"
    bad_region = client.post(
        "/api/v1/patients",
        json={"display_name": "X", "phone": "+32470123456", "region": "XX"},
        headers=bearer(token),
    )
    assert bad_region.status_code == 422 and bad_region.json["field"] == "region"
    assert client.get("/api/v1/patients", headers=bearer(token)).json["total"] == 0


def test_list_is_paginated_and_sorted_by_name(client, make_user, make_patient, session) -> None:
    user, token = make_user()
    for name in ["Cora", "Amir", "Bea", "Dirk", "Eva"]:
        make_patient(user.team_id, display_name=name)
    page = client.get("/api/v1/patients?page=2&per_page=2", headers=bearer(token)).json
    assert page["total"] == 5 and page["page"] == 2
    assert [p["display_name"] for p in page["items"]] == ["Cora", "Dirk"]
    assert client.get("/api/v1/patients?per_page=0", headers=bearer(token)).status_code == 422


def test_api_requires_a_valid_token(client, make_user) -> None:
    make_user()
    assert client.get("/api/v1/patients").status_code == 401
    assert client.get("/api/v1/patients", headers=bearer("mabc_wrong")).status_code == 401
    assert client.get("/api/v1/patients", headers={"Authorization": "Basic abc"}).status_code == 401
