"""Shared fixtures: the app on SQLite and on PostgreSQL, a client, a session and small factories.

Every test that asks for ``app``, ``client`` or ``session`` runs twice: on a
fresh SQLite file and on the local PostgreSQL server (database ``test``). On a
machine without that server the PostgreSQL runs skip; in CI (``CI`` set) they fail
instead, so they can never be skipped silently there.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

import reminders.data.models  # noqa: F401  (registers the tables)
from backend import create_app
from backend.db import get_engine
from backend.schemas import PatientIn, PlanIn, ProphylaxisConfirmIn, ProphylaxisIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.prophylaxis import add_course, confirm_course
from backend.services.teams import create_user
from backend.services.tokens import create_token
from reminders.data.models import AuditEvent, Patient, Plan, ProphylaxisCourse, Team, User

pytest_plugins = ("tests.browser",)

# Hypothesis: CI runs derandomized (a failure there reproduces on any machine; CI keeps
# no example database), developers explore new examples on every run. Deadlines are off
# on a shared 2-core machine. ``HYPOTHESIS_PROFILE`` picks one explicitly.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIXED_NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, before Europe's DST change


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default="sqlite,postgresql",
        help="comma-separated database engines the database tests run on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_engine_name" in metafunc.fixturenames:
        engines = [e.strip() for e in metafunc.config.getoption("--db").split(",") if e.strip()]
        if metafunc.definition.get_closest_marker("postgresql_only"):
            engines = [e for e in engines if e == "postgresql"]
        metafunc.parametrize("db_engine_name", engines, scope="session")


_postgres_ready: dict[str, Any] = {}
_sqlite_template_path: dict[str, Path] = {}
#: Each test session works in a schema of its own, so that two sessions (two developers,
#: or a benchmark beside the tests) never drop each other's tables.
SESSION_SCHEMA = f"test_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def session_postgres_url() -> str:
    """The PostgreSQL URL of this test session: its own schema first on the search path."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{SESSION_SCHEMA}"


def _postgres_engine() -> Engine:
    """One engine for the test server, schema and tables created once per session."""
    if "engine" not in _postgres_ready:
        admin = create_engine(POSTGRES_URL, pool_pre_ping=True)
        try:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SESSION_SCHEMA}"'))
        except Exception as exc:  # the server is simply not there
            if os.environ.get("CI"):
                pytest.fail(
                    f"PostgreSQL is required in CI but unreachable at {POSTGRES_URL}: {exc}"
                )
            pytest.skip(f"no PostgreSQL server at {POSTGRES_URL}")
        engine = create_engine(session_postgres_url(), pool_pre_ping=True)
        SQLModel.metadata.create_all(engine)
        _postgres_ready["engine"] = engine
        _postgres_ready["admin"] = admin
    return _postgres_ready["engine"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this session's PostgreSQL schema."""
    if "engine" in _postgres_ready:
        _postgres_ready["engine"].dispose()
        with _postgres_ready["admin"].begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{SESSION_SCHEMA}" CASCADE'))
        _postgres_ready["admin"].dispose()


def truncate_all(engine: Engine) -> None:
    """Empty every table (PostgreSQL) with one TRUNCATE, resetting identities."""
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def empty_all_tables(engine: Engine) -> None:
    """Empty every table (PostgreSQL) and restart every identity, as :func:`truncate_all`.

    DELETE, children first, then each sequence restarted: on a test's few rows this takes
    a tenth of a TRUNCATE of every table, which rewrites each table's files (12 against
    85-140 ms, before each of some 2,000 PostgreSQL tests). The audit table refuses
    DELETE (its append-only trigger, ``AUDIT_TRIGGERS``) and is truncated on its own.
    """
    if "reset" not in _postgres_ready:
        with engine.connect() as conn:
            sequences = conn.execute(
                text(
                    "SELECT sequence_name FROM information_schema.sequences "
                    "WHERE sequence_schema = current_schema()"
                )
            ).scalars()
            restarts = [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences]
        tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
        deletes = [f'DELETE FROM "{name}"' for name in tables if name != AuditEvent.__tablename__]
        truncate = f'TRUNCATE "{AuditEvent.__tablename__}" RESTART IDENTITY'
        _postgres_ready["reset"] = "; ".join([truncate, *deletes, *restarts])
    with engine.begin() as conn:
        conn.exec_driver_sql(_postgres_ready["reset"])


def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every table and trigger, made once per test process.

    Each test gets a copy: creating the schema costs 120 ms, copying the file 0.4 ms.
    """
    if "sqlite" not in _sqlite_template_path:
        path = tmp_path_factory.mktemp("schema") / "template.sqlite3"
        engine = create_engine(f"sqlite:///{path}")
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        _sqlite_template_path["sqlite"] = path
    return _sqlite_template_path["sqlite"]


@pytest.fixture
def database_url(
    db_engine_name: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL to an empty database with the schema, on the engine of this run."""
    if db_engine_name == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(_sqlite_template(tmp_path_factory), path)
        yield f"sqlite:///{path}"
    elif db_engine_name == "postgresql":
        engine = _postgres_engine()
        empty_all_tables(engine)
        yield session_postgres_url()
    else:
        raise pytest.UsageError(f"unknown --db engine {db_engine_name!r}")


@contextmanager
def empty_postgres_schema(prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of this session's own with no tables, dropped on exit.

    For migration tests, which start from nothing; skips without a server (fails in CI).
    """
    _postgres_engine()
    schema = f"{prefix}_{SESSION_SCHEMA}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def empty_database(db_engine_name: str, tmp_path: Any) -> Iterator[tuple[str, dict]]:
    """An empty database (URL and connect arguments) of this run's engine, no tables."""
    if db_engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite3'}", {}
        return
    with empty_postgres_schema("empty") as schema:
        yield POSTGRES_URL, {"options": f"-csearch_path={schema}"}


class Clock:
    """An injectable clock: tests set or advance ``now`` instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The app's clock, fixed at :data:`FIXED_NOW` until a test moves it."""
    return Clock(FIXED_NOW)


@pytest.fixture
def app(database_url: str, tmp_path: Any, clock: Clock) -> Iterator[Flask]:
    """The app on a fresh database."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "SESSION_COOKIE_SECURE": False,
            "PUBLIC_BASE_URL": "https://companion.test",
            "DEFAULT_REGION": "BE",
            "CLOCK": clock,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    yield app
    get_engine(app).dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    """A session on the app's database (commit to make rows visible to requests)."""
    with Session(get_engine(app), expire_on_commit=False) as session:
        yield session


# --- factories --------------------------------------------------------------------------


def _domain(team: str) -> str:
    """A DNS-safe label from a team name ("Hématologie — Saint-Luc" -> "hematologiesaintluc")."""
    ascii_name = unicodedata.normalize("NFKD", team).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", ascii_name.lower())[:60] or "team"


@pytest.fixture
def make_user(session: Session, clock: Clock) -> Callable[..., tuple[User, str]]:
    """Create a user (and team); returns the user and an API token named "tests".

    The token works the longest lifetime (365 days), so that tests that move the clock
    by months keep their credentials; tests about expiry create their own tokens.
    """
    counter = iter(range(1, 10_000))

    def factory(team: str = "Team A", role: str = "nurse", **overrides: Any) -> tuple[User, str]:
        n = next(counter)
        values = {
            # The team's name may have accents and dashes: the address needs a plain domain.
            "email": f"user{n}@{_domain(team)}.example",
            "team_name": team,
            "role": role,
            "now": clock.now,
            "care_phone": "+32 2 555 01 23",
        }
        values.update(overrides)
        user = create_user(session, **values)
        token = issue_test_token(session, user, clock.now)
        session.commit()
        return user, token

    return factory


@pytest.fixture
def make_patient(session: Session, clock: Clock) -> Callable[..., Patient]:
    """Create a patient in a team (``team`` is a Team or its id).

    Without a ``phone``, the first patient of a test gets +32 470 12 34 56 and each next
    one another number: a number belongs to one active patient (issue 12, item 1).
    """
    numbers = iter(range(100))

    def factory(team: Team | int, **overrides: Any) -> Patient:
        values: dict[str, Any] = {
            "display_name": "Anna Peeters",
            "phone": f"+32 470 {123456 + next(numbers):06d}",
            "timezone": "Europe/Brussels",
            "language": "en",
            "sms_consent": True,
            "height_cm": 170,
            "weight_kg": 70,
        }
        values.update(overrides)
        team_id = team if isinstance(team, int) else team.id
        patient = create_patient(session, team_id, PatientIn(**values), clock.now, region="BE")
        session.commit()
        return patient

    return factory


@pytest.fixture
def make_plan(session: Session, clock: Clock) -> Callable[..., Plan]:
    """Start a regimen for a patient."""

    def factory(
        patient: Patient,
        regimen_id: str = "alemtuzumab_sc",
        start_date: date | None = None,
        **options: Any,
    ) -> Plan:
        start = start_date or clock.now.date()
        plan = start_plan(
            session,
            patient,
            PlanIn(regimen_id=regimen_id, start_date=start, options=options),
            None,
            clock.now,
        )
        session.commit()
        return plan

    return factory


#: The Monday the shared treated patients start their regimen.
PLAN_START = date(2026, 3, 2)


@pytest.fixture
def treated(
    session: Session,
    make_patient: Callable[..., Patient],
    make_plan: Callable[..., Plan],
    clock: Clock,
) -> Callable[..., tuple[Patient, Plan]]:
    """A consenting patient of a team on a regimen, with two confirmed prophylaxis courses.

    The team gets an on-call number; a member of the team confirms the courses the plan
    proposed (alemtuzumab: both mandatory), and a regimen without prophylaxis gets the
    same two courses (cotrimoxazole, acyclovir) entered by hand.
    """

    def factory(
        team_id: int,
        regimen_id: str = "alemtuzumab_sc",
        start: date = PLAN_START,
        **overrides: Any,
    ) -> tuple[Patient, Plan]:
        team = session.get(Team, team_id)
        team.oncall_phone = "+32470999999"
        session.add(team)
        session.commit()
        patient = make_patient(team_id, **overrides)
        plan = make_plan(patient, regimen_id, start)
        nurse = session.exec(select(User).where(User.team_id == team_id)).first()
        proposed = session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
        for drug in ("cotrimoxazole", "acyclovir"):
            course = next((c for c in proposed if c.regimen_entry == drug), None)
            if course is not None:
                confirm_course(
                    session,
                    course,
                    patient,
                    ProphylaxisConfirmIn(
                        drug=drug, dose_text="as prescribed", times=["08:00", "20:00"]
                    ),
                    nurse.id,
                    clock.now,
                )
                continue
            add_course(
                session,
                patient,
                ProphylaxisIn(
                    drug=drug,
                    dose_text="as prescribed",
                    times=["08:00", "20:00"],
                    start_date=start,
                    plan_id=plan.id,
                ),
                clock.now,
            )
        session.commit()
        return patient, plan

    return factory


@pytest.fixture
def treated_patient(
    make_user: Callable[..., tuple[User, str]], treated: Callable[..., tuple[Patient, Plan]]
) -> Callable[..., Patient]:
    """A patient of a new team on alemtuzumab s.c. from 2026-03-02 (see :func:`treated`)."""

    def factory(
        regimen_id: str = "alemtuzumab_sc", start: date = PLAN_START, **overrides: Any
    ) -> Patient:
        user, _ = make_user()
        return treated(user.team_id, regimen_id, start, **overrides)[0]

    return factory


def issue_test_token(session: Session, user: User, now: datetime, name: str = "tests") -> str:
    """A named API token for ``user``, working 365 days from ``now`` (the caller commits).

    An app without a ``CLOCK`` checks tokens against the real time: pass the real now then.
    """
    return create_token(session, user, name=name, now=now, days=365, actor=None).secret


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def reread(session: Session) -> Session:
    """End the session's read transaction and forget loaded rows, to see other sessions' commits.

    On SQLite (WAL) an open read transaction keeps reading its old snapshot.
    """
    session.commit()
    session.expire_all()
    return session
