"""CLI commands for a patient's data rights: export the whole record, erase contact details.

``flask --app backend rights export PATIENT_ID [--format json|fhir] [--output FILE]`` and
``flask --app backend rights erase PATIENT_ID --irreversibly``, for the data-protection
officer's requests at the command line (an operator of any team: the patient is named by
id). Each is audited (channel ``cli``, no user, the patient's team). Thin callers of
:mod:`backend.services.rights`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

import click
from flask import Flask
from flask.cli import AppGroup
from sqlmodel import Session

from backend.cli import cli_now, one_line_errors
from backend.db import get_engine
from reminders.data.db import session_scope
from reminders.data.errors import NotFound
from reminders.data.models import MAX_ID, Patient
from reminders.data.statuses import AuditAction

rights_cli = AppGroup(
    "rights", help="A patient's data rights: export the whole record, erase contact details."
)


def _patient(session: Session, patient_id: int) -> Patient:
    """The patient ``patient_id`` of any team (the operator serves every team)."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"no patient {patient_id}")
    return patient


def _audit(
    session: Session, patient: Patient, action: AuditAction, target: str, now: datetime
) -> None:
    """The command's audit row: no user, the patient's team, channel ``cli``."""
    from backend.services.audit import record_audit

    record_audit(session, None, action, patient.id, now, target=target, team_id=patient.team_id)


@rights_cli.command("export")
@click.argument("patient_id", type=click.IntRange(1, MAX_ID))
@click.option(
    "--format", "kind", type=click.Choice(["json", "fhir"]), default="json", show_default=True,
    help="The companion's own JSON record, or a FHIR R4 Bundle.",
)  # fmt: skip
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True), default=None,
    help="Write to this file (created readable by its owner only) instead of the screen.",
)  # fmt: skip
def rights_export(patient_id: int, kind: str, output: str | None) -> None:
    """Export PATIENT_ID's whole record (audited as export_record)."""
    from backend.services.rights import export_bundle, export_record

    now = cli_now()
    with one_line_errors(), session_scope(get_engine()) as session:
        patient = _patient(session, patient_id)
        document = (export_bundle if kind == "fhir" else export_record)(session, patient, now)
        _audit(session, patient, AuditAction.EXPORT_RECORD, f"patient:{patient.id}:{kind}", now)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output is None:
        click.echo(text)
        return
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    click.echo(f"Record of patient {patient_id} ({kind}) written to {output}.", err=True)


@rights_cli.command("erase")
@click.argument("patient_id", type=click.IntRange(1, MAX_ID))
@click.option(
    "--irreversibly", is_flag=True,
    help="Required: the name, phone number and hospital reference cannot be brought back.",
)  # fmt: skip
def rights_erase(patient_id: int, irreversibly: bool) -> None:
    """Erase PATIENT_ID's contact details at their request (audited as erase_contact_details).

    Name, phone number and hospital reference become one pseudonym (printed: note it in
    the hospital's file), pending SMS are cancelled, nothing more is sent; the
    clinical record is kept (docs/data-protection.md).
    """
    from backend.services.rights import erase_contact_details

    if not irreversibly:
        raise click.UsageError(
            "erasing contact details cannot be undone: add --irreversibly to confirm"
        )
    now = cli_now()
    with one_line_errors(), session_scope(get_engine()) as session:
        patient = _patient(session, patient_id)
        erasure = erase_contact_details(session, patient, now)
        _audit(session, patient, AuditAction.ERASE_CONTACT_DETAILS, f"patient:{patient_id}", now)
    click.echo(
        f"Patient {patient_id}: contact details erased; pseudonym {erasure.pseudonym} "
        f"(note it in the hospital's file). {erasure.cancelled_sms} pending SMS cancelled, "
        f"{erasure.revoked_links} calendar link(s) revoked, rows scrubbed: "
        + (", ".join(f"{t} {n}" for t, n in sorted(erasure.rows_scrubbed.items())) or "none")
        + "."
    )


def init_app(app: Flask) -> None:
    """Register the ``rights`` commands on ``app``."""
    app.cli.add_command(rights_cli)
