"""The signed-in user's account page: their open sessions and "sign out everywhere"."""

from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, url_for

from backend.api import request_now
from backend.dashboard.web import audit, bp, current_session, current_user, render_page
from backend.db import get_session
from backend.security import end_session
from backend.services.sessions import end_user_sessions, open_user_sessions
from reminders.data.models import AuditAction, SessionEnd

logger = logging.getLogger(__name__)


@bp.get("/account")
def account() -> Any:
    """Who is signed in, and where: the user's open sessions, this one marked."""
    now = request_now()
    return render_page(
        "account.html",
        sessions=open_user_sessions(get_session(), current_user().id, now),
        this_session=current_session().id,
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
