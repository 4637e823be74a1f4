"""Response-time routes: the team's figures for a period, and its targets (admins change them).

Every route reads the caller's own team only; there is no team id in the URL to tamper with.
"""

from __future__ import annotations

from datetime import date

from flask import abort

from backend.api import api, current_user, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import ErrorOut
from backend.schemas_response_times import (
    OPEN_ALERTS_RULE,
    PERCENTILE_DEFINITION,
    ClinicianFiguresOut,
    ResponseTargetsIn,
    ResponseTargetsOut,
    ResponseTimesOut,
    ResponseTimesQuery,
    SeverityFiguresOut,
    WeekFiguresOut,
)
from backend.serializers import from_attributes
from backend.services import response_times as service
from reminders.core.dates import local_today
from reminders.core.escalation import ResponseTargets
from reminders.core.response_times import Figures, ResponseTimes
from reminders.data.models import Team
from reminders.data.statuses import AuditAction

TAGS = ["response times"]


def targets_out(team: Team, targets: ResponseTargets) -> ResponseTargetsOut:
    """The targets in force for ``team``."""
    return from_attributes(ResponseTargetsOut, targets, team_default=team.response_targets is None)


def _severities_out(groups: tuple[Figures, ...]) -> list[SeverityFiguresOut]:
    return [from_attributes(SeverityFiguresOut, f) for f in groups]


def response_times_out(
    figures: ResponseTimes, team: Team, names: dict[int, str]
) -> ResponseTimesOut:
    """The figures as the API answers them (clinicians named, "no rota" for none)."""
    return ResponseTimesOut(
        first_day=figures.first_day,
        last_day=figures.last_day,
        timezone=team.timezone,
        as_of=figures.as_of,
        alerts=len(figures.alerts),
        targets=targets_out(team, figures.targets),
        percentile_definition=PERCENTILE_DEFINITION,
        open_alerts_rule=OPEN_ALERTS_RULE,
        by_severity=_severities_out(figures.by_severity),
        by_week=[
            WeekFiguresOut(
                week=week,
                first_day=date.fromisocalendar(int(week[:4]), int(week[6:]), 1),
                severities=_severities_out(groups),
            )
            for week, groups in figures.by_week
        ],
        by_clinician=[
            ClinicianFiguresOut(
                clinician_id=clinician,
                clinician_name=service.NO_ROTA if clinician is None else names[clinician],
                severities=_severities_out(groups),
            )
            for clinician, groups in figures.by_clinician
        ],
    )


@api.get("/response-times")
@spec.validate(
    query=ResponseTimesQuery, resp=responses(HTTP_200=ResponseTimesOut, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.VIEW_RESPONSE_TIMES)
def get_response_times(query: ResponseTimesQuery):
    """Time to acknowledge and to resolve the team's alerts raised in a period.

    Per severity, per ISO week and per clinician on call (the rota's primary when the alert
    was raised): count, median and p90 minutes, share within target. ``from``/``to`` are
    the team's local dates (both inclusive; default: the 4 full weeks before this one).
    """
    session = get_session()
    team = service.get_team(session, current_user().team_id)
    now = request_now()
    period = service.choose_period(query.from_, query.to, local_today(team.timezone, now))
    figures = service.response_times(session, team, period, now)
    names = service.names_in(session, team.id, figures)
    audit(None, f"team:{team.id}")
    return response_times_out(figures, team, names)


@api.get("/response-targets")
@spec.validate(resp=responses(HTTP_200=ResponseTargetsOut), tags=TAGS)
@audited(AuditAction.VIEW_RESPONSE_TIMES)
def get_response_targets():
    """The team's response-time targets (its own, or the defaults)."""
    team = service.get_team(get_session(), current_user().team_id)
    audit(None, f"team:{team.id}")
    return targets_out(team, service.team_targets(team))


@api.put("/response-targets")
@spec.validate(
    json=ResponseTargetsIn,
    resp=responses(HTTP_200=ResponseTargetsOut, HTTP_403=ErrorOut, HTTP_422=None),
    tags=TAGS,
)
@audited(AuditAction.UPDATE_RESPONSE_TARGETS)
def put_response_targets(json: ResponseTargetsIn):
    """Set the team's targets in minutes (admins only)."""
    if current_user().role != "admin":
        abort(403, description="only an admin of the team changes its targets")
    session = get_session()
    team = service.get_team(session, current_user().team_id)
    targets = service.set_team_targets(session, team, json.model_dump())
    audit(None, f"team:{team.id}")
    return targets_out(team, targets)
