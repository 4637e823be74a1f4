"""Admin pages of the on-call rota (``/admin/oncall``) and the escalation policy (``/admin/escalation``).

Thin views over :mod:`backend.services.oncall`: a refusal is shown next to its field
(422/409), never a 500; every change is audited with the API's action for it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import flash, request
from werkzeug.datastructures import MultiDict

from backend.api import request_now
from backend.dashboard.forms import FieldKind, FormState, form_integer, sentence, validate_form
from backend.dashboard.team_admin import team_users
from backend.dashboard.web import (
    admin_required,
    bp,
    current_team,
    current_user,
    flash_refusal,
    refuse_change,
    render_page,
    save_team_change,
)
from backend.db import get_session
from backend.schemas import ShiftIn
from backend.services import oncall as oncall_service
from reminders.core.escalation import CHANNELS, TARGETS, policy_to_dict
from reminders.data.errors import ServiceError
from reminders.data.oncall import team_policy
from reminders.data.statuses import AuditAction

SHIFT_FIELDS: dict[str, FieldKind] = {
    "user_id": "int",
    "role": "text",
    "starts_at": "text",
    "ends_at": "text",
}
#: Empty rows the policy form offers below the team's steps, to add steps.
EXTRA_STEP_ROWS = 2


# --- the rota -----------------------------------------------------------------------------


@bp.get("/admin/oncall", endpoint="oncall_rota")
@admin_required
def rota_page(
    shift_form: FormState | None = None, zone_form: FormState | None = None, status: int = 200
) -> Any:
    """Who is on call now and in the next two weeks; add and remove shifts.

    ``shift_form`` and ``zone_form``: a form shown again after a refusal.
    """
    session = get_session()
    team = current_team()
    zone = oncall_service.team_zone(team)
    now = request_now()
    today = now.astimezone(zone).date()
    first = _first_day(today)
    start = datetime.combine(first, time(0), zone)
    tomorrow_8 = datetime.combine(today + timedelta(days=1), time(8, 0))
    return render_page(
        "oncall.html",
        status,
        team=team,
        summary=oncall_service.on_call_summary(session, team, now),
        lines=oncall_service.list_rota(session, team, start, start + oncall_service.ROTA_WINDOW),
        member_choices=[("", "Choose a member")]
        + [
            (u.id, (u.name or u.email) + ("" if u.phone else " (no phone)"))
            for u in team_users(session, team.id)
            if u.is_active
        ],
        shift_form=shift_form
        or FormState(
            values={
                "role": "primary",
                "starts_at": f"{tomorrow_8:%Y-%m-%dT%H:%M}",
                "ends_at": f"{tomorrow_8 + timedelta(hours=12):%Y-%m-%dT%H:%M}",
            }
        ),
        zone_form=zone_form or FormState(values={"timezone": team.timezone}),
        now=now,
        first=first,
        last=first + oncall_service.ROTA_WINDOW - timedelta(days=1),
        earlier=first - oncall_service.ROTA_WINDOW,
        later=first + oncall_service.ROTA_WINDOW,
        today=today,
    )


def _first_day(today: date) -> date:
    """The first local day the rota page shows: ``?from=YYYY-MM-DD`` within a year of today."""
    try:
        first = date.fromisoformat(request.args.get("from", ""))
    except ValueError:
        return today
    return first if abs(first - today) <= timedelta(days=366) else today


@bp.post("/admin/oncall/shifts")
@admin_required
def add_shift() -> Any:
    """Put a member on call, from and to local date-times in the team's time zone."""
    data, state = validate_form(ShiftIn, request.form, SHIFT_FIELDS)
    if data is None:
        return rota_page(shift_form=state, status=422)
    team = current_team()
    try:
        shift, notes = oncall_service.add_shift(
            get_session(), team, **data.model_dump(), actor=current_user(), now=request_now()
        )
    except ServiceError as error:
        return refuse_change(
            error,
            state.values,
            SHIFT_FIELDS,
            lambda s, status: rota_page(shift_form=s, status=status),
        )
    for note in notes:
        flash(note, "info")
    zone = oncall_service.team_zone(team)
    return save_team_change(
        AuditAction.EDIT_ONCALL_ROTA,
        f"shift:{shift.id}",
        f"Shift added: {shift.role} from {oncall_service.local_text(shift.starts_at, zone)} "
        f"to {oncall_service.local_text(shift.ends_at, zone)}.",
        "dashboard.oncall_rota",
    )


@bp.post("/admin/oncall/shifts/<int:shift_id>/delete")
@admin_required
def remove_shift(shift_id: int) -> Any:
    """Take a shift off the rota: deleted if not begun, ended now if running."""
    session = get_session()
    shift = oncall_service.get_shift(session, current_user().team_id, shift_id)
    try:
        outcome = oncall_service.remove_shift(session, shift, request_now())
    except ServiceError as error:
        flash_refusal(error)
        return rota_page(status=409)
    message = "Shift removed." if outcome == "deleted" else "The running shift was ended now."
    return save_team_change(
        AuditAction.EDIT_ONCALL_ROTA, f"shift:{shift_id}", message, "dashboard.oncall_rota"
    )


@bp.post("/admin/oncall/timezone")
@admin_required
def rota_timezone() -> Any:
    """Write the rota in another time zone (the shifts keep their instants)."""
    values = {"timezone": request.form.get("timezone", "")}
    try:
        team = oncall_service.set_timezone(get_session(), current_team(), values["timezone"])
    except ServiceError as error:
        return refuse_change(
            error, values, values, lambda s, status: rota_page(zone_form=s, status=status)
        )
    return save_team_change(
        AuditAction.EDIT_ONCALL_ROTA,
        f"team:{team.id}",
        f"The rota is now written in {team.timezone}.",
        "dashboard.oncall_rota",
    )


# --- the escalation policy ----------------------------------------------------------------


def _policy_values(policy: dict[str, Any]) -> dict[str, Any]:
    """The form's values for a policy's JSON form, with empty rows to add steps."""
    values: dict[str, Any] = {"repeat_every_minutes": policy["repeat_every_minutes"]}
    steps = policy["steps"]
    for index in range(len(steps) + EXTRA_STEP_ROWS):
        step = steps[index] if index < len(steps) else {}
        values[f"step-{index}-after_minutes"] = step.get("after_minutes", "")
        values[f"step-{index}-target"] = step.get("target", "")
        values[f"step-{index}-channels"] = step.get("channels", [])
    values["rows"] = len(steps) + EXTRA_STEP_ROWS
    return values


@bp.get("/admin/escalation", endpoint="escalation_policy")
@admin_required
def policy_page(form: FormState | None = None, status: int = 200) -> Any:
    """The steps an urgent alert goes through until someone acknowledges it.

    ``form``: the policy form shown again after a refusal.
    """
    policy, is_default = team_policy(current_team())
    return render_page(
        "escalation.html",
        status,
        form=form or FormState(values=_policy_values(policy_to_dict(policy))),
        is_default=is_default,
        source=policy.source,
        targets=TARGETS,
        channels=CHANNELS,
    )


_ROW = re.compile(r"^step-(\d+)-after_minutes$")
#: More rows than a policy may have steps (10) is not a form this page sent.
_MAX_ROWS = 20


def _posted_rows(form: MultiDict[str, str]) -> list[int]:
    """The row numbers of the posted policy form, in order."""
    return sorted(
        row for name in form if (m := _ROW.match(name)) and (row := int(m.group(1))) < _MAX_ROWS
    )


def policy_from_form(form: MultiDict[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The policy's JSON form from the posted rows, and which form row each step came from.

    A row with neither minutes nor a channel is left out (the empty rows to add steps).
    """
    steps: list[dict[str, Any]] = []
    origin: list[int] = []
    for row in _posted_rows(form):
        minutes = form.get(f"step-{row}-after_minutes", "").strip()
        channels = form.getlist(f"step-{row}-channels")
        if not minutes and not channels:
            continue
        steps.append(
            {
                "after_minutes": form_integer(minutes),
                "target": form.get(f"step-{row}-target", ""),
                "channels": channels,
            }
        )
        origin.append(row)
    repeat = form_integer(form.get("repeat_every_minutes", ""))
    return {"steps": steps, "repeat_every_minutes": repeat}, origin


def _posted_values(form: MultiDict[str, str]) -> dict[str, Any]:
    """What was typed in the policy form, to show it again next to the refusal."""
    rows = _posted_rows(form)
    values: dict[str, Any] = {
        "repeat_every_minutes": form.get("repeat_every_minutes", ""),
        "rows": rows[-1] + 1 if rows else 1,
    }
    for row in range(values["rows"]):
        values[f"step-{row}-after_minutes"] = form.get(f"step-{row}-after_minutes", "")
        values[f"step-{row}-target"] = form.get(f"step-{row}-target", "")
        values[f"step-{row}-channels"] = form.getlist(f"step-{row}-channels")
    return values


def _form_field(field: str | None, origin: list[int]) -> str | None:
    """The form field of a policy error's field (``steps[1].target`` -> ``step-3-target``)."""
    match = re.match(r"^steps\[(\d+)\](?:\.(\w+))?$", field or "")
    if match and int(match.group(1)) < len(origin):
        return f"step-{origin[int(match.group(1))]}-{match.group(2) or 'after_minutes'}"
    return field if field == "repeat_every_minutes" else None


@bp.post("/admin/escalation")
@admin_required
def save_escalation_policy() -> Any:
    """Save the team's own policy (validated; the same as the defaults means the defaults)."""
    data, origin = policy_from_form(request.form)
    try:
        oncall_service.set_policy(get_session(), current_team(), data)
    except ServiceError as error:
        get_session().rollback()
        state = FormState(values=_posted_values(request.form))
        field = _form_field(error.field, origin)
        # The policy's message starts with its field ("steps[1].after_minutes must ..."):
        # next to the form's own field it reads without it.
        message = sentence(error.message.removeprefix(error.field or "").lstrip(" :"))
        if field:
            state.errors[field] = message
        else:
            state.message = message
        return policy_page(state, 422)
    return _policy_saved("Escalation policy saved.")


@bp.post("/admin/escalation/reset")
@admin_required
def reset_escalation_policy() -> Any:
    """Follow the default policy again."""
    oncall_service.reset_policy(get_session(), current_team())
    return _policy_saved("The team follows the default escalation policy again.")


def _policy_saved(message: str) -> Any:
    """Save the team's new policy with its audit row and go back to the policy page."""
    return save_team_change(
        AuditAction.UPDATE_ESCALATION_POLICY,
        f"policy:team:{current_user().team_id}",
        message,
        "dashboard.escalation_policy",
    )
