"""API token pages: each user's own tokens (create one, shown once; revoke), and the team's for admins.

A new token appears once, in the answer to the form that created it: it is never put
in the session or a flash message (both live in the cookie), never logged, and the
page is ``Cache-Control: no-store`` like every dashboard page. Creations and
revocations leave audit rows (:mod:`backend.services.tokens`).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from sqlmodel import Session

from backend.api import request_now
from backend.config import MAX_API_TOKEN_LIFETIME_DAYS
from backend.dashboard.forms import (
    FormState,
    TokenCreateIn,
    collect,
    service_error_state,
    validate,
)
from backend.dashboard.web import admin_required, bp, current_user, render_page
from backend.db import get_session
from backend.errors import http_status
from backend.services import tokens
from backend.services.tokens import IssuedToken
from reminders.data.errors import ServiceError
from reminders.data.models import ApiToken

TOKEN_FIELDS = {"name": "text", "days": "int"}


def _own_tokens_page(
    form: FormState | None = None, issued: IssuedToken | None = None, status: int = 200
) -> Any:
    default_days = current_app.config["API_TOKEN_LIFETIME_DAYS"]
    return _render(
        "tokens.html",
        status,
        rows=tokens.list_tokens(get_session(), user_id=current_user().id),
        form=form or FormState(values={"days": default_days}),
        issued=issued,
        max_days=MAX_API_TOKEN_LIFETIME_DAYS,
        now=request_now(),
    )


@bp.get("/account/tokens")
def account_tokens() -> Any:
    """The signed-in user's API tokens, and the form to create one."""
    return _own_tokens_page()


@bp.post("/account/tokens")
def create_account_token() -> Any:
    """Create a token for the signed-in user and show it, this once, in the answer."""
    values = {name: request.form.get(name, "") for name in TOKEN_FIELDS}
    data, state = validate(TokenCreateIn, collect(request.form, TOKEN_FIELDS), values)
    if data is None:
        return _own_tokens_page(state, status=422)
    session, user = get_session(), current_user()
    try:
        issued = tokens.create_token(
            session, user, name=data.name, now=request_now(), days=data.days, actor=user
        )
    except ServiceError as error:
        session.rollback()
        return _own_tokens_page(
            service_error_state(error, values, set(TOKEN_FIELDS)), status=http_status(error)
        )
    session.commit()
    return _own_tokens_page(issued=issued, status=201)


@bp.post("/account/tokens/<int:token_id>/revoke")
def revoke_account_token(token_id: int) -> Any:
    """Revoke one of the signed-in user's tokens (anyone else's is a 404)."""
    session = get_session()
    token = tokens.get_token(session, token_id, user_id=current_user().id)
    return _revoke(session, token, "dashboard.account_tokens")


@bp.get("/admin/tokens")
@admin_required
def team_tokens() -> Any:
    """The API tokens of every member of the admin's team."""
    return _render(
        "team_tokens.html",
        200,
        rows=tokens.list_tokens(get_session(), team_id=current_user().team_id),
        now=request_now(),
    )


@bp.post("/admin/tokens/<int:token_id>/revoke")
@admin_required
def revoke_team_token(token_id: int) -> Any:
    """Revoke a token of a member of the admin's team (another team's is a 404)."""
    session = get_session()
    token = tokens.get_token(session, token_id, team_id=current_user().team_id)
    return _revoke(session, token, "dashboard.team_tokens")


def _render(template: str, status: int, **context: Any) -> Any:
    """A token page, with the helpers its table uses."""
    return render_page(
        template,
        status,
        token_status=tokens.token_status,
        shown_prefix=tokens.shown_prefix,
        **context,
    )


def _revoke(session: Session, token: ApiToken, back: str) -> Any:
    try:
        tokens.revoke_token(session, token, request_now(), current_user())
    except ServiceError as error:
        session.rollback()
        flash(error.message[0].upper() + error.message[1:] + ".", "error")
        return redirect(url_for(back))
    session.commit()
    flash(f"Token “{token.name}” revoked: it no longer works.", "success")
    return redirect(url_for(back))
