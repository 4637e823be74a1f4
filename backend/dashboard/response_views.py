"""The response-time page: how fast the team acknowledges and resolves alerts, and its targets.

``/response-times`` (any member: the figures of a period, a chart and the same figures as
tables), ``/response-times.csv`` (one row per alert: ids, severities, times, minutes; no
patient name, phone or message) and ``POST /response-times/targets`` (admins). The
counting rules are :mod:`reminders.core.response_times`'s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import wraps
from typing import Any

from flask import Response, request

from backend.api import request_now
from backend.dashboard.forms import (
    FieldKind,
    FormState,
    service_error_state,
    validate,
    validate_form,
)
from backend.dashboard.patient_views import csv_cell
from backend.dashboard.response_chart import ShareBar, format_minutes, format_share, share_chart
from backend.dashboard.web import (
    admin_required,
    audit,
    bp,
    current_user,
    refuse_change,
    render_page,
    save_team_change,
)
from backend.db import get_session
from backend.schemas_response_times import ResponseTargetsIn, ResponseTimesQuery
from backend.services import response_times as service
from reminders.core.dates import local_today
from reminders.core.response_times import (
    AlertTiming,
    Figures,
    Measure,
    MeasureFigures,
    ResponseTimes,
)
from reminders.data.errors import ServiceError
from reminders.data.models import Team
from reminders.data.statuses import AuditAction

TARGET_FIELDS: dict[str, FieldKind] = {
    "urgent_acknowledge_minutes": "int",
    "high_acknowledge_minutes": "int",
    "resolve_minutes": "int",
}
EXPORT_COLUMNS = (
    "alert_id",
    "severity",
    "created_at_utc",
    "week",
    "on_call_clinician_id",
    "on_call_clinician",
    "acknowledged_at_utc",
    "acknowledged_by_id",
    "acknowledged_by",
    "minutes_to_acknowledge",
    "acknowledge_target_minutes",
    "acknowledge_outcome",
    "resolved_at_utc",
    "minutes_to_resolve",
    "resolve_target_minutes",
    "resolve_outcome",
)
SEVERITY_LABELS = {"urgent": "Urgent", "high": "High", "routine": "Routine"}


@dataclass(frozen=True)
class MeasureCells:
    """One measure of a table row, as the page writes it."""

    median: str
    p90: str
    within: str
    still_open: str


@dataclass(frozen=True)
class FiguresRow:
    """A row of a figures table: a group (a week, a clinician) and one severity."""

    group: str
    severity: str
    count: int
    acknowledge: MeasureCells
    resolve: MeasureCells


def _cells(figures: MeasureFigures) -> MeasureCells:
    if figures.target_minutes is None:
        within = "no target"
    elif figures.judged:
        within = f"{figures.within_target} of {figures.judged} ({format_share(figures.within_target, figures.judged)})"
    else:
        within = "none judged yet"
    still_open = []
    if figures.overdue:
        still_open.append(f"{figures.overdue} overdue")
    if figures.pending:
        still_open.append(f"{figures.pending} not yet due")
    return MeasureCells(
        median=format_minutes(figures.median_minutes),
        p90=format_minutes(figures.p90_minutes),
        within=within,
        still_open=", ".join(still_open),
    )


def _rows(group: str, figures: tuple[Figures, ...]) -> list[FiguresRow]:
    return [
        FiguresRow(
            group=group,
            severity=SEVERITY_LABELS.get(f.severity, f.severity),
            count=f.count,
            acknowledge=_cells(f.acknowledge),
            resolve=_cells(f.resolve),
        )
        for f in figures
    ]


def _week_label(week: str) -> str:
    monday = date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
    return f"{week} (from {monday:%a} {monday.day} {monday:%b})"


def _bars(figures: ResponseTimes) -> list[ShareBar]:
    """One bar per severity and measure that has a target, acknowledgements first."""
    bars = []
    for measure in Measure:
        for group in figures.by_severity:
            values = group.measure(measure)
            if values.target_minutes is None:
                continue
            verb = "acknowledged" if measure is Measure.ACKNOWLEDGE else "resolved"
            bars.append(
                ShareBar(
                    label=f"{SEVERITY_LABELS.get(group.severity, group.severity)}, {verb} in {format_minutes(values.target_minutes)}",
                    within=values.within_target,
                    judged=values.judged,
                    note=f"median {format_minutes(values.median_minutes)}, p90 {format_minutes(values.p90_minutes)}",
                )
            )
    return bars


def for_asked_period(view: Callable[[Team, ResponseTimes], Any]) -> Callable[[], Any]:
    """Call ``view`` with the team and its figures for the period the query asks for.

    A period the schema or the service refuses is shown next to its field (the form again,
    422) and ``view`` is not called: nothing is read.
    """

    @wraps(view)
    def with_figures() -> Any:
        team = service.get_team(get_session(), current_user().team_id)
        values = {"from": request.args.get("from", ""), "to": request.args.get("to", "")}
        data = {name: value.strip() for name, value in values.items() if value.strip()}
        query, form = validate(ResponseTimesQuery, data, values)
        if query is not None:
            now = request_now()
            today = local_today(team.timezone, now)
            try:
                period = service.choose_period(query.from_, query.to, today)
            except ServiceError as error:
                form = service_error_state(error, values, set(values))
            else:
                return view(team, service.response_times(get_session(), team, period, now))
        return _page(team, form, None, status=422)

    return with_figures


def _page(
    team: Team,
    period_form: FormState,
    figures: ResponseTimes | None,
    targets_form: FormState | None = None,
    status: int = 200,
) -> Any:
    session = get_session()
    targets = service.team_targets(team)
    names = service.names_in(session, team.id, figures) if figures else {}
    tables = {}
    if figures is not None:
        period_form = FormState(
            values={"from": figures.first_day.isoformat(), "to": figures.last_day.isoformat()}
        )
        tables = {
            "severity": _rows("", figures.by_severity),
            "week": [r for w, g in figures.by_week for r in _rows(_week_label(w), g)],
            "clinician": [
                r
                for c, g in figures.by_clinician
                for r in _rows(service.NO_ROTA if c is None else names.get(c, f"user {c}"), g)
            ],
        }
    return render_page(
        "response_times.html",
        status,
        active="response_times",
        team=team,
        figures=figures,
        tables=tables,
        chart=share_chart(_bars(figures)) if figures is not None else None,
        period_form=period_form,
        targets=targets,
        targets_form=targets_form
        or FormState(values={name: getattr(targets, name) for name in TARGET_FIELDS}),
        format_minutes=format_minutes,
    )


@bp.get("/response-times")
@for_asked_period
def response_times(team: Team, figures: ResponseTimes) -> Any:
    """The team's response-time figures for a period (default: the 4 full weeks before this one)."""
    audit(AuditAction.VIEW_RESPONSE_TIMES, None, f"team:{team.id}")
    get_session().commit()
    return _page(team, FormState(), figures)


def _minutes(value: float) -> str:
    return f"{value:.1f}"


def export_row(timing: AlertTiming, names: dict[int, str]) -> list[str]:
    """One alert as a row of the export (times in UTC, minutes to a tenth)."""
    facts = timing.facts
    return [
        str(facts.alert_id),
        facts.severity,
        facts.created_at.isoformat(),
        timing.week,
        "" if facts.clinician_id is None else str(facts.clinician_id),
        service.NO_ROTA if facts.clinician_id is None else names.get(facts.clinician_id, ""),
        facts.acknowledged_at.isoformat() if facts.acknowledged_at else "",
        "" if facts.acknowledged_by is None else str(facts.acknowledged_by),
        names.get(facts.acknowledged_by, "") if facts.acknowledged_by else "",
        _minutes(timing.acknowledge.minutes),
        "" if timing.acknowledge.target_minutes is None else str(timing.acknowledge.target_minutes),
        timing.acknowledge.outcome.value,
        facts.resolved_at.isoformat() if facts.resolved_at else "",
        _minutes(timing.resolve.minutes),
        str(timing.resolve.target_minutes),
        timing.resolve.outcome.value,
    ]


@bp.get("/response-times.csv")
@for_asked_period
def export_response_times(team: Team, figures: ResponseTimes) -> Any:
    """Every alert of the period with its times and minutes, as CSV (no patient data)."""
    session = get_session()
    names = service.names_in(session, team.id, figures)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for timing in figures.alerts:
        writer.writerow([csv_cell(cell) for cell in export_row(timing, names)])
    audit(AuditAction.EXPORT_RESPONSE_TIMES, None, f"team:{team.id}")
    session.commit()
    filename = f"response-times-{figures.first_day}-to-{figures.last_day}.csv"
    return Response(
        "\ufeff" + buffer.getvalue(),  # a BOM so spreadsheet programs read UTF-8 (accented names)
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/response-times/targets")
@admin_required
def update_response_targets() -> Any:
    """Set the team's targets (minutes); a refused value is shown next to its field."""
    session = get_session()
    team = service.get_team(session, current_user().team_id)
    data, state = validate_form(ResponseTargetsIn, request.form, TARGET_FIELDS)

    def show_again(state: FormState, status: int) -> Any:
        # The form again without figures: showing them would be a view with no audit row.
        return _page(team, FormState(), None, state, status)

    if data is None:
        return show_again(state, 422)
    try:
        service.set_team_targets(session, team, data.model_dump())
    except ServiceError as error:
        return refuse_change(error, state.values, TARGET_FIELDS, show_again)
    return save_team_change(
        AuditAction.UPDATE_RESPONSE_TARGETS,
        f"team:{team.id}",
        "Response-time targets saved.",
        "dashboard.response_times",
    )
