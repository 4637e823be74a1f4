"""Flask CLI commands: users, database migrations and demo data.

Each command is a thin caller of a service function inside one transaction. Any command
that meets an unreachable database prints one line and exits with status 1
(:func:`guard_database_outages`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from alembic import command
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlmodel import select

from backend.db import database_unavailable, get_engine, outage_reason, session_scope, writer
from backend.errors import ServiceError

db_cli = AppGroup("db", help="Database migrations (Alembic).")
reminders_cli = AppGroup("reminders", help="SMS reminders: planning, dispatch, the clock process.")
patients_cli = AppGroup("patients", help="Patients across all teams (operator checks).")


def _now() -> datetime:
    return datetime.now(UTC)


def _log_to_stderr() -> None:
    """Counts and job names for long-running processes (never phone numbers or SMS text)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option("--team", "team_name", required=True, help="Team name (created if new).")
@click.option(
    "--role", type=click.Choice(["nurse", "physician", "admin"]), default="nurse", show_default=True
)
@click.option(
    "--password", default=None, help="Password for the care-team pages (at least 10 characters)."
)
@click.option("--name", default="", help="Display name.")
@click.option("--team-phone", default=None, help="Number patients call, for a new team.")
def create_user_command(
    email: str, team_name: str, role: str, password: str | None, name: str, team_phone: str | None
) -> None:
    """Create a care-team user; the API token is the last line of output."""
    from backend.services.teams import create_user

    try:
        with session_scope(get_engine()) as session:
            user, token = create_user(
                session,
                email=email,
                team_name=team_name,
                role=role,
                now=_now(),
                password=password,
                name=name,
                care_phone=team_phone,
                region=current_app.config["DEFAULT_REGION"],
            )
            click.echo(f"Created {user.role} {user.email} in team {team_name!r}.")
    except ServiceError as exc:
        raise click.ClickException(f"{exc.field or 'error'}: {exc.message}") from exc
    click.echo(token)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    upgrade_database(current_app, revision)
    click.echo(f"Database at {revision}.")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--autogenerate/--empty", default=True)
def db_revision(message: str, autogenerate: bool) -> None:
    """Write a new migration script (compared with the models when autogenerating)."""
    from backend.migrations import alembic_config

    command.revision(
        alembic_config(current_app.config["DATABASE_URL"]),
        message=message,
        autogenerate=autogenerate,
    )


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create the demo team, nurse and patient if they do not exist (idempotent)."""
    from backend.services.demo import DEMO_EMAIL, DEMO_PASSWORD, ensure_demo_data

    with session_scope(get_engine()) as session:
        token = ensure_demo_data(session, _now())
    if token:
        click.echo(f"Demo care team created. Sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}")
        click.echo(f"Demo API token: {token}")
    else:
        click.echo("Demo data already present.")


def _gateway_and_callback(app: Flask) -> tuple[object, str | None]:
    from reminders.gateways import gateway_from_config, status_callback_url

    gateway = gateway_from_config(app.config)
    callback = (
        status_callback_url(app.config["PUBLIC_BASE_URL"])
        if app.config["SMS_BACKEND"] == "twilio"
        else None
    )
    return gateway, callback


@reminders_cli.command("run-due")
@click.option("--now", "now_text", default=None, help="ISO-8601 instant to run as (default: now).")
def reminders_run_due(now_text: str | None) -> None:
    """One planning, follow-up, prophylaxis-check and dispatch pass as of --now."""
    from reminders.jobs import run_due

    try:
        now = datetime.fromisoformat(now_text) if now_text else _now()
    except ValueError as exc:
        raise click.BadParameter(
            "use ISO-8601, e.g. 2026-03-02T08:00:00+01:00", param_hint="--now"
        ) from exc
    if now.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-03-02T08:00:00Z", param_hint="--now")
    gateway, callback = _gateway_and_callback(current_app)
    summary = run_due(get_engine(), gateway, now, status_callback=callback)
    click.echo(" ".join(f"{key}={value}" for key, value in summary.items()))


@reminders_cli.command("clock")
def reminders_clock() -> None:
    """Run the scheduler (one process only): planning passes and follow-ups."""
    from reminders.clock import run_clock

    _log_to_stderr()
    run_clock(get_engine())


@reminders_cli.command("dispatch")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes.")
@click.option("--threads", default=8, show_default=True, help="Concurrent sends.")
def reminders_dispatch(once: bool, interval: float, threads: int) -> None:
    """Run a dispatcher: claim due messages, send them, record the outcome (several may run)."""
    from reminders.dispatch import run_dispatcher

    _log_to_stderr()
    gateway, callback = _gateway_and_callback(current_app)
    lease = float(current_app.config["DISPATCH_LEASE_SECONDS"])
    if lease <= 0:
        raise click.ClickException(f"DISPATCH_LEASE_SECONDS must be positive, got {lease:g}")
    run_dispatcher(
        get_engine(),
        gateway,
        once=once,
        interval=interval,
        threads=threads,
        status_callback=callback,
        lease=timedelta(seconds=lease),
    )


@patients_cli.command("duplicate-phones")
def patients_duplicate_phones() -> None:
    """List the phone numbers more than one active patient has, for the teams to resolve.

    Changes nothing (never deletes, merges or discharges). Works before and after
    migration 0004, which refuses to run while any are listed. Numbers are shown by
    their last three digits only; exits 1 when there are any.
    """
    from backend.models import Team
    from backend.services.patients import duplicate_phones

    with session_scope(get_engine(), write=False) as session:
        shared = duplicate_phones(session)
        teams = {team.id: team.name for team in session.exec(select(Team)).all()}
    if not shared:
        click.echo("No phone number is shared by active patients.")
        return
    click.echo(
        f"{len(shared)} phone number(s) shared by active patients. For each, the teams decide "
        "whose it is: the others correct their patient's number or discharge them."
    )
    for group in shared:
        click.echo(f"number ending {group.phone[-3:]}:")
        for patient_id, team_id, enrolled in group.patients:
            day = str(enrolled)[:10]
            click.echo(
                f"  patient {patient_id}, team {teams.get(team_id, team_id)!r}, enrolled {day}"
            )
    raise SystemExit(1)


def upgrade_database(app: Flask, revision: str = "head") -> None:
    """Run the Alembic migrations on the app's database."""
    from backend.migrations import alembic_config

    config = alembic_config(app.config["DATABASE_URL"])
    with writer(get_engine(app)).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def guard_database_outages(group: click.Group) -> None:
    """Make every command of ``group`` (and its subgroups) fail in one line on an outage.

    Called once the app has registered all its commands: "the database is unreachable
    (reason)" and exit status 1, instead of a traceback of about 150 lines. Any other
    error is left as it is.
    """
    for member in group.commands.values():
        if isinstance(member, click.Group):
            guard_database_outages(member)
        elif member.callback is not None and not getattr(member.callback, "_guarded", False):
            member.callback = _fail_in_one_line(member.callback)


def _fail_in_one_line(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # ``from None``: click prints only the message; the cause is the traceback.
            raise click.ClickException(
                f"the database is unreachable ({outage_reason(exc)}); try again once it is back"
            ) from None

    run._guarded = True  # type: ignore[attr-defined]  # commands are shared by every app
    return run


def init_app(app: Flask) -> None:
    """Register the commands on ``app``."""
    app.cli.add_command(create_user_command)
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_command)
    app.cli.add_command(reminders_cli)
    app.cli.add_command(patients_cli)
