"""``flask --app backend doctor`` on real configurations, good and bad, through the CLI runner.

Issue 16, item 1. Each finding is one line naming the variable and what to do; exit
status 1 when anything must be fixed; no secret's value is ever printed.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from backend import create_app
from backend.cli_doctor import estimated_bits
from backend.db import get_engine
from reminders.data.db import make_engine
from reminders.data.models import Patient, Team
from tests.backend.test_report_rule_ids_migration import migrate
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN

STRONG_SECRET = secrets.token_urlsafe(48)

#: A hospital's production configuration, as it should be.
GOOD: dict[str, Any] = {
    "DEPLOYMENT": "production",
    "SECRET_KEY": STRONG_SECRET,
    "PUBLIC_BASE_URL": "https://compagnon.chu-exemple.be",
    "SMS_BACKEND": "twilio",
    "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
    "TWILIO_FROM_NUMBER": "+3225550123",
}


def doctor(url: str, tmp_path: Path, **config: Any) -> Result:
    """Run ``doctor`` for an app on ``url`` with ``config`` over :data:`GOOD`."""
    app = create_app({"TESTING": True, "DATABASE_URL": url, **GOOD, **config})
    app.instance_path = str(tmp_path / "instance")
    try:
        return app.test_cli_runner().invoke(args=["doctor"])
    finally:
        get_engine(app).dispose()


def migrated_sqlite(tmp_path: Path, revision: str = "head") -> str:
    url = f"sqlite:///{tmp_path / 'doctor.sqlite3'}"
    migrate(url, {}, revision)
    return url


def migrated_with_a_team(empty_database: tuple[str, dict], zone: str) -> str:
    """The URL of ``empty_database`` (its schema on the search path, for PostgreSQL),
    migrated to the head, with one team whose time zone is ``zone``."""
    url, connect_args = empty_database
    if connect_args:
        url = make_url(url).update_query_dict(connect_args).render_as_string(hide_password=False)
    migrate(url, {}, "head")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO team (name, timezone, created_at) "
                "VALUES ('Hématologie — Saint-Luc', :zone, '2026-03-02 10:00:00')"
            ),
            {"zone": zone},
        )
    engine.dispose()
    return url


def test_a_good_production_configuration_has_nothing_to_fix(
    empty_database: tuple[str, dict], tmp_path: Path
) -> None:
    url = migrated_with_a_team(empty_database, "Europe/Brussels")

    result = doctor(url, tmp_path)

    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == ["doctor: nothing to fix (0 note(s))."]


def test_every_problem_of_a_bad_configuration_is_one_line_without_the_secrets(
    tmp_path: Path,
) -> None:
    sid = "AC" + "z" * 10
    token = "not-a-token-" + "9" * 7
    result = doctor(
        migrated_sqlite(tmp_path),
        tmp_path,
        SECRET_KEY="dev-only-secret-change-me",
        PUBLIC_BASE_URL="http://compagnon.chu-exemple.be",
        TWILIO_ACCOUNT_SID=sid,
        TWILIO_AUTH_TOKEN=token,
        TWILIO_FROM_NUMBER="0470 12 34 56",
        TWILIO_MESSAGING_SERVICE_SID="MG123",
    )

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    fixes = [line for line in lines if line.startswith("FIX")]
    assert len(fixes) == 6 and lines[-1] == "doctor: 6 to fix, 0 note(s).", result.output
    for needle in (
        "SECRET_KEY is a published placeholder",
        "PUBLIC_BASE_URL must be https outside development",
        "TWILIO_ACCOUNT_SID is not AC followed by 32 hexadecimal digits",
        "TWILIO_AUTH_TOKEN is not 32 hexadecimal digits",
        "TWILIO_MESSAGING_SERVICE_SID is not MG followed by 32 hex digits",
        "TWILIO_FROM_NUMBER is not a number in E.164",
    ):
        assert sum(needle in line for line in fixes) == 1, (needle, result.output)
    for secret in (sid, token, "dev-only-secret-change-me", "0470 12 34 56"):
        assert secret not in result.output


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("short-but-random-Zq8", "20 characters, about 76 bits"),
        ("a" * 64, "64 characters, about 0 bits"),
        ("ab" * 20, "40 characters, about 40 bits"),
    ],
)
def test_weak_secrets_are_refused_outside_development_and_noted_in_it(
    tmp_path: Path, secret: str, why: str
) -> None:
    url = migrated_sqlite(tmp_path)

    production = doctor(url, tmp_path, SECRET_KEY=secret)
    development = doctor(url, tmp_path, SECRET_KEY=secret, DEPLOYMENT="development")

    assert production.exit_code == 1, production.output
    assert f"FIX   SECRET_KEY is too weak ({why}" in production.output
    assert "secrets.token_urlsafe(48)" in production.output and secret not in production.output
    assert development.exit_code == 0, development.output
    assert "NOTE  SECRET_KEY is too weak" in development.output


def test_the_embedded_defaults_are_fine_in_development_only(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    defaults = {key: None for key in GOOD if key.startswith("TWILIO")}
    defaults.update(
        SECRET_KEY="dev-only-secret-change-me",
        PUBLIC_BASE_URL="http://127.0.0.1:5000",
        SMS_BACKEND="console",
    )

    development = doctor(url, tmp_path, **defaults, DEPLOYMENT="development")
    production = doctor(url, tmp_path, **defaults)

    assert development.exit_code == 0, development.output
    assert development.output.strip().splitlines() == [
        "NOTE  SECRET_KEY is the development default (fine here only)",
        "NOTE  PUBLIC_BASE_URL is http (fine in development only)",
        "doctor: nothing to fix (2 note(s)).",
    ]
    assert production.exit_code == 1
    assert "FIX   SMS_BACKEND is console outside development" in production.output


def test_twilio_without_credentials_names_what_is_missing(tmp_path: Path) -> None:
    result = doctor(migrated_sqlite(tmp_path), tmp_path, TWILIO_AUTH_TOKEN=None)

    assert result.exit_code == 1
    assert "FIX   SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN" in result.output


def test_a_team_time_zone_without_data_on_this_machine(
    empty_database: tuple[str, dict], tmp_path: Path
) -> None:
    url = migrated_with_a_team(empty_database, "Europe/Atlantis")

    result = doctor(url, tmp_path)

    assert result.exit_code == 1, result.output
    assert "FIX   time zone 'Europe/Atlantis' (a team's) has no data here" in result.output


def test_a_team_whose_patients_have_sms_and_no_care_phone_must_be_fixed(
    empty_database: tuple[str, dict], tmp_path: Path
) -> None:
    """A team from before the rule (or changed outside the app): its patients' SMS name the
    emergency number instead of the team's. Patients without consent, or discharged, and
    teams with a number are no finding; nothing about a patient is printed."""
    url = migrated_with_a_team(empty_database, "Europe/Brussels")
    engine = make_engine(url)
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with Session(engine) as session:
        without = session.exec(select(Team)).one()
        with_number = Team(name="AZ Sint-Jan Hematologie", care_phone="+3250452111", created_at=at)
        session.add(with_number)
        session.flush()
        patients = [
            (without.id, "+32470123456", True, None),
            (without.id, "+32470123457", False, None),
            (without.id, "+32470123458", True, at),  # discharged
            (with_number.id, "+32470123459", True, None),
        ]
        for team_id, phone, consent, discharged in patients:
            session.add(
                Patient(
                    team_id=team_id,
                    display_name="Marie-Thérèse Vandenbroucke-Delacroix",
                    phone=phone,
                    sms_consent=consent,
                    discharged_at=discharged,
                    created_at=at,
                    updated_at=at,
                )
            )
        session.commit()
        team_id = without.id

    result = doctor(url, tmp_path)

    assert result.exit_code == 1, result.output
    fixes = [line for line in result.output.splitlines() if line.startswith("FIX")]
    assert fixes == [
        f"FIX   team {team_id} ('Hématologie — Saint-Luc') has no care phone and 1 patient(s) "
        "with SMS consent: their SMS name the emergency number instead of the team's; an "
        "admin of the team sets it on the Team page ('Number patients call')"
    ], result.output
    assert "+32470" not in result.output and "Vandenbroucke" not in result.output

    with engine.begin() as connection:
        connection.execute(
            text("UPDATE team SET care_phone = '+3227641111' WHERE id = :id"), {"id": team_id}
        )
    engine.dispose()
    fixed = doctor(url, tmp_path)
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output.strip().splitlines() == ["doctor: nothing to fix (0 note(s))."]


def test_a_database_behind_or_unreachable(tmp_path: Path) -> None:
    behind = doctor(migrated_sqlite(tmp_path, "0011_patient_region"), tmp_path)
    unreachable = doctor("postgresql+psycopg://companion@127.0.0.1:9/companion", tmp_path)

    assert behind.exit_code == 1
    assert "FIX   migrations: database at 0011_patient_region, code at" in behind.output
    assert unreachable.exit_code == 1
    assert "FIX   DATABASE_URL: the database is unreachable (" in unreachable.output
    assert "Traceback" not in unreachable.output


def test_the_entropy_estimate_scores_random_keys_high_and_patterns_low() -> None:
    assert estimated_bits(secrets.token_urlsafe(32)) > 150
    assert estimated_bits(secrets.token_hex(32)) > 200
    assert estimated_bits("x" * 100) == 0
    assert estimated_bits("Password1Password1Password1Password1") < 128
