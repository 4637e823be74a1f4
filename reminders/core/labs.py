"""Lab rules: what a new CMV PCR, ANC or CD4 result means for the care team.

Pure functions over plain values. A finding *suggests*; the care team decides
(the companion never holds or stops therapy by itself). Thresholds come from
``clinical_rules.toml`` with their source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reminders.core.clinical_rules import ClinicalRules, clinical_rules


class LabKind(StrEnum):
    """The lab results the companion records."""

    CMV_PCR = "cmv_pcr"
    CD4 = "cd4"
    ANC = "anc"


#: Unit of each kind, as the care team enters it.
LAB_UNITS: dict[LabKind, str] = {
    LabKind.CMV_PCR: "copies/mL",
    LabKind.CD4: "cells/uL",
    LabKind.ANC: "cells/uL",
}

#: Largest value accepted per kind: anything above is a typing error, not a result.
LAB_MAXIMUM: dict[LabKind, float] = {
    LabKind.CMV_PCR: 1e10,
    LabKind.CD4: 10_000,
    LabKind.ANC: 200_000,
}


@dataclass(frozen=True)
class LabValue:
    """One result: kind, value in the kind's unit, and when the sample was taken."""

    kind: LabKind
    value: float
    taken_at: datetime


@dataclass(frozen=True)
class LabFinding:
    """What a result means: a code, a severity, a plain reason and the rule's source."""

    code: str
    severity: str  # "high" or "routine"
    reason: str
    source: str
    suggest_hold: bool = False
    prophylaxis_may_stop: bool = False


@dataclass(frozen=True)
class ReportedSigns:
    """What the patient reported at one moment: a temperature and symptom codes."""

    at: datetime
    temperature_c: float | None
    symptoms: frozenset[str]


def is_cmv_sign(report: ReportedSigns, rules: ClinicalRules | None = None) -> bool:
    """Whether a report shows a sign of CMV: a slight fever or more, or a listed symptom."""
    rules = rules or clinical_rules()
    slight_fever = (
        report.temperature_c is not None and report.temperature_c >= rules.fever.recheck_from_c
    )
    return slight_fever or bool(report.symptoms & set(rules.cmv.symptomatic_signs))


def evaluate_lab(
    new: LabValue,
    history: Sequence[LabValue],
    rules: ClinicalRules | None = None,
    *,
    reports: Sequence[ReportedSigns] = (),
) -> list[LabFinding]:
    """Findings raised by ``new`` given the patient's earlier results (any order, any kind).

    ``reports``: what the patient reported around the sample, so that a positive CMV
    PCR in a patient with fever or CMV signs is read as symptomatic.
    """
    rules = rules or clinical_rules()
    if new.kind is LabKind.CMV_PCR:
        findings = _evaluate_cmv(new, history, rules)
        symptomatic = _symptomatic_cmv(new, reports, rules)
        if findings and symptomatic is not None:
            # Symptomatic reactivation stops alemtuzumab (003, Table 4): the single-positive
            # reassurance ("does not by itself require stopping") no longer holds.
            return [symptomatic, *(f for f in findings if f.code != "cmv_single_positive")]
        return findings
    if new.kind is LabKind.ANC:
        return _evaluate_anc(new, rules)
    return _evaluate_cd4(new, rules)


def _evaluate_cmv(
    new: LabValue, history: Sequence[LabValue], rules: ClinicalRules
) -> list[LabFinding]:
    cmv = rules.cmv
    if new.value <= cmv.positive_above_copies:
        return []
    if new.value > cmv.act_above_copies:
        return [
            LabFinding(
                code="cmv_above_threshold",
                severity="high",
                reason=(
                    f"CMV PCR {new.value:,.0f} {cmv.unit}, above {cmv.act_above_copies:,.0f}: "
                    "consider withholding therapy and treating CMV"
                ),
                source=cmv.source,
                suggest_hold=True,
            )
        ]
    earlier = [h for h in history if h.kind is LabKind.CMV_PCR and h.taken_at < new.taken_at]
    previous = max(earlier, key=lambda h: h.taken_at, default=None)
    if (
        cmv.act_on_two_rising_positives
        and previous is not None
        and previous.value > cmv.positive_above_copies
        and new.value > previous.value
    ):
        return [
            LabFinding(
                code="cmv_rising_positive",
                severity="high",
                reason=(
                    f"Second positive CMV PCR with a rise ({previous.value:,.0f} -> "
                    f"{new.value:,.0f} {cmv.unit}): consider withholding therapy and treating CMV"
                ),
                source=cmv.source,
                suggest_hold=True,
            )
        ]
    return [
        LabFinding(
            code="cmv_single_positive",
            severity="routine",
            reason=(
                f"Positive CMV PCR ({new.value:,.0f} {cmv.unit}) without a rise: repeat the test; "
                "a single positive test without symptoms does not by itself require stopping"
            ),
            source=cmv.source,
        )
    ]


def _symptomatic_cmv(
    new: LabValue, reports: Sequence[ReportedSigns], rules: ClinicalRules
) -> LabFinding | None:
    """The "symptomatic CMV" finding when a CMV sign was reported around the sample."""
    window = timedelta(days=rules.cmv.symptomatic_within_days)
    signs = sorted(
        r.at for r in reports if abs(r.at - new.taken_at) <= window and is_cmv_sign(r, rules)
    )
    if not signs:
        return None
    return LabFinding(
        code="cmv_symptomatic",
        severity="high",
        reason=(
            f"Symptomatic CMV: positive PCR ({new.value:,.0f} {rules.cmv.unit}) with fever or "
            f"CMV signs reported within {rules.cmv.symptomatic_within_days} days: "
            "consider withholding therapy (003, Table 4)"
        ),
        source=(
            "003_a1949903592dbecf.txt, Table 4 (symptomatic CMV reactivation: stop alemtuzumab);"
            " clinical_rules.toml [labs.cmv_pcr] symptomatic_within_days (care-team setting)"
        ),
        suggest_hold=True,
    )


def _evaluate_anc(new: LabValue, rules: ClinicalRules) -> list[LabFinding]:
    anc = rules.anc
    # Lowest threshold first: a count below both asks to hold, not only to consider G-CSF.
    thresholds = (
        (anc.hold_below, "anc_below_hold", "high", "consider holding therapy", True),
        (anc.gcsf_consider_below, "anc_below_gcsf", "routine", "G-CSF may be considered", False),
    )
    for below, code, severity, advice, suggest_hold in thresholds:
        if new.value < below:
            reason = f"ANC {new.value:,.0f} {anc.unit}, below {below:,.0f}: {advice}"
            return [LabFinding(code, severity, reason, anc.source, suggest_hold=suggest_hold)]
    return []


def _evaluate_cd4(new: LabValue, rules: ClinicalRules) -> list[LabFinding]:
    cd4 = rules.cd4
    if new.value >= cd4.recovered_at_least:
        return [
            LabFinding(
                code="cd4_recovered",
                severity="routine",
                reason=(
                    f"CD4 {new.value:,.0f} {cd4.unit}, at least {cd4.recovered_at_least:,.0f}: "
                    "prophylaxis may become eligible to stop (care team confirms)"
                ),
                source=cd4.source,
                prophylaxis_may_stop=True,
            )
        ]
    return []
