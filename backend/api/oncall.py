"""On-call routes: the team's rota, who is on call now, the escalation policy, one's own profile.

Every member reads the rota, "on call now" and the policy; admins change the rota and
the policy (403 for others). Every look-up goes through the caller's team: another
team's shift is a 404 like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from werkzeug.exceptions import Forbidden

from backend.api import api, current_user, default_region, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import (
    ErrorOut,
    EscalationPolicyIn,
    EscalationPolicyOut,
    OnCallNowOut,
    ProfileOut,
    ProfileUpdate,
    RotaOut,
    RotaQuery,
    ShiftIn,
    ShiftRemoved,
    ShiftSaved,
    ShiftUpdate,
)
from backend.serializers import on_call_now_out, policy_out, profile_out, shift_out
from backend.services import oncall as oncall_service
from backend.services.teams import set_profile
from reminders.data.errors import InvalidInput
from reminders.data.models import Team
from reminders.data.oncall import team_policy
from reminders.data.statuses import AuditAction

TAGS = ["on call"]
#: An admin-only change: 403 for other members, 409/422 for a refusal.
ADMIN_CHANGE = {"HTTP_403": ErrorOut, "HTTP_409": ErrorOut, "HTTP_422": None}
#: A change to one's own profile: 409 for clearing the phone of someone on the rota.
PROFILE_CHANGE = responses(HTTP_200=ProfileOut, HTTP_409=ErrorOut, HTTP_422=None)
#: The longest window the rota lists at once.
MAX_ROTA_DAYS = 62


def _team() -> Team:
    return get_session().get(Team, current_user().team_id)


def _admin_team() -> Team:
    """The caller's team, if the caller is one of its admins; 403 otherwise."""
    if current_user().role != "admin":
        raise Forbidden("only an admin of the team can change this")
    return _team()


def _saved(team: Team, shift: Any, notes: list[str]) -> ShiftSaved:
    line = next(
        line
        for line in oncall_service.list_rota(get_session(), team, shift.starts_at, shift.ends_at)
        if line.shift.id == shift.id
    )
    return ShiftSaved(shift=shift_out(line, oncall_service.team_zone(team)), notes=notes)


@api.get("/oncall/shifts")
@spec.validate(query=RotaQuery, resp=responses(HTTP_200=RotaOut, HTTP_422=None), tags=TAGS)
@audited(AuditAction.VIEW_ONCALL)
def list_shifts(query: RotaQuery):
    """The team's shifts overlapping a window of local dates (default: 14 days from today)."""
    team = _team()
    zone = oncall_service.team_zone(team)
    first = query.from_ or request_now().astimezone(zone).date()
    last = query.to or first + oncall_service.ROTA_WINDOW - timedelta(days=1)
    if not first <= last < first + timedelta(days=MAX_ROTA_DAYS):
        raise InvalidInput(
            f"to must be on or after from, at most {MAX_ROTA_DAYS} days later", field="to"
        )
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    lines = oncall_service.list_rota(get_session(), team, start, end)
    audit(None, "rota:list")
    return RotaOut(
        timezone=team.timezone,
        from_=first,
        to=last,
        shifts=[shift_out(line, zone) for line in lines],
    )


@api.post("/oncall/shifts")
@spec.validate(json=ShiftIn, resp=responses(HTTP_201=ShiftSaved, **ADMIN_CHANGE), tags=TAGS)
@audited(AuditAction.EDIT_ONCALL_ROTA)
def add_shift(json: ShiftIn):
    """Put a member of the team on call (admins); local times are the team's."""
    team = _admin_team()
    shift, notes = oncall_service.add_shift(
        get_session(), team, **json.model_dump(), actor=current_user(), now=request_now()
    )
    audit(None, f"shift:{shift.id}")
    return _saved(team, shift, notes), 201


@api.patch("/oncall/shifts/<int:shift_id>")
@spec.validate(json=ShiftUpdate, resp=responses(HTTP_200=ShiftSaved, **ADMIN_CHANGE), tags=TAGS)
@audited(AuditAction.EDIT_ONCALL_ROTA)
def edit_shift(shift_id: int, json: ShiftUpdate):
    """Change a shift that is not over yet (admins)."""
    team = _admin_team()
    session = get_session()
    shift = oncall_service.get_shift(session, team.id, shift_id)
    shift, notes = oncall_service.edit_shift(
        session, team, shift, json.model_dump(exclude_none=True), request_now()
    )
    audit(None, f"shift:{shift.id}")
    return _saved(team, shift, notes)


@api.delete("/oncall/shifts/<int:shift_id>")
@spec.validate(resp=responses(HTTP_200=ShiftRemoved, **ADMIN_CHANGE), tags=TAGS)
@audited(AuditAction.EDIT_ONCALL_ROTA)
def remove_shift(shift_id: int):
    """Take a shift off the rota (admins): deleted if not begun, ended now if running."""
    team = _admin_team()
    session = get_session()
    shift = oncall_service.get_shift(session, team.id, shift_id)
    outcome = oncall_service.remove_shift(session, shift, request_now())
    audit(None, f"shift:{shift_id}")
    return ShiftRemoved(id=shift_id, outcome=outcome)


@api.get("/oncall/now")
@spec.validate(resp=responses(HTTP_200=OnCallNowOut), tags=TAGS)
@audited(AuditAction.VIEW_ONCALL)
def on_call_now():
    """Who is primary and backup now, the fallback number, and gaps in the next 24 hours."""
    summary = oncall_service.on_call_summary(get_session(), _team(), request_now())
    audit(None, "oncall:now")
    return on_call_now_out(summary)


@api.get("/oncall/policy")
@spec.validate(resp=responses(HTTP_200=EscalationPolicyOut), tags=TAGS)
@audited(AuditAction.VIEW_ONCALL)
def get_policy():
    """The escalation policy the team follows (its own, or the defaults)."""
    team = _team()
    audit(None, f"policy:team:{team.id}")
    return policy_out(*team_policy(team))


@api.put("/oncall/policy")
@spec.validate(
    json=EscalationPolicyIn,
    resp=responses(HTTP_200=EscalationPolicyOut, **ADMIN_CHANGE),
    tags=TAGS,
)
@audited(AuditAction.UPDATE_ESCALATION_POLICY)
def put_policy(json: EscalationPolicyIn):
    """Give the team its own escalation policy (admins); one step must page the fallback number."""
    team = _admin_team()
    oncall_service.set_policy(get_session(), team, json.model_dump(mode="json"))
    audit(None, f"policy:team:{team.id}")
    return policy_out(*team_policy(team))


@api.delete("/oncall/policy")
@spec.validate(resp=responses(HTTP_200=EscalationPolicyOut, **ADMIN_CHANGE), tags=TAGS)
@audited(AuditAction.UPDATE_ESCALATION_POLICY)
def reset_policy():
    """Make the team follow the default escalation policy again (admins)."""
    team = _admin_team()
    oncall_service.reset_policy(get_session(), team)
    audit(None, f"policy:team:{team.id}")
    return policy_out(*team_policy(team))


@api.patch("/me")
@spec.validate(json=ProfileUpdate, resp=PROFILE_CHANGE, tags=TAGS)
@audited(AuditAction.UPDATE_PROFILE)
def update_profile(json: ProfileUpdate):
    """Set one's own phone number (E.164 after normalising; null clears it) and language."""
    user = current_user()
    changes = json.model_dump(exclude_unset=True)
    set_profile(get_session(), user, changes, region=default_region(), now=request_now())
    audit(None, f"user:{user.id}")
    return profile_out(user)
