"""Clinical thresholds and the urgent advice, loaded from data files with their sources.

``clinical_rules.toml`` holds the numbers (fever, lab and alert thresholds, the
mandatory-prophylaxis deadline) and
``advice.toml`` the urgent advice sentences in each language. Both are read once
and cached; callers get frozen dataclasses, never raw dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from reminders.core.datafiles import read_toml
from reminders.core.regions import Region, default_region, temperature_text

_HERE = Path(__file__).parent
LANGUAGES = ("en", "fr", "nl")


@dataclass(frozen=True)
class FeverRule:
    """When a temperature is urgent, when to ask again, and what is plausible."""

    threshold_c: float
    threshold_f: float
    recheck_from_c: float
    recheck_after_minutes: int
    plausible_min_c: float
    plausible_max_c: float
    source: str
    persistent_low_grade: LowGradeRule
    expected_level: ExpectedLevelRule


@dataclass(frozen=True)
class LowGradeRule:
    """When a slightly raised temperature that keeps coming back is a high alert."""

    in_risk_window_count: int
    in_risk_window_hours: int
    any_time_count: int
    any_time_hours: int
    source: str


@dataclass(frozen=True)
class ExpectedLevelRule:
    """How long a care-team note "this low-grade temperature is expected" may last."""

    max_days: int
    source: str


@dataclass(frozen=True)
class AlertPolicy:
    """How long a patient gets to answer a check-in before it is sent again, then flagged."""

    checkin_resend_after_minutes: int
    checkin_flag_after_minutes: int
    source: str


@dataclass(frozen=True)
class CmvRule:
    """CMV PCR thresholds (copies/mL) that prompt the care team to consider a hold."""

    unit: str
    act_above_copies: float
    act_on_two_rising_positives: bool
    positive_above_copies: float
    symptomatic_within_days: int
    symptomatic_signs: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class AncRule:
    """Absolute neutrophil count thresholds (cells/uL)."""

    unit: str
    hold_below: float
    gcsf_consider_below: float
    source: str


@dataclass(frozen=True)
class Cd4Rule:
    """CD4 count (cells/uL) at which prophylaxis may become eligible to stop."""

    unit: str
    recovered_at_least: float
    source: str


@dataclass(frozen=True)
class DoseRule:
    """Body surface area (m2) above which an mg/m2 dose asks the care team to confirm."""

    bsa_confirm_above_m2: float
    source: str


@dataclass(frozen=True)
class ProphylaxisCheck:
    """How long mandatory prophylaxis may stay unconfirmed after a plan starts.

    A care-team operating choice: the sources make the courses mandatory but give
    no deadline for prescribing them.
    """

    confirm_within_hours: int
    source: str


@dataclass(frozen=True)
class ClinicalRules:
    """All thresholds, each with its source."""

    fever: FeverRule
    alerts: AlertPolicy
    cmv: CmvRule
    anc: AncRule
    cd4: Cd4Rule
    doses: DoseRule
    prophylaxis_check: ProphylaxisCheck


@cache
def clinical_rules() -> ClinicalRules:
    """Return the clinical thresholds from ``clinical_rules.toml``."""
    data = read_toml(_HERE / "clinical_rules.toml")
    labs = data["labs"]
    return ClinicalRules(
        fever=FeverRule(
            **{
                k: v
                for k, v in data["fever"].items()
                if k not in ("persistent_low_grade", "expected_level")
            },
            persistent_low_grade=LowGradeRule(**data["fever"]["persistent_low_grade"]),
            expected_level=ExpectedLevelRule(**data["fever"]["expected_level"]),
        ),
        alerts=AlertPolicy(**data["alerts"]),
        cmv=CmvRule(
            **{**labs["cmv_pcr"], "symptomatic_signs": tuple(labs["cmv_pcr"]["symptomatic_signs"])}
        ),
        anc=AncRule(**labs["anc"]),
        cd4=Cd4Rule(**labs["cd4"]),
        doses=DoseRule(**data["doses"]),
        prophylaxis_check=ProphylaxisCheck(**data["prophylaxis_check"]),
    )


@cache
def _advice() -> dict:
    return read_toml(_HERE / "advice.toml")


def urgent_advice(language: str, region: Region | None = None) -> str:
    """The fever advice sentence, word for word, in ``language`` (en, fr or nl).

    The threshold is written as a reader in ``region`` writes temperatures (the
    default region's way when None).
    """
    fever = temperature_text(clinical_rules().fever.threshold_c, language, region)
    return _advice()["urgent_advice"][language].format(fever=fever)


def emergency_fallback(language: str, region: Region | None = None) -> str:
    """What to do if the care team cannot be reached, in ``language``: call ``region``'s emergency number."""
    number = (region or default_region()).emergency_number
    return _advice()["emergency_fallback"][language].format(emergency_number=number)


def no_care_phone(language: str, region: Region | None = None) -> str:
    """What an SMS names in place of the team's number when the team has none, in ``language``.

    ``region``'s emergency number labelled as such ("112 (emergency number)"): a sentence
    such as "call your care team now on ..." then still gives a number that answers,
    and says which one it is, rather than the team's name.
    """
    number = (region or default_region()).emergency_number
    return _advice()["no_care_phone"][language].format(emergency_number=number)
