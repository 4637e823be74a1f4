"""Downtime: the clock runs every 15 minutes for a day, stops for 6 hours, and restarts.

``tests/reminders/test_outbox.py`` checks one Brussels patient whose downtime ends in
quiet hours. Here four patients on four regimens live in four time zones, so the same
six hours are night for some and afternoon for others, and one of them has a check-in
left unanswered just before the stop. After the restart ONE pass (planning, follow-ups,
dispatch) must leave the outbox settled:

* every message still useful at the restart is sent in that pass (or, for a patient in
  quiet hours, waits for the morning while still useful);
* every message whose moment passed during the downtime is ``missed``, never sent late;
* no patient gets a burst: at most one check-in prompt and at most one message per
  planned event, and no re-prompt of a check-in that has waited longer than the care
  team's flag delay (that check-in is flagged to the care team instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.schemas import ProphylaxisIn
from backend.services.prophylaxis import add_course
from reminders.core.clinical_rules import clinical_rules
from reminders.core.messaging import defer_past_quiet_hours
from reminders.data.models import Alert, CheckIn, Patient, Team
from reminders.gateways import ConsoleGateway
from reminders.jobs import run_due
from tests.conftest import Clock, reread
from tests.reminders.conftest import outbox

pytestmark = pytest.mark.slow

START = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # a Tuesday; the plans started on Monday
UPTIME = timedelta(days=1)
STEP = timedelta(minutes=15)
DOWNTIME = timedelta(hours=6)
STOP = START + UPTIME
RESTART = STOP + DOWNTIME  # 06:00 UTC: 07:00 Brussels, 01:00 New York, 15:00 Tokyo, 22:00 LA
CHECKIN_PROMPTS = {"checkin_temperature", "checkin_resend"}

#: (name, zone, regimen, options, patient overrides, prophylaxis times)
PATIENTS: list[tuple[str, str, str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("brussels", "Europe/Brussels", "alemtuzumab_sc", {}, {}, ["08:00", "20:00"]),
    (
        "new_york",
        "America/New_York",
        "rituximab_cll_chemo",
        {"tls_prophylaxis_until_day": 3},
        {"phone": "+1 212 555 0142"},
        ["08:00", "20:00"],
    ),
    (
        # Checks in at 08:30 and takes tablets at 13:00: the downtime (09:00 to 15:00
        # local) swallows the re-send and the flag of that morning's check-in.
        "tokyo",
        "Asia/Tokyo",
        "inotuzumab_weekly",
        {"cycles": 2},
        {"phone": "+81 90 1234 5678", "checkin_time": time(8, 30)},
        ["13:00"],
    ),
    (
        # No quiet hours: at 22:00 local the 20:00 tablets are still useful.
        "los_angeles",
        "America/Los_Angeles",
        "ofatumumab_lenalidomide",
        {},
        {
            "phone": "+1 213 555 0199",
            "quiet_start": time(0, 0),
            "quiet_end": time(0, 0),
        },
        ["20:00"],
    ),
]


@pytest.fixture
def patients(
    session: Session, make_user, make_patient, make_plan, clock: Clock
) -> dict[str, Patient]:
    """The four patients, each with a plan that started on Monday and one prophylaxis course."""
    clock.now = START - timedelta(days=1, hours=12)
    user, _ = make_user()
    team = session.get(Team, user.team_id)
    team.oncall_phone = "+32470999999"
    session.add(team)
    session.commit()
    made = {}
    for name, zone, regimen, options, overrides, times in PATIENTS:
        patient = make_patient(
            user.team_id, timezone=zone, display_name=f"Patient {name}", **overrides
        )
        plan = make_plan(patient, regimen, date(2026, 3, 2), **options)
        add_course(
            session,
            patient,
            ProphylaxisIn(
                drug="acyclovir",
                dose_text="as prescribed",
                times=times,
                start_date=date(2026, 3, 2),
                plan_id=plan.id,
            ),
            clock.now,
        )
        session.commit()
        made[name] = patient
    return made


def waits_for_morning(patient: Patient) -> datetime:
    """When a non-urgent message to ``patient`` may go out, from :data:`RESTART` on."""
    local = RESTART.astimezone(ZoneInfo(patient.timezone))
    return defer_past_quiet_hours(local, patient.quiet_start, patient.quiet_end)


def run_every_step(engine: Engine, gateway: ConsoleGateway, start: datetime, end: datetime) -> int:
    """run_due every :data:`STEP` from ``start`` (included) to ``end`` (excluded)."""
    passes = 0
    moment = start
    while moment < end:
        run_due(engine, gateway, moment)
        moment += STEP
        passes += 1
    return passes


def test_after_six_hours_of_downtime_one_pass_sends_what_is_useful_and_no_burst(
    engine: Engine,
    session: Session,
    patients: dict[str, Patient],
    console: ConsoleGateway,
    record_property: Callable[[str, object], None],
) -> None:
    names = {p.id: name for name, p in patients.items()}
    passes = run_every_step(engine, console, START, STOP)
    assert passes == 96
    before = {m.id: m.status for m in outbox(session)}
    assert Counter(before.values())["sent"] > 20  # a real day of reminders went out

    summary = run_due(engine, console, RESTART)

    rows = outbox(session)
    in_pass = [m for m in rows if m.status == "sent" and m.sent_at == RESTART]
    gap = [m for m in rows if m.due_at <= RESTART and before.get(m.id) != "sent"]
    report = (
        f"restart pass {summary}; sent in it: "
        f"{sorted((names.get(m.patient_id), m.kind) for m in in_pass)}; due in the gap: "
        f"{dict(Counter((names.get(m.patient_id), m.status) for m in gap))}"
    )
    print(f"\n{report}")
    record_property("downtime", report)

    # 1. Everything still useful went out in this one pass, or waits for the morning.
    for message in gap:
        useful = message.not_after is None or message.not_after >= RESTART
        if message.status == "sent":
            assert message.sent_at == RESTART and useful, (message.kind, report)
        elif message.status == "pending":
            # Only quiet hours hold a useful message back, and only to a moment it is
            # still useful.
            assert message.next_attempt_at > RESTART and not message.urgent, report
            assert message.not_after is None or message.next_attempt_at <= message.not_after
            patient = patients[names[message.patient_id]]
            assert patient.quiet_start != patient.quiet_end, (message.kind, report)
        else:
            # 2. What went stale during the downtime is missed, and was never sent.
            assert message.status == "missed", (message.kind, message.status, report)
            assert message.sent_at is None
            if useful:  # only because quiet hours outlast its usefulness
                assert waits_for_morning(patients[names[message.patient_id]]) > (
                    message.not_after
                ), (message.kind, report)
    statuses = Counter(m.status for m in gap)
    assert statuses["missed"] >= 3 and statuses["sent"] >= 2, report
    # Each time zone got what its local time calls for.
    sent_to = Counter(names[m.patient_id] for m in in_pass if m.patient_id)
    assert sent_to["tokyo"] >= 1 and sent_to["los_angeles"] >= 1, report  # afternoon, no quiet
    assert sent_to["new_york"] == 0, report  # 01:00 there: quiet hours
    # A second pass at the same instant has nothing left to send: one pass was enough.
    assert run_due(engine, console, RESTART)["sent"] == 0

    # 3. No burst: one check-in prompt at most, one message per planned event at most.
    for patient_id, count in Counter(
        m.patient_id for m in in_pass if m.kind in CHECKIN_PROMPTS
    ).items():
        assert count <= 1, (names[patient_id], report)
    keys = Counter(m.dedupe_key.rsplit(":", 1)[0] for m in in_pass if m.plan_id or m.course_id)
    assert max(keys.values(), default=0) <= 1, report
    # Tokyo's morning check-in waited past the flag delay during the downtime: the care
    # team is told now, and the patient is not asked again six hours late.
    policy = clinical_rules().alerts
    tokyo = patients["tokyo"]
    reread(session)
    morning = session.exec(
        select(CheckIn)
        .where(CheckIn.patient_id == tokyo.id, CheckIn.opened_at < STOP)
        .order_by(CheckIn.opened_at.desc())
    ).first()
    assert morning is not None and morning.opened_at >= STOP - timedelta(hours=1), report
    assert RESTART - morning.opened_at > timedelta(minutes=policy.checkin_flag_after_minutes)
    assert morning.state == "unanswered" and morning.resend_count == 0, report
    assert not [m for m in in_pass if m.kind == "checkin_resend"], report
    flagged = session.exec(
        select(Alert).where(Alert.patient_id == tokyo.id, Alert.kind == "checkin_unanswered")
    ).all()
    assert any(a.created_at == RESTART for a in flagged), report
    # Nothing the dispatcher sent in the pass was past its usefulness.
    assert all(m.not_after is None or m.not_after >= RESTART for m in in_pass), report
