"""Errors as HTTP answers: service refusals, outages and the unexpected.

Service functions raise :class:`~reminders.data.errors.ServiceError` subclasses (plain
exceptions, below the web); :data:`HTTP_STATUS` maps them to a status and the API turns them into
a 4xx JSON body ``{"error": code, "message": ..., "field": ...}``. An unreachable
database is a 503 with ``Retry-After`` and one log line; other unexpected exceptions
become a generic 500 without details (and without patient data).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DBAPIError, IntegrityError
from werkzeug.exceptions import HTTPException

from reminders.data.db import RETRY_AFTER_SECONDS, database_unavailable, outage_reason
from reminders.data.errors import Conflict, InvalidInput, NotFound, ServiceError

logger = logging.getLogger(__name__)


#: The HTTP status of each kind of refusal (the most specific class wins).
HTTP_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    ServiceError: 400,
}


def http_status(error: ServiceError) -> int:
    """The HTTP status that answers ``error``: its class's, else its nearest base's."""
    return next(HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS)


def wants_json() -> bool:
    """True for API and webhook requests, which get JSON errors instead of HTML pages."""
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Register the handlers that turn errors into JSON for ``/api/`` requests."""

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError) -> tuple[Response, int]:
        return jsonify(error.to_dict()), http_status(error)

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(error: IntegrityError) -> tuple[Response, int]:
        # A unique or foreign-key violation that validation did not foresee: a conflict,
        # not a crash. The statement (which may contain patient data) is not logged.
        logger.warning("integrity error on %s %s", request.method, request.path)
        return jsonify({"error": "conflict", "message": "conflicts with existing data"}), 409

    @app.errorhandler(DBAPIError)
    def handle_database_error(error: DBAPIError) -> Response | tuple[Response, int]:
        if not database_unavailable(error):
            return handle_unexpected(error)
        return database_unreachable(error)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response | tuple[Response, int]:
        if not wants_json():
            return error.get_response()
        if error.response is not None and error.response.mimetype == "application/json":
            return error.response
        body = {
            "error": (error.name or "error").lower().replace(" ", "_"),
            "message": error.description,
        }
        return jsonify(body), error.code or 500

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response | tuple[Response, int]:
        if database_unavailable(error):  # raised from an outage by code in between
            return database_unreachable(error)
        logger.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify({"error": "internal", "message": "internal error"}), 500
        return Response("Internal error", status=500, mimetype="text/plain")


def database_unreachable(error: BaseException) -> Response:
    """The answer while the database is unreachable: 503 with ``Retry-After``, one log line.

    No traceback (a few hundred lines per request during an outage would bury every other
    line of the log) and no statement: only the method, the path and the driver's reason.
    """
    logger.warning(
        "database unreachable on %s %s: %s", request.method, request.path, outage_reason(error)
    )
    message = "The service is briefly unavailable; please try again in a minute."
    if wants_json():
        response = jsonify({"error": "unavailable", "message": message})
    else:
        response = Response(message, mimetype="text/plain")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
