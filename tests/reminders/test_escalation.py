"""Escalating an urgent alert along the rota: pages, calls, backup, fallback, the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from reminders.core.escalation import (
    CHANNELS,
    TARGETS,
    PolicyError,
    default_policy,
    policy_from_dict,
    policy_to_dict,
    steps_due,
)
from reminders.core.oncall_text import alert_code, alert_id_from_code, parse_ack
from reminders.data.alerts import acknowledge_alert, alert_timeline
from reminders.data.db import session_scope
from reminders.data.models import Alert, AlertEvent, OnCallShift, Team, User
from reminders.data.oncall import team_policy
from reminders.data.statuses import Channel, PageTarget
from reminders.escalation import escalate_alerts
from reminders.jobs import run_due
from tests.reminders.conftest import outbox
from tests.reminders.test_conversations import IN_CMV_WINDOW, reply, start_checkin

PRIMARY_PHONE = "+32475112233"
BACKUP_PHONE = "+32476445566"
FALLBACK_PHONE = "+32470999999"  # the treated patient's team's number (tests/conftest.py)


def test_the_policys_targets_and_channels_are_the_stored_vocabularies() -> None:
    """The pure core spells them out (it imports no other layer); they must not drift apart.

    A policy step the validator accepts must be one the pager can carry out, and the
    dashboard's editor offers exactly these.
    """
    assert tuple(PageTarget) == TARGETS
    assert tuple(Channel) == CHANNELS


@pytest.fixture
def rota(session, make_user, clock):
    """A primary (Dutch) and a backup (French) on call for the patient's team all day."""

    def factory(team_id: int, *, primary_phone: str | None = PRIMARY_PHONE) -> tuple[User, User]:
        team = session.get(Team, team_id)
        primary, _ = make_user(team.name, role="physician", name="Dr Pieter-Jan Vandenbroucke")
        backup, _ = make_user(team.name, role="physician", name="Dr Anne-Sophie Lefèvre-Dubois")
        primary.phone, primary.language = primary_phone, "nl"
        backup.phone, backup.language = BACKUP_PHONE, "fr"
        start = IN_CMV_WINDOW - timedelta(hours=12)
        for user, role in ((primary, "primary"), (backup, "backup")):
            session.add(user)
            session.add(
                OnCallShift(
                    team_id=team_id,
                    user_id=user.id,
                    role=role,
                    starts_at=start,
                    ends_at=start + timedelta(hours=24),
                    created_at=clock.now,
                )
            )
        session.commit()
        return primary, backup

    return factory


def pages(session):
    """The pages queued so far: (channel, number), oldest first."""
    return [(p.channel, p.to_phone) for p in outbox(session, recipient="clinician")]


#: Long, accented, hyphenated, as the ward holds it; pages name only "F.B." and the reference.
PATIENT_NAME = "Françoise Van den Bossche-Lefèvre"
HOSPITAL_REF = "AZSJ-2026-004417"


def fever(engine, console, clock, treated_patient, rota, **rota_options):
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    patient = treated_patient(display_name=PATIENT_NAME, hospital_ref=HOSPITAL_REF)
    run_due(engine, console, IN_CMV_WINDOW)
    primary, backup = rota(patient.team_id, **rota_options)
    t = IN_CMV_WINDOW + timedelta(minutes=5)
    reply(engine, "38,9 en rillingen", t, phone=patient.phone)
    return patient, primary, backup, t


def test_an_urgent_reply_pages_the_primary_by_sms_at_once_in_their_language(
    engine, session, console, clock, treated_patient, rota
) -> None:
    _, primary, _, _ = fever(engine, console, clock, treated_patient, rota)
    [page] = outbox(session, recipient="clinician")
    [alert] = session.exec(select(Alert)).all()
    assert (page.channel, page.to_phone, page.user_id, page.urgent) == (
        "sms",
        PRIMARY_PHONE,
        primary.id,
        True,
    )
    # Dutch, the alert's code to answer with, the patient's initials only, no phone.
    assert page.body.startswith("DRINGEND") and f"ACK {alert_code(alert.id)}" in page.body
    assert f"F.B. ({HOSPITAL_REF})" in page.body and "+32" not in page.body
    assert not any(part in page.body for part in ("Françoise", "Bossche", "Lefèvre"))
    assert "koorts, 38,9 C" in page.body
    [line] = alert_timeline(session, alert.id)
    assert (line.event, line.step, line.target, line.channel, line.user_id, line.outcome) == (
        "paged",
        0,
        "primary",
        "sms",
        primary.id,
        "queued",
    )


def test_nobody_acknowledging_brings_a_call_at_5_the_backup_at_10_the_fallback_at_15(
    engine, session, console, clock, treated_patient, rota
) -> None:
    *_, t = fever(engine, console, clock, treated_patient, rota)
    run_due(engine, console, t + timedelta(minutes=4, seconds=59))
    assert pages(session) == [("sms", PRIMARY_PHONE)]
    run_due(engine, console, t + timedelta(minutes=5))
    assert pages(session)[1:] == [("voice", PRIMARY_PHONE)]
    run_due(engine, console, t + timedelta(minutes=10))
    assert pages(session)[2:] == [("sms", BACKUP_PHONE), ("voice", BACKUP_PHONE)]
    run_due(engine, console, t + timedelta(minutes=15))
    assert pages(session)[4:] == [("sms", FALLBACK_PHONE), ("voice", FALLBACK_PHONE)]
    run_due(engine, console, t + timedelta(minutes=29))
    assert len(pages(session)) == 6
    run_due(engine, console, t + timedelta(minutes=30))  # then the last step every 15 min
    assert pages(session)[6:] == [("sms", FALLBACK_PHONE), ("voice", FALLBACK_PHONE)]
    # The backup's page is in French, the call says the callback number digit by digit.
    backup_sms, backup_call = outbox(session, recipient="clinician")[2:4]
    assert backup_sms.body.startswith("TOUJOURS OUVERT après 10 min")
    assert backup_call.body == (
        "Alerte urgente de l'assistant patient de Team A. Patient F.B., référence "
        f"hospitalière {HOSPITAL_REF}. Motif : fièvre, 38,9 C. Le numéro du patient est : "
        "3 2 4, 7 0 1, 2 3 4, 5 6. Appuyez sur 1 pour prendre en charge cette alerte."
    )
    assert "Françoise" not in backup_call.body
    assert all(p.status == "sent" for p in outbox(session, recipient="clinician"))
    [alert] = session.exec(select(Alert)).all()
    steps = [(e.step, e.target, e.channel) for e in alert_timeline(session, alert.id)]
    assert steps == [
        (0, "primary", "sms"),
        (1, "primary", "voice"),
        (2, "backup", "sms"),
        (2, "backup", "voice"),
        (3, "fallback", "sms"),
        (3, "fallback", "voice"),
        (4, "fallback", "sms"),
        (4, "fallback", "voice"),
    ]


def test_an_acknowledgement_stops_the_escalation(
    engine, session, console, clock, treated_patient, rota
) -> None:
    _, primary, _, t = fever(engine, console, clock, treated_patient, rota)
    [alert] = session.exec(select(Alert)).all()
    acknowledge_alert(session, alert, primary.id, t + timedelta(minutes=3), channel="sms")
    session.commit()
    for minutes in (5, 10, 15, 60):
        run_due(engine, console, t + timedelta(minutes=minutes))
    assert pages(session) == [("sms", PRIMARY_PHONE)]
    events = [e.event for e in alert_timeline(session, alert.id)]
    assert events == ["paged", "acknowledged"]


def test_a_primary_without_a_phone_falls_through_to_the_backup_at_once(
    engine, session, console, clock, treated_patient, rota
) -> None:
    fever(engine, console, clock, treated_patient, rota, primary_phone=None)
    assert pages(session) == [("sms", BACKUP_PHONE)]
    [alert] = session.exec(select(Alert)).all()
    skipped, paged = alert_timeline(session, alert.id)
    assert (skipped.event, skipped.target) == ("skipped", "primary")
    assert "no phone number" in skipped.detail
    assert (paged.event, paged.target) == ("paged", "backup")


def test_a_shift_that_ended_or_a_deactivated_primary_covers_nothing(
    engine, session, console, clock, treated_patient, rota
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    primary, _ = rota(patient.team_id)
    primary.is_active = False
    session.add(primary)
    session.commit()
    reply(engine, "39,4", IN_CMV_WINDOW + timedelta(minutes=5), phone=patient.phone)
    assert pages(session) == [("sms", BACKUP_PHONE)]


def test_a_teams_own_policy_is_followed_and_a_broken_one_falls_back_to_the_defaults(
    engine, session, console, clock, treated_patient, rota
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    rota(patient.team_id)
    team = session.get(Team, patient.team_id)
    team.escalation_policy = {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms", "voice"]},
            {"after_minutes": 2, "target": "fallback", "channels": ["voice"]},
        ],
        "repeat_every_minutes": 5,
    }
    session.add(team)
    session.commit()
    t = IN_CMV_WINDOW + timedelta(minutes=5)
    reply(engine, "39,4", t, phone=patient.phone)
    assert pages(session) == [("sms", PRIMARY_PHONE), ("voice", PRIMARY_PHONE)]
    run_due(engine, console, t + timedelta(minutes=2))
    assert pages(session)[2:] == [("voice", FALLBACK_PHONE)]
    team.escalation_policy = {"steps": []}
    assert team_policy(team) == (default_policy(), True)


def test_steps_missed_during_an_outage_are_all_taken_when_the_clock_is_back(
    engine, session, console, clock, treated_patient, rota
) -> None:
    _, _, _, t = fever(engine, console, clock, treated_patient, rota)
    with session_scope(engine) as job_session:
        queued = escalate_alerts(job_session, t + timedelta(minutes=12))
    assert queued == 3  # the primary's call and the backup's SMS and call, late but sent
    assert pages(session)[1:] == [
        ("voice", PRIMARY_PHONE),
        ("sms", BACKUP_PHONE),
        ("voice", BACKUP_PHONE),
    ]


def test_only_urgent_open_alerts_escalate(
    engine, session, console, clock, treated_patient, rota
) -> None:
    patient = start_checkin(engine, console, clock, treated_patient)
    rota(patient.team_id)
    reply(engine, "37,6", IN_CMV_WINDOW + timedelta(minutes=5), phone=patient.phone)
    run_due(engine, console, IN_CMV_WINDOW + timedelta(hours=1))
    assert pages(session) == []
    assert session.exec(select(AlertEvent)).all() == []


# --- the pure parts -----------------------------------------------------------------------


def test_the_default_policy_is_the_issues_and_steps_fall_due_in_order() -> None:
    policy = default_policy()
    assert policy_to_dict(policy) == {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms"]},
            {"after_minutes": 5, "target": "primary", "channels": ["voice"]},
            {"after_minutes": 10, "target": "backup", "channels": ["sms", "voice"]},
            {"after_minutes": 15, "target": "fallback", "channels": ["sms", "voice"]},
        ],
        "repeat_every_minutes": 15,
    }
    t0 = datetime(2026, 3, 17, 3, 0, tzinfo=UTC)
    at = [steps_due(policy, t0, 0, t0 + timedelta(minutes=m)) for m in (0, 4, 5, 14, 15)]
    assert at == [[0], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    assert steps_due(policy, t0, 4, t0 + timedelta(minutes=29)) == []
    assert steps_due(policy, t0, 4, t0 + timedelta(minutes=45)) == [4]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"steps": [], "repeat_every_minutes": 5}, "steps"),
        ({"steps": [{"after_minutes": 1, "target": "primary", "channels": ["sms"]}],
          "repeat_every_minutes": 5}, "steps[0].after_minutes must be 0"),
        ({"steps": [{"after_minutes": 0, "target": "nurse", "channels": ["sms"]}],
          "repeat_every_minutes": 5}, "steps[0].target"),
        ({"steps": [{"after_minutes": 0, "target": "primary", "channels": ["fax"]}],
          "repeat_every_minutes": 5}, "steps[0].channels"),
        ({"steps": [{"after_minutes": 0, "target": "primary", "channels": ["sms"]},
                    {"after_minutes": 0, "target": "backup", "channels": ["sms"]}],
          "repeat_every_minutes": 5}, "steps[1].after_minutes must be later"),
        ({"steps": [{"after_minutes": 0, "target": "primary", "channels": ["sms"]}],
          "repeat_every_minutes": 0}, "repeat_every_minutes"),
        ({"steps": [{"after_minutes": 0, "target": "primary", "channels": ["sms"]}],
          "repeat_every_minutes": True}, "repeat_every_minutes"),
    ],
)  # fmt: skip
def test_a_policy_the_code_cannot_follow_is_refused_naming_the_field(document, field) -> None:
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        policy_from_dict(document)


def test_alert_codes_round_trip_and_a_mistyped_code_names_no_alert() -> None:
    for alert_id in (1, 57, 960, 31 * 31 * 31, 2**31 - 1):
        code = alert_code(alert_id)
        assert alert_id_from_code(code) == alert_id
        assert alert_id_from_code(code.lower()) == alert_id
        for position in range(len(code)):
            for char in "23456789ABCDEFGHJKMNPQRSTUVWXYZ":
                typo = code[:position] + char + code[position + 1 :]
                if typo != code:
                    assert alert_id_from_code(typo) is None, (code, typo)
    assert alert_id_from_code("0O1") is None and alert_id_from_code("") is None


@pytest.mark.parametrize(
    ("body", "code"),
    [("ACK 3VR", "3VR"), ("ack 3vr", "3VR"), (" Ack: 3VR. ", "3VR"), ("ACK#3VR", "3VR"),
     ("acknowledged", None), ("ACK", None), ("38,9 ACK 3VR", None), ("STOP", None)],
)  # fmt: skip
def test_an_ack_reply_is_read_with_its_code(body, code) -> None:
    assert parse_ack(body) == code


def test_pages_not_sent_yet_are_cancelled_when_someone_acknowledges(
    engine, session, console, clock, treated_patient, rota
) -> None:
    """The dispatcher was down: the queued call must not wake the primary after the ack."""
    _, primary, _, t = fever(engine, console, clock, treated_patient, rota)
    with session_scope(engine) as job:
        escalate_alerts(job, t + timedelta(minutes=5))
    [alert] = session.exec(select(Alert)).all()
    acknowledge_alert(session, alert, primary.id, t + timedelta(minutes=6), channel="web")
    session.commit()
    statuses = [(p.channel, p.status) for p in outbox(session, recipient="clinician")]
    assert statuses == [("sms", "cancelled"), ("voice", "cancelled")]
    run_due(engine, console, t + timedelta(minutes=7))
    assert {p.status for p in outbox(session, recipient="clinician")} == {"cancelled"}
