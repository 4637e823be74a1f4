"""Wake-ups: an urgent reply's page leaves at once, not at the next poll (issue 14, item 5).

The web side is the app in this process (a signed fever webhook through the Flask test
client, committed like any request); the dispatchers are real ``flask --app backend
reminders dispatch`` processes polling every :data:`POLL` seconds, sending through the
real twilio client to the Twilio fake. A page that arrives within seconds can only have
come from a wake-up: the next poll is a minute away. How fast it arrives under load is
the benchmark's question (``bench/bench_paging.py``), not a test's.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from reminders.data.models import OutboundMessage, Patient, Team
from reminders.dispatch import run_dispatcher
from reminders.gateways import TwilioGateway
from reminders.outbox import enqueue_message, insert_ignoring_duplicates, outbox_row
from reminders.wakeup import PostgresWakeup, Wakeup, listen_for_wakeups
from tests.reminders.conftest import dispatcher_environment
from tests.reminders.test_outage_processes import Process
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    FakeTwilio,
    inbound_sms_params,
    signed_form_post,
    wait_until,
)

pytestmark = pytest.mark.slow

#: The dispatchers' poll interval: a page within :data:`WOKEN_WITHIN` came from a wake-up.
POLL = 60
WOKEN_WITHIN = 5.0
BASE = "https://companion.test"
OUR_NUMBER = "+32460000000"
ONCALL = "+32475000111"
NAMES = (
    "Marie-Françoise Van den Bossche-Lefèvre",
    "Jean-Baptiste Vandenbroucke-Dupont",
    "Anne-Sophie Verhaegen-Delvaux",
    "Zoë Öztürk-Janssens",
)


@pytest.fixture
def web(app, clock):
    """The web app on real time (the dispatcher processes use it) with Twilio's settings."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    app.config["PUBLIC_BASE_URL"] = BASE
    clock.now = datetime.now(UTC)
    return app


@pytest.fixture
def patients(web, session, make_user, make_patient, make_plan) -> Callable[[int], list[Patient]]:
    """``n`` patients of one team (on-call number set), each on alemtuzumab s.c."""

    def factory(n: int) -> list[Patient]:
        user, _ = make_user(team="Hématologie Saint-Luc")
        team = session.get(Team, user.team_id)
        team.oncall_phone = ONCALL
        session.add(team)
        session.commit()
        made = []
        for k in range(n):
            patient = make_patient(
                user.team_id,
                display_name=NAMES[k % len(NAMES)],
                hospital_ref=f"CUSL-{k + 1:07d}",
                language="fr",
            )
            make_plan(patient, "alemtuzumab_sc", date.today() - timedelta(days=16))
            made.append(patient)
        return made

    return factory


@pytest.fixture
def dispatchers(
    database_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> Iterator[Callable[..., Process]]:
    """Start ``reminders dispatch --interval POLL`` processes; all stopped at the end."""
    started: list[Process] = []
    env = dispatcher_environment(database_url, fake_twilio.base_url, BASE)

    def start(*extra: str) -> Process:
        args = ["dispatch", "--interval", str(POLL), "--threads", "2", *extra]
        process = Process(args, env, tmp_path / f"dispatch{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def after_first_pass(*processes: Process) -> None:
    """Once each process has made its first pass it waits: a page queued from now on is
    sent by a wake-up or, a minute later, by the poll."""
    for process in processes:
        assert wait_until(lambda p=process: "first pass done" in p.text() or not p.running(), 60)
        assert process.running(), process.text()[-3000:]


def post_fever(client, patient: Patient, text: str = "39,2") -> datetime:
    """A signed fever SMS from ``patient``; the moment its answer came back (after the commit)."""
    params = inbound_sms_params(patient.phone, text, OUR_NUMBER)
    response = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert response.status_code == 200, response.text
    return datetime.now(UTC)


def pages(fake: FakeTwilio) -> list[dict]:
    """The messages the fake received for the on-call phone."""
    return [m for m in fake.messages if m["to"] == ONCALL]


def test_an_urgent_reply_wakes_a_dispatcher_polling_once_a_minute(
    client, session, patients, dispatchers, fake_twilio
) -> None:
    (patient,) = patients(1)
    dispatcher = dispatchers()
    after_first_pass(dispatcher)

    committed = post_fever(client, patient)

    assert wait_until(lambda: len(pages(fake_twilio)) == 1, WOKEN_WITHIN), dispatcher.text()[-3000:]
    (page,) = pages(fake_twilio)
    assert page["body"].startswith("URGENT, patient ")
    assert f"({patient.hospital_ref})" in page["body"]
    waited = (page["received_at"] - committed).total_seconds()
    assert waited < WOKEN_WITHIN  # the next poll was a minute away
    assert "woken by urgent rows" in dispatcher.text()


def test_two_dispatchers_woken_together_send_each_page_once(
    client, session, patients, dispatchers, fake_twilio
) -> None:
    team_patients = patients(8)
    first, second = dispatchers(), dispatchers()
    after_first_pass(first, second)

    for patient in team_patients:  # each commit wakes both dispatchers
        post_fever(client, patient)

    assert wait_until(lambda: len(pages(fake_twilio)) >= len(team_patients), WOKEN_WITHIN * 2)
    time.sleep(0.5)  # a second send of a page, were there one, would land by now
    bodies = Counter(m["body"] for m in pages(fake_twilio))
    assert len(bodies) == len(team_patients) and set(bodies.values()) == {1}, bodies
    session.expire_all()
    oncall = session.exec(select(OutboundMessage).where(OutboundMessage.recipient == "clinician"))
    assert Counter(m.status for m in oncall) == Counter(sent=len(team_patients))
    assert first.running() and second.running()


def test_the_wake_up_off_leaves_the_page_to_the_poll(
    client, session, patients, dispatchers, fake_twilio
) -> None:
    (patient,) = patients(1)
    dispatcher = dispatchers("--no-wakeup")
    after_first_pass(dispatcher)

    post_fever(client, patient)

    assert not wait_until(lambda: pages(fake_twilio), WOKEN_WITHIN)
    assert "woken by urgent rows" not in dispatcher.text()


# --- the wake-up itself, in this process ----------------------------------------------------


@pytest.fixture
def listening(engine) -> Iterator[Wakeup]:
    """A dispatcher's wake-up on the test database."""
    wakeup = listen_for_wakeups(engine)
    yield wakeup
    wakeup.close()


def queue_urgent(session: Session, team_id: int, key: str, **columns) -> bool:
    """An urgent on-call row through :func:`enqueue_message` (not committed)."""
    return enqueue_message(
        session,
        team_id=team_id,
        kind="oncall_alert",
        body=f"URGENT, patient {key}: fièvre 39,2 °C. Patient told to call the care team.",
        dedupe_key=key,
        now=datetime.now(UTC),
        recipient="oncall",
        urgent=True,
        **columns,
    )


@pytest.fixture
def team_id(session, make_user) -> int:
    user, _ = make_user(team="Hématologie Saint-Luc")
    return user.team_id


def test_a_wake_up_comes_with_the_commit_and_never_with_a_rollback(
    session, listening, team_id
) -> None:
    assert queue_urgent(session, team_id, "rolled-back")
    session.rollback()
    assert not listening.wait(0.5)

    assert queue_urgent(session, team_id, "committed")
    assert not listening.wait(0.2)  # not before the commit
    session.commit()
    assert listening.wait(WOKEN_WITHIN)
    assert not listening.wait(0.2)  # read once


def test_only_urgent_rows_due_now_wake_the_dispatchers(session, listening, team_id) -> None:
    now = datetime.now(UTC)
    enqueue_message(
        session, team_id=team_id, kind="one_off", body="Bonjour Zoë", dedupe_key="calm", now=now
    )
    queue_urgent(session, team_id, "later", due_at=now + timedelta(minutes=30))
    session.commit()
    assert not listening.wait(0.5)


def test_a_burst_of_wake_ups_wakes_fewer_passes_than_rows(session, listening, team_id) -> None:
    for n in range(20):
        queue_urgent(session, team_id, f"burst{n}")
        session.commit()
    wakes = 0
    while wakes <= 20 and listening.wait(0.3 if wakes else WOKEN_WITHIN):
        wakes += 1  # each wait reads every announcement already queued
    assert 1 <= wakes < 20


@pytest.mark.postgresql_only
def test_a_cut_listening_connection_is_opened_again(engine, session, team_id) -> None:
    wakeup = listen_for_wakeups(engine)
    assert isinstance(wakeup, PostgresWakeup)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": wakeup.backend_pid()})
        assert not wakeup.wait(0.5)  # the lost connection: no wake-up, the poll's wait
        queue_urgent(session, team_id, "while-cut")  # nobody listens: lost, left to the poll
        session.commit()
        assert not wakeup.wait(0.5)  # listening again from here
        queue_urgent(session, team_id, "after")
        session.commit()
        assert wakeup.wait(WOKEN_WITHIN)
    finally:
        wakeup.close()


def test_a_lost_wake_up_is_sent_by_the_next_poll(engine, session, team_id, fake_twilio) -> None:
    # An urgent row committed without its wake-up (a web process killed between its
    # commit and the signal): written straight to the outbox.
    row = outbox_row(
        team_id=team_id,
        kind="oncall_alert",
        body="URGENT, patient P1: fièvre 39,2 °C.",
        dedupe_key="lost",
        now=datetime.now(UTC),
        recipient="oncall",
        urgent=True,
    )
    team = session.get(Team, team_id)
    team.oncall_phone = ONCALL
    session.add(team)
    insert_ignoring_duplicates(session, [row])
    session.commit()
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number=FROM_VALID, api_base_url=fake_twilio.base_url
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=run_dispatcher, args=(engine, gateway), kwargs={"interval": 1.0, "stop": stop}
    )
    # The dispatcher starts after the commit; its first pass sends the row. Then a second
    # lost row waits for the poll.
    thread.start()
    try:
        assert wait_until(lambda: len(pages(fake_twilio)) == 1, 10)
        second = {**row, "dedupe_key": "lost-too", "body": "URGENT, patient P2: frissons."}
        insert_ignoring_duplicates(session, [second])
        session.commit()
        assert wait_until(lambda: len(pages(fake_twilio)) == 2, 10)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
