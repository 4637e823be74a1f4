"""Triage: what a reported temperature and symptoms mean for the patient and the care team.

The rules are data (``triage_rules.toml``), each with its source; thresholds are
references into ``clinical_rules.toml`` ("fever.threshold_c"), never literals.
``triage_report`` evaluates every rule, takes the highest severity, joins the
summaries for the care team and picks the one message the patient gets now.

The companion is not a prescriber: "urgent" means the patient is told to call the
care team at once and the on-call clinician is notified; the care team decides.

Decisions where the brief was silent:

* ``extra_symptoms`` in the context are symptoms already reported in the same
  check-in (for example the symptom menu answered before the temperature); they
  are triaged together with ``symptoms``.
* An urgent decision carries no recheck: the patient is calling the team now.
* A symptom code no rule knows is triaged "high" (a human looks at it), never dropped.
* A temperature outside the plausible range of ``clinical_rules().fever`` raises
  ``ValueError``: the parser reports such values as implausible and the caller
  asks again, so one reaching triage is a programming error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reminders.core.clinical_rules import ClinicalRules, clinical_rules
from reminders.core.datafiles import load_validated
from reminders.core.parser import SYMPTOM_CODES
from reminders.core.red_flags import RedFlag, RedFlags, applicable_flags, load_red_flags

__all__ = [
    "AlertKind",
    "Severity",
    "TriageContext",
    "TriageDecision",
    "TriageRule",
    "TriageRules",
    "TriageRulesError",
    "load_triage_rules",
    "persistent_low_grade",
    "triage_report",
]

_RULES_FILE = Path(__file__).with_name("triage_rules.toml")


class Severity(StrEnum):
    """How quickly someone must act, from most to least urgent."""

    URGENT = "urgent"  # patient calls the team now; on-call clinician notified
    HIGH = "high"  # in the care-team queue; patient acknowledged
    ROUTINE = "routine"  # recorded, recheck scheduled, nobody alerted
    NONE = "none"  # nothing abnormal

    @property
    def rank(self) -> int:
        """Higher is more urgent (none=0 ... urgent=3)."""
        return _RANKS[self]


_RANKS = {Severity.NONE: 0, Severity.ROUTINE: 1, Severity.HIGH: 2, Severity.URGENT: 3}


class AlertKind(StrEnum):
    """The kind of care-team alert a triage rule raises (``Alert.kind``, the queue's filter).

    Each rule of ``triage_rules.toml`` names its kind; the loader refuses any other value,
    so a typo cannot create a kind the dashboard and the API filters never heard of.
    """

    FEVER = "fever"
    FEVER_IN_WORDS = "fever_in_words"
    FEVER_WORDS_NORMAL_TEMPERATURE = "fever_words_normal_temperature"
    RED_FLAG = "red_flag"
    PERSISTENT_LOW_GRADE = "persistent_low_grade"
    SYMPTOM = "symptom"
    CMV_TEST_ADVISED = "cmv_test_advised"
    LOW_GRADE_TEMPERATURE = "low_grade_temperature"
    TEMPERATURE_NORMAL = "temperature_normal"
    NOTHING_REPORTED = "nothing_reported"


class TriageRulesError(ValueError):
    """The rules file is invalid; the message names the file, the rule and the field."""


@dataclass(frozen=True)
class TriageContext:
    """What we know about the patient beyond this reply.

    ``cmv_test_on_fever``: a fever now calls for a CMV test (the regimen monitors CMV
    and the patient is on treatment or prophylaxis, or inside the CMV window).
    ``low_grade_readings``: the slightly raised temperatures (this one included) that
    make :func:`persistent_low_grade` hold, oldest first; empty when it does not.
    """

    in_cmv_window: bool = False
    drug: str | None = None
    extra_symptoms: frozenset[str] = frozenset()
    cmv_test_on_fever: bool = False
    low_grade_readings: tuple[float, ...] = ()


@dataclass(frozen=True)
class TriageDecision:
    """The outcome of triage: who must do what, why, and on which source.

    ``alert_care_team``: put it in the care-team queue on the dashboard.
    ``notify_on_call``: text the on-call clinician now (template ``oncall_alert``).
    ``patient_template``: the key of the message the patient gets now.
    ``recheck_after_minutes``: ask for the temperature again after this many minutes.
    ``rule_ids``: the ids of the matched rules, in file order (stored with the report).
    ``alert_kind``: the ``kind`` of the most severe matched rule that alerts the care
    team (of the most severe matched rule when none does; the first in file order on a
    tie); None only when no rule matched, which only a custom rule set allows.
    """

    severity: Severity
    reasons: tuple[str, ...]
    summary: str
    rule_ids: tuple[str, ...]
    sources: tuple[str, ...]
    patient_template: str | None
    alert_care_team: bool = False
    notify_on_call: bool = False
    cmv_test_advised: bool = False
    recheck_after_minutes: int | None = None
    symptoms: frozenset[str] = field(default_factory=frozenset)
    awaits_temperature: bool = False
    red_flags: tuple[str, ...] = ()
    alert_kind: AlertKind | None = None


# --------------------------------------------------------------------------- rules as data
class Condition(BaseModel):
    """Every key given must hold for the rule to match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature_c_at_least: str | None = None
    temperature_c_below: str | None = None
    in_cmv_window: bool | None = None
    symptom: str | None = None
    drugs: tuple[str, ...] | None = None
    unrecognised_symptom: bool | None = None
    nothing_reported: bool | None = None
    red_flag: bool | None = None
    fever_in_words: Literal["no_temperature", "below_threshold"] | None = None
    febrile: bool | None = None
    cmv_test_on_fever: bool | None = None
    persistent_low_grade: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_dump(exclude_none=True):
            raise ValueError("a condition needs at least one key")
        return self


class TriageRule(BaseModel):
    """One rule of ``triage_rules.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    condition: Condition
    severity: Severity
    kind: AlertKind
    reason: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    source: str = Field(min_length=1)
    patient_template: str | None = None
    alert_care_team: bool = False
    notify_on_call: bool = False
    cmv_test_advised: bool = False
    recheck_after: str | None = None
    ask_temperature: bool = False
    quiet_when_expected: bool = False


class Combination(BaseModel):
    """When all ``templates`` are asked for, send ``use`` instead (one message)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    templates: tuple[str, ...] = Field(min_length=2)
    use: str


class TriageRules(BaseModel):
    """The whole rules file, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_template_priority: tuple[str, ...]
    rule: tuple[TriageRule, ...] = Field(min_length=1)
    combination: tuple[Combination, ...] = ()

    @property
    def rules(self) -> tuple[TriageRule, ...]:
        """The rules in file order."""
        return self.rule

    @property
    def known_symptoms(self) -> frozenset[str]:
        """Symptom codes that some rule handles."""
        return frozenset(r.condition.symptom for r in self.rule if r.condition.symptom)

    def templates(self) -> frozenset[str]:
        """Every patient template key the rules can choose."""
        keys = {r.patient_template for r in self.rule if r.patient_template}
        keys |= {c.use for c in self.combination}
        return frozenset(keys)


def _threshold(rules: ClinicalRules, ref: str) -> float:
    """Resolve "fever.threshold_c" to its value in clinical_rules.toml."""
    section, _, name = ref.partition(".")
    value = getattr(getattr(rules, section, None), name, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyError(ref)
    return float(value)


def _check(rules: TriageRules, where: str) -> None:
    """Cross-field checks that a schema cannot express."""
    clinical = clinical_rules()
    seen: set[str] = set()
    for r in rules.rule:
        if r.id in seen:
            raise TriageRulesError(f"{where}: rule {r.id!r} is defined twice")
        seen.add(r.id)
        for fname in ("temperature_c_at_least", "temperature_c_below"):
            ref = getattr(r.condition, fname)
            if ref is not None:
                try:
                    _threshold(clinical, ref)
                except KeyError:
                    raise TriageRulesError(
                        f"{where}: rule {r.id!r}, condition.{fname}: {ref!r} is not a number"
                        " in clinical_rules.toml"
                    ) from None
        if r.recheck_after is not None:
            try:
                _threshold(clinical, r.recheck_after)
            except KeyError:
                raise TriageRulesError(
                    f"{where}: rule {r.id!r}, recheck_after: {r.recheck_after!r} is not a"
                    " number in clinical_rules.toml"
                ) from None
        if r.quiet_when_expected:
            _check_quietable(r, where)
        if r.patient_template and r.patient_template not in rules.patient_template_priority:
            raise TriageRulesError(
                f"{where}: rule {r.id!r}, patient_template: {r.patient_template!r} is missing"
                " from patient_template_priority"
            )
    # Safety: every symptom the parser can produce must have a rule or be a red flag.
    flags = load_red_flags()
    missing = SYMPTOM_CODES - rules.known_symptoms - _flag_codes(flags)
    if missing:
        raise TriageRulesError(f"{where}: no rule for symptom code(s) {sorted(missing)}")
    if not any(r.condition.red_flag for r in rules.rule if r.severity is Severity.URGENT):
        raise TriageRulesError(f"{where}: no urgent rule for red flags (red_flag = true)")


#: The only condition keys a rule the care team may quiet can read: a slightly raised
#: temperature and its persistence, nothing a patient says about how they feel.
_QUIETABLE_CONDITIONS = frozenset(
    {"temperature_c_at_least", "temperature_c_below", "persistent_low_grade"}
)


def _check_quietable(rule: TriageRule, where: str) -> None:
    """Refuse ``quiet_when_expected`` on a rule an expected level must never quiet.

    Safety (issue 14, item 7): a fever, a red flag, another symptom, the CMV window or
    anything urgent or paging on call is never quieted, whatever the care team noted.
    """
    used = set(rule.condition.model_dump(exclude_none=True))
    problem = None
    if rule.severity is Severity.URGENT or rule.notify_on_call:
        problem = "an urgent rule, or one that pages on call"
    elif used - _QUIETABLE_CONDITIONS:
        problem = f"a rule whose condition reads {sorted(used - _QUIETABLE_CONDITIONS)}"
    elif rule.condition.temperature_c_at_least not in (None, "fever.recheck_from_c"):
        problem = "a rule for temperatures from another threshold than fever.recheck_from_c"
    elif "persistent_low_grade" not in used and rule.condition.temperature_c_below != (
        "fever.threshold_c"
    ):
        problem = "a temperature rule not bounded below fever.threshold_c"
    if problem:
        raise TriageRulesError(
            f"{where}: rule {rule.id!r}, quiet_when_expected: never allowed on {problem}"
        )


def _flag_codes(flags: RedFlags) -> frozenset[str]:
    """Codes that report a red flag: flag ids and the symptom codes flags name."""
    return flags.ids | frozenset(code for f in flags.flags for code in f.symptoms)


def load_triage_rules(path: Path | str | None = None) -> TriageRules:
    """Load and validate a rules file (default: ``triage_rules.toml``, cached)."""
    if path is None:
        return _default_rules()
    return _load(Path(path))


@cache
def _default_rules() -> TriageRules:
    return _load(_RULES_FILE)


def _load(path: Path) -> TriageRules:
    rules = load_validated(path, TriageRules, TriageRulesError, "rule")
    _check(rules, path.name)
    return rules


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class _Facts:
    """What the rules are evaluated against, derived once per report."""

    temperature_c: float | None
    symptoms: frozenset[str]
    unrecognised: frozenset[str]
    urgent_flags: tuple[RedFlag, ...]
    fever_in_words: Literal["no_temperature", "below_threshold"] | None
    febrile: bool


def _holds(
    condition: Condition, facts: _Facts, context: TriageContext, clinical: ClinicalRules
) -> bool:
    c = condition
    temperature_c, symptoms, unrecognised = facts.temperature_c, facts.symptoms, facts.unrecognised
    if c.red_flag is not None and bool(facts.urgent_flags) != c.red_flag:
        return False
    if c.fever_in_words is not None and facts.fever_in_words != c.fever_in_words:
        return False
    if c.febrile is not None and facts.febrile != c.febrile:
        return False
    if c.cmv_test_on_fever is not None and context.cmv_test_on_fever != c.cmv_test_on_fever:
        return False
    if (
        c.persistent_low_grade is not None
        and bool(context.low_grade_readings) != c.persistent_low_grade
    ):
        return False
    if c.temperature_c_at_least is not None and (
        temperature_c is None or temperature_c < _threshold(clinical, c.temperature_c_at_least)
    ):
        return False
    if c.temperature_c_below is not None and (
        temperature_c is None or temperature_c >= _threshold(clinical, c.temperature_c_below)
    ):
        return False
    if c.in_cmv_window is not None and context.in_cmv_window != c.in_cmv_window:
        return False
    if c.symptom is not None and c.symptom not in symptoms:
        return False
    if c.drugs is not None and (context.drug or "").casefold() not in {
        d.casefold() for d in c.drugs
    }:
        return False
    if c.unrecognised_symptom is not None and bool(unrecognised) != c.unrecognised_symptom:
        return False
    nothing = temperature_c is None and not symptoms
    return c.nothing_reported is None or nothing == c.nothing_reported


def _facts(
    temperature_c: float | None,
    reported: frozenset[str],
    context: TriageContext,
    rules: TriageRules,
    clinical: ClinicalRules,
) -> _Facts:
    """Red flags, fever in words and what no rule knows, for one report."""
    flags = load_red_flags()
    for_drug, other_drug = applicable_flags(reported, context.drug, flags)
    fever_words = any(f.fever_in_words for f in for_drug)
    fever_in_words: Literal["no_temperature", "below_threshold"] | None = None
    if fever_words and temperature_c is None:
        fever_in_words = "no_temperature"
    elif fever_words and temperature_c < clinical.fever.threshold_c:  # type: ignore[operator]
        fever_in_words = "below_threshold"
    measured_fever = temperature_c is not None and temperature_c >= clinical.fever.threshold_c
    # A flag of another drug ("swollen belly" on rituximab) is no red flag here, but it
    # still reaches a human: it counts as a symptom no rule knows.
    known = rules.known_symptoms | _flag_codes(flags)
    unrecognised = (reported - known) | frozenset(f.id for f in other_drug)
    return _Facts(
        temperature_c=temperature_c,
        symptoms=reported,
        unrecognised=unrecognised,
        urgent_flags=tuple(f for f in for_drug if not f.fever_in_words),
        fever_in_words=fever_in_words,
        febrile=measured_fever or fever_in_words == "no_temperature",
    )


def persistent_low_grade(
    readings: Iterable[tuple[datetime, float]],
    now: datetime,
    *,
    in_risk_window: bool,
    on_treatment_or_prophylaxis: bool,
) -> tuple[float, ...]:
    """The slightly raised readings that make a persistent low-grade temperature, or ().

    ``readings`` are (taken at, Celsius) of the patient's recent reports, this one
    included. A reading counts when it is at least ``fever.recheck_from_c`` and below
    the fever threshold. It holds when ``in_risk_window_count`` readings fall within
    ``in_risk_window_hours`` inside a risk window, or ``any_time_count`` within
    ``any_time_hours`` while treatment or prophylaxis runs (``clinical_rules.toml``).
    """
    fever = clinical_rules().fever
    rule = fever.persistent_low_grade
    low = sorted(
        (at, c)
        for at, c in readings
        if c is not None and fever.recheck_from_c <= c < fever.threshold_c and at <= now
    )
    checks = []
    if in_risk_window:
        checks.append((rule.in_risk_window_count, rule.in_risk_window_hours))
    if on_treatment_or_prophylaxis or in_risk_window:
        checks.append((rule.any_time_count, rule.any_time_hours))
    for count, hours in checks:
        recent = [c for at, c in low if at > now - timedelta(hours=hours)]
        if len(recent) >= count:
            return tuple(recent)
    return ()


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def triage_report(
    temperature_c: float | None,
    symptoms: frozenset[str],
    context: TriageContext | None = None,
    *,
    rules: TriageRules | None = None,
) -> TriageDecision:
    """Triage one report: a temperature in Celsius (or None) and symptom codes.

    Raises ``ValueError`` for a temperature that cannot be a body temperature
    (see the module docstring). ``rules`` defaults to ``triage_rules.toml``.
    """
    context = context or TriageContext()
    rules = rules or load_triage_rules()
    clinical = clinical_rules()
    fever = clinical.fever
    if temperature_c is not None:
        if not math.isfinite(temperature_c) or not (
            fever.plausible_min_c <= temperature_c <= fever.plausible_max_c
        ):
            raise ValueError(
                f"temperature {temperature_c!r} C is outside the plausible range"
                f" {fever.plausible_min_c}-{fever.plausible_max_c} C: ask the patient again"
            )
        # Same rounding as the parser (half-up): 37.95 reads 38.0 and is urgent.
        temperature_c = float(
            Decimal(repr(temperature_c)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        )

    reported = frozenset(symptoms) | frozenset(context.extra_symptoms)
    facts = _facts(temperature_c, reported, context, rules, clinical)
    matched = [r for r in rules.rules if _holds(r.condition, facts, context, clinical)]
    if not matched:  # only possible with a custom rule set
        return TriageDecision(Severity.NONE, (), "", (), (), None, symptoms=reported)

    severity = max((r.severity for r in matched), key=lambda s: s.rank)
    by_id = load_red_flags().by_id()
    values = {
        "temperature_c": "" if temperature_c is None else f"{temperature_c:.1f}",
        "unrecognised": ", ".join(
            by_id[code].summary if code in by_id else code for code in sorted(facts.unrecognised)
        ),
        "red_flags": "; ".join(f.summary for f in facts.urgent_flags),
        "low_grade_readings": ", ".join(f"{c:.1f}" for c in context.low_grade_readings),
    }
    parts = _unique(r.summary.format(**values) for r in matched)
    summary = "; ".join(parts)
    summary = summary[:1].upper() + summary[1:]

    requested = {r.patient_template for r in matched if r.patient_template}
    template = next((t for t in rules.patient_template_priority if t in requested), None)
    for combo in rules.combination:
        if template in combo.templates and set(combo.templates) <= requested:
            template = combo.use
            break

    recheck = None
    if severity is not Severity.URGENT:
        minutes = [int(_threshold(clinical, r.recheck_after)) for r in matched if r.recheck_after]
        recheck = min(minutes) if minutes else None

    # The kind comes from the rules' data, never from a reason's text: the most severe
    # rule that alerts the team says what the alert is about (file order breaks ties).
    alerting = [r for r in matched if r.alert_care_team] or matched
    top = max(r.severity.rank for r in alerting)
    kind = next(r.kind for r in alerting if r.severity.rank == top)

    flag_reasons = [f"red_flag:{f.id}" for f in facts.urgent_flags]
    if facts.fever_in_words is not None:
        flag_reasons.insert(0, "red_flag:fever")
    return TriageDecision(
        severity=severity,
        reasons=_unique([r.reason for r in matched] + flag_reasons),
        summary=summary,
        rule_ids=tuple(r.id for r in matched),
        sources=_unique(r.source for r in matched),
        patient_template=template,
        alert_care_team=any(r.alert_care_team for r in matched),
        notify_on_call=any(r.notify_on_call for r in matched),
        cmv_test_advised=any(r.cmv_test_advised for r in matched),
        recheck_after_minutes=recheck,
        symptoms=reported,
        awaits_temperature=temperature_c is None and any(r.ask_temperature for r in matched),
        red_flags=tuple(
            (["fever"] if facts.fever_in_words is not None else [])
            + [f.id for f in facts.urgent_flags]
        ),
        alert_kind=kind,
    )
