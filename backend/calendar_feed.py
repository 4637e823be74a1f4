"""``GET /calendar/<token>.ics``: a patient's private calendar feed, for a family's phone.

No sign-in: a phone's calendar app cannot sign in, so the unguessable token in the link
is the credential (:mod:`reminders.data.calendar_feeds`). An unknown, revoked or
discharged patient's link gets the same bare 404 as any other, so that nothing tells
them apart. The answer is never stored by a cache (``no-store``: the app keeps its own
copy of the events, an HTTP cache on the way would keep the patient's schedule), never
indexed, and never passes the link on as a referrer.

The token is in the path, so nothing here logs the path: errors raised by the feed are
logged without it (the app's own handlers name the path).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from backend.api import request_now
from backend.db import get_session
from backend.services.calendar import feed_document
from reminders.data.db import RETRY_AFTER_SECONDS, database_unavailable

logger = logging.getLogger(__name__)

bp = Blueprint("calendar", __name__)

FEED_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def _plain(text: str, status: int) -> Response:
    return Response(text, status=status, mimetype="text/plain", headers=FEED_HEADERS)


@bp.get("/calendar/<token>.ics")
def feed(token: str) -> Response:
    """The feed's iCalendar text, or 404 when the link does not work."""
    session = get_session()
    document = feed_document(session, token, request_now())
    if document is None:
        return _plain("Not found", 404)
    session.commit()  # the fetch noted on the link (at most hourly)
    return Response(document, content_type="text/calendar; charset=utf-8", headers=FEED_HEADERS)


@bp.errorhandler(Exception)
def _failed(error: Exception) -> Response | HTTPException:
    # The app's handlers log the path, which holds the token: these log without it.
    if isinstance(error, HTTPException):
        return error
    if database_unavailable(error):
        logger.warning("database unreachable while serving a calendar feed")
        response = _plain("Briefly unavailable; try again in a minute.", 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    logger.exception("calendar feed failed")  # the traceback, without the path
    return _plain("Internal error", 500)


def init_app(app: Flask) -> None:
    """Register the feed's blueprint."""
    app.register_blueprint(bp)
