"""The prophylaxis rules: when a course becomes *eligible* to stop, and which are missing.

A course never ends by itself. It becomes eligible to stop only when the
treatment is over, the minimum time after the last dose actually given has
passed and, where the care team uses the CD4 rule, a CD4 result of at least the
threshold was taken after that last dose. A care-team user then confirms the stop.
Source: 003_a1949903592dbecf.txt (at least 6 months after the last dose, or CD4
recovered to 200 cells/uL), read conservatively as in the clinical brief.

The check for missing mandatory prophylaxis (:func:`missing_mandatory_prophylaxis`)
says which of a regimen's mandatory courses (``mandatory = true`` in its file) the
care team has not decided on a day after the plan started; it never creates,
confirms or ends a course.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from reminders.core.clinical_rules import clinical_rules
from reminders.core.dates import add_months
from reminders.core.regimens import ProphylaxisDefault


class CourseStatus(StrEnum):
    """A prophylaxis course's stored status (``ProphylaxisCourse.status``).

    Defined in the pure core, beside the rules that read it (the stop rule, the
    mandatory-prophylaxis check); the other status vocabularies are in
    ``reminders.data.statuses``.
    """

    #: Created from the regimen when the plan started; it sends nothing until a
    #: care-team user confirms it (dose, times).
    PROPOSED = "proposed"
    #: Entered or confirmed by the care team; its pill reminders are sent.
    ACTIVE = "active"
    #: Ended by a care-team user (never by the software).
    STOPPED = "stopped"
    #: A proposed course the care team decided not to give, with the reason they
    #: recorded (an allergy, an alternative entered as another course).
    DECLINED = "declined"


#: Every status of a course.
COURSE_STATUSES: tuple[CourseStatus, ...] = tuple(CourseStatus)
#: Statuses that are a care-team decision on a mandatory course: confirmed, or stopped or
#: declined by a user with a recorded reason. Only "proposed" (or no course) is missing.
DECIDED_STATUSES: tuple[CourseStatus, ...] = (
    CourseStatus.ACTIVE,
    CourseStatus.STOPPED,
    CourseStatus.DECLINED,
)
#: Statuses that end a course; any other ("active", "proposed") still protects the patient,
#: so check-ins and the fever triage treat the patient as on prophylaxis.
ENDED_COURSE_STATUSES: frozenset[CourseStatus] = frozenset(
    {CourseStatus.STOPPED, CourseStatus.DECLINED}
)


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


def prophylaxis_check_due_at(
    start_date: date, created_at: datetime, timezone: str, within_hours: int
) -> datetime:
    """When a plan's mandatory prophylaxis must be decided on (UTC).

    ``within_hours`` after the later of the local start (midnight in the patient's zone)
    of the plan's start date and the plan's creation: a plan entered a week ahead is
    checked a day after it starts, one entered mid-treatment a day after it was entered.
    """
    local_start = datetime.combine(start_date, time(0), ZoneInfo(timezone)).astimezone(UTC)
    return max(local_start, created_at.astimezone(UTC)) + timedelta(hours=within_hours)


def missing_mandatory_prophylaxis(
    *,
    entries: Sequence[ProphylaxisDefault],
    course_status: Mapping[str, str],
    start_date: date,
    created_at: datetime,
    timezone: str,
    now: datetime,
    within_hours: int | None = None,
) -> tuple[ProphylaxisDefault, ...]:
    """The mandatory entries of ``entries`` still undecided once the check is due; () before.

    ``course_status`` maps a regimen entry id to the status of the plan's course
    proposed for it (an entry without a course is missing too). An entry is decided
    when its course is active, or was stopped or declined by a care-team user (their
    reason is recorded); a course still "proposed" is not. ``within_hours`` defaults to
    ``clinical_rules().prophylaxis_check.confirm_within_hours`` (a care-team setting,
    issue 11).
    """
    hours = (
        clinical_rules().prophylaxis_check.confirm_within_hours
        if within_hours is None
        else within_hours
    )
    if now < prophylaxis_check_due_at(start_date, created_at, timezone, hours):
        return ()
    return tuple(
        entry
        for entry in entries
        if entry.mandatory and course_status.get(entry.id) not in DECIDED_STATUSES
    )
