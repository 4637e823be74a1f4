"""End to end: a live server, a dispatcher process and the test Twilio server page the rota.

The web app serves real HTTP on 127.0.0.1 (werkzeug in a thread, on SQLite and on
PostgreSQL); a separate ``flask --app backend reminders dispatch`` process sends through
the real twilio client to the test Twilio server, which places the calls and plays them
against the live server's voice webhooks, signed as Twilio signs. The escalation's later
steps are taken with injected times (``escalate_alerts`` as of 5, 10 and 15 minutes after
the alert), never slept on: the app's clock starts half an hour in the past, so every
page the steps queue is already due for the dispatcher, which runs on the real time.
"""

from __future__ import annotations

import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlmodel import Session, select

from backend.db import get_engine
from reminders.core.oncall_text import alert_code
from reminders.data.alerts import alert_timeline
from reminders.data.db import session_scope
from reminders.data.models import Alert, OnCallShift, OutboundMessage, Team
from reminders.escalation import escalate_alerts
from reminders.outbox import enqueue_message
from tests.reminders.conftest import dispatcher_environment
from tests.reminders.test_outage_processes import Process
from tests.security.conftest import PUBLIC_BASE, serving
from tests.twilio_fake import (
    FAKE_AUTH_TOKEN,
    FakeTwilio,
    inbound_sms_params,
    twilio_signature,
    wait_until,
)

PATIENT_PHONE = "+32470123456"
PRIMARY_PHONE = "+32475112233"
BACKUP_PHONE = "+32476445566"
FALLBACK_PHONE = "+32470999999"
STRANGER_PHONE = "+32499887766"
OUR_NUMBER = "+32460000000"
WARM_UP_PHONE = "+32470000001"


def post_sms(server, from_: str, body: str) -> requests.Response:
    """An SMS as Twilio posts it to the live server (signed for the public URL)."""
    params = inbound_sms_params(from_, body, OUR_NUMBER)
    signature = twilio_signature(f"{PUBLIC_BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    return requests.post(
        server("/twilio/sms"), data=params, headers={"X-Twilio-Signature": signature}, timeout=10
    )


def to_live_server(server):
    """The test Twilio server's webhook poster: the public URL it signed, sent to loopback."""

    def post(url: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = requests.post(server(path), data=params, headers=headers, timeout=10)
        return answer.status_code, answer.text

    return post


@pytest.fixture
def ward(session, make_user, make_patient, make_plan, clock):
    """A team with a primary (French) and a backup (Dutch) on call, and a patient on alemtuzumab.

    The app's clock starts 30 minutes ago (T0): the alert is created then.
    """
    clock.now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    nurse, _ = make_user("Hématologie — Cliniques universitaires Saint-Luc")
    team = session.get(Team, nurse.team_id)
    team.oncall_phone = FALLBACK_PHONE
    primary, _ = make_user(team.name, role="physician", name="Dr Anne-Sophie Lefèvre-Dubois")
    backup, _ = make_user(team.name, role="physician", name="Dr Pieter-Jan Vandenbroucke")
    primary.phone, primary.language = PRIMARY_PHONE, "fr"
    backup.phone, backup.language = BACKUP_PHONE, "nl"
    session.add_all([team, primary, backup])
    for user, role in ((primary, "primary"), (backup, "backup")):
        session.add(
            OnCallShift(
                team_id=team.id,
                user_id=user.id,
                role=role,
                starts_at=clock.now - timedelta(hours=2),
                ends_at=clock.now + timedelta(hours=10),
                created_at=clock.now,
            )
        )
    session.commit()
    patient = make_patient(
        team.id,
        phone=PATIENT_PHONE,
        display_name="Marie-Françoise Van den Bossche-Lefèvre",
        hospital_ref="CUSL-0042117",
    )
    make_plan(patient, "alemtuzumab_sc", clock.now.date() - timedelta(days=20))
    return primary, backup


#: The dispatcher's seconds between passes in these tests.
POLL_SECONDS = 60


@pytest.fixture
def dispatcher(database_url: str, tmp_path: Path):
    """A dispatcher process of its own, sending through the test Twilio server."""
    with FakeTwilio() as fake:
        env = dispatcher_environment(database_url, fake.base_url, PUBLIC_BASE)
        # A minute between passes: a page within seconds can only be the wake-up's doing,
        # however loaded the machine (the wake-up's latency is bench/, not a test's).
        process = Process(
            ["dispatch", "--threads", "2", "--interval", str(POLL_SECONDS)],
            env,
            tmp_path / "dispatch.log",
        )
        try:
            yield fake, process
        finally:
            process.stop()


def escalate(engine, at: datetime) -> int:
    with session_scope(engine) as job:
        return escalate_alerts(job, at)


def the_alert(engine) -> Alert:
    with Session(engine) as session:
        return session.exec(select(Alert)).one()


@pytest.mark.parametrize("acknowledged_by", ["key 1 on the call", "ACK by SMS"])
def test_an_urgent_reply_pages_the_rota_until_a_human_acknowledges(
    app, clock, ward, dispatcher, acknowledged_by
) -> None:
    primary, _ = ward
    fake, process = dispatcher
    engine = get_engine(app)
    t0 = clock.now
    with serving(app) as server:
        fake.webhook_post = to_live_server(server)
        # The dispatcher is up once it has sent a first message: only then is a page timed.
        with session_scope(engine) as warm:
            enqueue_message(
                warm,
                team_id=primary.team_id,
                recipient="clinician",
                to_phone=WARM_UP_PHONE,
                kind="oncall_alert",
                body="Test page: the dispatcher is running.",
                dedupe_key="warm-up",
                now=t0,
            )
        assert wait_until(lambda: fake.bodies_to(WARM_UP_PHONE), timeout=30, interval=0.05), (
            process.text()[-2000:]
        )

        # 1. The patient's fever reaches the primary's own phone within a second.
        started = time.monotonic()
        answer = post_sms(server, PATIENT_PHONE, "39,2 et des frissons")
        assert answer.status_code == 200 and "+32 2 555 01 23" in answer.text
        assert wait_until(lambda: fake.bodies_to(PRIMARY_PHONE), timeout=10, interval=0.005)
        paged_after = time.monotonic() - started
        assert paged_after < POLL_SECONDS / 4, paged_after
        alert = the_alert(engine)
        code = alert_code(alert.id)
        [page] = fake.bodies_to(PRIMARY_PHONE)
        assert page.startswith("URGENT, patient M.B. (CUSL-0042117)") and f"ACK {code}" in page

        # 2. A reply from another number acknowledges nothing.
        post_sms(server, STRANGER_PHONE, f"ACK {code}")
        assert the_alert(engine).status == "open"

        # 3. Nobody acknowledges: a call to the primary at 5 minutes, nothing else.
        clock.now = t0 + timedelta(minutes=5)
        assert escalate(engine, clock.now) == 1
        assert wait_until(lambda: fake.calls_to(PRIMARY_PHONE), timeout=10, interval=0.01)
        assert fake.calls_to(BACKUP_PHONE) == [] and fake.bodies_to(BACKUP_PHONE) == []

        # 4. At 10 minutes the backup: an SMS and a call.
        clock.now = t0 + timedelta(minutes=10)
        assert escalate(engine, clock.now) == 2
        assert wait_until(
            lambda: fake.calls_to(BACKUP_PHONE) and fake.bodies_to(BACKUP_PHONE),
            timeout=10,
            interval=0.01,
        )
        assert fake.bodies_to(BACKUP_PHONE)[0].startswith("NOG OPEN na 10 min")

        # 5. The primary acknowledges: by key 1 on her call, or by ACK from her phone.
        clock.now = t0 + timedelta(minutes=11)
        if acknowledged_by == "ACK by SMS":
            reply = post_sms(server, PRIMARY_PHONE, f"ack {code}")
            assert f"Alerte {code} prise en charge" in reply.text
        else:
            [call] = fake.calls_to(PRIMARY_PHONE)
            played = fake.play_call(call["sid"], "answer", digits="1")
            assert played["webhook_statuses"] == [200, 200, 204]
            assert played["spoken"][-1].startswith("Merci. L'alerte est prise en charge")
        alert = the_alert(engine)
        assert (alert.status, alert.acknowledged_by) == ("acknowledged", primary.id)

        # 6. Escalation stops: nothing at 15 minutes, the fallback number is never paged.
        assert escalate(engine, t0 + timedelta(minutes=15)) == 0
        assert escalate(engine, t0 + timedelta(minutes=60)) == 0
        with Session(engine) as session:
            numbers = session.exec(select(OutboundMessage.to_phone)).all()
        assert FALLBACK_PHONE not in numbers
        assert fake.bodies_to(FALLBACK_PHONE) == [] and fake.calls_to(FALLBACK_PHONE) == []
        assert process.running(), process.text()[-2000:]

    with Session(engine) as session:
        lines = alert_timeline(session, alert.id)
    paged = [(line.step, line.target, line.channel) for line in lines if line.event == "paged"]
    assert paged == [
        (0, "primary", "sms"),
        (1, "primary", "voice"),
        (2, "backup", "sms"),
        (2, "backup", "voice"),
    ]
    [ack] = [line for line in lines if line.event == "acknowledged"]
    assert ack.user_id == primary.id
    assert ack.channel == ("voice" if acknowledged_by == "key 1 on the call" else "sms")
    log = process.text()
    for secret in (PATIENT_PHONE, PRIMARY_PHONE, BACKUP_PHONE, "Bossche", "39,2"):
        assert secret not in log
