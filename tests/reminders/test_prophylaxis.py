"""The prophylaxis stop rule never lets a course end by itself and needs every condition."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from reminders.core.clinical_rules import clinical_rules
from reminders.core.prophylaxis import (
    missing_mandatory_prophylaxis,
    prophylaxis_check_due_at,
    stop_eligibility,
)
from reminders.core.regimens import get_regimen

LAST = date(2026, 5, 22)


def rule(**overrides):
    values = {
        "treatment_finished": True,
        "last_dose_given": LAST,
        "min_months_after_last_dose": 6,
        "cd4_rule": True,
        "cd4_results": [(date(2026, 11, 1), 240.0)],
        "today": date(2026, 11, 22),
    }
    values.update(overrides)
    return stop_eligibility(**values)


def test_eligible_when_six_months_passed_and_cd4_recovered() -> None:
    result = rule()
    assert result.eligible
    assert result.earliest_date == date(2026, 11, 22)
    assert result.missing == ()


def test_not_eligible_one_day_before_six_months() -> None:
    result = rule(today=date(2026, 11, 21))
    assert not result.eligible
    assert any("2026-11-22" in m for m in result.missing)


def test_cd4_rule_needs_a_result_of_at_least_200_after_the_last_dose() -> None:
    assert not rule(cd4_results=[(date(2026, 11, 1), 199.0)]).eligible
    assert not rule(cd4_results=[(date(2026, 1, 5), 900.0)]).eligible  # before the last dose
    assert rule(cd4_results=[(LAST, 200.0)]).eligible


def test_without_the_cd4_rule_time_alone_decides() -> None:
    assert rule(cd4_rule=False, cd4_results=[]).eligible


def test_never_eligible_while_treatment_runs_or_without_a_given_dose() -> None:
    assert not rule(treatment_finished=False).eligible
    result = rule(last_dose_given=None)
    assert not result.eligible and result.earliest_date is None


def test_month_arithmetic_clamps_to_month_end() -> None:
    result = rule(last_dose_given=date(2026, 8, 31), today=date(2027, 2, 28), cd4_rule=False)
    assert result.earliest_date == date(2027, 2, 28)
    assert result.eligible


# --- missing mandatory prophylaxis (issue 11, item 6) -----------------------------------

BRUSSELS = "Europe/Brussels"
#: Monday 2 March 2026; local midnight in Brussels is 23:00 UTC the day before.
START = date(2026, 3, 2)
LOCAL_MIDNIGHT = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def _missing(now: datetime, statuses: dict[str, str], **overrides: object) -> list[str]:
    values: dict[str, object] = {
        "entries": get_regimen("alemtuzumab_sc").prophylaxis,
        "course_status": statuses,
        "start_date": START,
        "created_at": datetime(2026, 2, 25, 9, 0, tzinfo=UTC),  # entered a week ahead
        "timezone": BRUSSELS,
        "now": now,
    }
    values.update(overrides)
    return [e.id for e in missing_mandatory_prophylaxis(**values)]  # type: ignore[arg-type]


def test_the_deadline_is_a_care_team_setting_with_its_source() -> None:
    check = clinical_rules().prophylaxis_check
    assert check.confirm_within_hours == 24
    assert check.source == "issue 11 (care-team operating policy)"


def test_nothing_is_missing_before_24_hours_after_the_local_start_of_the_start_date() -> None:
    proposed = {"cotrimoxazole": "proposed", "acyclovir": "proposed"}
    due = LOCAL_MIDNIGHT + timedelta(hours=24)
    assert _missing(due - timedelta(seconds=1), proposed) == []
    assert _missing(due, proposed) == ["cotrimoxazole", "acyclovir"]


def test_a_plan_entered_mid_treatment_is_checked_24_hours_after_it_was_entered() -> None:
    entered = datetime(2026, 3, 20, 15, 30, tzinfo=UTC)
    assert prophylaxis_check_due_at(START, entered, BRUSSELS, 24) == entered + timedelta(hours=24)
    assert _missing(entered + timedelta(hours=23), {}, created_at=entered) == []
    assert _missing(entered + timedelta(hours=24), {}, created_at=entered) == [
        "cotrimoxazole",
        "acyclovir",
    ]


def test_the_local_start_follows_the_patients_zone() -> None:
    # Midnight in New York on 2 March is 05:00 UTC.
    due = prophylaxis_check_due_at(START, datetime(2026, 2, 1, tzinfo=UTC), "America/New_York", 24)
    assert due == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("statuses", "missing"),
    [
        ({}, ["cotrimoxazole", "acyclovir"]),  # no course at all (a plan from before)
        ({"cotrimoxazole": "active", "acyclovir": "proposed"}, ["acyclovir"]),
        ({"cotrimoxazole": "active", "acyclovir": "active"}, []),
        # declined (pentamidine instead) and stopped are recorded care-team decisions
        ({"cotrimoxazole": "declined", "acyclovir": "stopped"}, []),
    ],
)
def test_only_undecided_mandatory_courses_are_missing(
    statuses: dict[str, str], missing: list[str]
) -> None:
    assert _missing(datetime(2026, 3, 10, tzinfo=UTC), statuses) == missing


def test_a_regimen_without_mandatory_prophylaxis_never_misses_any() -> None:
    assert (
        _missing(
            datetime(2026, 6, 1, tzinfo=UTC),
            {},
            entries=get_regimen("rituximab_cll_chemo").prophylaxis,
        )
        == []
    )
