"""The pure response-time computation: nearest-rank percentiles and how open alerts count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from reminders.core.escalation import ResponseTargets, default_targets
from reminders.core.response_times import (
    AlertFacts,
    Outcome,
    compute_response_times,
    iso_week,
    nearest_rank,
    time_alert,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TARGETS = ResponseTargets(
    urgent_acknowledge_minutes=15, high_acknowledge_minutes=1440, resolve_minutes=2880
)


def facts(
    alert_id: int,
    severity: str,
    created: datetime,
    ack: float | None = None,
    resolve: float | None = None,
    clinician: int | None = None,
) -> AlertFacts:
    return AlertFacts(
        alert_id=alert_id,
        severity=severity,
        created_at=created,
        acknowledged_at=None if ack is None else created + timedelta(minutes=ack),
        resolved_at=None if resolve is None else created + timedelta(minutes=resolve),
        clinician_id=clinician,
    )


def test_nearest_rank_picks_a_measured_value_never_an_interpolation() -> None:
    values = [40, 5, 12, 8]
    # Sorted 5, 8, 12, 40. Median: rank ceil(0.5 * 4) = 2 -> 8 (the lower middle, not 10).
    assert nearest_rank(values, 50) == 8
    # p90: rank ceil(0.9 * 4) = ceil(3.6) = 4 -> 40.
    assert nearest_rank(values, 90) == 40
    # Odd count: 5 values, median rank 3, p90 rank ceil(4.5) = 5.
    assert nearest_rank([3, 1, 2, 5, 4], 50) == 3
    assert nearest_rank([3, 1, 2, 5, 4], 90) == 5
    # Ten values: p90 is rank 9, not the largest.
    assert nearest_rank(list(range(1, 11)), 90) == 9
    assert nearest_rank([7], 90) == 7
    assert nearest_rank([], 50) is None
    for bad in (0, -1, 101):
        with pytest.raises(ValueError):
            nearest_rank([1], bad)


def test_on_the_target_is_within_and_a_second_over_it_is_a_miss() -> None:
    created = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
    exactly = time_alert(facts(1, "urgent", created, 15, 2880), TARGETS, "Europe/Brussels", NOW)
    assert exactly.acknowledge.outcome is Outcome.WITHIN
    assert exactly.resolve.outcome is Outcome.WITHIN
    late = time_alert(facts(2, "urgent", created, 15 + 1 / 60), TARGETS, "Europe/Brussels", NOW)
    assert late.acknowledge.outcome is Outcome.MISSED


def test_an_open_alert_past_its_target_is_a_miss_with_its_wait_so_far() -> None:
    created = NOW - timedelta(minutes=16)
    timing = time_alert(facts(1, "urgent", created), TARGETS, "Europe/Brussels", NOW)
    assert timing.acknowledge.outcome is Outcome.OVERDUE
    assert timing.acknowledge.minutes == 16
    # Resolution: 16 minutes of 2880, it can still be closed in time.
    assert timing.resolve.outcome is Outcome.PENDING


def test_not_acknowledging_never_makes_a_team_look_better() -> None:
    created = [NOW - timedelta(days=3, hours=h) for h in range(4)]
    answered = [facts(i, "urgent", at, 10, 100) for i, at in enumerate(created)]
    # The same four alerts, one of them left unacknowledged and open.
    ignored = [*answered[:3], facts(3, "urgent", created[3])]
    period = {"first_day": date(2026, 2, 1), "last_day": date(2026, 3, 1)}
    good = compute_response_times(
        answered, TARGETS, timezone="Europe/Brussels", as_of=NOW, **period
    )
    bad = compute_response_times(ignored, TARGETS, timezone="Europe/Brussels", as_of=NOW, **period)
    ack_good, ack_bad = good.by_severity[0].acknowledge, bad.by_severity[0].acknowledge
    assert ack_good.share_within_target == 1.0
    assert ack_bad.share_within_target == 3 / 4  # the open one counts, as a miss
    assert (ack_bad.judged, ack_bad.overdue, ack_bad.pending) == (4, 1, 0)
    assert ack_bad.p90_minutes > ack_good.p90_minutes


def test_pending_alerts_are_left_out_until_due_and_routine_has_no_acknowledgement_target() -> None:
    created = NOW - timedelta(minutes=5)
    result = compute_response_times(
        [facts(1, "urgent", created), facts(2, "routine", NOW - timedelta(days=4))],
        TARGETS,
        first_day=date(2026, 2, 23),
        last_day=date(2026, 3, 2),
        timezone="Europe/Brussels",
        as_of=NOW,
    )
    urgent, routine = result.by_severity
    assert (urgent.acknowledge.judged, urgent.acknowledge.pending) == (0, 1)
    assert urgent.acknowledge.median_minutes is None
    assert urgent.acknowledge.share_within_target is None
    # Routine: no acknowledgement target, so an open one is pending and never judged...
    assert routine.acknowledge.target_minutes is None
    assert (routine.acknowledge.pending, routine.acknowledge.share_within_target) == (1, None)
    # ...but four days open is past the 48 h resolution target.
    assert (routine.resolve.overdue, routine.resolve.share_within_target) == (1, 0.0)


def test_weeks_and_the_period_are_the_teams_local_days() -> None:
    # 23:30 UTC on Sunday 1 February is 00:30 on Monday 2 February in Brussels: week 6.
    monday_local = datetime(2026, 2, 1, 23, 30, tzinfo=UTC)
    assert iso_week(monday_local, "Europe/Brussels") == "2026-W06"
    assert iso_week(monday_local, "UTC") == "2026-W05"
    result = compute_response_times(
        [
            facts(1, "high", monday_local, 30, 60),
            facts(2, "high", datetime(2026, 2, 1, 22, 30, tzinfo=UTC), 30, 60),  # Sunday local
        ],
        TARGETS,
        first_day=date(2026, 2, 2),
        last_day=date(2026, 2, 8),
        timezone="Europe/Brussels",
        as_of=NOW,
    )
    assert [t.facts.alert_id for t in result.alerts] == [1]
    assert [week for week, _ in result.by_week] == ["2026-W06"]


def test_clinicians_in_id_order_and_no_rota_last() -> None:
    created = NOW - timedelta(days=2)
    result = compute_response_times(
        [
            facts(1, "urgent", created, 5, 50, None),
            facts(2, "urgent", created, 5, 50, 9),
            facts(3, "urgent", created, 5, 50, 4),
        ],
        default_targets(),
        first_day=date(2026, 2, 23),
        last_day=date(2026, 3, 1),
        timezone="Europe/Brussels",
        as_of=NOW,
    )
    assert [c for c, _ in result.by_clinician] == [4, 9, None]
