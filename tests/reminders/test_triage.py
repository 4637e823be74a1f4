"""Triage rules: data-driven, each citing its source, thresholds from clinical_rules.toml."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reminders.core import triage
from reminders.core.clinical_rules import LANGUAGES, clinical_rules, urgent_advice
from reminders.core.parser import SYMPTOM_CODES, Expecting, parse_reply
from reminders.core.red_flags import load_red_flags
from reminders.core.templates import TEMPLATE_KEYS, render
from reminders.core.triage import (
    AlertKind,
    Severity,
    TriageContext,
    TriageRulesError,
    load_triage_rules,
    persistent_low_grade,
    triage_report,
)

RULES_FILE = Path(triage.__file__).with_name("triage_rules.toml")
FEVER = clinical_rules().fever
NOTHING: frozenset[str] = frozenset()
SEED_OR_POLICY = re.compile(
    r"\d{3}_[0-9a-f]{16}\.txt|clinical-brief\.md|clinical_rules\.toml|red_flags\.toml|safety"
)


def report(temperature=None, *symptoms, **context):
    return triage_report(temperature, frozenset(symptoms), TriageContext(**context))


# --------------------------------------------------------------------------- every rule
# One input per rule id that must make that rule match.
TRIGGERS = {
    "fever": (FEVER.threshold_c, (), {}),
    "low_grade_temperature": (FEVER.recheck_from_c, (), {}),
    "temperature_normal": (36.8, (), {}),
    "red_flag": (None, ("chest_pain",), {}),
    "fever_in_words": (None, ("fever",), {}),
    "fever_words_normal_temperature": (36.9, ("chills",), {}),
    "persistent_low_grade": (37.6, (), {"low_grade_readings": (37.6, 37.7)}),
    "fever_cmv_test": (FEVER.threshold_c, (), {"cmv_test_on_fever": True}),
    "symptom_chills": (None, ("chills",), {}),
    "symptom_tired": (None, ("tired",), {}),
    "symptom_rash": (None, ("rash",), {}),
    "symptom_diarrhoea": (None, ("diarrhoea",), {}),
    "symptom_injection_site": (None, ("injection_site",), {}),
    "unrecognised_symptom": (None, ("earache",), {}),
    "fever_cmv_window": (FEVER.threshold_c, (), {"in_cmv_window": True}),
    "nothing_reported": (None, (), {}),
}


def test_every_rule_has_a_trigger():
    assert set(TRIGGERS) == {r.id for r in load_triage_rules().rules}


@pytest.mark.parametrize("rule", load_triage_rules().rules, ids=lambda r: r.id)
def test_each_rule_fires_and_reports_its_reason_and_source(rule):
    temperature, symptoms, context = TRIGGERS[rule.id]
    decision = report(temperature, *symptoms, **context)
    assert rule.id in decision.rule_ids
    assert rule.reason in decision.reasons
    assert rule.source in decision.sources
    assert decision.severity.rank >= rule.severity.rank


@pytest.mark.parametrize("rule", load_triage_rules().rules, ids=lambda r: r.id)
def test_each_rule_cites_a_source(rule):
    assert rule.source.strip()
    assert SEED_OR_POLICY.search(rule.source), rule.source


def test_rules_file_writes_no_threshold_as_a_literal():
    data = tomllib.loads(RULES_FILE.read_text())
    for rule in data["rule"]:
        for key, value in rule["condition"].items():
            if key.startswith("temperature"):
                assert isinstance(value, str) and value.startswith("fever."), rule["id"]
        assert not isinstance(rule.get("recheck_after", ""), int | float)


def test_every_symptom_code_has_a_rule_or_is_a_red_flag():
    flag_codes = {code for f in load_red_flags().flags for code in (f.id, *f.symptoms)}
    assert load_triage_rules().known_symptoms | flag_codes >= SYMPTOM_CODES


def test_every_patient_template_exists_in_every_language():
    rules = load_triage_rules()
    assert rules.templates() <= set(TEMPLATE_KEYS)
    assert set(rules.patient_template_priority) <= set(TEMPLATE_KEYS)


# --------------------------------------------------------------------------- outcomes
def test_fever_is_urgent():
    d = report(38.4)
    assert d.severity is Severity.URGENT
    assert d.reasons == ("fever",)
    assert d.patient_template == "fever_urgent"
    assert d.alert_care_team and d.notify_on_call
    assert not d.cmv_test_advised
    assert d.recheck_after_minutes is None
    assert d.summary == "Temperature 38.4 C"


@pytest.mark.parametrize(
    ("temperature", "symptoms", "context", "kind"),
    [
        (38.4, (), {}, AlertKind.FEVER),
        (38.6, ("chills",), {}, AlertKind.FEVER),
        # Both urgent: the fever rule comes first in the file.
        (38.4, ("breathing",), {}, AlertKind.FEVER),
        (38.4, (), {"in_cmv_window": True, "cmv_test_on_fever": True}, AlertKind.FEVER),
        (None, ("chest_pain",), {}, AlertKind.RED_FLAG),
        (None, ("fever",), {"cmv_test_on_fever": True}, AlertKind.FEVER_IN_WORDS),
        (36.9, ("chills",), {}, AlertKind.FEVER_WORDS_NORMAL_TEMPERATURE),
        # The symptom alerts, the slightly raised temperature does not: the alert is
        # about the symptom (the first reason's text said "low_grade_temperature").
        (37.6, ("rash",), {}, AlertKind.SYMPTOM),
        (36.8, ("earache",), {}, AlertKind.SYMPTOM),
        (37.6, (), {"low_grade_readings": (37.6, 37.7)}, AlertKind.PERSISTENT_LOW_GRADE),
    ],
)
def test_the_alert_kind_is_the_most_severe_alerting_rules_kind(
    temperature, symptoms, context, kind
):
    decision = report(temperature, *symptoms, **context)
    assert decision.alert_care_team and decision.alert_kind is kind
    rules = {r.id: r for r in load_triage_rules().rules}
    matched = [rules[i] for i in decision.rule_ids]
    assert kind in {r.kind for r in matched if r.severity is decision.severity}


@pytest.mark.parametrize(
    ("temperature", "kind"),
    [
        (36.8, AlertKind.TEMPERATURE_NORMAL),
        (37.6, AlertKind.LOW_GRADE_TEMPERATURE),
        (None, AlertKind.NOTHING_REPORTED),
    ],
)
def test_a_decision_that_alerts_nobody_still_names_its_rules_kind(temperature, kind):
    decision = report(temperature)
    assert not decision.alert_care_team and decision.alert_kind is kind


@pytest.mark.parametrize("code", ["breathing", "bleeding", "jaundice"])
def test_red_flags_are_urgent_without_fever(code):
    d = report(None, code)
    assert d.severity is Severity.URGENT
    assert d.reasons == ("red_flag", f"red_flag:{code}")
    assert d.patient_template == "red_flag_urgent"
    assert d.alert_care_team and d.notify_on_call


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("tired", "Very tired"),
        ("rash", "Rash"),
        ("diarrhoea", "Diarrhoea"),
        ("injection_site", "Injection-site problem"),
    ],
)
def test_other_symptoms_are_high_and_acknowledged(code, label):
    d = report(None, code)
    assert d.severity is Severity.HIGH
    assert d.reasons == (f"symptom:{code}",)
    assert d.summary == label
    assert d.patient_template == "symptoms_ack"
    assert d.alert_care_team and not d.notify_on_call


@pytest.mark.parametrize("drug", ["inotuzumab ozogamicin", "rituximab", "alemtuzumab", None])
def test_jaundice_is_a_red_flag_whatever_the_drug(drug):
    # Yellow skin or eyes is on the site's "call now" list (red_flags.toml): urgent.
    assert report(None, "jaundice", drug=drug).severity is Severity.URGENT


def test_chills_are_a_fever_in_words_until_a_number_says_otherwise():
    alone = report(None, "chills")
    assert alone.severity is Severity.URGENT and alone.notify_on_call
    assert alone.patient_template == "fever_words_urgent" and alone.awaits_temperature
    measured = report(36.9, "chills")
    assert measured.severity is Severity.HIGH and not measured.notify_on_call
    assert measured.reasons[:1] == ("temperature_normal",) and "symptom:chills" in measured.reasons
    assert measured.patient_template == "symptoms_ack_recheck"
    assert measured.recheck_after_minutes == FEVER.recheck_after_minutes


def test_nothing_abnormal_thanks_the_patient():
    for d in (report(None), report(36.8)):
        assert d.severity is Severity.NONE
        assert d.patient_template == "all_clear_thanks"
        assert not (d.alert_care_team or d.notify_on_call or d.cmv_test_advised)
        assert d.recheck_after_minutes is None


def test_unknown_symptom_code_is_shown_to_a_human():
    d = report(None, "earache")
    assert d.severity is Severity.HIGH
    assert "earache" in d.summary


# --------------------------------------------------------------------------- boundaries
@pytest.mark.parametrize(
    ("temperature", "severity", "recheck"),
    [
        (FEVER.recheck_from_c - 0.1, Severity.NONE, None),  # 37.4
        (FEVER.recheck_from_c, Severity.ROUTINE, FEVER.recheck_after_minutes),  # 37.5
        (round(FEVER.threshold_c - 0.1, 1), Severity.ROUTINE, FEVER.recheck_after_minutes),  # 37.9
        (FEVER.threshold_c, Severity.URGENT, None),  # 38.0
        (37.95, Severity.URGENT, None),  # rounds half-up to 38.0
        (FEVER.plausible_max_c, Severity.URGENT, None),
        (FEVER.plausible_min_c, Severity.NONE, None),
    ],
)
def test_temperature_boundaries(temperature, severity, recheck):
    d = report(temperature)
    assert d.severity is severity
    assert d.recheck_after_minutes == recheck


def test_the_brief_boundaries_literally():
    assert report(37.4).severity is Severity.NONE
    assert report(37.5).severity is Severity.ROUTINE
    assert report(37.9).severity is Severity.ROUTINE
    assert report(38.0).severity is Severity.URGENT


def test_low_grade_temperature_asks_to_measure_again_without_alerting():
    d = report(37.6)
    assert d.patient_template == "recheck_temperature"
    assert d.recheck_after_minutes == FEVER.recheck_after_minutes == 60
    assert not d.alert_care_team and not d.notify_on_call


def test_100_4_fahrenheit_from_the_parser_is_urgent():
    reply = parse_reply("100.4 F", Expecting.TEMPERATURE)
    assert report(reply.temperature_c).severity is Severity.URGENT
    reply = parse_reply("100.2F", Expecting.TEMPERATURE)  # 37.9 C
    assert report(reply.temperature_c).severity is Severity.ROUTINE


@pytest.mark.parametrize("bad", [33.9, 43.1, 100.4, 0.0, float("nan"), float("inf")])
def test_implausible_temperature_is_a_programming_error(bad):
    with pytest.raises(ValueError, match="plausible"):
        report(bad)


def test_thresholds_come_from_clinical_rules_not_literals(monkeypatch):
    rules = clinical_rules()
    stricter = dataclasses.replace(rules.fever, threshold_c=38.5, recheck_after_minutes=30)
    monkeypatch.setattr(
        triage, "clinical_rules", lambda: dataclasses.replace(rules, fever=stricter)
    )
    assert report(38.2).severity is Severity.ROUTINE
    assert report(38.2).recheck_after_minutes == 30
    assert report(38.5).severity is Severity.URGENT


# --------------------------------------------------------------------------- CMV window
def test_fever_in_cmv_window_advises_a_cmv_test():
    d = report(38.1, in_cmv_window=True, drug="alemtuzumab")
    assert d.severity is Severity.URGENT
    assert d.cmv_test_advised
    assert "CMV test advised" in d.summary
    assert d.patient_template == "fever_urgent_cmv"
    assert "002_56971d7eaf23c097.txt" in " ".join(d.sources)


def test_no_cmv_advice_outside_the_window_or_without_fever():
    assert not report(38.1).cmv_test_advised
    assert not report(37.6, in_cmv_window=True).cmv_test_advised
    assert not report(None, "breathing", in_cmv_window=True).cmv_test_advised


# --------------------------------------------------------------------------- combinations
def test_fever_and_bleeding_is_urgent_with_both_reasons():
    d = report(38.2, "bleeding")
    assert d.severity is Severity.URGENT
    assert d.reasons == ("fever", "red_flag", "red_flag:bleeding")
    assert (
        d.summary
        == "Temperature 38.2 C; bleeding or bruising, black stools, or blood in urine or vomit"
    )
    assert d.patient_template == "fever_urgent"


def test_fever_cough_in_cmv_window_summary_reads_in_order():
    d = report(38.4, "breathing", in_cmv_window=True)
    assert d.summary == "Temperature 38.4 C; cough or short of breath; CMV test advised"
    assert d.reasons == ("fever", "red_flag", "cmv_test_advised", "red_flag:breathing")
    assert d.patient_template == "fever_urgent_cmv"


def test_low_grade_temperature_with_a_symptom_gets_one_combined_message():
    d = report(37.6, "rash")
    assert d.severity is Severity.HIGH
    assert d.patient_template == "symptoms_ack_recheck"
    assert d.recheck_after_minutes == FEVER.recheck_after_minutes
    assert d.alert_care_team and not d.notify_on_call


def test_urgent_decision_carries_no_recheck():
    d = report(37.6, "bleeding")
    assert d.severity is Severity.URGENT
    assert d.patient_template == "red_flag_urgent"
    assert d.recheck_after_minutes is None


def test_extra_symptoms_from_the_same_check_in_are_included():
    d = triage_report(37.0, NOTHING, TriageContext(extra_symptoms=frozenset({"bleeding"})))
    assert d.severity is Severity.URGENT
    assert "red_flag:bleeding" in d.reasons


def test_summary_never_contains_a_phone_number():
    d = report(38.4, *SYMPTOM_CODES, in_cmv_window=True)
    assert not re.search(r"\+?\d[\d ]{6,}", d.summary)


def test_end_to_end_from_an_sms():
    reply = parse_reply("temp 38.4 and cough", Expecting.TEMPERATURE)
    d = triage_report(reply.temperature_c, reply.symptoms, TriageContext())
    assert d.severity is Severity.URGENT
    assert d.summary == "Temperature 38.4 C; cough or short of breath"


# --------------------------------------------------------------------------- urgent advice
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("temperature", "symptoms", "context"),
    [(38.4, (), {}), (38.4, (), {"in_cmv_window": True}), (38.4, ("bleeding",), {})],
)
def test_urgent_fever_template_quotes_the_advice_word_for_word(
    language, temperature, symptoms, context
):
    d = report(temperature, *symptoms, **context)
    text = render(d.patient_template, language, team_phone="+32 2 555 01 23")
    assert urgent_advice(language) in text
    assert "+32 2 555 01 23" in text


def test_urgent_patient_template_contains_english_advice_verbatim():
    text = render(report(38.0).patient_template, "en", team_phone="+32 2 555 01 23")
    assert urgent_advice("en") in text


# --------------------------------------------------------------------------- rules file
def _write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_a_literal_threshold_is_rejected_naming_the_rule(tmp_path):
    text = RULES_FILE.read_text().replace(
        'condition = { temperature_c_at_least = "fever.threshold_c" }',
        "condition = { temperature_c_at_least = 38.0 }",
        1,
    )
    with pytest.raises(TriageRulesError, match=r"rule 'fever', condition\.temperature_c_at_least"):
        load_triage_rules(_write_rules(tmp_path, text))


def test_an_unknown_reference_is_rejected_naming_the_rule(tmp_path):
    text = RULES_FILE.read_text().replace(
        'condition = { temperature_c_at_least = "fever.threshold_c" }',
        'condition = { temperature_c_at_least = "fever.threshold_x" }',
        1,
    )
    with pytest.raises(TriageRulesError, match=r"rule 'fever'.*fever\.threshold_x"):
        load_triage_rules(_write_rules(tmp_path, text))


def test_a_missing_symptom_rule_is_rejected(tmp_path):
    data = RULES_FILE.read_text()
    start = data.index('[[rule]]\nid = "symptom_rash"')
    end = data.index("[[rule]]", start + 1)
    with pytest.raises(TriageRulesError, match="rash"):
        load_triage_rules(_write_rules(tmp_path, data[:start] + data[end:]))


def test_a_rule_without_source_is_rejected(tmp_path):
    text = re.sub(
        r'\nsource = "[^"]*"\n\n\[\[rule\]\]\nid = "low_grade',
        '\n\n[[rule]]\nid = "low_grade',
        RULES_FILE.read_text(),
        count=1,
    )
    with pytest.raises(TriageRulesError, match=r"rule 'fever', source"):
        load_triage_rules(_write_rules(tmp_path, text))


def test_a_drug_specific_rule_only_applies_to_that_drug(tmp_path):
    text = RULES_FILE.read_text() + (
        '\n[[rule]]\nid = "test_only"\n'
        'condition = { symptom = "rash", drugs = ["Inotuzumab"] }\n'
        'severity = "urgent"\nkind = "symptom"\nreason = "test"\nsummary = "test"\n'
        'source = "clinical-brief.md"\n'
    )
    rules = load_triage_rules(_write_rules(tmp_path, text))
    rash = frozenset({"rash"})
    assert triage_report(None, rash, TriageContext(drug="inotuzumab"), rules=rules).severity is (
        Severity.URGENT
    )
    assert triage_report(None, rash, TriageContext(drug="rituximab"), rules=rules).severity is (
        Severity.HIGH
    )


def test_a_rule_with_an_unknown_alert_kind_is_rejected_naming_the_rule(tmp_path):
    text = RULES_FILE.read_text().replace('kind = "fever"', 'kind = "feverish"', 1)
    with pytest.raises(TriageRulesError, match=r"rule 'fever', kind: Input should be 'fever'"):
        load_triage_rules(_write_rules(tmp_path, text))


def test_a_rule_without_an_alert_kind_is_rejected(tmp_path):
    text = RULES_FILE.read_text().replace('kind = "symptom"\n', "", 1)
    with pytest.raises(TriageRulesError, match=r"rule 'symptom_chills', kind: Field required"):
        load_triage_rules(_write_rules(tmp_path, text))


def test_decision_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        report(38.0).severity = Severity.NONE  # type: ignore[misc]


# --------------------------------------------------------------------------- persistence
def _readings(now, *hours_ago_and_c):
    return [(now - timedelta(hours=h), c) for h, c in hours_ago_and_c]


def test_a_second_low_grade_reading_within_24_hours_in_a_risk_window_persists() -> None:
    now = datetime(2026, 3, 17, 17, 0, tzinfo=UTC)
    readings = _readings(now, (23, 37.6), (0, 37.8))
    found = persistent_low_grade(
        readings, now, in_risk_window=True, on_treatment_or_prophylaxis=True
    )
    assert found == (37.6, 37.8)
    # The same two readings outside a risk window: not yet (three are needed).
    assert (
        persistent_low_grade(readings, now, in_risk_window=False, on_treatment_or_prophylaxis=True)
        == ()
    )
    # Older than 24 h: not the same episode.
    late = _readings(now, (25, 37.6), (0, 37.8))
    assert (
        persistent_low_grade(late, now, in_risk_window=True, on_treatment_or_prophylaxis=True) == ()
    )


def test_three_low_grade_readings_within_72_hours_persist_during_treatment_or_prophylaxis() -> None:
    now = datetime(2026, 9, 1, 17, 0, tzinfo=UTC)
    readings = _readings(now, (70, 37.5), (30, 37.9), (0, 37.6), (10, 36.8), (5, 38.4))
    assert persistent_low_grade(
        readings, now, in_risk_window=False, on_treatment_or_prophylaxis=True
    ) == (37.5, 37.9, 37.6)
    # Treatment and prophylaxis both over: the rule does not apply.
    assert (
        persistent_low_grade(readings, now, in_risk_window=False, on_treatment_or_prophylaxis=False)
        == ()
    )


def test_persistence_numbers_come_from_the_rules_file() -> None:
    rule = clinical_rules().fever.persistent_low_grade
    assert (rule.in_risk_window_count, rule.in_risk_window_hours) == (2, 24)
    assert (rule.any_time_count, rule.any_time_hours) == (3, 72)
    assert "care-team setting" in rule.source and "003_" in rule.source
