"""CLI commands: create-user prints a working token last; demo data; migrations."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from reminders.data.models import ApiToken, AuditEvent, Team, User
from tests.conftest import FIXED_NOW, bearer, reread


def test_create_user_prints_a_token_that_works(app, client) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-user", "Nurse@Example.org", "--team", "Haematology 3", "--role", "nurse"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("mabc_")
    assert client.get("/api/v1/patients", headers=bearer(token)).status_code == 200


def test_create_user_refuses_duplicates_and_bad_roles(app) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["create-user", "a@example.org", "--team", "T"]).exit_code == 0
    again = runner.invoke(args=["create-user", "a@example.org", "--team", "T"])
    assert again.exit_code != 0 and "already exists" in again.output
    assert (
        runner.invoke(
            args=["create-user", "b@example.org", "--team", "T", "--role", "boss"]
        ).exit_code
        != 0
    )
    short = runner.invoke(
        args=["create-user", "c@example.org", "--team", "T", "--password", "short"]
    )
    assert short.exit_code != 0 and "password" in short.output


def test_demo_data_is_created_once(app, client) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    token = first.output.strip().splitlines()[-1].split()[-1]
    patients = client.get("/api/v1/patients", headers=bearer(token)).json
    assert patients["total"] == 1
    # A haematologist is on call, so that a demo fever shows the escalation.
    now = client.get("/api/v1/oncall/now", headers=bearer(token))
    assert now.status_code == 200, now.json
    assert now.json["primary"]["name"] == "Dr Demo On-Call"
    assert "already" in runner.invoke(args=["demo"]).output


# --- API tokens ----------------------------------------------------------------------------


def _nurse(app) -> None:
    result = app.test_cli_runner().invoke(
        args=["create-user", "Marie-Francoise@Hopital.example", "--team", "Hématologie"]
    )
    assert result.exit_code == 0, result.output


def test_create_user_names_its_token_cli_and_it_expires_with_the_setting(
    app, client, session, clock
) -> None:
    app.config["API_TOKEN_LIFETIME_DAYS"] = 30
    _nurse(app)
    row = session.exec(select(ApiToken)).one()
    assert (row.name, row.created_by_user_id) == ("cli", None)
    assert row.expires_at == clock.now + timedelta(days=30)


def test_tokens_create_prints_the_token_once_last_and_it_works(app, client, session, clock):
    _nurse(app)
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["tokens", "create", "--email", "marie-francoise@hopital.example",
              "--name", "Lab import — Saint-Luc", "--days", "7"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    token = lines[-1]
    assert token.startswith("mabc_") and result.output.count(token) == 1
    assert "Lab import — Saint-Luc" in lines[0] and "2026-03-09 10:00 UTC" in lines[0]
    assert client.get("/api/v1/patients", headers=bearer(token)).status_code == 200
    row = reread(session).exec(select(ApiToken).where(ApiToken.name != "cli")).one()
    assert row.expires_at == clock.now + timedelta(days=7)
    event = session.exec(select(AuditEvent).where(AuditEvent.target == f"token:{row.id}")).one()
    assert (event.action, event.user_id) == ("create_api_token", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "nobody@hopital.example", "--name", "x"], "email: no user"),
        (["--email", "not an email", "--name", "x"], "email: not a valid email"),
        (["--email", "marie-francoise@hopital.example", "--name", " "], "name: give the token"),
        (["--email", "marie-francoise@hopital.example", "--name", "x", "--days", "366"], "days:"),
        (["--email", "marie-francoise@hopital.example", "--name", "cli"], "already a live token"),
    ],
)
def test_tokens_create_fails_in_one_line_and_writes_nothing(app, session, args, message) -> None:
    _nurse(app)
    result = app.test_cli_runner().invoke(args=["tokens", "create", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "mabc_" not in result.output
    assert len(reread(session).exec(select(ApiToken)).all()) == 1  # create-user's only


def test_tokens_list_shows_prefixes_never_tokens_and_filters(app, session, make_user) -> None:
    _nurse(app)
    runner = app.test_cli_runner()
    _, other_token = make_user(team="Team B")
    everything = runner.invoke(args=["tokens", "list"])
    assert everything.exit_code == 0, everything.output
    assert len(everything.output.strip().splitlines()) == 2
    assert "mabc_" in everything.output and other_token not in everything.output
    assert other_token[5:13] in everything.output  # the public prefix
    mine = runner.invoke(args=["tokens", "list", "--email", "Marie-Francoise@hopital.example"])
    assert mine.output.count("\n") == 1 and "'cli'" in mine.output and "active" in mine.output
    team_b = runner.invoke(args=["tokens", "list", "--team", "Team B"])
    assert team_b.output.count("\n") == 1 and "'tests'" in team_b.output
    both = runner.invoke(args=["tokens", "list", "--team", "Team B", "--email", "a@b.example"])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(args=["tokens", "list", "--team", "Nowhere"])
    assert unknown.exit_code == 1 and "team: no team" in unknown.output
    empty = runner.invoke(args=["tokens", "list", "--team", "Hématologie"])
    assert empty.exit_code == 0 and "'cli'" in empty.output


def test_tokens_revoke_stops_a_token_at_once_and_only_once(app, client, session) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["create-user", "n@hopital.example", "--team", "Hématologie"])
    token = created.output.strip().splitlines()[-1]
    row = session.exec(select(ApiToken)).one()
    revoked = runner.invoke(args=["tokens", "revoke", str(row.id)])
    assert revoked.exit_code == 0 and f"Revoked token {row.id} 'cli'" in revoked.output
    answer = client.get("/api/v1/patients", headers=bearer(token))
    assert answer.status_code == 401 and answer.json["message"] == "token revoked"
    again = runner.invoke(args=["tokens", "revoke", str(row.id)])
    assert again.exit_code == 1 and "already revoked" in again.output
    gone = runner.invoke(args=["tokens", "revoke", "9999"])
    assert gone.exit_code == 1 and gone.output.strip() == "Error: no token 9999"
    huge = runner.invoke(args=["tokens", "revoke", "99999999999999"])  # larger than any id
    assert huge.exit_code == 2 and "not in the range" in huge.output
    events = reread(session).exec(select(AuditEvent.action, AuditEvent.target)).all()
    assert ("revoke_api_token", f"token:{row.id}") in events
    assert len([e for e in events if e[0] == "revoke_api_token"]) == 1


def test_create_user_and_set_profile_keep_the_clinicians_phone_and_language(app, session) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=[
            "create-user", "anne-sophie@saintluc.example", "--team", "Hématologie — Saint-Luc",
            "--role", "physician", "--name", "Dr Anne-Sophie Vandenbroucke-Lefèvre",
            "--phone", "0470 11 22 33", "--language", "fr",
        ]
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    user = (
        reread(session).exec(select(User).where(User.email == "anne-sophie@saintluc.example")).one()
    )
    assert (user.phone, user.language) == ("+32470112233", "fr")
    taken = runner.invoke(
        args=["create-user", "b@saintluc.example", "--team", "T", "--phone", "+32470112233"]
    )
    assert taken.exit_code == 1 and "phone: this number is already on another user" in taken.output
    changed = runner.invoke(
        args=[
            "set-profile",
            "anne-sophie@saintluc.example",
            "--phone",
            "+32 470 55 66 77",
            "--language",
            "nl",
        ]
    )
    assert changed.exit_code == 0, changed.output
    assert changed.output == "anne-sophie@saintluc.example: phone ending 677, language nl.\n"
    row = (
        reread(session).exec(select(AuditEvent).where(AuditEvent.action == "update_profile")).one()
    )
    assert (row.user_id, row.team_id, row.target, row.channel) == (
        None,
        user.team_id,
        f"user:{user.id}",
        "cli",
    )
    cleared = runner.invoke(args=["set-profile", "anne-sophie@saintluc.example", "--clear-phone"])
    assert cleared.exit_code == 0 and "no phone" in cleared.output
    assert runner.invoke(args=["set-profile", "anne-sophie@saintluc.example"]).exit_code == 2
    bad = runner.invoke(args=["set-profile", "anne-sophie@saintluc.example", "--phone", "12"])
    assert bad.exit_code == 1 and "phone: not a valid phone number" in bad.output


def test_oncall_list_shows_who_is_on_call_and_the_shifts_in_local_time(
    app, session, make_user
) -> None:
    from backend.services.oncall import add_shift

    anne, _ = make_user(
        team="Hématologie — Saint-Luc",
        name="Dr Anne-Sophie Vandenbroucke-Lefèvre",
        phone="+32470112233",
    )
    team = session.get(Team, anne.team_id)
    add_shift(
        session, team, user_id=anne.id, role="primary", starts_at=datetime(2026, 3, 2, 8, 0),
        ends_at=datetime(2026, 3, 2, 20, 0), actor=None, now=FIXED_NOW,
    )  # fmt: skip
    session.commit()
    listed = app.test_cli_runner().invoke(
        args=["oncall", "list", "--team", "Hématologie — Saint-Luc"]
    )
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == (
        "On call now (Europe/Brussels): Dr Anne-Sophie Vandenbroucke-Lefèvre, backup nobody; "
        "fallback NOT SET."
    )
    assert "Warning: Nobody is backup now." in lines
    assert lines[-1].endswith(
        "Mon 2 Mar 08:00 CET - Mon 2 Mar 20:00 CET  primary  Dr Anne-Sophie Vandenbroucke-Lefèvre"
    )
    unknown = app.test_cli_runner().invoke(args=["oncall", "list", "--team", "Nowhere"])
    assert unknown.exit_code == 1 and "no team with this name" in unknown.output
