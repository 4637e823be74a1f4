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
from backend.dashboard.forms import FieldKind, FormState, TokenCreateIn, validate_form
from backend.dashboard.web import (
    admin_required,
    bp,
    current_user,
    flash_refusal,
    refuse_change,
    render_page,
)
from backend.db import get_session
from backend.services import tokens
from backend.services.tokens import IssuedToken
from reminders.data.errors import ServiceError
from reminders.data.models import ApiToken

TOKEN_FIELDS: dict[str, FieldKind] = {"name": "text", "days": "int"}


@bp.get("/account/tokens", endpoint="account_tokens")
def own_tokens_page(
    form: FormState | None = None, status: int = 200, issued: IssuedToken | None = None
) -> Any:
    """The signed-in user's API tokens, and the form to create one.

    ``form``: the form shown again after a refusal (with ``status``); ``issued``: a token just
    created, shown this once.
    """
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


@bp.post("/account/tokens")
def create_account_token() -> Any:
    """Create a token for the signed-in user and show it, this once, in the answer."""
    data, state = validate_form(TokenCreateIn, request.form, TOKEN_FIELDS)
    if data is None:
        return own_tokens_page(state, status=422)
    session, user = get_session(), current_user()
    try:
        issued = tokens.create_token(
            session, user, name=data.name, now=request_now(), days=data.days, actor=user
        )
    except ServiceError as error:
        return refuse_change(error, state.values, TOKEN_FIELDS, own_tokens_page)
    session.commit()
    return own_tokens_page(issued=issued, status=201)


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
        flash_refusal(error)
        return redirect(url_for(back))
    session.commit()
    flash(f"Token “{token.name}” revoked: it no longer works.", "success")
    return redirect(url_for(back))
