"""Outage test (issue 12, "Done when"): the real processes ride out 10 seconds without a database.

A real dispatcher and a real clock (``python -m flask --app backend reminders dispatch`` and
``... clock``) reach PostgreSQL through a TCP proxy (``tests/db_proxy.py``); SMS go to the
Twilio fake in this process. The test:

1. lets the dispatcher send a first batch, queues a second large one and cuts the proxy
   while it is being sent (connections dropped, new ones refused) for :data:`CUT_SECONDS`;
2. during the cut queues a third batch (straight to the server, as a web process on
   another route would), starts the clock (its first ask for the clock's lock meets the
   outage, so it stands by and asks again), and asks the web app,
   also through the proxy, for a patient: 503 with ``Retry-After``, not a 500;
3. restores the proxy and waits for everything due to be sent.

Then both processes are still running, every queued message reached Twilio exactly once
(rows cut off between Twilio's acceptance and their record are settled from Twilio's
message list, not sent again), nothing is left ``sending`` or due, each process logged
the outage in single lines without a traceback, and the clock became the active one and
ran its jobs once the database was back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend import create_app
from backend.db import get_engine
from backend.schemas import PatientIn, PlanIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.teams import create_user
from reminders.core.templates import render
from reminders.data.models import OutboundMessage, Team
from tests.conftest import bearer, issue_test_token
from tests.db_proxy import DatabaseOutage, database_outage
from tests.reminders.conftest import queue_due
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID, FakeTwilio, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgresql_only]

CUT_SECONDS = 10.0
LEASE_SECONDS = 2.0
FIRST, SECOND, DURING = 20, 150, 20
NAMES = (
    "Marie-Françoise Van den Bossche-Lefèvre",
    "Jean-Baptiste Vandenbroucke-Dupont",
    "Anne-Sophie Verhaegen-Delvaux",
)
PHONES = ("+32 470 12 34 56", "+32 471 23 45 67", "+32 472 34 56 78")
MEDICINES = ("cotrimoxazole", "aciclovir", "fluconazole")


@pytest.fixture
def outage(db_engine_name: str, database_url: str, tmp_path: Path) -> Iterator[DatabaseOutage]:
    """The suite's PostgreSQL database behind a cuttable proxy."""
    with database_outage(db_engine_name, database_url, tmp_path) as outage:
        yield outage


def seed(engine: Engine, now: datetime) -> tuple[int, list[int], str]:
    """A team with an on-call number, three consenting patients on alemtuzumab s.c. and
    never in quiet hours, and a nurse's API token: (team id, patient ids, token)."""
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(
            session,
            email="nurse@outage.example",
            team_name="Hématologie Saint-Luc",
            role="nurse",
            now=now,
            care_phone="+32 2 764 11 11",
        )
        token = issue_test_token(session, user, now)
        team = session.get(Team, user.team_id)
        team.oncall_phone = "+32 470 99 99 99"
        session.add(team)
        patient_ids = []
        for name, phone in zip(NAMES, PHONES, strict=True):
            patient = create_patient(
                session,
                user.team_id,
                PatientIn(
                    display_name=name,
                    phone=phone,
                    language="fr",
                    quiet_start=clock_time(0, 0),
                    quiet_end=clock_time(0, 0),
                ),
                now,
                region="BE",
            )
            patient.sms_consent = True  # after creation: no welcome SMS, only what is queued
            session.add(patient)
            start_plan(
                session,
                patient,
                PlanIn(regimen_id="alemtuzumab_sc", start_date=date.today()),
                None,
                now,
            )
            patient_ids.append(patient.id)
        session.commit()
        return user.team_id, patient_ids, token


def queue(engine: Engine, team_id: int, patient_ids: list[int], first: int, count: int) -> set[str]:
    """``count`` pill reminders (the real French template) due now; their bodies, all distinct."""
    now = datetime.now(UTC)
    bodies = [
        render(
            "pill_reminder",
            "fr",
            medicine=MEDICINES[n % len(MEDICINES)],
            time=f"{n // 60 % 24:02d}:{n % 60:02d} n°{n}",
        )
        for n in range(first, first + count)
    ]
    with Session(engine) as session:
        queue_due(
            session,
            team_id,
            patient_ids,
            bodies,
            prefix="outage",
            due=now,
            kind="pill_reminder",
            first=first,
        )
    return set(bodies)


def statuses(engine: Engine) -> Counter[str]:
    """Outbox rows by status (read straight from the server, not through the proxy)."""
    with Session(engine) as session:
        return Counter(session.exec(select(OutboundMessage.status)).all())


def due_unsent(engine: Engine) -> int:
    """Rows still to send now: pending and due, or left ``sending``."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        rows = session.exec(select(OutboundMessage)).all()
    return sum(
        1
        for r in rows
        if r.status in ("sending", "unconfirmed")
        or (r.status == "pending" and r.next_attempt_at <= now)
    )


class Process:
    """A ``flask --app backend reminders ...`` process started here, its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "backend", "reminders", *args],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def text(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers (only this process, by its pid)."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()


def web_app(url: str, tmp_path: Path) -> Flask:
    """The web app, in this process, on the proxied database."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "PUBLIC_BASE_URL": "https://companion.test",
            "DEFAULT_REGION": "BE",
        }
    )
    app.instance_path = str(tmp_path / "instance")
    return app


def test_dispatcher_and_clock_survive_a_ten_second_outage_and_send_everything_once(
    outage: DatabaseOutage,
    database_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    direct = create_engine(database_url)  # the test's own way in, around the proxy
    processes: list[Process] = []
    app = web_app(outage.url, tmp_path)
    try:
        team_id, patient_ids, token = seed(direct, datetime.now(UTC) - timedelta(minutes=1))
        bodies = queue(direct, team_id, patient_ids, 0, FIRST)
        with FakeTwilio() as fake:
            env = {
                **os.environ,
                "DATABASE_URL": outage.url,
                "SMS_BACKEND": "twilio",
                "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": FROM_VALID,
                "TWILIO_API_BASE_URL": fake.base_url,
                "TWILIO_TIMEOUT_SECONDS": "5",
                "DISPATCH_LEASE_SECONDS": str(LEASE_SECONDS),
                "PUBLIC_BASE_URL": "https://companion.test",
                "PYTHONUNBUFFERED": "1",
            }
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                env.pop(name, None)
                env.pop(name.lower(), None)
            dispatcher = Process(
                ["dispatch", "--interval", "0.2", "--threads", "2"], env, tmp_path / "dispatch.log"
            )
            processes.append(dispatcher)
            wait_until(
                lambda: statuses(direct)["sent"] >= FIRST or not dispatcher.running(),
                timeout=30,
                interval=0.1,
            )
            assert dispatcher.running(), dispatcher.text()[-3000:]
            client = app.test_client()
            url = f"/api/v1/patients/{patient_ids[0]}"
            assert client.get(url, headers=bearer(token)).status_code == 200

            # 1. Cut while the second batch is being sent.
            bodies |= queue(direct, team_id, patient_ids, FIRST, SECOND)
            wait_until(
                lambda: len(fake.messages) >= FIRST + 10 or not dispatcher.running(),
                timeout=20,
                interval=0.002,
            )
            outage.cut()
            cut_at = time.monotonic()
            at_cut = statuses(direct)

            # 2. During the cut: more messages due, the clock starts, the web app is asked.
            bodies |= queue(direct, team_id, patient_ids, FIRST + SECOND, DURING)
            time.sleep(1.0)
            clock = Process(["clock"], env, tmp_path / "clock.log")
            processes.append(clock)
            web = client.get(url, headers=bearer(token))
            assert web.status_code == 503, web.get_data(as_text=True)[:500]
            assert int(web.headers["Retry-After"]) > 0
            wait_until(
                lambda: "database unreachable" in clock.text(), timeout=CUT_SECONDS, interval=0.1
            )
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
            assert dispatcher.running() and clock.running(), "a process exited during the cut"
            assert client.get(url, headers=bearer(token)).status_code == 503

            # 3. Restore, and wait for everything due to go out.
            outage.restore()
            restored_at = time.monotonic()
            wait_until(
                lambda: due_unsent(direct) == 0 and len(fake.messages) >= len(bodies),
                timeout=40,
                interval=0.2,
            )
            recovered = time.monotonic() - restored_at
            wait_until(
                lambda: "reachable again" in clock.text() and "planning pass:" in clock.text(),
                timeout=30,
                interval=0.2,
            )
            assert client.get(url, headers=bearer(token)).status_code == 200
            received = list(fake.messages)
            still_running = (dispatcher.running(), clock.running())
    finally:
        for process in processes:
            process.stop()
        get_engine(app).dispose()

    dispatch_log, clock_log = dispatcher.text(), clock.text()
    counts = Counter(m["body"] for m in received)
    final = statuses(direct)
    with Session(direct) as session:
        rows = session.exec(select(OutboundMessage)).all()
    direct.dispose()
    report = (
        f"outage report: {len(bodies)} queued messages, statuses at the cut {dict(at_cut)}, "
        f"final {dict(final)}; received by Twilio {len(received)} "
        f"(duplicates {sum(n - 1 for n in counts.values())}); everything sent "
        f"{recovered:.1f} s after the restore; dispatcher outage lines "
        f"{dispatch_log.count('database unreachable')}, clock outage lines "
        f"{clock_log.count('database unreachable')}; {time.monotonic() - started:.1f} s"
    )
    print(f"\n{report}")
    record_property("outage_report", report)

    assert still_running == (True, True), f"{report}\n{dispatch_log[-2000:]}\n{clock_log[-2000:]}"
    # Every due message was sent once, and the row says so with Twilio's SID.
    assert all(counts[body] == 1 for body in bodies), report
    assert max(counts.values()) == 1, report  # also what the clock planned and sent
    sids = {m["sid"]: m["body"] for m in received}
    queued = [r for r in rows if r.body in bodies]
    assert len(queued) == len(bodies) and all(r.status == "sent" for r in queued), report
    assert all(sids.get(r.provider_sid) == r.body for r in queued), report
    # The outage was met and logged in single lines, without a traceback or patient data.
    for name, log in (("dispatcher", dispatch_log), ("clock", clock_log)):
        assert "database unreachable" in log, (name, report)
        assert "Traceback" not in log, (name, log[-3000:])
        for secret in (*NAMES, *(p.replace(" ", "") for p in PHONES)):
            assert secret not in log, (name, report)
        for line in log.splitlines():
            if "database unreachable" in line:
                assert "retrying in" in line, line
    assert "dispatch: database reachable again" in dispatch_log, report
    # The clock could not take the clock's lock during the outage (no job can run without
    # it), retried, and took it and ran its jobs once the outage was over.
    assert ": database unreachable (" in clock_log, clock_log[-3000:]
    assert ": database reachable again after" in clock_log, clock_log[-3000:]
    assert "is the active clock (lock)" in clock_log, clock_log[-3000:]
    assert "planning pass:" in clock_log, clock_log[-3000:]
