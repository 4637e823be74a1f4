"""Expected levels: the care team notes that a slightly raised temperature is expected.

After an infusion a low-grade temperature is common (002: infusion fever often 5-6 hours
after the start, mostly in the first week). The team may note, with a reason and an
expiry, that readings up to a level are expected; a reading within a level in force then
gets no re-check and raises no low-grade alert. The reading is still stored, shown (with
the team's reason and who noted it) and answered: the patient is told what to do if it
rises or they feel unwell.

This module is the one home of the safety rule, read by the SMS conversation
(``reminders.checkins``) and the patient page alike:

* :func:`quieting_level` says whether a reading is quieted, and by which level. A reading
  is quieted only when its temperature is at least ``fever.recheck_from_c``, below
  ``fever.threshold_c`` (``clinical_rules.toml``, never a literal) and at most the
  level's ``up_to_c``, the level is in force at the reading's instant, and every triage
  rule that matched says ``quiet_when_expected`` (``triage_rules.toml``; the loader
  refuses that flag on any rule reading a symptom, a red flag, a fever or anything
  urgent). So a fever, a red flag, a symptom, feeling feverish, or anything that makes
  the decision urgent is never quieted.
* :func:`quiet_decision` turns the triage decision into the quieted one: no re-check,
  no alert, the patient's answer :data:`EXPECTED_TEMPLATE`.
* :func:`level_problems` says what is wrong with a level the team wants to note (the
  services refuse it naming the field).

"For that reading only": each reading is judged by itself against the levels in force at
its instant. Quieted readings stay in the patient's history, so once the level ends or
expires the next raised reading is triaged with them (``persistent_low_grade``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from reminders.core.clinical_rules import clinical_rules
from reminders.core.triage import Severity, TriageDecision, TriageRules, load_triage_rules

__all__ = [
    "EXPECTED_TEMPLATE",
    "ExpectedLevelNote",
    "LevelState",
    "level_problems",
    "may_be_quieted",
    "quiet_decision",
    "quieting_level",
]

#: The answer a patient gets for a reading the team expected (messages/*.toml).
EXPECTED_TEMPLATE = "expected_temperature"
#: Shortest reason the team may give (a word such as "rituximab, dose 1").
MIN_REASON_LENGTH = 3
MAX_REASON_LENGTH = 500


class LevelState(StrEnum):
    """Where a level stands at an instant (the values the API and the page show)."""

    IN_FORCE = "in_force"
    NOT_YET = "not_yet"
    EXPIRED = "expired"
    ENDED = "ended"


@dataclass(frozen=True)
class ExpectedLevelNote:
    """A level as the rule and the pages read it: a stored ``ExpectedLevel``, who noted it
    (``noted_by``) and who ended it early (``ended_by``), by name."""

    id: int
    up_to_c: float
    reason: str
    noted_by: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    ended_by: str | None = None

    def state(self, at: datetime) -> LevelState:
        """:class:`LevelState` of the level at ``at``."""
        if self.ended_at is not None and self.ended_at <= at:
            return LevelState.ENDED
        if at >= self.expires_at:
            return LevelState.EXPIRED
        if at < self.created_at:
            return LevelState.NOT_YET
        return LevelState.IN_FORCE

    def in_force(self, at: datetime) -> bool:
        """Noted at or before ``at``, and neither expired nor ended by then."""
        return self.state(at) == LevelState.IN_FORCE


def _tenths(celsius: float) -> Decimal:
    """The reading as triage reads it: one decimal, half up (37.95 is 38.0)."""
    return Decimal(repr(float(celsius))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def may_be_quieted(
    temperature_c: float | None, rule_ids: Iterable[str], rules: TriageRules | None = None
) -> bool:
    """Whether some level could quiet this reading (cheap: no level is read).

    True when the temperature is slightly raised (``fever.recheck_from_c`` up to below
    ``fever.threshold_c``) and every matched rule is ``quiet_when_expected``.
    """
    if temperature_c is None or not math.isfinite(temperature_c):
        return False
    fever = clinical_rules().fever
    reading = _tenths(temperature_c)
    if not (_tenths(fever.recheck_from_c) <= reading < _tenths(fever.threshold_c)):
        return False
    ids = set(rule_ids)
    quietable = {r.id for r in (rules or load_triage_rules()).rules if r.quiet_when_expected}
    return bool(ids) and ids <= quietable


def quieting_level(
    temperature_c: float | None,
    rule_ids: Iterable[str],
    levels: Iterable[ExpectedLevelNote],
    at: datetime,
    *,
    rules: TriageRules | None = None,
) -> ExpectedLevelNote | None:
    """The level that quiets this reading's follow-up, or None (the usual follow-up).

    ``rule_ids`` are the triage rules that matched the reading (as stored with the
    report); ``levels`` the patient's levels (any state: only those in force at ``at``
    count). Of several levels that cover the reading, the most recently noted one.
    """
    ids = tuple(rule_ids)
    if not may_be_quieted(temperature_c, ids, rules):
        return None
    reading = _tenths(temperature_c)  # type: ignore[arg-type]  (checked above)
    covering = [
        level for level in levels if level.in_force(at) and reading <= _tenths(level.up_to_c)
    ]
    return max(covering, key=lambda level: (level.created_at, level.id), default=None)


def quiet_decision(decision: TriageDecision, level: ExpectedLevelNote) -> TriageDecision:
    """The decision for a reading ``level`` quiets: recorded and answered, nobody alerted.

    The matched rules are kept (why the reading was raised at all); the summary says who
    expected it and why; the patient gets :data:`EXPECTED_TEMPLATE` (what to do if it
    rises or they feel unwell), no re-check is asked and no alert raised.
    """
    return replace(
        decision,
        severity=Severity.ROUTINE,
        summary=f"{decision.summary}; expected: {level.reason} (noted by {level.noted_by})",
        patient_template=EXPECTED_TEMPLATE,
        alert_care_team=False,
        notify_on_call=False,
        recheck_after_minutes=None,
    )


def level_problems(
    up_to_c: float, expires_at: datetime, reason: str, now: datetime
) -> dict[str, str]:
    """What is wrong with a level the team wants to note, by field (empty: nothing).

    ``up_to_c``: one decimal, from ``fever.recheck_from_c`` (below it no reading gets a
    follow-up to quiet) to below ``fever.threshold_c`` (a fever is never expected).
    ``expires_at``: after ``now`` and at most ``fever.expected_level.max_days`` later.
    ``reason``: required (3-500 characters).
    """
    fever = clinical_rules().fever
    problems: dict[str, str] = {}
    if not math.isfinite(up_to_c):
        problems["up_to_c"] = "Enter the level as a number of degrees Celsius, such as 37.8."
    elif up_to_c < fever.recheck_from_c:
        problems["up_to_c"] = (
            f"The level must be at least {fever.recheck_from_c:.1f} C: below that a reading"
            " gets no follow-up to quiet."
        )
    # The raw value first: a huge number is refused before it is rounded.
    elif up_to_c >= fever.threshold_c or _tenths(up_to_c) >= _tenths(fever.threshold_c):
        problems["up_to_c"] = (
            f"The level must be below {fever.threshold_c:.1f} C: a temperature of"
            f" {fever.threshold_c:.1f} C or more is a fever, never expected."
        )
    elif Decimal(repr(float(up_to_c))).as_tuple().exponent < -1:  # type: ignore[operator]
        problems["up_to_c"] = "Give the level to one decimal, such as 37.8."
    days = fever.expected_level.max_days
    if expires_at.tzinfo is None:
        problems["expires_at"] = "Give the expiry with its time zone."
    elif expires_at <= now:
        problems["expires_at"] = "The expiry must be in the future."
    elif expires_at > now + timedelta(days=days):
        problems["expires_at"] = (
            f"A level lasts at most {days} days: note a new one if it is still expected then."
        )
    if len(reason.strip()) < MIN_REASON_LENGTH:
        problems["reason"] = "Say why this temperature is expected (for example the infusion)."
    elif len(reason) > MAX_REASON_LENGTH:
        problems["reason"] = f"Keep the reason under {MAX_REASON_LENGTH} characters."
    return problems
