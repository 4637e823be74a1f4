"""``/metrics``: scraped through the Flask test client after a run of the scheduler, read back
with prometheus_client's own parser; who may scrape; several processes summed in one scrape.

The scheduler's run is the clock's jobs and the dispatcher with injected times, sending
through the real twilio client to the Twilio-compatible test server (``tests/twilio_fake.py``),
which refuses one send with Twilio's rate-limit error (20429). Event counters live for
the whole test process, so the tests compare a scrape before the run with one after it;
the database's gauges are compared with the rows themselves.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from backend import create_app
from backend.db import get_engine
from reminders.core.regimens import get_regimen
from reminders.core.templates import get_template, render, segments
from reminders.data.models import CheckIn, OutboundMessage, PlanningPass
from reminders.gateways import TwilioGateway
from reminders.jobs import run_due
from reminders.metrics import FINISHED_OUTBOX_STATUSES, IN_FLIGHT_OUTBOX_STATUSES
from tests.conftest import reread
from tests.reminders.conftest import dispatcher_environment, queue_due
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    FakeTwilio,
    inbound_sms_params,
    num_segments,
    signed_form_post,
)

#: A scraper's token as an operator would make one (``secrets.token_urlsafe(32)``).
TOKEN = "p8Qm3vTz0bWcY7rKx2LhN5sJd9GfA1eU4oRiMkVt6yE"
BASE = "https://companion.test"
PATIENT_PHONE = "+32470123456"
OUR_NUMBER = "+32460000000"
NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
#: The patient's first injection of alemtuzumab s.c. is on Wednesday 4 March 2026.
START = date(2026, 3, 3)
#: The scheduler's moments: the day before, the evening check-in, then 7 minutes after
#: the patient's fever reply (the on-call page is waiting, the urgent alert is open).
DAY_BEFORE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CHECK_IN = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)
FEVER_REPLY = datetime(2026, 3, 3, 17, 10, tzinfo=UTC)
SEVEN_MINUTES_LATER = FEVER_REPLY + timedelta(minutes=7)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient, **kwargs: object) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/plain"
    return response.text


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels, read by prometheus_client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a counter or histogram series not created yet."""
    return found.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def metrics_app(app: Flask) -> Flask:
    app.config.update(METRICS_TOKEN=TOKEN, TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN, PUBLIC_BASE_URL=BASE)
    return app


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def test_a_scrape_after_the_scheduler_ran_matches_the_rows_and_the_sends(
    metrics_app, client, session, treated_patient, clock, fake_twilio
) -> None:
    engine = get_engine(metrics_app)
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=5,
        public_base_url=BASE,
    )
    clock.now = DAY_BEFORE
    patient = treated_patient("alemtuzumab_sc", start=START, display_name=NAME, phone=PATIENT_PHONE)
    before = samples(scrape(client))
    # The premedication reminder with the real alemtuzumab text: two segments, its
    # template's budget is one.
    premedication = render(
        "premedication_reminder",
        "en",
        time="08:00",
        premedication="; ".join(i.text for i in get_regimen("alemtuzumab_iv").premedication.items),
        drug="alemtuzumab",
    )
    assert (
        segments(premedication).segments == 2 > get_template("premedication_reminder").max_segments
    )
    queue_due(
        session,
        patient.team_id,
        [patient.id],
        [premedication],
        prefix="premedication",
        due=DAY_BEFORE,
        kind="premedication_reminder",
    )
    fake_twilio.fail_next(1, "429")  # Twilio's rate limit, code 20429: retried later

    run_due(engine, gateway, DAY_BEFORE)
    run_due(engine, gateway, CHECK_IN)
    clock.now = FEVER_REPLY
    params = inbound_sms_params(PATIENT_PHONE, "38.6", OUR_NUMBER)
    assert (
        signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN).status_code == 200
    )

    # Seven minutes on, before the dispatcher's next pass: the page waits, the alert is open.
    clock.now = SEVEN_MINUTES_LATER
    waiting = samples(scrape(client))
    assert value(waiting, "companion_alerts_unresolved", severity="urgent", status="open") == 1
    assert (
        value(
            waiting,
            "companion_alerts_oldest_unresolved_age_seconds",
            severity="urgent",
            status="open",
        )
        == 420
    )
    assert value(waiting, "companion_outbox_oldest_due_age_seconds") == 420
    assert (
        value(waiting, "companion_planning_last_pass_age_seconds")
        == (SEVEN_MINUTES_LATER - CHECK_IN).total_seconds()
    )

    run_due(engine, gateway, SEVEN_MINUTES_LATER)
    text = scrape(client)
    after = samples(text)
    rows = reread(session).exec(select(OutboundMessage)).all()

    # The database's state, as the rows say.
    for status in IN_FLIGHT_OUTBOX_STATUSES:
        expected = sum(r.status == status for r in rows)
        assert value(after, "companion_outbox_messages", status=status) == expected, status
    day_ago = SEVEN_MINUTES_LATER - timedelta(hours=24)
    for status in FINISHED_OUTBOX_STATUSES:
        expected = sum(r.status == status and r.next_attempt_at >= day_ago for r in rows)
        assert value(after, "companion_outbox_settled_last_day_messages", status=status) == (
            expected
        ), status
    assert value(after, "companion_outbox_settled_last_day_messages", status="sent") >= 3
    assert value(after, "companion_outbox_settled_last_day_messages", status="missed") >= 1
    due = [r for r in rows if r.status == "pending" and r.next_attempt_at <= SEVEN_MINUTES_LATER]
    assert value(after, "companion_outbox_due_messages") == len(due) == 0
    assert value(after, "companion_outbox_oldest_due_age_seconds") == 0
    assert value(after, "companion_alerts_unresolved", severity="urgent", status="open") == 1
    assert value(after, "companion_alerts_unresolved", severity="high", status="open") == 0
    assert value(after, "companion_checkins_last_week", state="closed") == 1
    assert value(after, "companion_checkin_answer_ratio") == 1.0
    assert value(after, "companion_planning_last_pass_age_seconds") == 0
    assert value(after, "companion_database_up") == 1

    # The events of the dispatcher and the clock, against what the Twilio server received.
    sent = [r for r in rows if r.provider_sid and r.sent_at]
    assert delta(before, after, "companion_sms_segments_total") == sum(
        num_segments(m["body"]) for m in fake_twilio.messages
    )
    assert (
        delta(before, after, "companion_sms_over_budget_total", kind="premedication_reminder") == 1
    )
    assert delta(before, after, "companion_twilio_errors_total", code="20429") == 1
    errors = [k for k in after if k[0] == "companion_twilio_errors_total"]
    assert sum(after[k] - before.get(k, 0) for k in errors) == 1  # that one only
    assert len(fake_twilio.calls) == 1  # the page's call to the team's fallback number
    assert delta(before, after, "companion_send_delay_seconds_count", channel="sms") == len(
        fake_twilio.messages
    )
    assert delta(before, after, "companion_send_delay_seconds_count", channel="voice") == len(
        fake_twilio.calls
    )
    delays = sum((r.sent_at - r.next_attempt_at).total_seconds() for r in sent)
    sums = sum(
        delta(before, after, "companion_send_delay_seconds_sum", channel=c)
        for c in ("sms", "voice")
    )
    assert sums == pytest.approx(delays)
    assert delta(before, after, "companion_planning_pass_seconds_count") == 3

    # Nothing about the patient in it.
    assert PATIENT_PHONE not in text and "470123456" not in text
    assert "Thérèse" not in text and "Vandenbroucke" not in text
    labels = {name for (_, found) in after for name, _ in found}
    assert labels <= {"status", "severity", "state", "channel", "code", "kind", "le"}


def test_the_scrape_of_an_empty_database_says_so_with_zeros(metrics_app, client) -> None:
    found = samples(scrape(client))
    assert value(found, "companion_database_up") == 1
    assert value(found, "companion_outbox_messages", status="pending") == 0
    assert value(found, "companion_alerts_unresolved", severity="urgent", status="open") == 0
    # No pass yet, no check-in settled: no value rather than a made-up one.
    assert ("companion_planning_last_pass_age_seconds", frozenset()) not in found
    assert ("companion_checkin_answer_ratio", frozenset()) not in found


# --- who may scrape -----------------------------------------------------------------------


def test_metrics_are_off_until_a_token_or_a_network_is_configured(app, client) -> None:
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_the_token_is_required_when_one_is_configured(metrics_app, client) -> None:
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_an_allowed_network_scrapes_without_a_token_and_others_are_refused(app, client) -> None:
    app.config["METRICS_ALLOWED_NETWORKS"] = "10.20.0.0/16, 2001:db8::/32"
    inside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.3.4"})
    assert inside.status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.21.0.1"}).status_code == 403
    # The header is ignored without trusted proxies: anyone could send it.
    spoofed = client.get(
        "/metrics",
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
        headers={"X-Forwarded-For": "10.20.3.4"},
    )
    assert spoofed.status_code == 403
    # With both: the token or the network.
    app.config["METRICS_TOKEN"] = TOKEN
    outside = {"REMOTE_ADDR": "198.51.100.9"}
    assert client.get("/metrics", environ_base=outside).status_code == 401
    assert (
        client.get(
            "/metrics", environ_base=outside, headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 200
    )


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(database_url, tmp_path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "TRUSTED_PROXY_COUNT": 1,
            "METRICS_ALLOWED_NETWORKS": "10.20.0.0/16",
        }
    )
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.20.0.2"}
    assert (
        client.get(
            "/metrics", environ_base=proxy, headers={"X-Forwarded-For": "10.20.3.4"}
        ).status_code
        == 200
    )
    # The proxy's own network is allowed, but the client it forwards is not.
    assert (
        client.get(
            "/metrics", environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.5"}
        ).status_code
        == 403
    )
    get_engine(app).dispose()


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/33"}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_ALLOWED_NETWORKS": "10.1.2.3/8"}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/nowhere"}, "PROMETHEUS_MULTIPROC_DIR"),
    ],
)
def test_unusable_metrics_settings_stop_the_app_at_start(
    settings, refusal, monkeypatch, tmp_path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match=refusal):
        create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **settings})


def test_the_multiprocess_directory_must_be_in_the_process_environment(
    monkeypatch, tmp_path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    config = {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match="environment of every process"):
        create_app({**config, "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    app = create_app({**config, "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert app.config["PROMETHEUS_MULTIPROC_DIR"] == str(directory)


# --- several processes ----------------------------------------------------------------------


@pytest.mark.slow
def test_one_scrape_sums_the_events_of_two_dispatcher_processes(
    metrics_app,
    client,
    session,
    database_url,
    make_user,
    make_patient,
    fake_twilio,
    tmp_path,
    monkeypatch,
) -> None:
    """Two ``reminders dispatch --once`` processes, as the Procfile starts them, write their
    events to the multiprocess directory; the web's scrape adds them up."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME, phone=PATIENT_PHONE, sms_consent=False)
    patient.sms_consent = True  # no welcome SMS: the test queues its own
    patient.quiet_start = patient.quiet_end  # real time is used here: no quiet hours
    session.add(patient)
    session.commit()
    environment = dispatcher_environment(database_url, fake_twilio.base_url) | {
        "PROMETHEUS_MULTIPROC_DIR": str(directory)
    }
    due = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [
        "Rappel : prise de sang demain à 08:00.",
        "Reminder: take your tablets at 20:00. " * 5,
        "Herinnering: uw infuus is morgen om 09:00.",
    ]
    queue_due(session, patient.team_id, [patient.id], bodies, prefix="processes", due=due)
    fake_twilio.fail_next(1, "429")  # the first process's first send: retried in 30 s or more

    def dispatch_once() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "backend", "reminders", "dispatch", "--once"],
            env=environment,
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    dispatch_once()
    later = ["Rappel : rendez-vous à l'hôpital jeudi."]
    queue_due(session, patient.team_id, [patient.id], later, prefix="processes", due=due, first=3)
    dispatch_once()
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    metrics_app.config["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    found = samples(scrape(client))
    accepted = fake_twilio.messages
    rows = reread(session).exec(select(OutboundMessage)).all()
    # Both processes sent (the refused row's retry may fall to the second on a slow machine).
    senders = {r.claimed_by.rsplit(":", 1)[0] for r in rows if r.status == "sent"}
    assert len(senders) == 2 and len(accepted) in (3, 4)
    assert value(found, "companion_twilio_errors_total", code="20429") == 1
    assert value(found, "companion_send_delay_seconds_count", channel="sms") == len(accepted)
    assert value(found, "companion_send_delay_seconds_bucket", channel="sms", le="+Inf") == len(
        accepted
    )
    assert value(found, "companion_sms_segments_total") == sum(
        num_segments(m["body"]) for m in accepted
    )
    # The database's state is in the same scrape.
    pending = sum(r.status == "pending" for r in rows)
    assert (
        value(found, "companion_outbox_messages", status="pending") == pending == 4 - len(accepted)
    )
    assert value(found, "companion_database_up") == 1


def test_a_planning_pass_and_a_check_in_are_read_from_the_database(
    metrics_app, client, session, make_user, make_patient, clock
) -> None:
    """The clock's liveness and the answer rate come from rows, whoever wrote them."""
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    now = clock.now
    session.add(
        PlanningPass(
            planned_at=now - timedelta(minutes=12),
            planned_from=now - timedelta(hours=1),
            planned_until=now + timedelta(hours=24),
        )
    )
    for n, state in enumerate(("closed", "closed", "closed", "unanswered", "awaiting_symptoms")):
        session.add(
            CheckIn(
                patient_id=patient.id,
                event_key=f"checkin:{n}",
                state=state,
                opened_at=now - timedelta(days=n),
                last_prompt_at=now - timedelta(days=n),
            )
        )
    session.add(  # opened eight days ago: outside the week
        CheckIn(
            patient_id=patient.id,
            event_key="checkin:old",
            state="unanswered",
            opened_at=now - timedelta(days=8),
            last_prompt_at=now - timedelta(days=8),
        )
    )
    session.commit()
    found = samples(scrape(client))
    assert value(found, "companion_planning_last_pass_age_seconds") == 720
    assert value(found, "companion_checkins_last_week", state="closed") == 3
    assert value(found, "companion_checkins_last_week", state="unanswered") == 1
    assert value(found, "companion_checkins_last_week", state="awaiting_symptoms") == 1
    assert value(found, "companion_checkin_answer_ratio") == 0.75
