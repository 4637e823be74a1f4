"""Schemathesis against ``/api/v1/openapi.json``: every operation, generated inputs, no 5xx.

The schema is loaded from the app itself (WSGI, no server). Each operation gets
:data:`EXAMPLES` generated requests with a valid bearer token; path ids are the seeded
patient, plan, alert and course half of the time (so operations reach real rows, not
only 404s), generated numbers otherwise. Every response must not be a server error,
must use a documented status code and content type, and its body must match the
documented schema.

This is about the API, not the database engine: it runs once, on a SQLite file of its
own (module scope), whatever ``--db`` says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks
from sqlmodel import Session, SQLModel

from backend import create_app
from backend.db import get_engine
from backend.schemas import PatientIn, PlanIn, ProphylaxisIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.prophylaxis import add_course
from backend.services.teams import create_user
from reminders.data.models import Team
from tests.conftest import Clock, bearer, issue_test_token

pytestmark = pytest.mark.slow

EXAMPLES = 25
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass(frozen=True)
class SeededApi:
    """The app, a valid token of the team that owns the seeded rows, and their ids."""

    app: Flask
    token: str
    ids: dict[str, Any]


@pytest.fixture(scope="module")
def seeded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededApi]:
    """The app on its own SQLite file with a team, a patient, a plan, an alert and a course."""
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{folder / 'api.sqlite3'}"
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "SESSION_COOKIE_SECURE": False,
            "PUBLIC_BASE_URL": "https://companion.test",
            "DEFAULT_REGION": "BE",
            "CLOCK": Clock(NOW),
        }
    )
    app.instance_path = str(folder / "instance")
    engine = get_engine(app)
    SQLModel.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(
            session, email="nurse@a.example", team_name="Team A", role="nurse", now=NOW,
            care_phone="+32 2 764 11 11",
        )  # fmt: skip
        token = issue_test_token(session, user, NOW)
        team = session.get(Team, user.team_id)
        team.oncall_phone = "+32470999999"
        patient = create_patient(
            session,
            user.team_id,
            PatientIn(display_name="Anna Peeters", phone="+32 470 12 34 56", sms_consent=True),
            NOW,
            region="BE",
        )
        plan = start_plan(
            session,
            patient,
            PlanIn(regimen_id="alemtuzumab_sc", start_date=date(2026, 3, 2)),
            user.id,
            NOW,
        )
        course = add_course(
            session,
            patient,
            ProphylaxisIn(
                drug="acyclovir", dose_text="400 mg", times=["08:00"], start_date=date(2026, 3, 2)
            ),
            NOW,
        )
        session.commit()
        ids = {
            "patient_id": patient.id,
            "plan_id": plan.id,
            "course_id": course.id,
            "index": 2,
            "regimen_id": "alemtuzumab_sc",
        }
    with app.test_client() as client:
        lab = client.post(
            f"/api/v1/patients/{ids['patient_id']}/labs",
            json={"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-04T08:00:00+01:00"},
            headers=bearer(token),
        )
        assert lab.status_code == 201, lab.json
        ids["alert_id"] = lab.json["alerts"][0]["id"]
    yield SeededApi(app, token, ids)
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(seeded_api: SeededApi) -> schemathesis.BaseSchema:
    """The OpenAPI document the app serves, with path ids steered to the seeded rows."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", seeded_api.app)

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        seeded = {k: seeded_api.ids.get(k, v) for k, v in (path_parameters or {}).items()}
        return st.sampled_from([seeded, path_parameters])

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 reads ``node._nodeid``, which pytest 9 no longer has: provide it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
def test_every_operation_answers_within_its_schema(case: Any, seeded_api: SeededApi) -> None:
    case.call_and_validate(headers=bearer(seeded_api.token), checks=CHECKS)


# --- what schemathesis found, pinned by examples ------------------------------------------


def test_ids_beyond_an_integer_column_are_404_not_500(seeded_api: SeededApi) -> None:
    client = seeded_api.app.test_client()
    headers = bearer(seeded_api.token)
    for url in (
        "/api/v1/patients/27032649554549350400/labs",
        "/api/v1/patients/2147483648",
        "/api/v1/plans/99999999999999999999",
    ):
        assert client.get(url, headers=headers).status_code == 404, url
    huge = client.get("/api/v1/alerts?patient_id=26244129273999216640", headers=headers)
    assert huge.status_code == 422 and huge.json["field"] == "patient_id"


def test_local_times_refuse_an_offset_and_the_schedule_says_from(seeded_api: SeededApi) -> None:
    client = seeded_api.app.test_client()
    headers = bearer(seeded_api.token)
    patient = f"/api/v1/patients/{seeded_api.ids['patient_id']}"
    refused = client.patch(patient, json={"dose_time": "09:00:00+01:00"}, headers=headers)
    assert refused.status_code == 422 and refused.json["field"] == "dose_time"
    schedule = client.get(f"{patient}/schedule", headers=headers).json
    assert "from" in schedule and "from_" not in schedule


def test_the_document_is_openapi_3_1_with_body_errors(seeded_api: SeededApi) -> None:
    document = seeded_api.app.test_client().get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert {"400", "415"} <= set(operation["responses"]), (method, path)
