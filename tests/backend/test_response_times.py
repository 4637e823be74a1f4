"""Response-time figures through the service and the API, on a seeded month (SQLite and PostgreSQL).

The expected figures below were worked out by hand from the table in
``tests/backend/response_times_month.py`` with the nearest-rank definition (rank
``ceil(p/100 * n)`` of the sorted minutes), never by running the code.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from backend.services import response_times as service
from reminders.data.models import AuditEvent, Team, User
from reminders.data.oncall import on_call
from reminders.data.statuses import OnCallRole
from tests.backend.response_times_month import ANAIS, JEAN, MARIE, Month, seed_month
from tests.conftest import Clock, bearer, issue_test_token, reread

API = "/api/v1"

# Each measure: (measured, median, p90, within target, judged, overdue, pending).
# Minutes as the table gives them; a still-open alert counts with its wait until
# Mon 2 Mar 10:00 UTC: a10 (21 Feb 12:00) 12840 = 8 d 22 h; a12 (27 Feb 03:00) 4740 = 79 h;
# a13 (1 Mar 09:00) 1500 = 25 h; a14 (1 Mar 20:00) 840 = 14 h.
BY_SEVERITY = {
    # Acknowledge: a1 12, a2 8, a5 25, a6 15, a8 5, a9 40, a11 10, a12 open 4740 (> 15: a miss).
    # Sorted 5 8 10 12 15 25 40 4740; median rank ceil(4) = 4 -> 12; p90 rank ceil(7.2) = 8
    # -> 4740. Within 15 min: 12, 8, 15 (on the target), 5, 10 = 5 of 8.
    # Resolve: a1 95, a2 300, a5 180, a6 2880, a8 60, a9 4000, a11 120, a12 4740 (open, past
    # 2880). Sorted 60 95 120 180 300 2880 4000 4740; median rank 4 -> 180; p90 rank 8 -> 4740;
    # within 48 h: 60 95 120 180 300 2880 = 6 of 8.
    "urgent": (8, (8, 12, 4740, 5, 8, 1, 0), (8, 180, 4740, 6, 8, 1, 0)),
    # Acknowledge: a3 600, a7 1500, a10 200, a13 open 1500 (> 1440: a miss). Sorted 200 600
    # 1500 1500; median rank 2 -> 600; p90 rank ceil(3.6) = 4 -> 1500; within 24 h: 600, 200.
    # Resolve: a3 2000, a7 1600, a10 open 12840 (a miss), a13 open 1500 (< 2880: pending, left
    # out). Sorted 1600 2000 12840; median rank ceil(1.5) = 2 -> 2000; p90 rank ceil(2.7) = 3
    # -> 12840; within: 2000, 1600 = 2 of 3.
    "high": (4, (4, 600, 1500, 2, 4, 1, 0), (3, 2000, 12840, 2, 3, 1, 1)),
    # Acknowledge (no target): a4 3000 (acknowledged by its resolution), a14 open: pending.
    # Resolve: a4 3000 (> 2880: missed), a14 open 840: pending.
    "routine": (2, (1, 3000, 3000, 0, 0, 0, 1), (1, 3000, 3000, 0, 1, 0, 1)),
}

# Urgent alerts per ISO week: (count, acknowledge, resolve).
URGENT_BY_WEEK = {
    # a1 12 / 95, a2 8 / 300: sorted 8 12 -> median rank 1 = 8, p90 rank 2 = 12.
    "2026-W06": (2, (2, 8, 12, 2, 2, 0, 0), (2, 95, 300, 2, 2, 0, 0)),
    # a5 25 / 180, a6 15 / 2880 (both on their targets).
    "2026-W07": (2, (2, 15, 25, 1, 2, 0, 0), (2, 180, 2880, 2, 2, 0, 0)),
    # a8 5 / 60, a9 40 / 4000.
    "2026-W08": (2, (2, 5, 40, 1, 2, 0, 0), (2, 60, 4000, 1, 2, 0, 0)),
    # a11 10 / 120, a12 open 4740 / 4740.
    "2026-W09": (2, (2, 10, 4740, 1, 2, 1, 0), (2, 120, 4740, 1, 2, 1, 0)),
}

# Per clinician on call, per severity: (count, acknowledge, resolve).
BY_CLINICIAN = {
    MARIE: {
        # a2 8 / 300, a5 25 / 180, a6 15 / 2880: sorted ack 8 15 25 -> median rank 2 = 15,
        # p90 rank 3 = 25; resolve 180 300 2880 -> 300 and 2880, all three within 48 h.
        "urgent": (3, (3, 15, 25, 2, 3, 0, 0), (3, 300, 2880, 3, 3, 0, 0)),
        "high": (1, (1, 600, 600, 1, 1, 0, 0), (1, 2000, 2000, 1, 1, 0, 0)),  # a3
        "routine": (1, (1, 3000, 3000, 0, 0, 0, 0), (1, 3000, 3000, 0, 1, 0, 0)),  # a4
    },
    JEAN: {
        "urgent": (2, (2, 5, 40, 1, 2, 0, 0), (2, 60, 4000, 1, 2, 0, 0)),  # a8, a9
        # a7 1500 / 1600 (the handover: his later shift), a10 200 / open 12840.
        "high": (2, (2, 200, 1500, 1, 2, 0, 0), (2, 1600, 12840, 1, 2, 1, 0)),
    },
    ANAIS: {
        "urgent": (2, (2, 10, 4740, 1, 2, 1, 0), (2, 120, 4740, 1, 2, 1, 0)),  # a11, a12
    },
    service.NO_ROTA: {
        "urgent": (1, (1, 12, 12, 1, 1, 0, 0), (1, 95, 95, 1, 1, 0, 0)),  # a1 (before any shift)
        # a13: 1500 > 1440 to acknowledge (overdue); 1500 < 2880 to resolve (pending).
        "high": (1, (1, 1500, 1500, 0, 1, 1, 0), (0, None, None, 0, 0, 0, 1)),
        "routine": (1, (0, None, None, 0, 0, 0, 1), (0, None, None, 0, 0, 0, 1)),  # a14
    },
}


def measure(values: dict[str, Any]) -> tuple[Any, ...]:
    """An API measure as the tuples above."""
    return (
        values["measured"],
        values["median_minutes"],
        values["p90_minutes"],
        values["within_target"],
        values["judged"],
        values["overdue"],
        values["pending"],
    )


def severities(groups: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        g["severity"]: (g["count"], measure(g["acknowledge"]), measure(g["resolve"]))
        for g in groups
    }


@pytest.fixture
def month(session: Session, clock: Clock) -> Month:
    return seed_month(session, clock.now)


@pytest.fixture
def tokens(session: Session, month: Month, clock: Clock) -> dict[str, str]:
    """API tokens of the admin (Marie-Françoise), a nurse (Anaïs) and the other team's admin."""
    made = {
        "admin": issue_test_token(session, month.marie, clock.now),
        "nurse": issue_test_token(session, month.anais, clock.now),
        "other": issue_test_token(session, month.other, clock.now),
    }
    session.commit()
    return made


def test_the_seeded_month_gives_the_figures_worked_out_by_hand(
    client: FlaskClient, month: Month, tokens: dict[str, str]
) -> None:
    response = client.get(f"{API}/response-times", headers=bearer(tokens["nurse"]))
    assert response.status_code == 200, response.json
    body = response.json
    # The default period: the 4 full weeks before Monday 2 March.
    assert (body["first_day"], body["last_day"]) == ("2026-02-02", "2026-03-01")
    assert body["alerts"] == 14  # a1..a14; the alerts before, after and of another team left out
    assert body["timezone"] == "Europe/Brussels"
    assert body["targets"] == {
        "urgent_acknowledge_minutes": 15,
        "high_acknowledge_minutes": 1440,
        "resolve_minutes": 2880,
        "team_default": True,
    }
    assert severities(body["by_severity"]) == BY_SEVERITY
    shares = {
        g["severity"]: (
            g["acknowledge"]["share_within_target"],
            g["resolve"]["share_within_target"],
        )
        for g in body["by_severity"]
    }
    assert shares == {"urgent": (5 / 8, 6 / 8), "high": (2 / 4, 2 / 3), "routine": (None, 0.0)}
    assert [w["week"] for w in body["by_week"]] == list(URGENT_BY_WEEK)
    assert [w["first_day"] for w in body["by_week"]] == [
        "2026-02-02",
        "2026-02-09",
        "2026-02-16",
        "2026-02-23",
    ]
    assert {w["week"]: severities(w["severities"])["urgent"] for w in body["by_week"]} == (
        URGENT_BY_WEEK
    )
    # Every alert is in exactly one week: 4 + 3 + 3 + 4.
    assert [sum(g["count"] for g in w["severities"]) for w in body["by_week"]] == [4, 3, 3, 4]
    assert {c["clinician_name"]: severities(c["severities"]) for c in body["by_clinician"]} == (
        BY_CLINICIAN
    )
    assert [c["clinician_id"] for c in body["by_clinician"]] == [
        month.marie.id,
        month.jean.id,
        month.anais.id,
        None,
    ]
    assert "nearest rank" in body["percentile_definition"]


def test_the_clinician_on_call_is_the_one_the_rota_names(
    session: Session, month: Month, clock: Clock
) -> None:
    team = session.get(Team, month.team_id)
    start, end = service.period_bounds(service.default_period(clock.now.date()), team.timezone)
    facts = service.alert_facts(session, team.id, start, end)
    assert len(facts) == 14
    for fact in facts:
        shift = on_call(session, team.id, OnCallRole.PRIMARY, fact.created_at)
        assert fact.clinician_id == (None if shift is None else shift[1].id), fact.alert_id


def test_a_period_in_the_request_and_the_teams_own_targets(
    client: FlaskClient, session: Session, month: Month, tokens: dict[str, str]
) -> None:
    # Week 8 only (Monday 16 to Sunday 22 February): a8, a9 (urgent), a10 (high).
    changed = client.put(
        f"{API}/response-targets",
        json={
            "urgent_acknowledge_minutes": 45,
            "high_acknowledge_minutes": 180,
            "resolve_minutes": 4320,
        },
        headers=bearer(tokens["admin"]),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["team_default"] is False
    body = client.get(
        f"{API}/response-times?from=2026-02-16&to=2026-02-22", headers=bearer(tokens["nurse"])
    ).json
    assert (body["first_day"], body["last_day"], body["alerts"]) == ("2026-02-16", "2026-02-22", 3)
    figures = severities(body["by_severity"])
    # Urgent a8, a9: acknowledged in 5 and 40 (both within 45); resolved in 60 and 4000 (both
    # within 4320 = 72 h).
    assert figures["urgent"] == (2, (2, 5, 40, 2, 2, 0, 0), (2, 60, 4000, 2, 2, 0, 0))
    # High a10: acknowledged in 200 (> 180: missed); open 12840 > 4320: overdue.
    assert figures["high"] == (1, (1, 200, 200, 0, 1, 0, 0), (1, 12840, 12840, 0, 1, 1, 0))
    assert client.get(f"{API}/response-targets", headers=bearer(tokens["nurse"])).json == {
        "urgent_acknowledge_minutes": 45,
        "high_acknowledge_minutes": 180,
        "resolve_minutes": 4320,
        "team_default": False,
    }
    # One end only: four weeks from it.
    body = client.get(f"{API}/response-times?from=2026-02-09", headers=bearer(tokens["nurse"])).json
    assert (body["first_day"], body["last_day"]) == ("2026-02-09", "2026-03-08")


def test_another_team_sees_only_its_own_alerts(
    client: FlaskClient, month: Month, tokens: dict[str, str]
) -> None:
    body = client.get(f"{API}/response-times", headers=bearer(tokens["other"])).json
    assert body["alerts"] == 1  # its own alert of 12 February, never team A's
    assert [c["clinician_name"] for c in body["by_clinician"]] == [service.NO_ROTA]
    text = str(body)
    for name in (MARIE, JEAN, ANAIS):
        assert name not in text
    # Its admin changes its own targets only.
    assert (
        client.put(
            f"{API}/response-targets",
            json={
                "urgent_acknowledge_minutes": 5,
                "high_acknowledge_minutes": 60,
                "resolve_minutes": 600,
            },
            headers=bearer(tokens["other"]),
        ).status_code
        == 200
    )
    mine = client.get(f"{API}/response-targets", headers=bearer(tokens["admin"])).json
    assert mine["team_default"] is True and mine["urgent_acknowledge_minutes"] == 15


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-13-01",
        "from=yesterday",
        "from=0001-01-01",
        "to=9999-12-31",
        "from=2026-03-01&to=2026-02-01",  # the end before the start
        "from=2025-01-01&to=2026-02-01",  # over a year
        "from=2026-02-02&x=1",
    ],
)
def test_a_bad_period_is_a_422_naming_the_field(
    client: FlaskClient, tokens: dict[str, str], query: str
) -> None:
    response = client.get(f"{API}/response-times?{query}", headers=bearer(tokens["nurse"]))
    assert response.status_code == 422, response.json
    assert response.json["error"] and response.json["message"]


@pytest.mark.parametrize(
    "body",
    [
        {
            "urgent_acknowledge_minutes": 0,
            "high_acknowledge_minutes": 1440,
            "resolve_minutes": 2880,
        },
        {
            "urgent_acknowledge_minutes": "15",
            "high_acknowledge_minutes": 1440,
            "resolve_minutes": 2880,
        },
        {
            "urgent_acknowledge_minutes": 15,
            "high_acknowledge_minutes": 43201,
            "resolve_minutes": 2880,
        },
        {"urgent_acknowledge_minutes": 15, "high_acknowledge_minutes": 1440},
        {
            "urgent_acknowledge_minutes": 15.5,
            "high_acknowledge_minutes": 1440,
            "resolve_minutes": 2880,
        },
        {
            "urgent_acknowledge_minutes": True,
            "high_acknowledge_minutes": 1440,
            "resolve_minutes": 2880,
        },
        {
            "urgent_acknowledge_minutes": 15,
            "high_acknowledge_minutes": 1440,
            "resolve_minutes": 2880,
            "source": "x",
        },
    ],
)
def test_bad_targets_are_a_422_and_change_nothing(
    client: FlaskClient, session: Session, month: Month, tokens: dict[str, str], body: Any
) -> None:
    response = client.put(f"{API}/response-targets", json=body, headers=bearer(tokens["admin"]))
    assert response.status_code == 422, response.json
    assert response.json["field"]
    reread(session)
    assert session.get(Team, month.team_id).response_targets is None


def test_only_an_admin_changes_the_targets_and_every_route_is_audited(
    client: FlaskClient, session: Session, month: Month, tokens: dict[str, str]
) -> None:
    good = {
        "urgent_acknowledge_minutes": 10,
        "high_acknowledge_minutes": 720,
        "resolve_minutes": 1440,
    }
    refused = client.put(f"{API}/response-targets", json=good, headers=bearer(tokens["nurse"]))
    assert refused.status_code == 403 and refused.json["error"] == "forbidden"
    reread(session)
    assert session.get(Team, month.team_id).response_targets is None
    assert client.get(f"{API}/response-times", headers=bearer(tokens["nurse"])).status_code == 200
    assert client.get(f"{API}/response-targets", headers=bearer(tokens["nurse"])).status_code == 200
    assert (
        client.put(
            f"{API}/response-targets", json=good, headers=bearer(tokens["admin"])
        ).status_code
        == 200
    )
    reread(session)
    assert session.get(Team, month.team_id).response_targets == good
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.action != "create_api_token").order_by(AuditEvent.id)
    ).all()
    assert [(r.action, r.user_id, r.team_id, r.patient_id, r.target, r.channel) for r in rows] == [
        (
            "view_response_times",
            month.anais.id,
            month.team_id,
            None,
            f"team:{month.team_id}",
            "api",
        ),
        (
            "view_response_times",
            month.anais.id,
            month.team_id,
            None,
            f"team:{month.team_id}",
            "api",
        ),
        (
            "update_response_targets",
            month.marie.id,
            month.team_id,
            None,
            f"team:{month.team_id}",
            "api",
        ),
    ]


def test_a_clinician_deactivated_since_keeps_the_alerts_of_their_shifts(
    client: FlaskClient, session: Session, month: Month, tokens: dict[str, str]
) -> None:
    # Anaïs leaves after the month: her shift still covered a11 and a12 when they were raised.
    anais = reread(session).get(User, month.anais.id)
    anais.is_active = False
    session.commit()
    body = client.get(f"{API}/response-times", headers=bearer(tokens["admin"])).json
    named = {c["clinician_name"]: severities(c["severities"]) for c in body["by_clinician"]}
    assert named[ANAIS] == BY_CLINICIAN[ANAIS]
    assert named[service.NO_ROTA] == BY_CLINICIAN[service.NO_ROTA]
