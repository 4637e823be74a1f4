"""The care-team dashboard: server-rendered pages for nurses and haematologists.

Pages (all but ``/login`` need a signed-in care-team user, scoped to their team):

* ``/login``, ``POST /logout``: sign-in and sign-out.
* ``/account``: the user's open sessions and ``POST /account/sign-out-everywhere``.
* ``/queue``: open alerts, most urgent and oldest first; ``/alerts/<id>`` with
  acknowledge and resolve (with a note).
* ``/patients``, ``/patients/new``, ``/patients/<id>`` (timeline, prophylaxis,
  labs and CMV trend, temperature chart, SMS thread, adherence, alerts),
  ``/patients/<id>/edit``, ``/patients/<id>/labs/new``, ``/patients/<id>/sms/new``,
  ``/patients/<id>/export.csv``, ``/patients/<id>/phone`` (phone simulator, only
  with ``SMS_BACKEND=console``).
* ``/patients/<id>/plans/new``, ``/plans/<id>`` and its hold, resume, extend,
  stop and dose forms.
* ``POST /prophylaxis/<id>/confirm`` and ``/decline``: the forms of a proposed
  course on the patient page.
* ``/response-times`` (time to acknowledge and resolve alerts per severity, week and
  clinician on call, with a chart and tables), ``/response-times.csv`` and, for admins,
  ``POST /response-times/targets``.
* ``POST /patients/<id>/expected-level`` and ``/expected-level/end``: the care team's
  expected low-grade temperature (a level and an expiry) on the patient page.
* ``/patients/<id>/calendar`` (the family's calendar links: make one, shown once;
  revoke) and ``/patients/<id>/calendar/print`` (one A4 page in the patient's language).
* ``/patients/<id>/family``: family contacts, the patient's consent to share, their copies.
* ``/account/tokens``: the user's own API tokens (create one, shown once; revoke).
* ``/admin`` (members, roles, open sessions, phone numbers; ``POST
  /admin/users/<id>/sessions/end`` signs a member out everywhere), ``/admin/tokens``
  (the team's API tokens, revoke), ``/admin/oncall`` (the on-call rota of the next two
  weeks: add and remove shifts, the rota's time zone), ``/admin/escalation`` (the team's
  escalation policy, or the defaults) and ``/audit``: admins only.
* ``/account`` also sets the user's own phone number and language (``POST
  /account/profile``); the queue says who is on call now.

Security (details in :mod:`backend.security`): scrypt password hashes; sessions kept
on the server (a row per sign-in, checked on every request; the signed cookie,
Secure, HttpOnly, SameSite=Lax from the config, carries only a random id and the
CSRF token and is cleared at sign-in); 30 minutes idle and 12 hours absolute session
timeouts; sign-out, "sign out everywhere" and deactivation end sessions at once;
failed sign-ins throttled per account and client with growing delays, never a lockout
(:mod:`backend.services.signin`); a CSRF token on every form; CSP, no-store and
frame-denial headers on every page; an audit row for every patient view and change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from backend.security import ABSOLUTE_TIMEOUT

if TYPE_CHECKING:
    from flask import Flask

#: Flask's own default session lifetime: replaced by ours unless the config set another.
_FLASK_DEFAULT_LIFETIME = timedelta(days=31)


def init_app(app: Flask) -> None:
    """Register the dashboard blueprint, its template filters and session settings."""
    from backend.dashboard import (  # noqa: F401  (routes register on import)
        account_views,
        admin_views,
        auth_views,
        calendar_views,
        family_views,
        oncall_views,
        patient_views,
        plan_views,
        prophylaxis_views,
        queue_views,
        response_views,
        retention_views,
        rights_views,
        token_views,
    )
    from backend.dashboard.web import bp, register_filters

    if app.config.get("PERMANENT_SESSION_LIFETIME") in (None, _FLASK_DEFAULT_LIFETIME):
        app.config["PERMANENT_SESSION_LIFETIME"] = ABSOLUTE_TIMEOUT
    app.register_blueprint(bp)
    register_filters(app)
