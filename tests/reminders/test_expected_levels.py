"""Expected levels, the pure rule: which readings a care-team note quiets, and never a fever.

Issue 14, item 7 (hazard H-55): a slightly raised temperature the team noted as expected
gets no re-check and no low-grade alert; a fever, a red flag, a symptom, feeling feverish,
an expired or ended note quiets nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminders.core import expected_levels, triage
from reminders.core.clinical_rules import clinical_rules
from reminders.core.expected_levels import (
    EXPECTED_TEMPLATE,
    ExpectedLevelNote,
    LevelState,
    level_problems,
    may_be_quieted,
    quiet_decision,
    quieting_level,
)
from reminders.core.red_flags import load_red_flags
from reminders.core.triage import (
    Severity,
    TriageContext,
    TriageRulesError,
    load_triage_rules,
    triage_report,
)

FEVER = clinical_rules().fever
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
RULES_FILE = Path(triage.__file__).with_name("triage_rules.toml")


def level(up_to_c: float = 37.8, **overrides) -> ExpectedLevelNote:
    values = {
        "id": 1,
        "up_to_c": up_to_c,
        "reason": "rituximab infusion this morning, fever expected tonight",
        "noted_by": "Marie-Françoise Van den Bossche",
        "created_at": NOW - timedelta(hours=2),
        "expires_at": NOW + timedelta(hours=22),
    }
    return ExpectedLevelNote(**{**values, **overrides})


def decide(temperature, *symptoms, **context):
    return triage_report(temperature, frozenset(symptoms), TriageContext(**context))


def quieted_by(temperature, *symptoms, levels=None, at=NOW, **context):
    decision = decide(temperature, *symptoms, **context)
    return quieting_level(temperature, decision.rule_ids, levels or [level()], at)


def test_a_low_grade_reading_within_the_level_is_quieted() -> None:
    note = level(37.8)
    assert quieted_by(37.7, levels=[note]) == note
    assert quieted_by(37.8, levels=[note]) == note  # "up to" includes the level
    assert quieted_by(FEVER.recheck_from_c, levels=[note]) == note


def test_a_reading_above_the_level_is_not_quieted() -> None:
    assert quieted_by(37.9, levels=[level(37.6)]) is None
    assert quieted_by(37.7, levels=[level(37.6)]) is None


@pytest.mark.parametrize("temperature", [FEVER.threshold_c, 38.1, 38.6, 39.4, 37.95])
def test_a_fever_is_never_quieted_whatever_level_is_stored(temperature) -> None:
    # Levels the services refuse (at or above the threshold) still quiet no fever.
    for up_to in (FEVER.threshold_c - 0.1, FEVER.threshold_c, 39.0, 42.0):
        assert quieted_by(temperature, levels=[level(up_to)]) is None
        assert quieted_by(temperature, levels=[level(up_to)], cmv_test_on_fever=True) is None


@given(
    temperature=st.floats(min_value=FEVER.threshold_c, max_value=FEVER.plausible_max_c),
    up_to=st.floats(min_value=30.0, max_value=45.0),
)
def test_no_level_ever_quiets_a_temperature_at_or_above_the_fever_threshold(
    temperature, up_to
) -> None:
    decision = decide(temperature)
    assert decision.severity is Severity.URGENT
    assert quieting_level(temperature, decision.rule_ids, [level(up_to)], NOW) is None


@pytest.mark.parametrize("flag", sorted(load_red_flags().ids - {"fever"}))
def test_a_red_flag_with_a_low_grade_temperature_is_never_quieted(flag) -> None:
    assert quieted_by(37.6, flag, drug="inotuzumab", levels=[level(37.9)]) is None


@pytest.mark.parametrize(
    "symptoms",
    [("chills",), ("rash",), ("tired",), ("diarrhoea",), ("injection_site",), ("earache",)],
)
def test_a_symptom_with_a_low_grade_temperature_is_never_quieted(symptoms) -> None:
    decision = decide(37.6, *symptoms)
    assert decision.severity.rank >= Severity.HIGH.rank
    assert quieting_level(37.6, decision.rule_ids, [level(37.9)], NOW) is None


def test_feeling_feverish_below_the_threshold_is_never_quieted() -> None:
    decision = decide(37.6, "fever")
    assert "fever_words_normal_temperature" in decision.rule_ids
    assert quieting_level(37.6, decision.rule_ids, [level(37.9)], NOW) is None


def test_a_persistent_low_grade_reading_within_the_level_is_quieted() -> None:
    decision = decide(37.7, low_grade_readings=(37.6, 37.7))
    assert decision.rule_ids == ("low_grade_temperature", "persistent_low_grade")
    assert decision.alert_care_team and decision.severity is Severity.HIGH
    assert quieting_level(37.7, decision.rule_ids, [level(37.8)], NOW) is not None


@pytest.mark.parametrize(
    "note",
    [
        level(expires_at=NOW),  # expired at the reading's instant
        level(expires_at=NOW - timedelta(minutes=1)),
        level(ended_at=NOW - timedelta(minutes=1)),  # ended early by a nurse
        level(ended_at=NOW),
        level(created_at=NOW + timedelta(minutes=1)),  # noted after the reading
    ],
)
def test_a_level_not_in_force_at_the_reading_quiets_nothing(note) -> None:
    assert quieted_by(37.7, levels=[note]) is None
    assert note.state(NOW) is not LevelState.IN_FORCE


def test_the_states_of_a_level() -> None:
    note = level(ended_at=NOW + timedelta(hours=1))
    assert note.state(NOW) is LevelState.IN_FORCE
    assert note.state(NOW + timedelta(hours=1)) is LevelState.ENDED
    assert level().state(NOW + timedelta(days=1)) is LevelState.EXPIRED
    assert level().state(NOW - timedelta(hours=3)) is LevelState.NOT_YET


def test_of_several_levels_in_force_the_newest_covering_one_quiets() -> None:
    older = level(37.9, id=1, created_at=NOW - timedelta(hours=5))
    newer = level(37.7, id=2, created_at=NOW - timedelta(hours=1))
    assert quieted_by(37.6, levels=[older, newer]) == newer
    assert quieted_by(37.8, levels=[older, newer]) == older  # only the older covers 37.8


def test_rules_it_does_not_know_are_never_quieted() -> None:
    assert (
        quieting_level(37.6, ("low_grade_temperature", "a_rule_from_tomorrow"), [level()], NOW)
        is None
    )
    assert quieting_level(37.6, (), [level()], NOW) is None
    assert quieting_level(None, ("low_grade_temperature",), [level()], NOW) is None
    assert not may_be_quieted(36.8, ("temperature_normal",))


def test_the_quieted_decision_asks_nothing_again_alerts_nobody_and_answers_the_patient() -> None:
    note = level(37.8)
    decision = decide(37.7, low_grade_readings=(37.6, 37.7))
    quiet = quiet_decision(decision, note)
    assert quiet.recheck_after_minutes is None
    assert not quiet.alert_care_team and not quiet.notify_on_call
    assert quiet.severity is Severity.ROUTINE
    assert quiet.patient_template == EXPECTED_TEMPLATE
    assert quiet.rule_ids == decision.rule_ids  # why the reading was raised stays recorded
    assert quiet.summary.startswith(decision.summary)
    assert f"expected: {note.reason} (noted by {note.noted_by})" in quiet.summary


def test_thresholds_come_from_clinical_rules_not_literals(monkeypatch) -> None:
    rules = clinical_rules()
    stricter = dataclasses.replace(rules.fever, threshold_c=38.5)
    moved = dataclasses.replace(rules, fever=stricter)
    monkeypatch.setattr(triage, "clinical_rules", lambda: moved)
    monkeypatch.setattr(expected_levels, "clinical_rules", lambda: moved)
    # With a threshold of 38.5 C, 38.2 is a low-grade reading a level may quiet...
    assert quieted_by(38.2, levels=[level(38.3)]) is not None
    assert level_problems(38.3, NOW + timedelta(days=1), "infusion", NOW) == {}
    # ...and 38.5 never is, nor a level of 38.5.
    assert quieted_by(38.5, levels=[level(38.5)]) is None
    assert "up_to_c" in level_problems(38.5, NOW + timedelta(days=1), "infusion", NOW)


# --------------------------------------------------------------------------- a new level
def test_a_good_level_has_no_problem() -> None:
    days = FEVER.expected_level.max_days
    assert level_problems(37.8, NOW + timedelta(days=days), "rituximab dose 1", NOW) == {}
    assert level_problems(FEVER.recheck_from_c, NOW + timedelta(hours=1), "dose 2", NOW) == {}


@pytest.mark.parametrize(
    ("up_to", "words"),
    [
        (FEVER.threshold_c, "below 38.0 C"),
        (38.4, "below 38.0 C"),
        (37.95, "below 38.0 C"),  # reads 38.0, like a reading would
        (37.4, "at least 37.5 C"),
        (37.85, "one decimal"),
        (1e308, "below 38.0 C"),
        (-1e308, "at least 37.5 C"),
        (float("nan"), "number"),
        (float("inf"), "number"),
    ],
)
def test_a_level_out_of_range_is_refused_naming_the_field(up_to, words) -> None:
    problems = level_problems(up_to, NOW + timedelta(days=1), "infusion", NOW)
    assert list(problems) == ["up_to_c"] and words in problems["up_to_c"]


@pytest.mark.parametrize(
    ("expires_at", "words"),
    [
        (NOW, "in the future"),
        (NOW - timedelta(days=1), "in the future"),
        (NOW + timedelta(days=FEVER.expected_level.max_days, seconds=1), "at most 7 days"),
        (datetime(2026, 3, 4, 8, 0), "time zone"),
    ],
)
def test_an_expiry_in_the_past_or_too_far_is_refused(expires_at, words) -> None:
    problems = level_problems(37.8, expires_at, "infusion", NOW)
    assert list(problems) == ["expires_at"] and words in problems["expires_at"]


@pytest.mark.parametrize("reason", ["", "  ", "ok", "x" * 501])
def test_a_reason_is_required(reason) -> None:
    assert list(level_problems(37.8, NOW + timedelta(days=1), reason, NOW)) == ["reason"]


def test_the_longest_level_comes_from_the_rules_file_with_its_source() -> None:
    rule = FEVER.expected_level
    assert rule.max_days == 7
    assert "002_56971d7eaf23c097.txt" in rule.source and "003_a1949903592dbecf.txt" in rule.source


# --------------------------------------------------------------------------- rules as data
def test_only_the_low_grade_rules_may_be_quieted() -> None:
    quietable = {r.id for r in load_triage_rules().rules if r.quiet_when_expected}
    assert quietable == {"low_grade_temperature", "persistent_low_grade"}


@pytest.mark.parametrize(
    ("rule_id", "anchor"),
    [
        ("fever", 'patient_template = "fever_urgent"\n'),
        ("red_flag", 'patient_template = "red_flag_urgent"\n'),
        ("symptom_chills", 'summary = "chills or shivering"\n'),
        ("fever_words_normal_temperature", 'summary = "feels feverish or shivery"\n'),
        ("fever_cmv_window", 'patient_template = "fever_urgent_cmv"\n'),
    ],
)
def test_the_loader_refuses_to_let_a_level_quiet_a_rule_it_must_never_quiet(
    tmp_path, rule_id, anchor
) -> None:
    text = RULES_FILE.read_text()
    assert text.count(anchor) == 1
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(anchor, anchor + "quiet_when_expected = true\n"))
    with pytest.raises(TriageRulesError, match=rf"rule '{rule_id}', quiet_when_expected"):
        load_triage_rules(path)
