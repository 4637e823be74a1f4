"""Flask CLI commands: users and their profiles, API tokens, the on-call rota, migrations, demo data.

Each command is a thin caller of a service function inside one transaction. Any command
that meets an unreachable database prints one line and exits with status 1
(:func:`guard_database_outages`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from typing import Any

import click
from alembic import command
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlmodel import select

from backend.db import get_engine
from reminders.core.clinical_rules import LANGUAGES
from reminders.data.db import database_unavailable, outage_reason, session_scope, writer
from reminders.data.errors import ServiceError
from reminders.data.models import MAX_ID, ApiToken, Team, User
from reminders.data.statuses import AuditAction

db_cli = AppGroup("db", help="Database migrations (Alembic).")
reminders_cli = AppGroup("reminders", help="SMS reminders: planning, dispatch, the clock process.")
patients_cli = AppGroup("patients", help="Patients across all teams (operator checks).")
tokens_cli = AppGroup("tokens", help="API tokens: create (shown once), list, revoke.")
oncall_cli = AppGroup(
    "oncall", help="The on-call rota: who is on call now and in the days to come."
)


class Instant(click.ParamType):
    """An ISO-8601 instant with its UTC offset (``2026-04-01T03:00:00Z``): ``--now`` options."""

    name = "instant"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            self.fail("use ISO-8601, e.g. 2026-04-01T03:00:00Z", param, ctx)
        if instant.tzinfo is None:
            self.fail("give a UTC offset, e.g. 2026-04-01T03:00:00Z", param, ctx)
        return instant


def cli_now() -> datetime:
    """The app's clock (``CLOCK`` in tests), else the real time."""
    from backend.api import request_now

    return request_now()


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A service refusal as one line ("field: message", or the message) and exit status 1."""
    try:
        yield
    except ServiceError as exc:
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        raise click.ClickException(message) from exc


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
@click.option("--phone", default=None, help="The user's own mobile (on-call pages go there).")
@click.option(
    "--language", type=click.Choice(LANGUAGES), default="en", show_default=True,
    help="Language of the user's pages and calls.",
)  # fmt: skip
def create_user_command(
    email: str,
    team_name: str,
    role: str,
    password: str | None,
    name: str,
    team_phone: str | None,
    phone: str | None,
    language: str,
) -> None:
    """Create a care-team user; their API token (named "cli") is the last line of output."""
    from backend.services.teams import create_user
    from backend.services.tokens import create_token

    now = cli_now()
    with one_line_errors(), session_scope(get_engine()) as session:
        user = create_user(
            session,
            email=email,
            team_name=team_name,
            role=role,
            now=now,
            password=password,
            name=name,
            care_phone=team_phone,
            region=current_app.config["DEFAULT_REGION"],
            phone=phone,
            language=language,
        )
        days = current_app.config["API_TOKEN_LIFETIME_DAYS"]
        issued = create_token(session, user, name="cli", now=now, days=days, actor=None)
        click.echo(f"Created {user.role} {user.email} in team {team_name!r}.")
        if not session.get(Team, user.team_id).care_phone:
            # Said now rather than at the first enrolment with SMS, which is refused.
            click.echo(
                "The team has no care phone: patients get no SMS until an admin sets it "
                "(Team page, 'Number patients call'; or --team-phone for a new team)."
            )
    click.echo(f"API token (shown once, works {days} days; revoke it with `tokens revoke`):")
    click.echo(issued.secret)


@click.command("set-profile")
@with_appcontext
@click.argument("email")
@click.option("--phone", default=None, help="The user's own mobile, national or E.164.")
@click.option("--clear-phone", is_flag=True, help="Remove the user's phone number.")
@click.option("--language", type=click.Choice(LANGUAGES), default=None)
def set_profile_command(
    email: str, phone: str | None, clear_phone: bool, language: str | None
) -> None:
    """Set a user's own phone number and language (audited as update_profile)."""
    from backend.services.audit import record_audit
    from backend.services.teams import set_profile
    from backend.services.tokens import user_by_email

    if phone and clear_phone:
        raise click.UsageError("give --phone or --clear-phone, not both")
    changes = {"language": language} if language else {}
    if phone or clear_phone:
        changes["phone"] = None if clear_phone else phone
    if not changes:
        raise click.UsageError("nothing to change: give --phone, --clear-phone or --language")
    now = cli_now()
    with one_line_errors(), session_scope(get_engine()) as session:
        user = user_by_email(session, email)
        set_profile(session, user, changes, region=current_app.config["DEFAULT_REGION"], now=now)
        record_audit(
            session, None, AuditAction.UPDATE_PROFILE, None, now,
            target=f"user:{user.id}", team_id=user.team_id,
        )  # fmt: skip
        shown = f"phone ending {user.phone[-3:]}" if user.phone else "no phone"
        click.echo(f"{user.email}: {shown}, language {user.language}.")


@oncall_cli.command("list")
@click.option("--team", "team_name", required=True, help="The team's name.")
@click.option("--days", type=click.IntRange(1, 62), default=14, show_default=True)
def oncall_list(team_name: str, days: int) -> None:
    """Who is on call now, and the team's shifts from today, in the team's time zone."""
    from backend.services import oncall
    from backend.services.tokens import team_by_name

    now = cli_now()
    with one_line_errors(), session_scope(get_engine(), write=False) as session:
        team = team_by_name(session, team_name)
        zone = oncall.team_zone(team)
        summary = oncall.on_call_summary(session, team, now)
        start = datetime.combine(now.astimezone(zone).date(), time(0), zone)
        lines = oncall.list_rota(session, team, start, start + timedelta(days=days))
        duty = {
            role: held.user.name or held.user.email if held else "nobody"
            for role, held in (("primary", summary.primary), ("backup", summary.backup))
        }
        out = [
            f"On call now ({team.timezone}): {duty['primary']}, backup {duty['backup']}; "
            f"fallback {'set' if summary.fallback_phone else 'NOT SET'}.",
            *(f"Warning: {warning}" for warning in summary.warnings),
            *(
                f"{line.shift.id}  {oncall.local_text(line.shift.starts_at, zone)} - "
                f"{oncall.local_text(line.shift.ends_at, zone)}  {line.shift.role:<7}  "
                f"{line.user.name or line.user.email}"
                + ("" if line.covers else "  (deactivated: covers nothing)")
                for line in lines
            ),
        ]
    for line in out if lines else [*out, f"No shift in the next {days} days."]:
        click.echo(line)


@tokens_cli.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for (1-80 characters).")
@click.option(
    "--days",
    type=int,
    default=None,
    help="Lifetime (default API_TOKEN_LIFETIME_DAYS, at most 365).",
)
def tokens_create(email: str, name: str, days: int | None) -> None:
    """Create an API token for a user; the token is the last line of output (shown once)."""
    from backend.services.tokens import create_token, user_by_email

    lifetime = current_app.config["API_TOKEN_LIFETIME_DAYS"] if days is None else days
    with one_line_errors(), session_scope(get_engine()) as session:
        owner = user_by_email(session, email)
        issued = create_token(session, owner, name=name, now=cli_now(), days=lifetime, actor=None)
        expires = issued.row.expires_at
    click.echo(
        f"Created token {issued.row.id} {name.strip()!r} for {owner.email}, "
        f"expires {expires:%Y-%m-%d %H:%M} UTC. Shown once:"
    )
    click.echo(issued.secret)


@tokens_cli.command("list")
@click.option("--email", default=None, help="Only this user's tokens.")
@click.option("--team", "team_name", default=None, help="Only the tokens of this team's members.")
def tokens_list(email: str | None, team_name: str | None) -> None:
    """List API tokens (never the tokens themselves: their public prefix), newest first."""
    from backend.services.tokens import list_tokens, team_by_name, user_by_email

    if email and team_name:
        raise click.UsageError("give --email or --team, not both")
    with one_line_errors(), session_scope(get_engine(), write=False) as session:
        user_id = user_by_email(session, email).id if email else None
        team_id = team_by_name(session, team_name).id if team_name else None
        now = cli_now()
        lines = [
            _token_line(t, u, now)
            for t, u in list_tokens(session, user_id=user_id, team_id=team_id)
        ]
    for line in lines or ["No API tokens."]:
        click.echo(line)


def _token_line(token: ApiToken, owner: User, now: datetime) -> str:
    """One token for `tokens list`: id, status, owner, name, prefix, dates (UTC); no secret."""
    from backend.services.tokens import shown_prefix, token_status

    def day(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "never"

    return (
        f"{token.id}  {token_status(token, now):<7}  {owner.email}  {token.name!r}  "
        f"{shown_prefix(token) or '(no prefix)'}  created {day(token.created_at)}  "
        f"expires {day(token.expires_at)}  last used {day(token.last_used_at)}"
    )


@tokens_cli.command("revoke")
@click.argument("token_id", type=click.IntRange(1, MAX_ID))
def tokens_revoke(token_id: int) -> None:
    """Revoke API token TOKEN_ID (the id `tokens list` shows): it stops working at once."""
    from backend.services.tokens import get_token, revoke_token

    with one_line_errors(), session_scope(get_engine()) as session:
        token = revoke_token(session, get_token(session, token_id), cli_now(), actor=None)
        name = token.name
    click.echo(f"Revoked token {token_id} {name!r}.")


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
        token = ensure_demo_data(
            session, cli_now(), token_days=current_app.config["API_TOKEN_LIFETIME_DAYS"]
        )
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
@click.option(
    "--now", type=Instant(), default=None, help="ISO-8601 instant to run as (default: now)."
)
def reminders_run_due(now: datetime | None) -> None:
    """One planning, follow-up, prophylaxis-check and dispatch pass as of --now."""
    from reminders.jobs import run_due

    now = now or cli_now()
    gateway, callback = _gateway_and_callback(current_app)
    summary = run_due(get_engine(), gateway, now, status_callback=callback)
    click.echo(" ".join(f"{key}={value}" for key, value in summary.items()))


@reminders_cli.command("clock")
@click.option("--lease", default=30.0, show_default=True, help="Seconds the clock's lease lasts.")
@click.option("--renew", default=10.0, show_default=True, help="Seconds between renewals.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between a standby's asks.")
def reminders_clock(lease: float, renew: float, poll: float) -> None:
    """Run the scheduler while this process is the active clock; a second one stands by."""
    from reminders.clock import ClockTiming, clock_jobs, run_clock

    try:
        timing = ClockTiming(*(timedelta(seconds=s) for s in (lease, renew, poll)))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    _log_to_stderr()
    config = current_app.config
    jobs = clock_jobs(
        config["UNKNOWN_SENDER_SMS_RETENTION_DAYS"], config["DELIVERY_DETAILS_RETENTION_DAYS"]
    )
    run_clock(get_engine(), timing, jobs)


@reminders_cli.command("dispatch")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes.")
@click.option("--threads", default=8, show_default=True, help="Concurrent sends.")
@click.option(
    "--wakeup/--no-wakeup",
    default=True,
    show_default=True,
    help="Start a pass as soon as an urgent message is queued (else only every --interval).",
)
def reminders_dispatch(once: bool, interval: float, threads: int, wakeup: bool) -> None:
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
        wakeups=wakeup,
    )


@patients_cli.command("duplicate-phones")
def patients_duplicate_phones() -> None:
    """List the phone numbers more than one active patient has, for the teams to resolve.

    Changes nothing (never deletes, merges or discharges). Works before and after
    migration 0004, which refuses to run while any are listed. Numbers are shown by
    their last three digits only; exits 1 when there are any.
    """
    from backend.services.patients import duplicate_phones

    with session_scope(get_engine(), write=False) as session:
        shared = duplicate_phones(session)
        # Two columns, not the model: the command must work on a database of any
        # revision since 0003, before the team gained its later columns.
        teams = dict(session.exec(select(Team.id, Team.name)).all())
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
    app.cli.add_command(set_profile_command)
    app.cli.add_command(oncall_cli)
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_command)
    app.cli.add_command(reminders_cli)
    app.cli.add_command(patients_cli)
    app.cli.add_command(tokens_cli)
