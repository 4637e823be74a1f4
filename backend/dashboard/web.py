"""The dashboard blueprint and what every page shares: the signed-in user, CSRF, headers, errors.

Every route except the sign-in page and the static files needs a signed-in
user (a ``before_request`` gate, so a new route cannot forget it); the gate checks the
browser's session against its row in the database (:func:`signed_in_user`) on every
request. Every POST needs the session's CSRF token. Views take ``now`` from
:func:`backend.api.request_now`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from backend.api import request_now
from backend.dashboard.forms import FormState, sentence, service_error_state
from backend.dashboard.queries import open_alert_count
from backend.db import get_session
from backend.errors import http_status
from backend.schemas import CONTROL_CHARACTERS, LINE_CONTROL_CHARACTERS
from backend.security import cookie_session_id, csrf_token, csrf_valid, end_session
from backend.services import sessions
from backend.services.audit import record_audit, record_refused_access, set_channel
from backend.services.patients import get_patient
from reminders.core.bsa import dose_places
from reminders.data.errors import NotFound, ServiceError
from reminders.data.models import Patient, Team, User, UserSession
from reminders.data.statuses import AlertStatus, AuditAction, AuditChannel, OutboxStatus, PlanStatus

logger = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

#: Endpoints reachable without signing in.
PUBLIC_ENDPOINTS = {"dashboard.login"}

#: Pages are private and change with every action: never cached, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

F = TypeVar("F", bound=Callable[..., Any])


def current_user() -> User:
    """The signed-in user of this request (the gate guarantees one on private routes)."""
    return cast(User, g.dashboard_user)


def current_team() -> Team:
    """The signed-in user's team."""
    return cast(Team, get_session().get(Team, current_user().team_id))


def region() -> str:
    """The region national phone numbers are read in."""
    return current_app.config["DEFAULT_REGION"]


def current_session() -> UserSession:
    """The session row of this request (the gate guarantees one on private routes)."""
    return cast(UserSession, g.dashboard_session)


def signed_in_user(now: datetime) -> User | None:
    """The user of the browser's session if its row is still valid at ``now``, else None.

    A refused session is forgotten by the browser (its CSRF token kept for the sign-in
    form) and its row ended with the reason (idle, expired, user deactivated). A valid
    session's ``last_seen_at`` is written at most once per ``LAST_SEEN_STEP``. Each write
    runs in a transaction of its own, started after the read one is committed: on SQLite
    a read transaction that then writes fails at once if another process wrote in between
    (no waiting for the lock), and the view's own changes must not ride on it.
    """
    g.dashboard_session = None
    session_id = cookie_session_id()
    if session_id is None:
        return None
    db = get_session()
    check = sessions.check_user_session(db, session_id, now)
    if check.user is None:
        if check.row is not None and check.end is not None:
            db.commit()
            sessions.end_user_session(db, check.row, now, check.end)
            db.commit()
            logger.info("session of user %s ended: %s", check.row.user_id, check.end.value)
        end_session(keep_csrf=True)
        return None
    if sessions.needs_refresh(check.row, now):
        db.commit()
        sessions.touch_user_session(db, check.row, now)
        db.commit()
    g.dashboard_session = check.row
    return check.user


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (no open redirect), else None."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if LINE_CONTROL_CHARACTERS.search(target):
        return None  # CR/LF would split the Location header
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc or "\\" in target else target


@bp.before_request
def _gate() -> Any:
    if request.endpoint == "dashboard.static":
        return None  # a stylesheet needs no user, and must not refresh the idle timer
    now = request_now()
    had_session = cookie_session_id() is not None
    user = signed_in_user(now)
    g.dashboard_user = user
    if request.endpoint in PUBLIC_ENDPOINTS:
        pass
    elif user is None:
        params = {"expired": "1"} if had_session else {}
        if request.method == "GET":
            params["next"] = request.full_path.rstrip("?")
        return redirect(url_for("dashboard.login", **params))
    if request.method == "POST" and not csrf_valid():
        logger.warning("refused a POST without a valid CSRF token on %s", request.endpoint)
        return render_error(
            400,
            "This form has expired",
            "The page was open for too long or came from elsewhere. Go back, reload the page "
            "and send the form again.",
        )
    hostile = hostile_field()
    if hostile is not None:
        logger.warning("refused a control character in a field on %s", request.endpoint)
        return render_error(
            400,
            "A character is not allowed",
            f"The field “{field_label(hostile)}” ({hostile}) contains a control character "
            "(such as NUL or a line break where none may be). Remove it and send again.",
        )
    return None


#: Fields whose value must stay on one line (a redirect target becomes a header).
ONE_LINE_FIELDS = {"next"}


def hostile_field() -> str | None:
    """The name of the first query or form field holding a control character, or None.

    Checked for every page after the session and the CSRF token (so a stranger's body is
    never read here), before any view uses a value: NUL reaching PostgreSQL is a 500, and
    CR/LF in ``next`` would split the redirect's header. Line breaks stay allowed in form
    values (a note has lines), never in names nor in :data:`ONE_LINE_FIELDS`.
    """
    sources = [request.args]
    if request.method == "POST":
        sources.append(request.form)
    for fields in sources:
        for name, value in fields.items(multi=True):
            if LINE_CONTROL_CHARACTERS.search(name):
                return "form"
            pattern = (
                LINE_CONTROL_CHARACTERS
                if name in ONE_LINE_FIELDS or fields is request.args
                else CONTROL_CHARACTERS
            )
            if pattern.search(value):
                return name
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        if request.endpoint == "dashboard.static" and name == "Cache-Control":
            continue
        response.headers.setdefault(name, value)
    return response


def admin_required(view: F) -> F:
    """Refuse (403) users who are not admins of their team."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user().role != "admin":
            return render_error(403, "Admins only", "Ask an admin of your team to do this.")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def render_page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render ``templates/dashboard/<template>`` with ``status``."""
    return render_template(f"dashboard/{template}", **context), status


def render_error(status: int, title: str, message: str) -> tuple[str, int]:
    """A friendly error page."""
    return render_page("error.html", status, title=title, message=message)


def audit(action: AuditAction, patient_id: int | None, target: str | None = None) -> None:
    """Add an audit row for the signed-in user (committed with the request's change).

    The same :class:`AuditAction` as the API's route for the same operation, so the
    audit page reads the same whichever way the team worked. On a page that only reads
    (GET) the read transaction ends first: on SQLite an old read snapshot cannot take the
    write lock once another process has written, a fresh transaction waits for it.
    """
    session = get_session()
    if request.method == "GET":
        session.commit()
    record_audit(
        session,
        current_user(),
        action,
        patient_id,
        request_now(),
        target=target,
        channel=AuditChannel.DASHBOARD,
    )


def viewed_patient(patient_id: int, action: AuditAction) -> Patient:
    """The patient whose page the user opens, read through their team, the view audited.

    Another team's patient is a 404 (kept in that team's trail); the view's audit row is
    committed here, before the page is rendered.
    """
    record = get_patient(get_session(), current_user().team_id, patient_id)
    audit(action, record.id, f"patient:{record.id}")
    get_session().commit()
    return record


def save_change(
    action: AuditAction, patient_id: int | None, target: str, message: str, to: str
) -> Response:
    """Commit the form's change with its audit row, confirm it to the user, go on to ``to``."""
    audit(action, patient_id, target)
    get_session().commit()
    flash(message, "success")
    return redirect(to)


def save_patient_change(
    action: AuditAction, patient: Patient, target: str, message: str, anchor: str | None = None
) -> Response:
    """:func:`save_change` for a change of ``patient``'s care: back to their page (at ``anchor``)."""
    to = url_for("dashboard.patient", patient_id=patient.id, _anchor=anchor)
    return save_change(action, patient.id, target, message, to)


def save_team_change(action: AuditAction, target: str, message: str, endpoint: str) -> Response:
    """:func:`save_change` for a change about no patient (the team, its members, one's account).

    The user goes on to the page of ``endpoint``.
    """
    return save_change(action, None, target, message, url_for(endpoint))


def refuse_change(
    error: ServiceError,
    values: Mapping[str, Any],
    fields: Iterable[str],
    show_again: Callable[[FormState, int], Any],
) -> Any:
    """Undo what the service began and show the form again, the refusal by its field.

    ``show_again(state, status)`` renders the page that holds the form.
    """
    get_session().rollback()
    return show_again(service_error_state(error, values, set(fields)), http_status(error))


def flash_refusal(error: ServiceError) -> None:
    """Undo what the service began and say why on the next page (a refusal with no form)."""
    get_session().rollback()
    flash(sentence(error.message), "error")


@bp.before_request
def _audit_channel() -> None:
    # Rows written by services (a confirmed dose warning) and by sign-in say "dashboard".
    if request.endpoint != "dashboard.static":
        set_channel(get_session(), AuditChannel.DASHBOARD)


@bp.errorhandler(NotFound)
def _not_found(error: NotFound) -> tuple[str, int]:
    # Another team's patient and a patient that does not exist look the same; only the
    # trail of the patient's team keeps the attempt (backend.services.audit).
    user = g.get("dashboard_user")
    if user is not None and request.view_args:
        session = get_session()
        session.rollback()
        if record_refused_access(
            session, user, request.view_args, request_now(), AuditChannel.DASHBOARD
        ):
            session.commit()
    return render_error(404, "Not found", "There is nothing here, or it is not in your team.")


@bp.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> tuple[str, int]:
    return render_error(http_status(error), "This cannot be done", error.message)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    if error.code in (404, 405, 403, 400):
        return render_error(
            error.code or 400, error.name, error.description or "Something is not right."
        )
    return error


# --- template helpers -------------------------------------------------------------------


def format_local(
    value: datetime | None, timezone: str | None = None, pattern: str = "short"
) -> str:
    """An instant in ``timezone`` (the patient's), e.g. "Mon 2 Mar 11:05"."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(timezone)) if timezone else value
    if pattern == "time":
        return local.strftime("%H:%M")
    if pattern == "date":
        return f"{local:%a} {local.day} {local:%b %Y}"
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def format_day(value: Any) -> str:
    """A date as "Wed 4 Mar 2026"."""
    if value is None:
        return ""
    return f"{value:%a} {value.day} {value:%b %Y}"


def format_waited(delta: timedelta) -> str:
    """How long something waited, as people say it: "8 min", "2 h 05 min", "3 days"."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days"


def format_dose(value: float | None) -> str:
    """A dose (mg or mg/m2) within 1%: 0.645 -> "0.65", 682.5 -> "682.5", 1000.0 -> "1,000".

    The one-decimal ``num`` filter showed 0.645 mg as 0.6 (issue 11, item 10).
    """
    if value is None:
        return ""
    if value <= 0:
        return format_number(value)
    return format_number(value, dose_places(value))


def format_number(value: float | None, places: int = 1) -> str:
    """A number without useless decimals: 30.0 -> "30", 682.5 -> "682.5"."""
    if value is None:
        return ""
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@bp.context_processor
def _context() -> dict[str, Any]:
    user = g.get("dashboard_user")
    return {
        "dashboard_user": user,
        "queue_count": open_alert_count(get_session(), user.team_id) if user else 0,
    }


#: How the error summary names a field (the label people see next to it).
FIELD_LABELS = {
    "display_name": "Name",
    "phone": "Mobile phone",
    "hospital_ref": "Hospital reference",
    "timezone": "Time zone",
    "height_cm": "Height",
    "weight_kg": "Weight",
    "pill_times": "Pill reminder times",
    "taken_at": "Sample taken",
    "dose_mg": "Amount given",
    "on_date": "Date",
    "regimen_id": "Regimen",
    "care_phone": "Number patients call",
    "oncall_phone": "On-call number",
    "note": "Note",
    "body": "Message",
    "dose_text": "Dose as prescribed",
    "weekdays": "Days",
    "user_id": "Member",
    "starts_at": "Starts",
    "ends_at": "Ends",
    "repeat_every_minutes": "Repeat every",
    "after_minutes": "After (minutes)",
    "target": "Page",
    "channels": "By",
    "up_to_c": "Expected up to (°C)",
    "expires_at": "Until",
}

#: A row of a form with numbered rows (the escalation policy's steps: ``step-1-target``).
_ROW_FIELD = re.compile(r"^step-(\d+)-(\w+)$")


def field_label(name: str) -> str:
    """The label of a form field, for the error summary."""
    if name.startswith("opt-"):
        name = name[4:]
    row = _ROW_FIELD.match(name)
    if row:
        return f"Step {int(row.group(1)) + 1}: {field_label(row.group(2)).lower()}"
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


#: How the audit page names a channel.
CHANNEL_LABELS: dict[str, str] = {
    AuditChannel.API: "API",
    AuditChannel.DASHBOARD: "care-team pages",
    AuditChannel.CLI: "command line",
}


def channel_label(value: str) -> str:
    """The audit page's name for a channel ("api" -> "API")."""
    return CHANNEL_LABELS.get(value, value)  # str enum members hash as their value


def register_filters(app: Any) -> None:
    """Jinja filters the dashboard templates use."""
    app.add_template_filter(format_local, "local")
    app.add_template_filter(format_day, "day")
    app.add_template_filter(format_waited, "waited")
    app.add_template_filter(format_number, "num")
    app.add_template_filter(format_dose, "dose")
    app.add_template_filter(channel_label, "channel")
    # A global (not only a context variable) so imported form macros can call it.
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["field_label"] = field_label
    # The status vocabularies, so templates compare with the enums, not spelled strings.
    app.jinja_env.globals.update(
        AlertStatus=AlertStatus, OutboxStatus=OutboxStatus, PlanStatus=PlanStatus
    )


def not_available() -> None:
    """404 for a page that does not exist in this configuration."""
    abort(404)
