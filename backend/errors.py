"""Errors raised by service functions, and their JSON rendering for the API.

Service functions raise :class:`ServiceError` subclasses; the API turns them into
a 4xx JSON body ``{"error": code, "message": ..., "field": ...}``. An unreachable
database is a 503 with ``Retry-After`` and one log line; other unexpected exceptions
become a generic 500 without details (and without patient data).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DBAPIError, IntegrityError
from werkzeug.exceptions import HTTPException

from backend.db import RETRY_AFTER_SECONDS, database_unavailable, outage_reason

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refusal a user can act on: it carries an HTTP status, a code and the field at fault."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        """The JSON body of this error."""
        body = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class NotFound(ServiceError):
    """The object does not exist, or belongs to another team (never say which)."""

    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The request clashes with the current state (e.g. resuming a plan that is not on hold)."""

    status = 409
    code = "conflict"


class InvalidInput(ServiceError):
    """A value is well-formed JSON but not acceptable (e.g. an unknown regimen)."""

    status = 422
    code = "invalid"


def wants_json() -> bool:
    """True for API and webhook requests, which get JSON errors instead of HTML pages."""
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Register the handlers that turn errors into JSON for ``/api/`` requests."""

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError) -> tuple[Response, int]:
        return jsonify(error.to_dict()), error.status

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
