"""One number, one patient (issue 12, item 1): the database, the migration, the CLI, discharge.

A phone number belongs to at most one active (not discharged) patient in the whole
installation, enforced by a partial unique index; a discharged patient frees it.
Migration 0004 refuses to run over existing duplicates (changing nothing) and names
the command that lists them; that command changes nothing either.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from backend import create_app
from backend.cli import upgrade_database
from backend.db import get_engine
from backend.schemas import PatientIn
from backend.services.discharge import discharge_patient
from backend.services.patients import create_patient
from reminders.data.errors import Conflict
from reminders.data.models import OutboundMessage, Patient
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import ConsoleGateway
from tests.backend.dashboard.conftest import PASSWORD, post_form, sign_in
from tests.conftest import POSTGRES_URL, empty_postgres_schema, reread

TEAM_A = "Hématologie et oncologie pédiatrique — Cliniques universitaires Saint-Luc"
TEAM_B = "Dienst hematologie, AZ Sint-Jan Brugge-Oostende AV"
PATIENT_A = "Marie-Françoise Van den Bossche-Lefèvre"
PATIENT_B = "Jean-Baptiste Vandermeersch-Dubois d'Ursel"
PHONE = "+32470123456"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _patient(team_id: int, name: str, phone: str = PHONE, **values) -> Patient:
    return Patient(
        team_id=team_id, display_name=name, phone=phone, created_at=NOW, updated_at=NOW, **values
    )


def test_the_database_refuses_a_second_active_patient_with_a_number(session, make_user) -> None:
    a, _ = make_user(team=TEAM_A)
    b, _ = make_user(team=TEAM_B)
    session.add(_patient(a.team_id, PATIENT_A, discharged_at=NOW, discharge_reason="moved"))
    session.add(_patient(a.team_id, PATIENT_A))  # a discharged one does not hold the number
    session.commit()
    session.add(_patient(b.team_id, PATIENT_B))  # bypassing the service: the index refuses
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    with pytest.raises(Conflict) as refused:
        create_patient(
            session,
            b.team_id,
            PatientIn(display_name=PATIENT_B, phone="0470 12 34 56"),
            NOW,
            region="BE",
        )
    assert refused.value.field == "phone" and TEAM_A not in refused.value.message


def test_discharge_waits_for_the_plan_and_prophylaxis_then_stops_every_sms(
    app, session, make_user, make_patient, make_plan, clock
) -> None:
    nurse, _ = make_user(team=TEAM_A)
    patient = make_patient(nurse.team_id, display_name=PATIENT_A, phone=PHONE)
    plan = make_plan(patient, "rituximab_fl_maintenance", date(2026, 3, 2))
    with pytest.raises(Conflict, match="stop the open plan"):
        discharge_patient(session, patient, nurse.id, "Suivi terminé", clock.now)
    session.rollback()
    plan.status = "stopped"
    session.add(plan)
    session.commit()
    queued = session.exec(
        select(OutboundMessage).where(OutboundMessage.patient_id == patient.id)
    ).all()
    assert queued, "the welcome SMS at least"
    discharge_patient(session, patient, nurse.id, "Suivi terminé", clock.now)
    session.commit()
    # A message already claimed or re-queued later is refused by the dispatcher too.
    session.add(
        OutboundMessage(
            team_id=nurse.team_id,
            patient_id=patient.id,
            kind="checkin_temperature",
            dedupe_key="late",
            body="Prenez votre température",
            due_at=clock.now,
            next_attempt_at=clock.now,
            created_at=clock.now,
            urgent=True,
        )
    )
    session.commit()
    report = dispatch_due_messages(get_engine(app), ConsoleGateway(), lambda: clock.now)
    assert report.sent == 0
    reread(session)
    statuses = {
        m.status
        for m in session.exec(
            select(OutboundMessage).where(OutboundMessage.patient_id == patient.id)
        ).all()
    }
    assert statuses == {"cancelled"}


def test_the_dashboard_discharges_a_patient_and_says_what_is_still_open(
    client, session, make_user, make_patient, make_plan
) -> None:
    nurse, _ = make_user(team=TEAM_A, password=PASSWORD)
    patient = make_patient(nurse.team_id, display_name=PATIENT_A)
    plan = make_plan(patient, "rituximab_fl_maintenance", date(2026, 3, 2))
    assert sign_in(client, nurse.email).status_code == 302
    url = f"/patients/{patient.id}/discharge"
    page = f"/patients/{patient.id}"
    empty = post_form(client, url, {"reason": ""}, page=page)
    assert empty.status_code == 422
    early = post_form(client, url, {"reason": "Suivi transféré à Bruges"}, page=page)
    assert early.status_code == 409 and "stop the open plan" in early.get_data(as_text=True)
    plan.status = "stopped"
    session.add(plan)
    session.commit()
    done = post_form(client, url, {"reason": "Suivi transféré à Bruges"}, page=page)
    assert done.status_code == 302
    shown = client.get(page).get_data(as_text=True)
    assert "Discharged" in shown and "Suivi transféré à Bruges" in shown
    reread(session)
    assert session.get(Patient, patient.id).discharged_at is not None


# --- the migration and the listing command ------------------------------------------------


@pytest.fixture
def empty_database_url(db_engine_name: str, tmp_path) -> Iterator[str]:
    """A URL to a database with no tables at all (its own PostgreSQL schema)."""
    if db_engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    with empty_postgres_schema("dup") as schema:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def test_the_migration_refuses_existing_duplicates_and_the_command_lists_them(
    empty_database_url, tmp_path
) -> None:
    app = create_app(
        {"TESTING": True, "DATABASE_URL": empty_database_url, "SECRET_KEY": "test-secret"}
    )
    app.instance_path = str(tmp_path / "instance")
    upgrade_database(app, "0003")
    engine = get_engine(app)
    insert = text(
        "INSERT INTO patient (team_id, display_name, phone, timezone, language, sms_consent, "
        "opted_out, discreet, quiet_start, quiet_end, dose_time, checkin_time, pill_times, "
        "created_at, updated_at) VALUES (:team, :name, :phone, 'Europe/Brussels', 'fr', "
        "true, false, false, '22:00:00', '07:00:00', '09:00:00', '18:00:00', '[]', :at, :at)"
    )
    with engine.begin() as conn:
        for name in (TEAM_A, TEAM_B):
            conn.execute(
                text("INSERT INTO team (name, created_at) VALUES (:n, :at)"), {"n": name, "at": NOW}
            )
        teams = dict(conn.execute(text("SELECT name, id FROM team")).all())
        for team, name, phone in (
            (TEAM_A, PATIENT_A, PHONE),
            (TEAM_B, PATIENT_B, PHONE),  # the capture, stored before the fix
            (TEAM_B, "Els Verbruggen-Van Damme", "+32470654321"),
        ):
            conn.execute(insert, {"team": teams[team], "name": name, "phone": phone, "at": NOW})
        ids = dict(conn.execute(text("SELECT display_name, id FROM patient")).all())

    with pytest.raises(RuntimeError) as refused:
        upgrade_database(app)
    message = str(refused.value)
    assert "flask --app backend patients duplicate-phones" in message
    assert PHONE not in message and TEAM_A not in message and PATIENT_A not in message
    engine.dispose()
    columns = {c["name"] for c in inspect(get_engine(app)).get_columns("patient")}
    assert "discharged_at" not in columns  # nothing was changed

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["patients", "duplicate-phones"])
    assert listed.exit_code == 1, listed.output
    assert f"patient {ids[PATIENT_A]}, team {TEAM_A!r}" in listed.output
    assert f"patient {ids[PATIENT_B]}, team {TEAM_B!r}" in listed.output
    assert (
        "Els" not in listed.output
        and str(ids["Els Verbruggen-Van Damme"]) + "," not in listed.output
    )
    assert PHONE not in listed.output and PATIENT_A not in listed.output  # "ending 456" only
    with get_engine(app).begin() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM patient")).scalar() == 3

    # Team B corrects its patient's number; the upgrade then goes through.
    with get_engine(app).begin() as conn:
        conn.execute(
            text("UPDATE patient SET phone = '+32470987654' WHERE id = :id"), {"id": ids[PATIENT_B]}
        )
    upgrade_database(app)
    clean = runner.invoke(args=["patients", "duplicate-phones"])
    assert clean.exit_code == 0 and "No phone number is shared" in clean.output
    with get_engine(app).begin() as conn, pytest.raises(IntegrityError):
        conn.execute(insert, {"team": teams[TEAM_B], "name": PATIENT_B, "phone": PHONE, "at": NOW})
    get_engine(app).dispose()
