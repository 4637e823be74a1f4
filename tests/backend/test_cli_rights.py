"""The data-rights commands on SQLite and PostgreSQL: export in both formats, erase with a flag.

Each is audited with channel ``cli``, no user and the patient's team; the export file is
readable by its owner only; erasing needs ``--irreversibly``.
"""

from __future__ import annotations

import json
import stat

from fhir.resources.R4B.bundle import Bundle
from sqlmodel import select

from reminders.data.models import AuditEvent, Patient
from tests.conftest import reread

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"


def cli_rows(session, patient_id):
    """(action, target, user, team) of the patient's ``cli`` audit rows."""
    reread(session)
    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.patient_id == patient_id, AuditEvent.channel == "cli")
        .order_by(AuditEvent.id)
    ).all()
    return [(r.action, r.target, r.user_id, r.team_id) for r in rows]


def test_export_writes_the_record_and_the_bundle(
    app, session, make_user, treated, tmp_path
) -> None:
    admin, _ = make_user(team="Hématologie — Saint-Luc", role="admin")
    patient, _ = treated(admin.team_id, display_name=NAME)
    runner = app.test_cli_runner()

    shown = runner.invoke(args=["rights", "export", str(patient.id)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["patient"]["display_name"] == NAME
    target = tmp_path / "bundle.json"
    written = runner.invoke(
        args=["rights", "export", str(patient.id), "--format", "fhir", "--output", str(target)]
    )
    assert written.exit_code == 0, written.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    Bundle.model_validate_json(target.read_text(encoding="utf-8"))
    missing = runner.invoke(args=["rights", "export", "999999"])
    assert missing.exit_code == 1 and "no patient 999999" in missing.output
    assert cli_rows(session, patient.id) == [
        ("export_record", f"patient:{patient.id}:json", None, admin.team_id),
        ("export_record", f"patient:{patient.id}:fhir", None, admin.team_id),
    ]


def test_erase_needs_the_flag_and_prints_the_pseudonym(app, session, make_user, treated) -> None:
    admin, _ = make_user(team="Hématologie — Saint-Luc", role="admin")
    patient, _ = treated(admin.team_id, display_name=NAME, hospital_ref="HUB-2026-004178")
    runner = app.test_cli_runner()

    unconfirmed = runner.invoke(args=["rights", "erase", str(patient.id)])
    assert unconfirmed.exit_code == 2 and "--irreversibly" in unconfirmed.output
    assert reread(session).get(Patient, patient.id).display_name == NAME
    assert cli_rows(session, patient.id) == []

    erased = runner.invoke(args=["rights", "erase", str(patient.id), "--irreversibly"])
    assert erased.exit_code == 0, erased.output
    stored = reread(session).get(Patient, patient.id)
    assert stored.erased_at is not None and f"pseudonym {stored.display_name} " in erased.output
    assert NAME not in erased.output and "+32" not in erased.output
    again = runner.invoke(args=["rights", "erase", str(patient.id), "--irreversibly"])
    assert again.exit_code == 1 and "already erased" in again.output
    assert cli_rows(session, patient.id) == [
        ("erase_contact_details", f"patient:{patient.id}", None, admin.team_id)
    ]
