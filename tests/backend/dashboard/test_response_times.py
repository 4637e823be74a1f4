"""The response-time page, its CSV export and the targets form (Flask test client, SQLite and
PostgreSQL), on the seeded month of ``tests/backend/response_times_month.py``.

The cells expected below are the hand-worked figures of ``tests/backend/test_response_times.py``
as the page writes durations: under an hour to a tenth of a minute ("12 min"), then hours and
minutes ("33 h 20 min"), from 3 days in days and hours ("3 d 7 h" is 4740 minutes).
"""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, Team
from tests.backend.dashboard.conftest import post_form, sign_in
from tests.backend.response_times_month import (
    ADMIN_EMAIL,
    ANAIS,
    JEAN,
    MARIE,
    NURSE_EMAIL,
    OTHER_EMAIL,
    PASSWORD,
    PATIENTS,
    Month,
    seed_month,
)
from tests.conftest import Clock, reread


class _Tables(HTMLParser):
    """The rows of every table of a page, by table id: each row its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" / ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


#: The per-severity table, worked out by hand (see the module docstring): severity, alerts; acknowledge median, p90, within target (and still open); the same for resolve.
BY_SEVERITY_ROWS = [
    # Ack 12 / 4740 (3 d 7 h), 5 of 8, a12 overdue; resolve 180 (3 h) / 4740, 6 of 8.
    ["Urgent", "8", "12 min", "3 d 7 h", "5 of 8 (62.5%) / still open: 1 overdue",
     "3 h", "3 d 7 h", "6 of 8 (75%) / still open: 1 overdue"],
    # Ack 600 (10 h) / 1500 (25 h), 2 of 4; resolve 2000 (33 h 20 min) / 12840 (8 d 22 h).
    ["High", "4", "10 h", "25 h", "2 of 4 (50%) / still open: 1 overdue",
     "33 h 20 min", "8 d 22 h", "2 of 3 (66.7%) / still open: 1 overdue, 1 not yet due"],
    # Ack 3000 (50 h), no target; resolve 3000, missed.
    ["Routine", "2", "50 h", "50 h", "no target / still open: 1 not yet due",
     "50 h", "50 h", "0 of 1 (0%) / still open: 1 not yet due"],
]  # fmt: skip


@pytest.fixture
def month(session: Session, clock: Clock) -> Month:
    return seed_month(session, clock.now)


def signed_in_as(client: FlaskClient, email: str) -> None:
    response = sign_in(client, email, PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)


def test_the_page_shows_the_seeded_months_figures(client: FlaskClient, month: Month) -> None:
    signed_in_as(client, NURSE_EMAIL)
    response = client.get("/response-times")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    found = tables(html)
    assert found["by-severity"] == BY_SEVERITY_ROWS
    # Per week, urgent rows: W06 ack 8 / 12, 2 of 2; W09 ack 10 / 4740, 1 of 2 (a12 overdue).
    weeks = {(row[0], row[1]): row for row in found["by-week"]}
    assert weeks[("2026-W06 (from Mon 2 Feb)", "Urgent")][3:6] == [
        "8 min",
        "12 min",
        "2 of 2 (100%)",
    ]
    assert weeks[("2026-W09 (from Mon 23 Feb)", "Urgent")][3:6] == [
        "10 min",
        "3 d 7 h",
        "1 of 2 (50%) / still open: 1 overdue",
    ]
    assert len(found["by-week"]) == 3 + 2 + 2 + 3  # severities present in each week
    # Per clinician: Marie-Françoise's urgent alerts acknowledged in 8, 15, 25 minutes:
    # median 15, p90 25, 2 of 3 within 15 minutes; "no rota" last.
    clinicians = {(row[0], row[1]): row for row in found["by-clinician"]}
    assert clinicians[(MARIE, "Urgent")][2:6] == ["3", "15 min", "25 min", "2 of 3 (66.7%)"]
    assert clinicians[(JEAN, "High")][2:6] == ["2", "3 h 20 min", "25 h", "1 of 2 (50%)"]
    assert clinicians[(ANAIS, "Urgent")][2] == "2"
    assert found["by-clinician"][-1][0] == "no rota"
    # The chart says the same in its text, and the period and targets are stated.
    assert 'role="img"' in html and "aria-labelledby" in html
    assert (
        "Urgent, acknowledged in 15 min: 5 of 8 within target (62.5%), median 12 min, p90 3 d 7 h"
        in html
    )
    assert (
        "High, resolved in 48 h: 2 of 3 within target (66.7%), median 33 h 20 min, p90 8 d 22 h"
        in html
    )
    assert "Alerts raised from Mon 2 Feb 2026 to Sun 1 Mar 2026" in html
    assert 'href="/response-times"' in html and 'aria-current="page"' in html
    # No patient's name on the page; a nurse gets no targets form.
    for name in PATIENTS:
        assert name not in html
    assert "Save targets" not in html


def test_the_csv_export_lists_every_alert_without_patient_data(
    client: FlaskClient, session: Session, month: Month
) -> None:
    signed_in_as(client, NURSE_EMAIL)
    response = client.get("/response-times.csv?from=2026-02-02&to=2026-03-01")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="response-times-2026-02-02-to-2026-03-01.csv"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    content = response.get_data(as_text=True)
    assert content.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(content.removeprefix("\ufeff"))))
    names = [f"a{i}" for i in range(1, 15)]
    assert [int(r["alert_id"]) for r in rows] == [month.alerts[n] for n in names]
    by_id = {int(r["alert_id"]): r for r in rows}
    a6 = by_id[month.alerts["a6"]]
    assert a6 == {
        "alert_id": str(month.alerts["a6"]),
        "severity": "urgent",
        "created_at_utc": "2026-02-12T16:00:00+00:00",
        "week": "2026-W07",
        "on_call_clinician_id": str(month.marie.id),
        "on_call_clinician": MARIE,
        "acknowledged_at_utc": "2026-02-12T16:15:00+00:00",
        "acknowledged_by_id": str(month.anais.id),
        "acknowledged_by": ANAIS,
        "minutes_to_acknowledge": "15.0",
        "acknowledge_target_minutes": "15",
        "acknowledge_outcome": "within",
        "resolved_at_utc": "2026-02-14T16:00:00+00:00",
        "minutes_to_resolve": "2880.0",
        "resolve_target_minutes": "2880",
        "resolve_outcome": "within",
    }
    a12 = by_id[month.alerts["a12"]]
    assert (a12["on_call_clinician"], a12["acknowledged_at_utc"], a12["resolved_at_utc"]) == (
        ANAIS,
        "",
        "",
    )
    assert (a12["minutes_to_acknowledge"], a12["acknowledge_outcome"]) == ("4740.0", "overdue")
    a14 = by_id[month.alerts["a14"]]
    assert (
        a14["on_call_clinician"],
        a14["acknowledge_target_minutes"],
        a14["acknowledge_outcome"],
    ) == (
        "no rota",
        "",
        "pending",
    )
    assert by_id[month.alerts["a1"]]["week"] == "2026-W06"  # Monday 00:30 in Brussels
    for secret in (*PATIENTS, "+32470556670", "+32 470", "Température", "Rappelée"):
        assert secret not in content
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.action == "export_response_times")
    ).all()
    assert [(r.user_id, r.team_id, r.target, r.channel) for r in rows] == [
        (month.anais.id, month.team_id, f"team:{month.team_id}", "dashboard")
    ]


def test_another_team_sees_none_of_the_alerts(client: FlaskClient, month: Month) -> None:
    signed_in_as(client, OTHER_EMAIL)
    html = client.get("/response-times").get_data(as_text=True)
    found = tables(html)
    assert [row[:2] for row in found["by-severity"]] == [["Urgent", "1"]]
    for name in (MARIE, JEAN, ANAIS, *PATIENTS):
        assert name not in html
    rows = list(csv.reader(io.StringIO(client.get("/response-times.csv").get_data(as_text=True))))
    assert [r[0] for r in rows[1:]] == [str(month.alerts["other_team"])]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-02-30", "Enter a date as YYYY-MM-DD."),
        ("from=0001-01-01", "The date must be between 1900-01-01 and 2100-12-31."),
        ("from=2026-03-01&to=2026-02-01", "The last day must not be before the first day."),
        ("from=2024-01-01&to=2026-02-01", "A period of at most 366 days."),
    ],
)
def test_a_bad_period_shows_the_form_again_with_a_422(
    client: FlaskClient, session: Session, month: Month, query: str, message: str
) -> None:
    signed_in_as(client, NURSE_EMAIL)
    for url in ("/response-times", "/response-times.csv"):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 422, url
        html = response.get_data(as_text=True)
        assert "There is a problem" in html and message in html, html[-3000:]
        assert 'aria-invalid="true"' in html
    assert not session.exec(
        select(AuditEvent).where(
            AuditEvent.action.in_(["view_response_times", "export_response_times"])
        )
    ).all()


def test_an_admin_sets_the_targets_and_bad_values_are_refused_in_place(
    client: FlaskClient, session: Session, month: Month
) -> None:
    signed_in_as(client, ADMIN_EMAIL)
    page = client.get("/response-times").get_data(as_text=True)
    assert "Save targets" in page and 'value="15"' in page
    good = {
        "urgent_acknowledge_minutes": "10",
        "high_acknowledge_minutes": "720",
        "resolve_minutes": "1440",
    }
    for bad, field in (
        ({**good, "urgent_acknowledge_minutes": "0"}, "Must be at least 1."),
        ({**good, "high_acknowledge_minutes": "douze"}, "Enter a whole number."),
        ({**good, "resolve_minutes": "43201"}, "Must be at most 43200."),
        ({**good, "resolve_minutes": ""}, "This field is required."),
        ({**good, "resolve_minutes": "2,5"}, "Enter a whole number."),
    ):
        response = post_form(client, "/response-times/targets", bad, page="/response-times")
        assert response.status_code == 422, bad
        html = response.get_data(as_text=True)
        assert field in html and "There is a problem" in html
        assert reread(session).get(Team, month.team_id).response_targets is None
    response = post_form(client, "/response-times/targets", good, page="/response-times")
    assert response.status_code == 302 and response.headers["Location"] == "/response-times"
    assert reread(session).get(Team, month.team_id).response_targets == {
        "urgent_acknowledge_minutes": 10,
        "high_acknowledge_minutes": 720,
        "resolve_minutes": 1440,
    }
    shown = client.get("/response-times").get_data(as_text=True)
    assert "Response-time targets saved." in shown
    # Urgent acknowledged within 10 minutes now: a2 8, a8 5, a11 10 (on the target) of 8.
    assert tables(shown)["by-severity"][0][4].startswith("3 of 8 (37.5%)")
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.action == "update_response_targets")
    ).all()
    assert [(r.user_id, r.target, r.channel) for r in rows] == [
        (month.marie.id, f"team:{month.team_id}", "dashboard")
    ]


def test_a_nurse_cannot_change_the_targets(
    client: FlaskClient, session: Session, month: Month
) -> None:
    signed_in_as(client, NURSE_EMAIL)
    response = post_form(
        client,
        "/response-times/targets",
        {
            "urgent_acknowledge_minutes": "60",
            "high_acknowledge_minutes": "2880",
            "resolve_minutes": "5000",
        },
        page="/response-times",
    )
    assert response.status_code == 403
    assert reread(session).get(Team, month.team_id).response_targets is None
