"""The signed-in user's account page: their phone and language, open sessions, "sign out everywhere"."""

from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, request, url_for

from backend.api import request_now
from backend.dashboard.forms import FormState, validate
from backend.dashboard.web import (
    audit,
    bp,
    current_session,
    current_user,
    refuse_change,
    region,
    render_page,
    save_team_change,
)
from backend.db import get_session
from backend.schemas import ProfileUpdate
from backend.security import end_session
from backend.services.sessions import end_user_sessions, open_user_sessions
from backend.services.teams import set_profile
from reminders.data.errors import ServiceError
from reminders.data.statuses import AuditAction, SessionEnd

PROFILE_FIELDS = ("phone", "language")

logger = logging.getLogger(__name__)


@bp.get("/account", endpoint="account")
def account_page(profile: FormState | None = None, status: int = 200) -> Any:
    """The user's phone and language, and where they are signed in (this session marked).

    ``profile``: the profile form shown again after a refusal.
    """
    user = current_user()
    return render_page(
        "account.html",
        status,
        sessions=open_user_sessions(get_session(), user.id, request_now()),
        this_session=current_session().id,
        profile=profile or FormState(values={"phone": user.phone, "language": user.language}),
    )


@bp.post("/account/profile")
def update_profile() -> Any:
    """Set one's own phone (on-call pages go there; empty clears it) and language."""
    values = {name: request.form.get(name, "") for name in PROFILE_FIELDS}
    # An empty phone field clears the number; an empty language keeps it.
    fields = {"phone": values["phone"].strip() or None}
    if values["language"].strip():
        fields["language"] = values["language"].strip()
    data, state = validate(ProfileUpdate, fields, values)
    if data is None:
        return account_page(state, 422)
    user = current_user()
    try:
        set_profile(
            get_session(),
            user,
            data.model_dump(exclude_unset=True),
            region=region(),
            now=request_now(),
        )
    except ServiceError as error:
        return refuse_change(error, values, PROFILE_FIELDS, account_page)
    return save_team_change(
        AuditAction.UPDATE_PROFILE, f"user:{user.id}", "Profile saved.", "dashboard.account"
    )


@bp.post("/account/sign-out-everywhere")
def sign_out_everywhere() -> Any:
    """End every session of the signed-in user, this one included (a lost or shared device)."""
    db = get_session()
    user = current_user()
    ended = end_user_sessions(db, user.id, request_now(), SessionEnd.SIGNED_OUT_EVERYWHERE)
    audit(AuditAction.SIGN_OUT_EVERYWHERE, None, f"user:{user.id}")
    db.commit()
    end_session()
    logger.info("user %s signed out everywhere (%d sessions)", user.id, ended)
    flash("You are signed out on every device. Sign in again to continue.", "info")
    return redirect(url_for("dashboard.login"))
