"""The care-team JSON API under ``/api/v1``, documented by OpenAPI 3 at ``/api/v1/openapi.json``.

spectree validates requests and responses against the pydantic schemas and
generates the OpenAPI document from them. Every route authenticates the bearer
token in ``before_request`` and scopes every look-up to the user's team. Every route
that reads or changes patient data declares its audit action with
``backend.api.auditing.audited`` (checked when the app starts) and is committed by it,
with its audit row.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, make_response, request
from pydantic import BaseModel
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from werkzeug.exceptions import HTTPException

from backend.auth import BearerCheck
from backend.db import get_engine, get_session
from backend.hardening import JSONTooDeep, json_depth
from backend.schemas import ErrorOut
from reminders.data.models import User

API_PREFIX = "/api/v1"


class ValidationErrorOut(BaseModel):
    """A request that failed validation: the first field at fault and every error."""

    error: str
    message: str
    field: str | None = None
    fields: list[dict[str, str]] = []


def _validation_failed(
    req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any
) -> None:
    """Answer a validation error with our own JSON body, without logging the input (health data)."""
    if error is None:
        return
    fields = [
        {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"]}
        for item in error.errors()  # type: ignore[attr-defined]
    ]
    body = {
        "error": "validation_failed",
        "message": f"{fields[0]['field']}: {fields[0]['message']}" if fields else "invalid request",
        "field": fields[0]["field"] if fields else None,
        "fields": fields,
    }
    raise HTTPException(response=make_response(jsonify(body), 422))


spec = SpecTree(
    "flask",
    title="Monoclonal-antibody patient companion: care-team API",
    version="1.0.0",
    # spectree leaves out every route under its own path, so it must not be /api/v1;
    # the document is served at /api/v1/openapi.json by openapi_document() instead.
    path="apidoc",
    mode="strict",
    # 3.1: its schemas are JSON Schema 2020-12, which is what pydantic v2 writes (a 3.0
    # document may not hold "exclusiveMinimum": 0 nor a {"type": "null"} branch).
    openapi_version="3.1.0",
    page_templates={},  # no doc pages: they would load scripts from CDNs
    before=_validation_failed,
    validation_error_model=ValidationErrorOut,
    security_schemes=[
        SecurityScheme(name="bearerAuth", data=SecuritySchemeData(type="http", scheme="bearer"))
    ],
    security={"bearerAuth": []},
)

api = Blueprint("api", __name__, url_prefix=API_PREFIX)

#: Error responses every authenticated route may give.
ERRORS = {"HTTP_401": ErrorOut, "HTTP_404": ErrorOut}


def responses(**codes: Any) -> Response:
    """A spectree Response with the common error codes added."""
    return Response(**{**ERRORS, **codes})


def request_now() -> datetime:
    """The current instant, from the app's injectable clock (tests pass ``CLOCK``)."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock else datetime.now(UTC)


def current_user() -> User:
    """The authenticated user of this request."""
    return g.api_user


def default_region() -> str:
    """The region a national phone number is read in (``DEFAULT_REGION``, e.g. BE)."""
    return current_app.config["DEFAULT_REGION"]


@api.before_request
def _authenticate() -> Any:
    """Check the bearer token first, then (only for a known user) read and check the body.

    A request without valid credentials gets 401 before its body is read or parsed, so
    a stranger cannot make the app decode megabytes or a hostile JSON document. The
    token's ``last_used_at`` is written at most once per
    :data:`backend.services.tokens.LAST_USED_GRANULARITY`.
    """
    from backend.services.tokens import authenticate

    check = authenticate(get_engine(), request.headers.get("Authorization"), request_now())
    if check.user is None:
        return _unauthorized(check)
    g.api_user = get_session().merge(check.user, load=False)
    if request.method in ("POST", "PUT", "PATCH") and request.content_length:
        if not request.is_json:
            return jsonify(
                {"error": "unsupported_media_type", "message": "send application/json"}
            ), 415
        # Parsed once here (the result is cached for spectree); the loader refuses a
        # document nested deeper than MAX_JSON_DEPTH before decoding it.
        if request.get_json(silent=True) is None:
            limit = current_app.config.get("MAX_JSON_DEPTH")
            if limit is not None and json_depth(request.get_data(cache=True)) > limit:
                return jsonify({"error": "too_deep", "message": str(JSONTooDeep(limit))}), 400
            return jsonify({"error": "bad_json", "message": "body is not valid JSON"}), 400
    return None


def _unauthorized(check: BearerCheck) -> tuple[Any, int]:
    """The 401 answer: "token expired" / "token revoked" for a token that was once good
    (its holder learns what to do, nothing leaks), the generic message otherwise."""
    response = jsonify({"error": "unauthorized", "message": check.message})
    challenge = 'Bearer realm="api"'
    if check.refusal in ("expired", "revoked"):  # RFC 6750's code for a dead token
        challenge += f', error="invalid_token", error_description="{check.message}"'
    response.headers["WWW-Authenticate"] = challenge
    return response, 401


#: Answers with patient data are private: never stored by a cache, never content-sniffed.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@api.after_request
def _private_headers(response: Any) -> Any:
    """``no-store`` and ``nosniff`` on every API answer, errors included."""
    for name, value in API_HEADERS.items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Register the API blueprint and its OpenAPI document; every route declares its audit action."""
    from backend.api import (  # noqa: F401  (routes register on import)
        alerts,
        expected_levels,
        family,
        oncall,
        patients,
        plans,
        regimens,
        response_times,
        retention,
        rights,
    )
    from backend.api.auditing import check_audit_declarations

    app.register_blueprint(api)
    app.add_url_rule(f"{API_PREFIX}/openapi.json", "openapi_document", openapi_document)
    check_audit_declarations(app, API_PREFIX)


def openapi_document() -> Any:
    """The OpenAPI 3 document of the API (public: it describes, it reveals no data)."""
    return jsonify(_with_body_errors(spec.spec))


#: Answers :func:`_authenticate` gives before validation to a request with a body.
BODY_ERRORS = {
    "400": "Bad Request: the body is not valid JSON, or nests deeper than MAX_JSON_DEPTH",
    "413": "Payload Too Large: the body is larger than MAX_CONTENT_LENGTH",
    "415": "Unsupported Media Type: the body must be application/json",
}


def _with_body_errors(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the 400, 413 and 415 answers documented on every operation with a body."""
    document = copy.deepcopy(document)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            answers = operation.setdefault("responses", {})
            error = answers.get("401", {})  # ErrorOut: every route here authenticates
            for code, description in BODY_ERRORS.items():
                answers.setdefault(code, {**error, "description": description})
    return document
