"""The prophylaxis stop rule: when a course becomes *eligible* to stop.

A course never ends by itself. It becomes eligible to stop only when the
treatment is over, the minimum time after the last dose actually given has
passed and, where the care team uses the CD4 rule, a CD4 result of at least the
threshold was taken after that last dose. A care-team user then confirms the stop.
Source: 003_a1949903592dbecf.txt (at least 6 months after the last dose, or CD4
recovered to 200 cells/uL), read conservatively as in the clinical brief.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from reminders.core.clinical_rules import clinical_rules
from reminders.core.dates import add_months


@dataclass(frozen=True)
class StopEligibility:
    """Whether the care team may stop the course, and what is still missing."""

    eligible: bool
    earliest_date: date | None
    missing: tuple[str, ...]
    satisfied: tuple[str, ...]
    source: str


def stop_eligibility(
    *,
    treatment_finished: bool,
    last_dose_given: date | None,
    min_months_after_last_dose: int,
    cd4_rule: bool,
    cd4_results: Sequence[tuple[date, float]],
    today: date,
) -> StopEligibility:
    """Evaluate the stop rule as of ``today`` (the patient's local date)."""
    threshold = clinical_rules().cd4.recovered_at_least
    missing: list[str] = []
    satisfied: list[str] = []
    earliest: date | None = None

    if not treatment_finished:
        missing.append("treatment is still running")
    if last_dose_given is None:
        missing.append("no dose has been recorded as given")
    else:
        earliest = add_months(last_dose_given, min_months_after_last_dose)
        if today >= earliest:
            satisfied.append(
                f"{min_months_after_last_dose} months since the last dose ({last_dose_given.isoformat()})"
            )
        else:
            missing.append(
                f"{min_months_after_last_dose} months after the last dose are reached on {earliest.isoformat()}"
            )
    if cd4_rule:
        recovered = [
            (taken, value)
            for taken, value in cd4_results
            if value >= threshold and (last_dose_given is None or taken >= last_dose_given)
        ]
        if recovered:
            taken, value = max(recovered)
            satisfied.append(f"CD4 {value:,.0f} cells/uL on {taken.isoformat()}")
        else:
            missing.append(
                f"a CD4 result of at least {threshold:,.0f} cells/uL after the last dose"
            )
    return StopEligibility(
        eligible=not missing,
        earliest_date=earliest,
        missing=tuple(missing),
        satisfied=tuple(satisfied),
        source="003_a1949903592dbecf.txt; clinical-brief.md (safe reading)",
    )
