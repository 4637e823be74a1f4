"""The status vocabularies and their allowed transitions (reminders/data/statuses.py), checked by the ORM."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from backend.schemas import AlertStatus as AlertStatusField
from reminders.data.alerts import acknowledge_alert, raise_alert, resolve_alert
from reminders.data.models import STATUS_COLUMNS, Alert, CheckIn, OutboundMessage, Plan
from reminders.data.statuses import (
    INITIAL,
    OPEN_PLAN_STATUSES,
    TRANSITIONS,
    AlertStatus,
    CheckInState,
    IllegalTransition,
    OutboxStatus,
    PlanStatus,
    allowed,
    check_transition,
)
from tests.conftest import reread

NAME = "Marie-Françoise Van den Bossche-Lefèvre"


def test_the_stored_strings_are_the_ones_rows_already_hold() -> None:
    """No migration: every value is the string written before the enums existed."""
    assert {s.value for s in OutboxStatus} == {
        "pending",
        "sending",
        "unconfirmed",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "missed",
        "cancelled",
    }
    assert [s.value for s in AlertStatus] == ["open", "acknowledged", "resolved"]
    assert [s.value for s in PlanStatus] == ["active", "on_hold", "stopped"]
    assert {s.value for s in CheckInState} == {
        "awaiting_temperature",
        "awaiting_symptoms",
        "closed",
        "unanswered",
    }
    assert OutboxStatus.SENT == "sent" and f"{AlertStatus.OPEN}" == "open"
    # The API's alert status filter accepts exactly the enum's values.
    assert set(AlertStatusField.__args__) == {s.value for s in AlertStatus}
    assert OPEN_PLAN_STATUSES == (PlanStatus.ACTIVE, PlanStatus.ON_HOLD)


def test_the_table_names_only_states_of_its_own_vocabulary() -> None:
    assert set(TRANSITIONS) == set(INITIAL) == {kind for _, kind in STATUS_COLUMNS.values()}
    for kind, moves in TRANSITIONS.items():
        for source, targets in moves.items():
            assert isinstance(source, kind)
            assert source not in targets, "staying put is always allowed, not listed"
            assert all(isinstance(target, kind) for target in targets)
        # Every state is reachable from a state a row can start in.
        reached = set(INITIAL[kind])
        frontier = list(reached)
        while frontier:
            for target in moves.get(frontier.pop(), ()):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(kind), kind


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [
        (OutboxStatus, "sent", "pending"),  # an accepted SMS is never sent again
        (OutboxStatus, "unconfirmed", "sending"),  # never claimed blindly: ask Twilio first
        (OutboxStatus, "pending", "sent"),  # not without a claim
        (OutboxStatus, "cancelled", "pending"),
        (OutboxStatus, "failed", "pending"),
        (AlertStatus, "resolved", "open"),
        (AlertStatus, "acknowledged", "open"),
        (PlanStatus, "stopped", "active"),
        (CheckInState, "closed", "awaiting_symptoms"),
        (CheckInState, "unanswered", "closed"),
        (OutboxStatus, "sending", "read"),  # not one of ours
        (AlertStatus, "archived", "open"),
        (AlertStatus, None, "archived"),  # a new row too takes only the vocabulary's states
    ],
)
def test_illegal_moves_are_refused(kind, old, new) -> None:
    assert not allowed(kind, old, new)
    with pytest.raises(IllegalTransition):
        check_transition(kind, old, new)


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [
        (OutboxStatus, "pending", "sending"),
        (OutboxStatus, "sending", "unconfirmed"),
        (OutboxStatus, "unconfirmed", "sent"),
        (OutboxStatus, "unconfirmed", "pending"),
        (OutboxStatus, "undelivered", "undelivered"),  # a repeated callback
        (AlertStatus, "open", "resolved"),
        (PlanStatus, "on_hold", "active"),
        (CheckInState, "awaiting_symptoms", "awaiting_temperature"),
        (OutboxStatus, None, "missed"),
    ],
)
def test_allowed_moves_pass(kind, old, new) -> None:
    assert allowed(kind, old, new)
    check_transition(kind, old, new)


def test_the_orm_refuses_an_illegal_move_before_writing(session, make_user, make_patient, clock):
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    alert = raise_alert(
        session,
        patient,
        severity="urgent",
        kind="fever",
        reason="Temperature 38.6 °C",
        now=clock.now,
    )
    resolve_alert(session, alert, user.id, "called back, at the day unit", clock.now)
    session.commit()
    with pytest.raises(IllegalTransition, match="RESOLVED -> OPEN"):
        alert.status = "open"
    session.rollback()
    reread(session)
    stored = session.get(Alert, alert.id)
    assert stored.status == AlertStatus.RESOLVED and stored.resolved_by == user.id


def test_an_expired_row_is_checked_against_its_stored_status(
    session, make_user, make_patient, make_plan, clock
) -> None:
    """``active_history``: the stored value is loaded before the check, never skipped."""
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    plan = make_plan(patient)
    plan.status = PlanStatus.STOPPED
    session.add(plan)
    session.commit()
    session.expire_all()
    with pytest.raises(IllegalTransition):
        plan.status = PlanStatus.ACTIVE
    session.rollback()
    reread(session)
    assert session.get(Plan, plan.id).status == "stopped"


def test_services_move_alerts_along_the_table(session, make_user, make_patient, clock) -> None:
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    alert = raise_alert(
        session,
        patient,
        severity="high",
        kind="checkin_unanswered",
        reason="Symptom check-in not answered",
        now=clock.now,
    )
    acknowledge_alert(session, alert, user.id, clock.now + timedelta(minutes=3))
    resolve_alert(session, alert, user.id, "spoke to her daughter", clock.now)
    session.commit()
    reread(session)
    assert session.get(Alert, alert.id).status == "resolved"


def test_a_new_row_may_start_in_any_state_of_its_vocabulary(
    session, make_user, make_patient, clock
) -> None:
    """Only moves are checked: tests and imports write rows as they stand."""
    user, _ = make_user()
    patient = make_patient(user.team_id, display_name=NAME)
    checkin = CheckIn(
        patient_id=patient.id,
        event_key="d1",
        opened_at=clock.now,
        last_prompt_at=clock.now,
        state=CheckInState.AWAITING_SYMPTOMS,
    )
    with pytest.raises(IllegalTransition):
        OutboundMessage(
            team_id=user.team_id,
            kind="one_off",
            dedupe_key="k",
            body="Bonjour",
            due_at=clock.now,
            next_attempt_at=clock.now,
            status="queued",  # Twilio's word, not ours
        )
    session.add(checkin)
    session.commit()
    reread(session)
    assert session.exec(select(CheckIn)).one().state == "awaiting_symptoms"
