"""The prophylaxis stop rule never lets a course end by itself and needs every condition."""

from __future__ import annotations

from datetime import date

from reminders.core.prophylaxis import stop_eligibility

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
