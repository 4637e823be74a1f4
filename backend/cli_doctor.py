"""``flask --app backend doctor``: check the configuration and say what to fix.

One line per finding, ``FIX`` (the service must not run like this: exit status 1) or
``NOTE`` (worth knowing, nothing to fix now), then a summary line. It checks:

* ``SECRET_KEY``: not a known placeholder, at least :data:`MIN_SECRET_CHARACTERS`
  characters and about :data:`MIN_SECRET_BITS` bits of entropy (the development default
  is accepted only with ``DEPLOYMENT=development``);
* ``PUBLIC_BASE_URL``: https outside development (Twilio signs the URL it calls; the
  session cookie is https-only);
* the SMS gateway: what ``SMS_BACKEND`` needs (the gateway's own rules, as ``/readyz``),
  and with Twilio the form of each credential (an Account SID is ``AC`` and 32 hex
  digits, an auth token 32 hex digits, numbers in E.164);
* time zone data for UTC, the default zone and every team's and patient's zone;
* the database: reachable, and migrated to the scripts' head;
* every team with patients who have SMS consent has a care phone (their SMS tell them
  to call it: ``backend.services.care_phone``).

No value of a secret is ever printed: a finding names the variable and what is wrong.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from backend.config import in_development
from backend.health import ReadinessProbe, database_state, gateway_check, migration_problem
from backend.services.care_phone import teams_without_care_phone
from reminders.data.models import Team

#: The development default (``backend.config.default_config``) and the placeholder of
#: ``.env.example``: whoever runs with either signs cookies with a public key.
KNOWN_PLACEHOLDERS = frozenset({"dev-only-secret-change-me", "change-me-to-a-long-random-string"})
#: ``secrets.token_urlsafe(32)`` is 43 characters of about 6 bits each; 32 characters and
#: 128 estimated bits keep out words, dates and short keys (Flask signs with HMAC-SHA1,
#: whose key should be at least as long as its 160-bit output; 128 is a floor).
MIN_SECRET_CHARACTERS = 32
MIN_SECRET_BITS = 128
SECRET_ADVICE = (
    "set it to the output of: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
)

CONSOLE = " (as Twilio's console shows it)"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report: ``must_fix`` ones make it exit with status 1."""

    must_fix: bool
    message: str

    def line(self) -> str:
        """The finding as printed."""
        return f"{'FIX ' if self.must_fix else 'NOTE'}  {self.message}"


def estimated_bits(secret: str) -> float:
    """The secret's length times the Shannon entropy of its characters, in bits.

    A rough estimate (it cannot see a word or a pattern), but a repeated character, a
    short key or a small alphabet score low, and a random key scores about its size.
    """
    counts = Counter(secret)
    per_character = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return abs(per_character * len(secret))  # 0.0, not -0.0, for a repeated character


def secret_findings(config: Mapping[str, Any]) -> list[Finding]:
    """``SECRET_KEY``: a placeholder or a weak key must be replaced outside development."""
    secret = str(config.get("SECRET_KEY") or "")
    strict = not in_development(config)
    if secret in KNOWN_PLACEHOLDERS:
        if not strict:
            return [Finding(False, "SECRET_KEY is the development default (fine here only)")]
        return [Finding(True, f"SECRET_KEY is a published placeholder: {SECRET_ADVICE}")]
    bits = estimated_bits(secret) if secret else 0.0
    if len(secret) < MIN_SECRET_CHARACTERS or bits < MIN_SECRET_BITS:
        return [
            Finding(
                strict,
                f"SECRET_KEY is too weak ({len(secret)} characters, about {bits:.0f} bits; "
                f"needs {MIN_SECRET_CHARACTERS} and {MIN_SECRET_BITS}): {SECRET_ADVICE}",
            )
        ]
    return []


def public_url_findings(config: Mapping[str, Any]) -> list[Finding]:
    """``PUBLIC_BASE_URL``: an absolute https URL outside development."""
    url = str(config.get("PUBLIC_BASE_URL") or "")
    parts = urlsplit(url)
    if not parts.netloc or parts.scheme not in ("http", "https"):
        return [
            Finding(True, "PUBLIC_BASE_URL must be the absolute URL the service is published at")
        ]
    if parts.scheme != "https":
        if in_development(config):
            return [Finding(False, "PUBLIC_BASE_URL is http (fine in development only)")]
        return [
            Finding(
                True,
                "PUBLIC_BASE_URL must be https outside development (Twilio signs the URL it "
                "calls, and the session cookie is sent over https only)",
            )
        ]
    return []


def gateway_findings(config: Mapping[str, Any]) -> list[Finding]:
    """What ``SMS_BACKEND`` needs, then the form of each Twilio credential set."""
    check = gateway_check(dict(config))
    findings = [] if check.ok else [Finding(True, check.detail)]
    if str(config.get("SMS_BACKEND") or "console").lower() != "twilio":
        return findings
    forms = (
        ("TWILIO_ACCOUNT_SID", _ACCOUNT_SID, f"AC followed by 32 hexadecimal digits{CONSOLE}"),
        ("TWILIO_AUTH_TOKEN", _AUTH_TOKEN, f"32 hexadecimal digits{CONSOLE}"),
        ("TWILIO_MESSAGING_SERVICE_SID", _SERVICE_SID, f"MG followed by 32 hex digits{CONSOLE}"),
        ("TWILIO_FROM_NUMBER", _E164, "a number in E.164, e.g. +3225550123"),
        ("TWILIO_VOICE_FROM_NUMBER", _E164, "a number in E.164, e.g. +3225550123"),
    )
    for key, form, expected in forms:
        value = config.get(key)
        if value and not form.fullmatch(str(value).strip()):
            findings.append(
                Finding(True, f"{key} is not {expected} (as Twilio's console shows it)")
            )
    return findings


def zone_findings(zones: Iterable[tuple[str, str]]) -> list[Finding]:
    """A finding per (where, zone) whose time zone data is missing on this machine."""
    findings = []
    for where, zone in zones:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            findings.append(
                Finding(
                    True,
                    f"time zone {zone!r} ({where}) has no data here: install the tzdata "
                    "package (pip) or the system's tzdata",
                )
            )
    return findings


def stored_zones(engine: Engine) -> list[tuple[str, str]]:
    """The distinct time zones of the teams and of the patients, as (where, zone)."""
    with engine.connect() as connection:
        teams = connection.execute(text("SELECT DISTINCT timezone FROM team")).scalars().all()
        patients = connection.execute(text("SELECT DISTINCT timezone FROM patient")).scalars()
        return [("a team's", zone) for zone in teams] + [
            ("a patient's", zone) for zone in patients.all()
        ]


def care_phone_findings(engine: Engine) -> list[Finding]:
    """A finding per team whose patients with SMS consent have no care phone to call.

    The enrolment and the team page refuse this state; a team in it comes from before
    that rule, or from a change made outside the app. Its patients' SMS name the
    emergency number where the team's should be.
    """
    with Session(engine) as session:
        teams = teams_without_care_phone(session)
    return [
        Finding(
            True,
            f"team {team_id} ({name!r}) has no care phone and {count} patient(s) with SMS "
            "consent: their SMS name the emergency number instead of the team's; an admin "
            "of the team sets it on the Team page ('Number patients call')",
        )
        for team_id, name, count in teams
    ]


def database_findings(probe: ReadinessProbe) -> tuple[list[Finding], bool]:
    """The database reachable and at the scripts' head; also whether it answered."""
    state = database_state(probe)
    if state.revisions is None:
        return [
            Finding(True, f"DATABASE_URL: the database is {state.problem} ({state.reason})")
        ], False
    problem = migration_problem(state.revisions, probe.script_heads())
    return ([Finding(True, f"migrations: {problem}")] if problem else []), True


def diagnose(app: Flask) -> list[Finding]:
    """Every finding about ``app``'s configuration, its machine and its database."""
    config = app.config
    findings = [*secret_findings(config), *public_url_findings(config), *gateway_findings(config)]
    default_zone = str(Team.model_fields["timezone"].default)
    zones = [("UTC", "UTC"), ("the default", default_zone)]
    probe: ReadinessProbe = app.extensions["readiness"]
    database, answered = database_findings(probe)
    findings += database
    if answered:
        try:
            zones += stored_zones(probe.engine)
        except Exception as exc:  # a database of an older revision, say
            findings.append(Finding(False, f"teams' time zones not checked ({type(exc).__name__})"))
        try:
            findings += care_phone_findings(probe.engine)
        except Exception as exc:  # a database of an older revision, say
            findings.append(
                Finding(False, f"teams' care phones not checked ({type(exc).__name__})")
            )
    findings += zone_findings(zones)
    return findings


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Check the configuration, the time zone data, the database and the teams' care phones."""
    findings = diagnose(current_app)
    for finding in findings:
        click.echo(finding.line())
    to_fix = sum(finding.must_fix for finding in findings)
    notes = len(findings) - to_fix
    if to_fix:
        click.echo(f"doctor: {to_fix} to fix, {notes} note(s).")
        raise SystemExit(1)
    click.echo(f"doctor: nothing to fix ({notes} note(s)).")


def init_app(app: Flask) -> None:
    """Register ``doctor`` on the app's CLI."""
    app.cli.add_command(doctor_command)
