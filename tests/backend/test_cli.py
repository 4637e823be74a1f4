"""CLI commands: create-user prints a working token last; demo data; migrations."""

from __future__ import annotations

from tests.conftest import bearer


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
    assert "already" in runner.invoke(args=["demo"]).output
