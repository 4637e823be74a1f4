"""Lab rules: CMV above 10,000 or two rising positives, ANC below 250, CD4 recovered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reminders.core.clinical_rules import clinical_rules
from reminders.core.labs import LabKind, LabValue, ReportedSigns, evaluate_lab

T0 = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)


def cmv(value: float, days: int = 0) -> LabValue:
    return LabValue(LabKind.CMV_PCR, value, T0 + timedelta(days=days))


def codes(findings: list) -> list[str]:
    return [f.code for f in findings]


def test_cmv_above_threshold_suggests_hold() -> None:
    [finding] = evaluate_lab(cmv(10_001), [])
    assert finding.code == "cmv_above_threshold"
    assert finding.suggest_hold and finding.severity == "high"
    assert "003_a1949903592dbecf.txt" in finding.source


def test_cmv_exactly_at_threshold_is_not_above() -> None:
    assert codes(evaluate_lab(cmv(10_000), [])) == ["cmv_single_positive"]


def test_two_positive_cmv_with_a_rise_suggest_hold() -> None:
    [finding] = evaluate_lab(cmv(2_400, days=7), [cmv(800)])
    assert finding.code == "cmv_rising_positive" and finding.suggest_hold


def test_two_positive_cmv_without_a_rise_do_not_suggest_hold() -> None:
    [finding] = evaluate_lab(cmv(500, days=7), [cmv(800)])
    assert finding.code == "cmv_single_positive" and not finding.suggest_hold


def test_rise_is_measured_against_the_previous_result_not_a_later_one() -> None:
    # A result entered late (taken before the newest) compares with what came before it.
    history = [cmv(0, days=-7), cmv(5_000, days=7)]
    assert codes(evaluate_lab(cmv(300), history)) == ["cmv_single_positive"]


def test_negative_cmv_raises_nothing() -> None:
    assert evaluate_lab(cmv(0, days=7), [cmv(900)]) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(249, ["anc_below_hold"]), (250, ["anc_below_gcsf"]), (499, ["anc_below_gcsf"]), (500, [])],
)
def test_anc_thresholds(value: float, expected: list[str]) -> None:
    findings = evaluate_lab(LabValue(LabKind.ANC, value, T0), [])
    assert codes(findings) == expected
    assert all(f.suggest_hold == (f.code == "anc_below_hold") for f in findings)


@pytest.mark.parametrize(
    ("value", "expected"), [(199, []), (200, ["cd4_recovered"]), (650, ["cd4_recovered"])]
)
def test_cd4_recovery(value: float, expected: list[str]) -> None:
    findings = evaluate_lab(LabValue(LabKind.CD4, value, T0), [])
    assert codes(findings) == expected
    assert all(f.prophylaxis_may_stop for f in findings)


def test_thresholds_come_from_the_rules_file() -> None:
    rules = clinical_rules()
    assert rules.cmv.act_above_copies == 10_000
    assert rules.anc.hold_below == 250
    assert rules.cd4.recovered_at_least == 200
    assert rules.fever.threshold_c == 38.0 and rules.fever.threshold_f == 100.4


# --------------------------------------------------------------------------- symptomatic CMV
def reported(days: float, temperature_c: float | None = None, *symptoms: str) -> ReportedSigns:
    return ReportedSigns(T0 + timedelta(days=days), temperature_c, frozenset(symptoms))


def test_single_positive_without_signs_keeps_its_reassurance() -> None:
    [finding] = evaluate_lab(cmv(850), [], reports=[reported(-2, 36.8)])
    assert finding.code == "cmv_single_positive" and not finding.suggest_hold


@pytest.mark.parametrize(
    "report",
    [
        reported(-2, 38.4),  # a fever two days before the sample
        reported(3, 37.6),  # a slight fever three days after (003: slight fever)
        reported(-1, None, "fever"),  # fever in words
        reported(-6, None, "tired"),  # fatigue (003)
        reported(1, 36.9, "breathing"),  # cough or breathlessness (002: CMV pneumonia)
    ],
)
def test_positive_cmv_with_fever_or_cmv_signs_around_it_is_symptomatic(report) -> None:
    findings = evaluate_lab(cmv(850), [], reports=[report])
    assert codes(findings) == ["cmv_symptomatic"]
    assert findings[0].suggest_hold and "consider withholding" in findings[0].reason
    assert "003" in findings[0].reason and "does not by itself" not in findings[0].reason


def test_signs_outside_the_window_do_not_make_it_symptomatic() -> None:
    days = clinical_rules().cmv.symptomatic_within_days
    findings = evaluate_lab(cmv(850), [], reports=[reported(-(days + 1), 38.9)])
    assert codes(findings) == ["cmv_single_positive"]


def test_symptomatic_comes_first_and_keeps_the_threshold_finding() -> None:
    findings = evaluate_lab(cmv(25_000), [], reports=[reported(0, 38.2)])
    assert codes(findings) == ["cmv_symptomatic", "cmv_above_threshold"]


def test_a_negative_result_is_never_symptomatic_cmv() -> None:
    assert evaluate_lab(cmv(0), [], reports=[reported(0, 39.0)]) == []
