"""The treatment calendar pages: the page to print for the patient, and the family's links.

* ``/patients/<id>/calendar``: the calendar links of the patient (made, last used,
  revoked), a form to make one and the way to the printed page.
* ``/patients/<id>/calendar/print``: one A4 page in the patient's language, no script.
* ``POST /patients/<id>/calendar/feeds``: make a link; its address is shown once (201).
* ``POST /patients/<id>/calendar/feeds/<feed_id>/revoke``: the link stops working at once.

Every route reads the patient through the user's team (another team's patient is a 404,
kept in that team's audit trail); viewing, printing, making and revoking are audited.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request, url_for

from backend.api import request_now
from backend.dashboard.forms import FormState
from backend.dashboard.web import (
    audit,
    bp,
    current_user,
    refuse_change,
    render_page,
    save_change,
    viewed_patient,
)
from backend.db import get_session
from backend.services import calendar as calendar_service
from backend.services.patients import get_patient
from reminders.data import calendar_feeds
from reminders.data.errors import ServiceError
from reminders.data.models import Patient
from reminders.data.statuses import AuditAction

FEED_FIELDS = ("label",)


@bp.get("/patients/<int:patient_id>/calendar")
def calendar(patient_id: int) -> Any:
    """The patient's calendar links and the way to the printed page."""
    return _links_page(viewed_patient(patient_id, AuditAction.VIEW_CALENDAR_FEEDS), FormState())


@bp.get("/patients/<int:patient_id>/calendar/print")
def print_calendar(patient_id: int) -> Any:
    """The calendar to print, in the patient's language (one A4 page)."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    page = calendar_service.print_page(session, record, request_now())
    audit(AuditAction.PRINT_CALENDAR, record.id, f"patient:{record.id}")
    session.commit()
    return render_page(
        "calendar_print.html", p=record, page=page, c=page.calendar, w=page.calendar.words
    )


@bp.post("/patients/<int:patient_id>/calendar/feeds")
def create_calendar_feed(patient_id: int) -> Any:
    """Make a calendar link for a family member's phone; show its address once."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    values = {"label": request.form.get("label", "")}
    try:
        issued = calendar_feeds.create_feed(
            session, record, values["label"], current_user().id, request_now()
        )
    except ServiceError as error:
        return refuse_change(error, values, FEED_FIELDS, _show_again(record))
    audit(AuditAction.CREATE_CALENDAR_FEED, record.id, f"calendar_feed:{issued.row.id}")
    session.commit()
    base = current_app.config.get("PUBLIC_BASE_URL") or request.url_root
    link = calendar_service.feed_url(base, issued.token)
    return _links_page(record, FormState(), 201, issued=issued, link=link)


@bp.post("/patients/<int:patient_id>/calendar/feeds/<int:feed_id>/revoke")
def revoke_calendar_feed(patient_id: int, feed_id: int) -> Any:
    """Revoke one of the patient's links: the phone's next fetch gets nothing."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    feed = calendar_feeds.get_feed(session, record.id, feed_id)
    try:
        calendar_feeds.revoke_feed(session, feed, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(error, {}, (), _show_again(record))
    return save_change(
        AuditAction.REVOKE_CALENDAR_FEED,
        record.id,
        f"calendar_feed:{feed.id}",
        f"Calendar link “{feed.label}” revoked: it no longer works.",
        url_for("dashboard.calendar", patient_id=record.id),
    )


def _links_page(record: Patient, form: FormState, status: int = 200, **context: Any) -> Any:
    return render_page(
        "calendar.html",
        status,
        p=record,
        form=form,
        feeds=calendar_feeds.feeds_of(get_session(), record.id),
        feed_status=calendar_feeds.feed_status,
        max_feeds=calendar_feeds.MAX_ACTIVE_FEEDS,
        **context,
    )


def _show_again(record: Patient) -> Any:
    return lambda state, status: _links_page(record, state, status)
