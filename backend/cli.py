"""Flask CLI commands: users, database migrations and demo data.

Each command is a thin caller of a service function inside one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
from alembic import command
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from backend.db import get_engine, session_scope, writer
from backend.errors import ServiceError

db_cli = AppGroup("db", help="Database migrations (Alembic).")


def _now() -> datetime:
    return datetime.now(UTC)


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


def upgrade_database(app: Flask, revision: str = "head") -> None:
    """Run the Alembic migrations on the app's database."""
    from backend.migrations import alembic_config

    config = alembic_config(app.config["DATABASE_URL"])
    with writer(get_engine(app)).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def init_app(app: Flask) -> None:
    """Register the commands on ``app``."""
    app.cli.add_command(create_user_command)
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_command)
