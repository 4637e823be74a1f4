"""API tokens (issue 12, item 3): named, shown once, expiring, listed, revocable, audited.

Services and the API's bearer check on SQLite and PostgreSQL; the last-used bookkeeping
writes at most once per granularity; migration 0007 gives existing tokens 90 days.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend import create_app
from backend.auth import TOKEN_PREFIX, check_bearer, hash_token
from backend.db import get_engine
from backend.migrations import alembic_config
from backend.services import tokens
from backend.services.teams import create_user
from reminders.data.db import make_engine
from reminders.data.errors import Conflict, InvalidInput, NotFound
from reminders.data.models import ApiToken, AuditEvent, User
from tests.conftest import Clock, bearer, reread

LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"


@pytest.fixture
def nurse(session: Session, clock: Clock) -> User:
    """A nurse of Team A, without any token."""
    user = create_user(
        session,
        email="marie-francoise@hopital.example",
        team_name="Hématologie — Saint-Luc",
        role="nurse",
        now=clock.now,
        name=LONG_NAME,
    )
    session.commit()
    return user


def _create(session: Session, owner: User, clock: Clock, name: str = "Lab import", **kw):
    issued = tokens.create_token(
        session,
        owner,
        name=name,
        now=clock.now,
        days=kw.pop("days", 90),
        actor=kw.pop("actor", owner),
    )
    session.commit()
    return issued


# --- creating ------------------------------------------------------------------------------


def test_a_token_is_stored_as_a_digest_with_a_name_prefix_expiry_and_creator(
    session: Session, nurse: User, clock: Clock
) -> None:
    issued = _create(session, nurse, clock, name="  Ward 5 lab import  ", days=30)
    secret = issued.secret
    assert secret.startswith(TOKEN_PREFIX) and len(secret) == len(TOKEN_PREFIX) + 43
    row = reread(session).get(ApiToken, issued.row.id)
    assert row.name == "Ward 5 lab import"
    assert row.prefix == secret[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 8]
    assert row.token_hash == hash_token(secret)
    assert (row.created_at, row.expires_at) == (clock.now, clock.now + timedelta(days=30))
    assert row.created_by_user_id == nurse.id and row.user_id == nurse.id
    assert row.last_used_at is None and row.revoked_at is None
    # The token itself is nowhere in the database, nor in the object's repr (logs).
    stored = " ".join(str(v) for v in session.execute(text("SELECT * FROM apitoken")).one())
    assert secret not in stored and secret[len(TOKEN_PREFIX) :] not in stored
    assert secret not in repr(issued)


def test_every_creation_and_revocation_leaves_an_audit_row_without_the_token(
    session: Session, nurse: User, clock: Clock
) -> None:
    issued = _create(session, nurse, clock)
    tokens.revoke_token(session, issued.row, clock.now, nurse)
    session.commit()
    events = reread(session).exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.action, e.target, e.user_id, e.team_id, e.patient_id) for e in events] == [
        ("create_api_token", f"token:{issued.row.id}", nurse.id, nurse.team_id, None),
        ("revoke_api_token", f"token:{issued.row.id}", nurse.id, nurse.team_id, None),
    ]
    assert all(issued.row.prefix not in (e.target or "") for e in events)


@pytest.mark.parametrize(
    ("name", "days", "field"),
    [
        ("", 90, "name"),
        ("   ", 90, "name"),
        ("x" * 81, 90, "name"),
        ("two\nlines", 90, "name"),
        ("tab\there", 90, "name"),
        ("nul\x00", 90, "name"),
        ("ok", 0, "days"),
        ("ok", 366, "days"),
        ("ok", -5, "days"),
        ("ok", True, "days"),
    ],
)
def test_a_bad_name_or_lifetime_is_refused_and_nothing_is_written(
    session: Session, nurse: User, clock: Clock, name: str, days: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        tokens.create_token(session, nurse, name=name, now=clock.now, days=days, actor=nurse)
    assert refused.value.field == field
    session.rollback()
    assert reread(session).exec(select(ApiToken)).all() == []
    assert session.exec(select(AuditEvent)).all() == []


def test_the_longest_name_and_lifetime_are_accepted(
    session: Session, nurse: User, clock: Clock
) -> None:
    name = ("Intégration Hématologie Saint-Luc " * 3)[:80]
    issued = _create(session, nurse, clock, name=name, days=365)
    assert issued.row.name == name.strip()
    assert issued.row.expires_at == clock.now + timedelta(days=365)


def test_a_name_is_unique_among_the_users_live_tokens_only(
    session: Session, nurse: User, clock: Clock, make_user
) -> None:
    first = _create(session, nurse, clock, name="Lab import")
    with pytest.raises(Conflict) as clash:
        _create(session, nurse, clock, name="Lab import")
    assert clash.value.field == "name"
    session.rollback()
    other, _ = make_user(team="Team B")
    _create(session, other, clock, name="Lab import")  # another user may use the name
    tokens.revoke_token(session, first.row, clock.now, nurse)
    session.commit()
    second = _create(session, nurse, clock, name="Lab import", days=1)  # the first is revoked
    clock.advance(days=1)  # the second expires
    _create(session, nurse, clock, name="Lab import")
    assert tokens.token_status(second.row, clock.now) == "expired"


def test_who_may_create_a_token_for_whom(session: Session, nurse: User, clock: Clock, make_user):
    admin, _ = make_user(team="Hématologie — Saint-Luc", role="admin")
    colleague, _ = make_user(team="Hématologie — Saint-Luc", role="nurse")
    stranger_admin, _ = make_user(team="Team B", role="admin")
    made = _create(session, nurse, clock, name="By my admin", actor=admin)
    assert made.row.created_by_user_id == admin.id
    for actor in (colleague, stranger_admin):
        with pytest.raises(NotFound):
            tokens.create_token(session, nurse, name="x", now=clock.now, days=1, actor=actor)
        session.rollback()
    nurse = session.get(User, nurse.id)
    nurse.is_active = False
    session.add(nurse)
    session.commit()
    with pytest.raises(Conflict):
        tokens.create_token(session, nurse, name="late", now=clock.now, days=1, actor=None)


# --- status, listing, revoking ----------------------------------------------------------------


def test_a_token_is_active_until_its_expiry_then_expired_and_revoked_wins(
    session: Session, nurse: User, clock: Clock
) -> None:
    row = _create(session, nurse, clock, days=1).row
    assert tokens.token_status(row, clock.now + timedelta(days=1, microseconds=-1)) == "active"
    assert tokens.token_status(row, clock.now + timedelta(days=1)) == "expired"
    tokens.revoke_token(session, row, clock.now, None)
    assert tokens.token_status(row, clock.now) == "revoked"
    assert tokens.token_status(row, clock.now + timedelta(days=9)) == "revoked"


def test_lists_are_newest_first_and_scoped_to_a_user_or_a_team(
    session: Session, nurse: User, clock: Clock, make_user
) -> None:
    older = _create(session, nurse, clock, name="older").row
    clock.advance(minutes=1)
    newer = _create(session, nurse, clock, name="newer").row
    colleague, _ = make_user(team="Hématologie — Saint-Luc")
    stranger, _ = make_user(team="Team B")
    mine = tokens.list_tokens(session, user_id=nurse.id)
    assert [t.id for t, _ in mine] == [newer.id, older.id]
    team = tokens.list_tokens(session, team_id=nurse.team_id)
    assert {u.id for _, u in team} == {nurse.id, colleague.id}
    assert len(tokens.list_tokens(session)) == 4  # everyone's, for the operator
    assert stranger.id not in {u.id for _, u in team}


def test_a_token_is_found_only_for_its_owner_or_its_team(
    session: Session, nurse: User, clock: Clock, make_user
) -> None:
    row = _create(session, nurse, clock).row
    colleague, _ = make_user(team="Hématologie — Saint-Luc")
    stranger, _ = make_user(team="Team B")
    assert tokens.get_token(session, row.id, user_id=nurse.id).id == row.id
    assert tokens.get_token(session, row.id, team_id=nurse.team_id).id == row.id
    for scope in ({"user_id": colleague.id}, {"team_id": stranger.team_id}, {}):
        missing = row.id + 1000 if not scope else row.id
        with pytest.raises(NotFound):
            tokens.get_token(session, missing, **scope)


def test_revoking_twice_is_a_conflict_and_changes_nothing(
    session: Session, nurse: User, clock: Clock
) -> None:
    row = _create(session, nurse, clock).row
    tokens.revoke_token(session, row, clock.now, nurse)
    session.commit()
    clock.advance(hours=1)
    with pytest.raises(Conflict):
        tokens.revoke_token(session, row, clock.now, nurse)
    session.rollback()
    assert reread(session).get(ApiToken, row.id).revoked_at == clock.now - timedelta(hours=1)
    assert len(session.exec(select(AuditEvent)).all()) == 2  # one create, one revoke


# --- the bearer check ---------------------------------------------------------------------


def test_the_bearer_check_names_expired_and_revoked_tokens_only(
    session: Session, nurse: User, clock: Clock, make_user
) -> None:
    good = _create(session, nurse, clock, name="good", days=1)
    revoked = _create(session, nurse, clock, name="revoked")
    tokens.revoke_token(session, revoked.row, clock.now, nurse)
    session.commit()
    ok = check_bearer(session, f"Bearer {good.secret}", clock.now)
    assert ok.user.id == nurse.id and ok.token.id == good.row.id and ok.refusal is None
    assert check_bearer(session, f"Bearer {revoked.secret}", clock.now).message == "token revoked"
    later = clock.now + timedelta(days=1)
    assert check_bearer(session, f"Bearer {good.secret}", later).message == "token expired"
    for header in (None, "", "Bearer ", f"Basic {good.secret}", "Bearer mabc_" + "x" * 43):
        refused = check_bearer(session, header, clock.now)
        assert refused.user is None and refused.message == "a valid bearer token is required"
    nurse = session.get(User, nurse.id)
    nurse.is_active = False
    session.add(nurse)
    session.commit()
    inactive = check_bearer(session, f"Bearer {good.secret}", clock.now)
    assert inactive.user is None and inactive.message == "a valid bearer token is required"


def test_an_expired_or_revoked_token_gets_401_saying_so(
    client: FlaskClient, session: Session, nurse: User, clock: Clock
) -> None:
    expiring = _create(session, nurse, clock, name="expiring", days=1)
    revoked = _create(session, nurse, clock, name="revoked")
    assert client.get("/api/v1/patients", headers=bearer(expiring.secret)).status_code == 200
    tokens.revoke_token(session, revoked.row, clock.now, nurse)
    session.commit()
    answer = client.get("/api/v1/patients", headers=bearer(revoked.secret))
    assert answer.status_code == 401
    assert answer.json == {"error": "unauthorized", "message": "token revoked"}
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    clock.advance(days=1)
    answer = client.get("/api/v1/patients", headers=bearer(expiring.secret))
    assert answer.status_code == 401 and answer.json["message"] == "token expired"
    unknown = client.get("/api/v1/patients", headers=bearer("mabc_" + "y" * 43))
    assert (
        unknown.status_code == 401 and unknown.json["message"] == "a valid bearer token is required"
    )
    assert unknown.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_deactivated_users_tokens_stop_working_at_once(
    client: FlaskClient, session: Session, nurse: User, clock: Clock
) -> None:
    issued = _create(session, nurse, clock)
    assert client.get("/api/v1/patients", headers=bearer(issued.secret)).status_code == 200
    user = session.get(User, nurse.id)
    user.is_active = False
    session.add(user)
    session.commit()
    answer = client.get("/api/v1/patients", headers=bearer(issued.secret))
    assert answer.status_code == 401 and answer.json["error"] == "unauthorized"


# --- last used, without a write per request ---------------------------------------------------


@pytest.fixture
def token_updates(app: Flask) -> Iterator[list[str]]:
    """Every UPDATE of the apitoken table the app's engine sends, as it sends it."""
    seen: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE APITOKEN"):
            seen.append(statement)

    engine = get_engine(app)
    event.listen(engine, "before_cursor_execute", listen)
    yield seen
    event.remove(engine, "before_cursor_execute", listen)


def test_a_hundred_requests_in_a_minute_write_last_used_once(
    client: FlaskClient, session: Session, nurse: User, clock: Clock, token_updates: list[str]
) -> None:
    issued = _create(session, nurse, clock)
    first_use = clock.now
    for _ in range(100):
        assert client.get("/api/v1/patients", headers=bearer(issued.secret)).status_code == 200
        clock.advance(seconds=0.6)
    assert len(token_updates) == 1
    assert reread(session).get(ApiToken, issued.row.id).last_used_at == first_use
    # Once the stored value is older than the granularity, the next request writes again.
    clock.now = first_use + tokens.LAST_USED_GRANULARITY + timedelta(seconds=1)
    post = client.post("/api/v1/patients", json={}, headers=bearer(issued.secret))
    assert post.status_code == 422  # a POST (writer session) records its use as well
    assert len(token_updates) == 2
    assert reread(session).get(ApiToken, issued.row.id).last_used_at == clock.now


def test_workers_that_saw_the_same_stale_value_write_it_once(
    app: Flask, session: Session, nurse: User, clock: Clock
) -> None:
    row = _create(session, nurse, clock).row
    engine = get_engine(app)
    # Two workers both read "never used", then each runs its conditional UPDATE.
    with Session(engine) as one, Session(engine) as two:
        assert tokens.use_is_stale(one.get(ApiToken, row.id), clock.now)
        assert tokens.use_is_stale(two.get(ApiToken, row.id), clock.now)
        one.rollback()
        two.rollback()
        assert tokens.record_token_use(one, row.id, clock.now) is True
        one.commit()
        assert tokens.record_token_use(two, row.id, clock.now + timedelta(seconds=1)) is False
        two.commit()
    assert reread(session).get(ApiToken, row.id).last_used_at == clock.now


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("days", [0, 366, -1, "90"])
def test_a_token_lifetime_setting_out_of_range_stops_the_app_at_start(tmp_path, days) -> None:
    with pytest.raises(ValueError, match="API_TOKEN_LIFETIME_DAYS"):
        create_app(
            {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}", "API_TOKEN_LIFETIME_DAYS": days}
        )


def test_the_token_lifetime_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN_LIFETIME_DAYS", "30")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"})
    assert app.config["API_TOKEN_LIFETIME_DAYS"] == 30
    get_engine(app).dispose()
    monkeypatch.setenv("API_TOKEN_LIFETIME_DAYS", "400")
    with pytest.raises(ValueError, match="from 1 to 365"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'y.sqlite3'}"})


# --- migration 0007 ---------------------------------------------------------------------------


def _upgrade(engine: Engine, url: str, revision: str) -> None:
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_the_migration_gives_existing_tokens_90_days_from_when_it_runs(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        _upgrade(engine, url, "0004")
        created = "2025-01-15 08:00:00"  # long before: the expiry must not follow it
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO team (id, name, created_at) VALUES (1, 'Hématologie', :at)"),
                {"at": created},
            )
            conn.execute(
                text(
                    'INSERT INTO "user" (id, team_id, email, name, role, failed_logins, '
                    "is_active, created_at) VALUES (1, 1, 'a@b.example', '', 'nurse', 0, "
                    "true, :at)"
                ),
                {"at": created},
            )
            conn.execute(
                text(
                    "INSERT INTO apitoken (id, user_id, token_hash, label, created_at) "
                    "VALUES (1, 1, :hash, 'cli', :at)"
                ),
                {"hash": hash_token("mabc_old"), "at": created},
            )
        before = datetime.now(UTC)
        _upgrade(engine, url, "head")  # 0007 gives the lifetime; the models need the rest
        after = datetime.now(UTC)
        with Session(engine) as session:
            row = session.get(ApiToken, 1)
        assert (row.name, row.prefix, row.created_by_user_id) == ("cli", None, None)
        lifetime = timedelta(days=90)
        assert before + lifetime - timedelta(seconds=1) <= row.expires_at <= after + lifetime
        with Session(engine) as session:
            assert check_bearer(session, "Bearer mabc_old", after).user.email == "a@b.example"
    finally:
        engine.dispose()
