"""The audit trail of the JSON API: every route that touches patient data declares its action.

A route is decorated with :func:`audited` (below ``@spec.validate``, so a request that
fails validation never reaches it) and names what it touched with :func:`audit`; it does
not commit. The decorator then:

* for a change (POST, PATCH): adds the audit row and commits the change and the row in
  ONE transaction. A change that fails leaves no row; a row that cannot be written
  leaves no change.
* for a read (GET): ends the read transaction, then writes and commits one row before
  the answer leaves. An audit that fails is an error answer, never data without a row.
  (On SQLite, turning a read snapshot into a write can fail when another process wrote
  meanwhile; a fresh transaction waits for the lock instead.)
* refuses (500, :class:`AuditNotRecorded`) a route that did not call :func:`audit` or
  that committed by itself: a programming error the route tests catch at once.
* after a 404: :func:`backend.services.audit.record_refused_access` keeps an attempt on
  another team's patient in that team's trail. Other failures (401, 409, 422...) leave
  no row: nothing was read or changed.

:func:`check_audit_declarations` runs when the API is registered: an ``/api/v1`` route
with no declared action that is not in :data:`AUDIT_EXEMPT` stops the app from starting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast, get_type_hints

from flask import Flask, g, request

from backend.api import current_user, request_now
from backend.db import get_session
from backend.services.audit import record_audit, record_refused_access, set_channel
from reminders.data.errors import NotFound
from reminders.data.statuses import AuditAction, AuditChannel

F = TypeVar("F", bound=Callable[..., Any])

#: ``/api/v1`` endpoints that hold no patient data, so declare no action: the OpenAPI
#: document and the regimen library. Keep this list short.
AUDIT_EXEMPT = frozenset({"openapi_document", "api.list_regimens", "api.get_regimen"})

#: Methods that only read.
READ_METHODS = frozenset({"GET", "HEAD"})


class AuditNotRecorded(RuntimeError):
    """An audited route did not say what it touched, or committed before its audit row."""


@dataclass
class _Pending:
    """What the running route touched (one row per request)."""

    action: AuditAction
    patient_id: int | None = None
    target: str | None = None
    named: bool = False


def audit(patient_id: int | None, target: str) -> None:
    """Name what this request read or changed: the patient (None for a list) and a target.

    The target is an object id such as ``patient:12`` or ``plan:7``, or ``patients:list``
    for a list: never a name, a phone number or a value. The row itself is written by
    :func:`audited` once the route has succeeded.
    """
    pending: _Pending | None = g.get("audit_pending")
    if pending is None:
        raise AuditNotRecorded("audit() called outside an @audited route")
    if pending.named:
        raise AuditNotRecorded("audit() called twice: one row per request")
    pending.patient_id, pending.target, pending.named = patient_id, target, True


def audited(action: AuditAction) -> Callable[[F], F]:
    """Declare the route's audit ``action`` and write its row (see the module docstring)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def run(*args: Any, **kwargs: Any) -> Any:
            session = get_session()
            set_channel(session, AuditChannel.API)  # services' own rows say "api" too
            transaction = session.get_transaction() or session.begin()
            g.audit_pending = pending = _Pending(action)
            try:
                result = view(*args, **kwargs)
            except NotFound:
                session.rollback()
                if record_refused_access(
                    session, current_user(), kwargs, request_now(), AuditChannel.API
                ):
                    session.commit()
                raise
            endpoint = request.endpoint
            if session.get_transaction() is not transaction:
                raise AuditNotRecorded(f"{endpoint} committed itself: its audit row must share it")
            if not pending.named:
                raise AuditNotRecorded(f"{endpoint} did not call audit()")
            if request.method in READ_METHODS:
                session.commit()  # end the read; the row gets a fresh transaction
            record_audit(
                session,
                current_user(),
                action,
                pending.patient_id,
                request_now(),
                target=pending.target,
                channel=AuditChannel.API,
            )
            session.commit()
            return result

        # spectree reads the request models from the annotations of the function it wraps
        # (this one), resolving names in that function's module: hand it the classes.
        run.__annotations__ = get_type_hints(view, include_extras=True)
        run.audit_action = action  # type: ignore[attr-defined]
        return cast(F, run)

    return decorate


def declared_action(view: Callable[..., Any] | None) -> AuditAction | None:
    """The action a view declared with :func:`audited`, looking through other decorators."""
    seen = 0
    while view is not None and seen < 20:
        action = getattr(view, "audit_action", None)
        if isinstance(action, AuditAction):
            return action
        view = getattr(view, "__wrapped__", None)
        seen += 1
    return None


def undeclared_api_routes(app: Flask, prefix: str) -> list[str]:
    """The ``prefix`` routes (``"GET /api/v1/..."``) with no declared action and no exemption."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule == prefix or rule.rule.startswith(prefix + "/")):
            continue
        if rule.endpoint in AUDIT_EXEMPT:
            continue
        if declared_action(app.view_functions.get(rule.endpoint)) is None:
            methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
            missing.append(f"{methods} {rule.rule}")
    return missing


def check_audit_declarations(app: Flask, prefix: str) -> None:
    """Refuse to start when an API route declares no audit action (a new route cannot forget)."""
    missing = undeclared_api_routes(app, prefix)
    if missing:
        raise RuntimeError(
            "API routes without an audit action (decorate them with @audited(AuditAction...)"
            " or, if they hold no patient data, add them to AUDIT_EXEMPT): " + "; ".join(missing)
        )
