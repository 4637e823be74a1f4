"""The ``.env`` file: one reader (``backend.config``), and every entry point sees it.

Issue 13, item 6. The entry points are real processes started in a directory holding a
``.env`` and nothing of the companion's variables in their environment: the ``flask``
CLI, the web app under gunicorn (the Procfile's ``web``), the clock and a dispatcher.
Each shows it used a value found only in that file.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlmodel import Session

from backend import create_app
from backend.config import (
    ENVIRONMENT_VARIABLES,
    environment_with_env_file,
    load_environment,
    read_env_file,
)
from reminders.data.models import LoginThrottle, User

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "marie-francoise.vandenbossche@hopital.example"
TEAM = "Hématologie de jour, Cliniques universitaires Saint-Luc"
# Long enough for a cold interpreter on a busy 2-core machine; the loops stop earlier.
PROCESS_DEADLINE_SECONDS = 60


def write_env(directory: Path, **values: str) -> None:
    lines = ["# local settings of this test", *(f"{key}={value}" for key, value in values.items())]
    (directory / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def process_env() -> dict[str, str]:
    """The test's environment without any of the companion's variables (only ``.env`` has
    them), importing ``backend`` from this checkout, with Flask's own loader switched off
    as in the Procfile."""
    env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["FLASK_SKIP_DOTENV"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def flask(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "backend", *args],
        cwd=directory,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_SECONDS,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --- the reader ---------------------------------------------------------------------------


def test_reads_assignments_and_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# Database\n"
        "\n"
        "DATABASE_URL=sqlite:///instance/companion.sqlite3\n"
        "export PUBLIC_BASE_URL = https://companion.example.org  # behind the proxy\n"
        "SECRET_KEY='a#b c'\n"
        'TWILIO_FROM_NUMBER="+32 470 12 34 56"\n'
        "TWILIO_AUTH_TOKEN=tok#en\n"
        "TWILIO_ACCOUNT_SID=\n",
        encoding="utf-8",
    )

    assert read_env_file(tmp_path / ".env") == {
        "DATABASE_URL": "sqlite:///instance/companion.sqlite3",
        "PUBLIC_BASE_URL": "https://companion.example.org",
        "SECRET_KEY": "a#b c",
        "TWILIO_FROM_NUMBER": "+32 470 12 34 56",
        "TWILIO_AUTH_TOKEN": "tok#en",
        "TWILIO_ACCOUNT_SID": "",
    }


def test_no_file_is_no_setting(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / ".env") == {}
    assert environment_with_env_file({"DEFAULT_REGION": "FR"}, tmp_path) == {"DEFAULT_REGION": "FR"}


def test_a_line_that_is_no_assignment_is_refused_by_number_without_its_text(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text(
        "SMS_BACKEND=twilio\nAC0123456789abcdef secret-auth-token\n", encoding="utf-8"
    )

    with pytest.raises(ValueError, match=r"\.env, line 2: expected KEY=VALUE") as refused:
        read_env_file(tmp_path / ".env")
    assert "secret-auth-token" not in str(refused.value)


def test_the_process_environment_wins_over_the_file(tmp_path: Path) -> None:
    write_env(tmp_path, DEFAULT_REGION="NL", SMS_BACKEND="twilio")

    environ = environment_with_env_file({"DEFAULT_REGION": "BE"}, tmp_path)

    assert load_environment(environ) == {"DEFAULT_REGION": "BE", "SMS_BACKEND": "twilio"}


def test_create_app_reads_the_env_file_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    write_env(
        tmp_path,
        DATABASE_URL=sqlite_url(tmp_path / "local.sqlite3"),
        PUBLIC_BASE_URL="https://compagnon.hopital.example",
        API_TOKEN_LIFETIME_DAYS="30",
    )
    monkeypatch.chdir(tmp_path)

    app = create_app()

    assert app.config["PUBLIC_BASE_URL"] == "https://compagnon.hopital.example"
    assert app.config["API_TOKEN_LIFETIME_DAYS"] == 30
    assert app.config["DATABASE_URL"] == sqlite_url(tmp_path / "local.sqlite3")


def test_tests_never_see_a_developers_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a test config the file is not read: a local database must not reach a test."""
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    write_env(tmp_path, PUBLIC_BASE_URL="https://compagnon.hopital.example")
    monkeypatch.chdir(tmp_path)

    app = create_app({"TESTING": True, "DATABASE_URL": sqlite_url(tmp_path / "t.sqlite3")})

    assert app.config["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"


def test_a_malformed_file_stops_the_app_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("SECRET_KEY\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValueError, match="line 1"):
        create_app()


# --- every entry point --------------------------------------------------------------------


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[Path]:
    """A directory whose ``.env`` names a SQLite file, migrated by ``flask db upgrade``."""
    database = tmp_path / "from-env-file.sqlite3"
    write_env(tmp_path, DATABASE_URL=sqlite_url(database), SESSION_COOKIE_SECURE="0")
    done = flask(tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    yield database


def test_flask_cli_uses_the_database_named_only_in_env_file(tmp_path: Path, migrated: Path) -> None:
    done = flask(tmp_path, "create-user", EMAIL, "--team", TEAM, "--password", "x" * 16)

    assert done.returncode == 0, done.stderr
    with Session(create_engine(sqlite_url(migrated))) as session:
        assert session.exec(select(User.email)).all() == [(EMAIL,)]


@pytest.mark.slow
def test_gunicorn_web_app_uses_the_database_named_only_in_env_file(
    tmp_path: Path, migrated: Path
) -> None:
    created = flask(tmp_path, "create-user", EMAIL, "--team", TEAM, "--password", "x" * 16)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1].split()[-1]
    port = free_port()
    # The Procfile's web line, on a free local port.
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        [*command, "backend:create_app()"],
        cwd=tmp_path,
        env=process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer = wait_for_answer(
            server, f"http://127.0.0.1:{port}/api/v1/patients", {"Authorization": f"Bearer {token}"}
        )
    finally:
        server.terminate()
        server.communicate(timeout=PROCESS_DEADLINE_SECONDS)

    # The token exists only in the file that .env names: 200, not 401.
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


def test_dispatcher_uses_a_setting_found_only_in_env_file(tmp_path: Path) -> None:
    write_env(tmp_path, DISPATCH_LEASE_SECONDS="-7")

    done = flask(tmp_path, "reminders", "dispatch", "--once")

    assert done.returncode == 1
    assert "DISPATCH_LEASE_SECONDS must be positive, got -7" in done.stderr


@pytest.mark.slow
def test_clock_uses_the_database_named_only_in_env_file(tmp_path: Path, migrated: Path) -> None:
    long_ago = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    engine = create_engine(sqlite_url(migrated))
    with Session(engine) as session:
        session.add(
            LoginThrottle(
                account_key="a" * 64,
                address_key="b" * 64,
                failures=1,
                first_failure_at=long_ago,
                last_failure_at=long_ago,
            )
        )
        session.commit()
    clock = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "backend", "reminders", "clock"],
        cwd=tmp_path,
        env=process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = wait_for_line(clock, "idle counters pruned")
    finally:
        clock.terminate()
        clock.wait(timeout=PROCESS_DEADLINE_SECONDS)

    # The clock's first pass pruned the idle counter that only the .env database holds.
    assert "sign-in throttle: 1 idle counters pruned" in line
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(LoginThrottle)).one() == (0,)


def test_no_second_reader_is_installed_or_started() -> None:
    """Flask reads .env itself only with python-dotenv, honcho unless told otherwise."""
    for lock in ROOT.glob("requirements*.lock"):
        assert "python-dotenv" not in lock.read_text(encoding="utf-8"), lock.name
    for procfile in ("Procfile", "Procfile.dev"):
        for line in (ROOT / procfile).read_text(encoding="utf-8").splitlines():
            if "flask --app" in line:
                assert "FLASK_SKIP_DOTENV=1 " in line, f"{procfile}: {line}"
    run = (ROOT / "scripts" / "run").read_text(encoding="utf-8")
    assert "FLASK_SKIP_DOTENV=1" in run
    assert "honcho start --env /dev/null" in run


# --- helpers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_answer(
    server: subprocess.Popen[str], url: str, headers: dict[str, str]
) -> requests.Response:
    """The first answer of a server still starting (connection refused until it listens)."""
    deadline = time.monotonic() + PROCESS_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited: {server.communicate()[1]}")
        try:
            return requests.get(url, headers=headers, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.1)  # a real process starting: nothing to inject a clock into
    raise AssertionError("gunicorn did not answer in time")


def wait_for_line(process: subprocess.Popen[str], needle: str) -> str:
    """The first line of ``process``'s stderr containing ``needle`` (read in a thread so a
    silent process cannot hang the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + PROCESS_DEADLINE_SECONDS
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r}; stderr was:\n{''.join(seen)}")
