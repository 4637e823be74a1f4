"""CLI commands for backups and retention: ``backup``, ``restore`` and ``retention run``.

Thin callers of :mod:`backend.services.backup` and :mod:`backend.services.retention`.
They print where a backup went, its size and the schema's revision, or the retention
counts: never a row.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from backend.cli import Instant, cli_now
from backend.db import get_engine
from backend.services.audit import record_audit
from backend.services.backup import BackupError, backup_database, describe, restore_database
from backend.services.retention import retention_target, run_retention
from reminders.data.db import session_scope
from reminders.data.statuses import AuditAction

retention_cli = AppGroup("retention", help="Retention of SMS data (the clock applies it daily).")


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1_048_576:.1f} MiB" if size_bytes >= 1_048_576 else f"{size_bytes} bytes"


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Back up the whole database into a new file PATH (mode 0600; store it encrypted).

    The copy is consistent while the app runs. It is written in the audit log first.
    """
    with session_scope(get_engine()) as session:
        record_audit(session, None, AuditAction.BACKUP_DATABASE, None, cli_now(), target="backup")
    try:
        result = backup_database(current_app.config["DATABASE_URL"], path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Backed up the {result.engine} database to {result.path.resolve()}: "
        f"{_size(result.size_bytes)} in {result.seconds:.1f} s. It holds health data: "
        "keep it encrypted."
    )


@click.command("restore")
@with_appcontext
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Replace the tables of a database that is not empty (default: refuse).",
)
def restore_command(path: Path, force: bool) -> None:
    """Restore the backup PATH into the configured database, which must be empty.

    Stop the web, the clock and the dispatchers first. Checks the schema's revision after.
    """
    database_url = current_app.config["DATABASE_URL"]
    get_engine().dispose()  # no pooled connection of ours stays open on the target
    try:
        result = restore_database(database_url, path, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Restored {path} into {describe(database_url)} in {result.seconds:.1f} s; "
        f"schema revision {result.revision or 'none'}."
    )
    if not result.at_head:
        raise click.ClickException(
            f"the schema is at {result.revision or 'no revision'}, this code expects "
            f"{result.head}: run `flask --app backend db upgrade` before starting the app"
        )


@retention_cli.command("run")
@click.option("--now", type=Instant(), default=None, help="Instant to run as (default: now).")
def retention_run(now: datetime | None) -> None:
    """Delete SMS from unknown numbers and trim delivery details past their periods."""
    at = now or cli_now()
    with session_scope(get_engine()) as session:
        report = run_retention(session, at, current_app.config)
        record_audit(
            session, None, AuditAction.RUN_RETENTION, None, at, target=retention_target(report)
        )
    click.echo(" ".join(f"{key}={value}" for key, value in report.as_dict().items()))


def init_app(app: Flask) -> None:
    """Register ``backup``, ``restore`` and ``retention`` on ``app``."""
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
    app.cli.add_command(retention_cli)
