"""Shared helpers of the benchmarks: databases, bulk seeding, a fake Twilio process, tables.

Seeding goes straight to the tables with bulk ``INSERT``s (SQLAlchemy Core,
``executemany``) instead of the API: 100,000 patients take seconds instead of
the quarter of an hour the API would need, and the benchmarks measure the
reminder engine, not enrolment. Identifiers are assigned here, so rows can
refer to each other without reading anything back.

The population is the same on every run: regimens, start dates, time zones,
languages and prophylaxis courses are drawn from a generator seeded with
:data:`POPULATION_SEED`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import reminders.data.models  # noqa: F401  (registers every table on SQLModel.metadata)
from reminders.data.db import make_engine
from reminders.data.models import (
    CheckIn,
    DoseRecord,
    OutboundMessage,
    Patient,
    Plan,
    PlanHold,
    ProphylaxisCourse,
    Team,
)
from reminders.outbox import outbox_row
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: The ``flask`` script of this Python's environment (the venv's).
FLASK = str(Path(PYTHON).with_name("flask"))

#: The instant the in-process benchmarks run "as of": a Monday, 10:00 in Brussels.
BENCH_NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: The seed of :func:`seed_population`'s draws: every run seeds the same population.
POPULATION_SEED = 1

#: PostgreSQL server of this machine; the benchmarks use their own database on it so
#: they never touch the test suite's tables in ``test``.
POSTGRES_SERVER = os.environ.get(
    "BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
POSTGRES_DATABASE = os.environ.get("BENCH_POSTGRES_DATABASE", "bench")

#: (regimen, weight): a mix shaped like a haematology day unit's caseload.
REGIMEN_MIX: tuple[tuple[str, int], ...] = (
    ("rituximab_fl_maintenance", 25),
    ("rituximab_cll_chemo", 20),
    ("alemtuzumab_sc", 10),
    ("alemtuzumab_iv", 5),
    ("inotuzumab_weekly", 10),
    ("inotuzumab_single", 5),
    ("ofatumumab_lenalidomide", 15),
    ("ofatumumab_retreatment", 10),
)
TIMEZONES: tuple[str, ...] = (
    "Europe/Brussels",
    "Europe/Brussels",
    "Europe/Brussels",
    "Europe/Amsterdam",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
)
#: Options a regimen needs that have no default (the care team's choice).
REGIMEN_OPTIONS: dict[str, dict[str, Any]] = {
    "inotuzumab_single": {"dose_mg_m2": 1.8, "cycles": 3},
}
LANGUAGES: tuple[str, ...] = ("en", "fr", "nl", "nl", "fr")
PATIENTS_PER_TEAM = 500
INSERT_BATCH = 5_000
#: Where Twilio reports deliveries in the benchmarks (never called: nothing listens there).
STATUS_CALLBACK = "https://companion.example/twilio/status"
#: Display names of real length, with the accents and particles patients' names have.
ACCENTED_NAMES: tuple[str, ...] = (
    "Marie-Françoise Van den Bossche-Lefèvre",
    "Jean-Baptiste Vandenbroucke-Dupont",
    "Anne-Sophie Verhaegen-Delvaux",
    "Zoë Öztürk-Janssens",
    "Hélène De Smedt-Nuñez",
    "François-Xavier Kowalczyk",
)


# --- output ---------------------------------------------------------------------------------


def format_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (Markdown pipe syntax, so it can be pasted into the docs)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [f"\n{title}", line(headers), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def machine_summary() -> str:
    """One line naming the machine: cores, memory, CPU, Python, SQLite, PostgreSQL."""
    cpu = "unknown CPU"
    with suppress(OSError):
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                cpu = raw.split(":", 1)[1].strip()
                break
    memory = "?"
    with suppress(OSError):
        for raw in Path("/proc/meminfo").read_text().splitlines():
            if raw.startswith("MemTotal"):
                memory = f"{int(raw.split()[1]) / 1024 / 1024:.1f} GiB"
    return (
        f"{os.cpu_count()} cores, {memory}, {cpu}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def headline(benchmark: str, *, postgres: bool = False) -> str:
    """A benchmark's first line: its name and the machine, with PostgreSQL's version if it uses it."""
    line = f"{benchmark} benchmark on {machine_summary()}"
    return f"{line}; PostgreSQL {postgres_version()}" if postgres else line


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far; None without ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): utime and stime are the
    # 12th and 13th of them (proc(5)).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``; none elsewhere)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def spread(values: Sequence[float]) -> str:
    """Median and range of repeated measurements, e.g. ``1,234 (1,200-1,300)``."""
    if len(values) == 1:
        return _cell(values[0])
    return f"{_cell(statistics.median(values))} ({_cell(min(values))}-{_cell(max(values))})"


@dataclass
class Stopwatch:
    """Wall-clock and CPU time of a block (``with Stopwatch() as sw: ...``)."""

    wall: float = 0.0
    cpu: float = 0.0
    _start: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def __enter__(self) -> Stopwatch:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._start[0]
        self.cpu = time.process_time() - self._start[1]


# --- databases ------------------------------------------------------------------------------


def sqlite_database(directory: Path, name: str = "bench.sqlite3") -> str:
    """URL of a fresh SQLite file with the schema (any previous file is removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    return url


def postgres_database(name: str = POSTGRES_DATABASE) -> str:
    """URL of the benchmark database ``name`` on the local server, created if needed, schema fresh."""
    admin = sqlalchemy.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{POSTGRES_SERVER}/{name}"
    engine = make_engine(url)
    SQLModel.metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    return url


def postgres_version() -> str:
    """``server_version`` of the local PostgreSQL, or why it is unknown."""
    try:
        engine = sqlalchemy.create_engine(f"{POSTGRES_SERVER}/postgres")
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
        return version
    except Exception as exc:  # a benchmark on a machine without the server still runs
        return f"unavailable ({type(exc).__name__})"


def _reset_sequences(engine: Engine, tables: Iterable[Any]) -> None:
    """After inserting explicit ids, move PostgreSQL's sequences past them."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in tables:
            name = table.__table__.name
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                    f'COALESCE((SELECT MAX(id) FROM "{name}"), 0) + 1, false)'
                )
            )


def bulk_insert(engine: Engine, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table in batches, one transaction per batch."""
    table = model.__table__
    for start in range(0, len(rows), INSERT_BATCH):
        with engine.begin() as conn:
            conn.execute(insert(table), rows[start : start + INSERT_BATCH])


# --- seeding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """What :func:`seed_population` stored."""

    patients: int
    teams: int
    plans: int
    courses: int
    holds: int
    records: int
    regimens: dict[str, int]
    seconds: float

    def describe(self) -> str:
        """A one-line summary for the benchmark output."""
        mix = ", ".join(f"{k} {v}" for k, v in sorted(self.regimens.items()))
        return (
            f"{self.patients:,} patients in {self.teams} teams, {self.plans:,} plans ({mix}), "
            f"{self.courses:,} prophylaxis courses, {self.holds:,} holds, "
            f"{self.records:,} dose records; seeded in {self.seconds:.1f} s"
        )


def phone_of(patient_id: int) -> str:
    """A distinct, valid-looking Belgian mobile number for each patient id (below 10 million)."""
    return f"+324{patient_id + 70_000_000:08d}"


def seed_population(
    engine: Engine,
    patients: int,
    now: datetime = BENCH_NOW,
    *,
    quiet_hours: bool = True,
    names: Sequence[str] = (),
) -> Population:
    """Store ``patients`` consenting patients on mixed regimens with prophylaxis courses.

    Start dates spread from 200 days before ``now`` to a week after it, so the
    population holds patients at every stage: starting, in weekly treatment, in
    maintenance, after the last dose. Every patient takes acyclovir twice a day;
    those on alemtuzumab, inotuzumab and chemo-immunotherapy also cotrimoxazole on
    Monday, Wednesday and Friday. One plan in 20 has a closed hold, and half of
    the plans already under way have their first dose recorded as given.
    ``quiet_hours=False`` gives every patient an empty quiet window, for benchmarks
    that run on the real clock and must not depend on the hour in Brussels. ``names``
    are given in turn as display names (default: "Patient <id>"). Patient ids run
    from 1 to ``patients`` (the benchmarks' lists of ids count on it), and a patient's
    plan has the patient's id.
    """
    started = time.perf_counter()
    rng = random.Random(POPULATION_SEED)
    team_count = max(1, -(-patients // PATIENTS_PER_TEAM))
    first_team = _next_id(engine, Team)
    teams = [
        {
            "id": first_team + n,
            "name": f"Bench team {first_team + n}",
            "care_phone": "+3225550123",
            "oncall_phone": "+32470999999",
            "created_at": now - timedelta(days=400),
        }
        for n in range(team_count)
    ]
    regimen_ids = [r for r, _ in REGIMEN_MIX]
    weights = [w for _, w in REGIMEN_MIX]
    patient_rows: list[dict[str, Any]] = []
    plan_rows: list[dict[str, Any]] = []
    course_rows: list[dict[str, Any]] = []
    hold_rows: list[dict[str, Any]] = []
    record_rows: list[dict[str, Any]] = []
    regimens: dict[str, int] = {}
    course_id = _next_id(engine, ProphylaxisCourse)
    created = now - timedelta(days=220)
    quiet = (clock_time(22, 0), clock_time(7, 0)) if quiet_hours else (clock_time(0), clock_time(0))
    for n in range(patients):
        pid = n + 1
        regimen = rng.choices(regimen_ids, weights)[0]
        regimens[regimen] = regimens.get(regimen, 0) + 1
        start = now.date() + timedelta(days=rng.randint(-200, 7))
        patient_rows.append(
            {
                "id": pid,
                "team_id": first_team + n // PATIENTS_PER_TEAM,
                "display_name": names[n % len(names)] if names else f"Patient {pid}",
                # A page names the patient by initials and this reference only.
                "hospital_ref": f"BENCH-{pid}",
                "phone": phone_of(pid),
                "timezone": rng.choice(TIMEZONES),
                "language": rng.choice(LANGUAGES),
                "sms_consent": True,
                "opted_out": False,
                "discreet": rng.random() < 0.1,
                "quiet_start": quiet[0],
                "quiet_end": quiet[1],
                "dose_time": rng.choice((clock_time(9, 0), clock_time(8, 30), clock_time(10, 0))),
                "checkin_time": clock_time(18, 0),
                "pill_times": ["08:00", "20:00"],
                "height_cm": 170.0,
                "weight_kg": 70.0,
                "created_at": created,
                "updated_at": created,
            }
        )
        plan_rows.append(
            {
                "id": pid,  # one plan per patient: the plan id is the patient id
                "patient_id": pid,
                "regimen_id": regimen,
                "options": REGIMEN_OPTIONS.get(regimen, {}),
                "start_date": start,
                "status": "active",
                "extension_weeks": 0,
                "created_at": created,
                "updated_at": created,
            }
        )
        if start < now.date() and rng.random() < 0.5:
            record_rows.append(
                {
                    "plan_id": pid,
                    "dose_index": 1,
                    "status": "given",
                    "on_date": start,
                    "recorded_at": datetime.combine(start, clock_time(12), UTC),
                }
            )
        if start < now.date() - timedelta(days=30) and rng.random() < 0.05:
            hold_start = start + timedelta(days=14)
            hold_rows.append(
                {
                    "plan_id": pid,
                    "start_date": hold_start,
                    "resume_date": hold_start + timedelta(days=7),
                    "reason": "neutropenia",
                    "created_at": datetime.combine(hold_start, clock_time(12), UTC),
                }
            )
        courses = [("acyclovir", "400 mg", None)]
        if not regimen.startswith("rituximab_fl"):
            courses.append(("cotrimoxazole", "960 mg", [0, 2, 4]))
        for drug, dose, weekdays in courses:
            course_rows.append(
                {
                    "id": course_id,
                    "patient_id": pid,
                    "plan_id": pid,
                    "drug": drug,
                    "dose_text": dose,
                    "times": ["08:00", "20:00"] if weekdays is None else ["08:00"],
                    "weekdays": weekdays,
                    "start_date": min(start, now.date()),
                    "min_months_after_last_dose": 6,
                    "cd4_rule": False,
                    "status": "active",
                    "created_at": created,
                }
            )
            course_id += 1
    bulk_insert(engine, Team, teams)
    bulk_insert(engine, Patient, patient_rows)
    bulk_insert(engine, Plan, plan_rows)
    bulk_insert(engine, ProphylaxisCourse, course_rows)
    bulk_insert(engine, PlanHold, hold_rows)
    bulk_insert(engine, DoseRecord, record_rows)
    _reset_sequences(engine, (Team, Patient, Plan, ProphylaxisCourse))
    return Population(
        patients=patients,
        teams=team_count,
        plans=len(plan_rows),
        courses=len(course_rows),
        holds=len(hold_rows),
        records=len(record_rows),
        regimens=regimens,
        seconds=time.perf_counter() - started,
    )


def _next_id(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        current = conn.execute(
            sqlalchemy.select(sqlalchemy.func.max(model.__table__.c.id))
        ).scalar()
    return int(current or 0) + 1


def seed_due_messages(
    engine: Engine, count: int, due: datetime, *, first_patient: int = 1, per_patient: int = 1
) -> int:
    """Queue ``count`` pending messages due at ``due``, spread over the seeded patients.

    The bodies are the length of a real reminder (one GSM-7 segment).
    """
    patients = max(1, count // per_patient)
    with engine.connect() as conn:
        team_of = dict(
            conn.execute(
                sqlalchemy.select(Patient.__table__.c.id, Patient.__table__.c.team_id).where(
                    Patient.__table__.c.id.between(first_patient, first_patient + patients - 1)
                )
            ).all()
        )
    if len(team_of) < patients:
        raise ValueError(f"seed at least {patients} patients before {count} messages")
    rows = [
        outbox_row(
            team_id=team_of[first_patient + n % patients],
            kind="pill_reminder",
            body=reminder_body(n),
            dedupe_key=f"bench:{due:%Y%m%dT%H%M%S}:{n}",
            now=due,
            patient_id=first_patient + n % patients,
        )
        for n in range(count)
    ]
    bulk_insert(engine, OutboundMessage, rows)
    return len(rows)


def reminder_body(n: int) -> str:
    """A reminder-sized SMS body, distinct per message."""
    return (
        f"Hello, time for your acyclovir (400 mg) at 08:00. Reply TAKEN once you have taken it. "
        f"Questions: Bench team, +32 2 555 01 23. Ref {n}"
    )


def seed_open_checkins(engine: Engine, patient_ids: Sequence[int], opened_at: datetime) -> int:
    """Open a temperature check-in (awaiting the temperature) for each of ``patient_ids``."""
    rows = [
        {
            "patient_id": pid,
            "plan_id": pid,
            "event_key": f"checkin:{opened_at:%Y-%m-%d}:bench",
            "state": "awaiting_temperature",
            "symptoms": [],
            "in_cmv_window": False,
            "resend_count": 0,
            "opened_at": opened_at,
            "last_prompt_at": opened_at,
        }
        for pid in patient_ids
    ]
    bulk_insert(engine, CheckIn, rows)
    return len(rows)


def count_rows(engine: Engine, model: Any, *where: Any) -> int:
    """``SELECT count(*)`` of ``model``'s table with optional conditions."""
    query = sqlalchemy.select(sqlalchemy.func.count()).select_from(model.__table__)
    for condition in where:
        query = query.where(condition)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def status_counts(engine: Engine) -> dict[str, int]:
    """Outbox rows by status."""
    column = OutboundMessage.__table__.c.status
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.select(column, sqlalchemy.func.count()).group_by(column)
        ).all()
    return {str(status): int(n) for status, n in rows}


def bench_engine(url: str) -> Engine:
    """The app's own engine factory (WAL and busy timeout on SQLite, as in production)."""
    return make_engine(url)


# --- a fake Twilio in its own process ---------------------------------------------------------


class FakeTwilioProcess:
    """``tests.twilio_fake.FakeTwilio`` served from a separate process.

    A separate process keeps the server's CPU off the measured process's GIL, as a
    real Twilio would be. :meth:`stats` asks for its request counts; closing its stdin
    stops it, and :meth:`stop` returns its last counts.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> FakeTwilioProcess:
        """Start the server and wait for its URL."""
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.fake_twilio_server"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"fake Twilio did not start: {line!r}")
        self.base_url = line
        return self

    def stats(self) -> dict[str, int]:
        """The server's request counts so far (accepted, rejected, ...)."""
        assert self.process is not None and self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def received(self, number: str) -> list[tuple[str, float]]:
        """``(body, accepted at)`` of each message accepted for ``number`` so far.

        The moment is the fake's ``datetime.now(UTC)`` when it recorded the message, as
        seconds since the epoch: the same clock as ``time.time()`` on this machine.
        """
        assert self.process is not None and self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"received {number}\n")
        self.process.stdin.flush()
        return [(body, at) for body, at in json.loads(self.process.stdout.readline())]

    def accepted(self) -> int:
        """Messages the server has accepted so far."""
        return int(self.stats().get("accepted", 0))

    def stop(self) -> dict[str, int]:
        """Stop the server; its request counts (accepted, rejected, ...)."""
        if self.process is None:
            return {}
        process, self.process = self.process, None
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        output = process.stdout.read()
        process.wait(timeout=30)
        try:
            return json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}

    def __enter__(self) -> FakeTwilioProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def dispatcher_environment(database_url: str, twilio_url: str) -> dict[str, str]:
    """The environment of a ``flask --app backend reminders dispatch`` process sending
    through the real twilio client to the fake at ``twilio_url``."""
    return no_proxy_environment() | {
        "DATABASE_URL": database_url,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_VALID,
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": STATUS_CALLBACK.removesuffix("/twilio/status"),
    }


def reminders_command(*args: str) -> list[str]:
    """``flask --app backend reminders <args>``: an engine process as the ``Procfile`` starts it."""
    return [FLASK, "--app", "backend", "reminders", *args]


def start_dispatcher(
    database_url: str, twilio_url: str, *options: str, **popen: Any
) -> subprocess.Popen[bytes]:
    """``reminders dispatch <options>`` (the ``Procfile``'s ``dispatcher``) on ``database_url``.

    It sends through the real twilio client to the fake at ``twilio_url``
    (:func:`dispatcher_environment`); ``popen`` goes to :class:`subprocess.Popen`
    (``stdout``, ``stderr``: where its log goes).
    """
    return subprocess.Popen(
        reminders_command("dispatch", *options),
        cwd=REPO_ROOT,
        env=dispatcher_environment(database_url, twilio_url),
        **popen,
    )


def no_proxy_environment() -> dict[str, str]:
    """This process's environment without proxy variables: bench traffic stays on 127.0.0.1."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
    }


def repeat(times: int, measure: Callable[[], float]) -> list[float]:
    """``measure()`` run ``times`` times."""
    return [measure() for _ in range(times)]
