"""Sign-in and sign-out."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, flash, g, redirect, request, url_for

from backend.api import request_now
from backend.dashboard.forms import FormState, LoginIn, validate
from backend.dashboard.web import bp, current_session, current_user, render_page, safe_next
from backend.db import get_session
from backend.security import GENERIC_LOGIN_ERROR, end_session, start_session, throttled_message
from backend.services.audit import record_audit
from backend.services.sessions import end_user_session, start_user_session
from backend.services.signin import DEVICE_COOKIE, POLICY, attempt_sign_in
from reminders.data.statuses import AuditAction, SessionEnd

logger = logging.getLogger(__name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form; on success a fresh session and the page asked for (or the queue)."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if request.args.get("expired"):
            flash("Your session ended. Sign in again to continue.", "info")
        return render_page("login.html", form=FormState(), next=target)
    form = {"email": request.form.get("email", ""), "password": request.form.get("password", "")}
    data, state = validate(LoginIn, form, {"email": form["email"]})
    if data is None:
        return render_page("login.html", 422, form=state, next=target)
    db = get_session()
    now = request_now()
    attempt = attempt_sign_in(
        db,
        data.email,
        data.password,
        request.remote_addr or "unknown",
        now,
        secret=current_app.secret_key,
        device_cookie=request.cookies.get(DEVICE_COOKIE),
    )
    if attempt.wait_seconds:
        logger.info("sign-in refused unchecked (%s brake)", attempt.decision.brake)
        state.message = throttled_message(attempt.wait_seconds)
        page, status = render_page("login.html", 429, form=state, next=target)
        return page, status, {"Retry-After": str(attempt.wait_seconds)}
    if attempt.user is None:
        db.commit()  # the failure counts are kept
        state.message = GENERIC_LOGIN_ERROR
        return render_page("login.html", 401, form=state, next=target)
    record_audit(db, attempt.user, AuditAction.LOGIN, None, now)
    session_id = start_user_session(
        db,
        attempt.user,
        now,
        request.headers.get("User-Agent"),
        replaces=g.get("dashboard_session"),
    )
    db.commit()
    start_session(session_id)
    logger.info("user %s signed in", attempt.user.id)
    return _remember_device(redirect(target or url_for("dashboard.queue")), attempt.device_cookie)


def _remember_device(response: Response, device_cookie: str | None) -> Response:
    """Set the ``known_device`` cookie (sent back to the sign-in form only) on ``response``."""
    if device_cookie:
        response.set_cookie(
            DEVICE_COOKIE,
            device_cookie,
            max_age=int(POLICY.remember.total_seconds()),
            path=url_for("dashboard.login"),
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    return response


@bp.post("/logout")
def logout() -> Any:
    """Sign out (a POST with the CSRF token, so no other site can sign a user out).

    The session's row ends at once: a copy of the cookie opens nothing afterwards.
    """
    db = get_session()
    now = request_now()
    end_user_session(db, current_session(), now, SessionEnd.SIGNED_OUT)
    record_audit(db, current_user(), AuditAction.LOGOUT, None, now)
    db.commit()
    end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.login"))


@bp.get("/")
def home() -> Any:
    """The start page is the triage queue."""
    return redirect(url_for("dashboard.queue"))
