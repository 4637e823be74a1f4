"""Admin pages: the team's members and phone numbers, and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import request
from sqlmodel import Session

from backend.api import request_now
from backend.dashboard import team_admin
from backend.dashboard.forms import (
    FieldKind,
    FormState,
    RoleIn,
    TeamPhonesIn,
    UserCreateIn,
    collect,
    validate,
    validate_form,
)
from backend.dashboard.web import (
    admin_required,
    bp,
    current_team,
    current_user,
    flash_refusal,
    refuse_change,
    region,
    render_page,
    save_team_change,
)
from backend.db import get_session
from backend.errors import http_status
from backend.services.audit import list_audit
from backend.services.sessions import open_session_counts
from reminders.data.errors import InvalidInput, ServiceError
from reminders.data.models import User
from reminders.data.statuses import AuditAction

AUDIT_PAGE_SIZE = 100

T = TypeVar("T")


@bp.get("/admin", endpoint="admin")
@admin_required
def admin_page(forms: dict[str, FormState] | None = None, status: int = 200) -> Any:
    """The team's members and phone numbers; ``forms`` holds a form shown again after a refusal."""
    session = get_session()
    team = current_team()
    forms = forms or {}
    forms.setdefault(
        "phones",
        FormState(values={"care_phone": team.care_phone, "oncall_phone": team.oncall_phone}),
    )
    forms.setdefault("user", FormState(values={"role": "nurse"}))
    return render_page(
        "admin.html",
        status,
        team=team,
        users=team_admin.team_users(session, team.id),
        open_sessions=open_session_counts(session, team.id, request_now()),
        forms=forms,
    )


def _admin_form(name: str) -> Callable[[FormState, int], Any]:
    """Show the admin page again with its form ``name`` in ``state`` (its refusals)."""

    def show_again(state: FormState, status: int) -> Any:
        return admin_page({name: state}, status)

    return show_again


@bp.post("/admin/users")
@admin_required
def create_member() -> Any:
    """Add a member who signs in with the password given here."""
    fields = {"email": "text", "name": "text", "role": "text", "password": "text"}
    values = {k: request.form.get(k, "") for k in ("email", "name", "role")}
    data, state = validate(UserCreateIn, collect(request.form, fields), values)
    if data is None:
        return admin_page({"user": state}, 422)
    try:
        user = team_admin.add_member(get_session(), current_team(), data, request_now())
    except ServiceError as error:
        return refuse_change(error, values, fields, _admin_form("user"))
    return save_team_change(
        AuditAction.CREATE_USER,
        f"user:{user.id}",
        f"{user.email} can now sign in as {user.role}.",
        "dashboard.admin",
    )


def _member_action(
    user_id: int,
    change: Callable[[Session, User], T],
    action: AuditAction,
    done: Callable[[User, T], str],
) -> Any:
    """Change a member of the admin's team, audited; a refusal is flashed on the admin page.

    The member is looked up first, so another team's user id is a 404 whatever the form
    holds.
    """
    session = get_session()
    member = team_admin.get_team_user(session, current_user().team_id, user_id)
    try:
        result = change(session, member)
    except ServiceError as error:
        flash_refusal(error)
        return admin_page(status=http_status(error))
    return save_team_change(action, f"user:{member.id}", done(member, result), "dashboard.admin")


@bp.post("/admin/users/<int:user_id>/role")
@admin_required
def change_role(user_id: int) -> Any:
    """Give a member another role."""

    def change(session: Session, member: User) -> None:
        data, _ = validate(RoleIn, {"role": request.form.get("role", "")}, {})
        if data is None:
            raise InvalidInput("choose a role: nurse, physician or admin", field="role")
        team_admin.change_role(session, member, data.role, current_user())

    return _member_action(
        user_id,
        change,
        AuditAction.CHANGE_ROLE,
        lambda member, _: f"{member.email} is now {member.role}.",
    )


@bp.post("/admin/users/<int:user_id>/active")
@admin_required
def set_active(user_id: int) -> Any:
    """Deactivate a member (signed out at once) or reactivate them."""
    active = request.form.get("active") == "1"
    return _member_action(
        user_id,
        lambda session, member: team_admin.set_active(
            session, member, active, current_user(), request_now()
        ),
        AuditAction.ACTIVATE_USER if active else AuditAction.DEACTIVATE_USER,
        lambda member, _: f"{member.email} {'reactivated' if active else 'deactivated'}.",
    )


@bp.post("/admin/users/<int:user_id>/sessions/end")
@admin_required
def end_member_sessions(user_id: int) -> Any:
    """Sign a member of the admin's team out everywhere (a lost phone, a shared login)."""
    return _member_action(
        user_id,
        lambda session, member: team_admin.end_member_sessions(session, member, request_now()),
        AuditAction.END_USER_SESSIONS,
        lambda member, ended: (
            f"{member.email} is signed out everywhere ({ended} open session(s) ended)."
        ),
    )


@bp.post("/admin/team")
@admin_required
def team_phones() -> Any:
    """Set the number patients call and the on-call number (urgent alerts go there)."""
    fields: dict[str, FieldKind] = {"care_phone": "optional", "oncall_phone": "optional"}
    data, state = validate_form(TeamPhonesIn, request.form, fields)
    if data is None:
        return admin_page({"phones": state}, 422)
    try:
        team = team_admin.set_team_phones(
            get_session(),
            current_team(),
            care_phone=data.care_phone,
            oncall_phone=data.oncall_phone,
            region=region(),
        )
    except ServiceError as error:
        return refuse_change(error, state.values, fields, _admin_form("phones"))
    return save_team_change(
        AuditAction.UPDATE_TEAM_PHONES,
        f"team:{team.id}",
        "Team phone numbers saved.",
        "dashboard.admin",
    )


@bp.get("/audit")
@admin_required
def audit_log() -> Any:
    """Who viewed or changed which patient, and when (newest first)."""
    try:
        page = max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    rows, total = list_audit(
        get_session(), current_user().team_id, page=page, per_page=AUDIT_PAGE_SIZE
    )
    return render_page(
        "audit.html",
        rows=rows,
        page=page,
        pages=max(1, -(-total // AUDIT_PAGE_SIZE)),
        total=total,
    )
