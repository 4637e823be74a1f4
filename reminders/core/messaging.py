"""Which SMS a planned event produces, when, and until when it is still useful.

Pure: takes planner events and the patient's contact preferences, returns
:class:`MessagePlan` values that the outbox service stores. Timings are data in
``message_rules.toml``. Quiet hours defer a non-urgent message to the end of the
quiet window ("it waits for the morning"); the dispatcher marks it missed if that
is past its freshness limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reminders.core.datafiles import read_toml
from reminders.core.planner import PlannedEvent


@dataclass(frozen=True)
class ContactPrefs:
    """How and when a patient wants to be contacted."""

    timezone: str
    quiet_start: time
    quiet_end: time


@dataclass(frozen=True)
class MessageRule:
    """One line of ``message_rules.toml``."""

    event: str
    variant: str
    template: str
    fresh_minutes: int
    day_offset: int | None = None
    local_time: time | None = None
    expects: str | None = None
    first_dose_template: str | None = None
    decision_template: str | None = None  # for a milestone that is a care-team decision
    in_hospital_template: str | None = None
    care_team_template: str | None = None
    fresh_until_event: bool = False

    def template_for(self, details: Mapping[str, Any]) -> str:
        """The template for an event with ``details``.

        ``first_dose_template`` only for the dose the regimen gives an observation
        time for; ``in_hospital_template`` for any other dose in hospital;
        ``care_team_template`` for a premedication the care team gives;
        ``decision_template`` for a milestone that is a care-team decision.
        """
        if self.decision_template and details.get("decision"):
            return self.decision_template
        if self.first_dose_template and details.get("observation_hours"):
            return self.first_dose_template
        if self.in_hospital_template and details.get("in_hospital"):
            return self.in_hospital_template
        if self.care_team_template and details.get("given_by") == "care_team":
            return self.care_team_template
        return self.template


@dataclass(frozen=True)
class MessagePlan:
    """An SMS to store in the outbox for one event."""

    key: str
    template: str
    send_at: datetime
    not_after: datetime
    event: PlannedEvent
    expects: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


@cache
def message_rules() -> dict[str, tuple[MessageRule, ...]]:
    """The rules by event kind."""
    data = read_toml(Path(__file__).parent / "message_rules.toml")
    rules: dict[str, list[MessageRule]] = {}
    for raw in data["rules"]:
        values = dict(raw)
        if "local_time" in values:
            values["local_time"] = time.fromisoformat(values["local_time"])
        rule = MessageRule(**values)
        rules.setdefault(rule.event, []).append(rule)
    return {kind: tuple(items) for kind, items in rules.items()}


def max_freshness() -> timedelta:
    """The longest freshness window of any rule (how far back a planning pass looks)."""
    return timedelta(
        minutes=max(r.fresh_minutes for rules in message_rules().values() for r in rules)
    )


def in_quiet_hours(moment: time, start: time, end: time) -> bool:
    """True when the local time ``moment`` falls in [start, end), a window that may wrap midnight."""
    if start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def defer_past_quiet_hours(local: datetime, start: time, end: time) -> datetime:
    """``local`` (aware), or the end of the quiet window it falls in."""
    if not in_quiet_hours(local.timetz().replace(tzinfo=None), start, end):
        return local
    day = local.date()
    if start > end and local.time() >= start:
        day = day + timedelta(days=1)  # evening part of a window that ends tomorrow morning
    return _local_instant(day, end, local.tzinfo)


def _local_instant(day: Any, at: time, zone: Any) -> datetime:
    # Round-trip through UTC so a wall time in a DST gap lands on a real instant.
    naive = datetime.combine(day, at)
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=16_384)
def _rule_timing(
    rule: MessageRule,
    event_utc: datetime,
    zone: ZoneInfo,
    quiet_start: time,
    quiet_end: time,
) -> tuple[datetime, datetime, str]:
    """When ``rule`` sends for an event at ``event_utc``: (send_at, not_after, local date).

    Cached: a pass asks this for the same few instants (pills at 09:00 in Brussels)
    and the same quiet hours for thousands of patients.
    Keyed on the UTC instant, never on a local time, whose equality ignores the
    fold of an ambiguous hour.
    """
    event_local = event_utc.astimezone(zone)
    if rule.local_time is not None:
        day = event_local.date() + timedelta(days=rule.day_offset or 0)
        moment = _local_instant(day, rule.local_time, zone)
    else:
        moment = event_local
    if rule.event == "dose" and rule.variant == "morning" and moment >= event_local:
        # A dose before 07:30: remind one hour before it instead.
        moment = event_local - timedelta(hours=1)
    not_after = moment + timedelta(minutes=rule.fresh_minutes)
    if rule.fresh_until_event:
        not_after = min(not_after, event_local)
    send_local = defer_past_quiet_hours(moment, quiet_start, quiet_end)
    return (
        send_local.astimezone(UTC),
        not_after.astimezone(UTC),
        event_local.date().isoformat(),
    )


def messages_for_event(
    event: PlannedEvent,
    prefs: ContactPrefs,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[MessagePlan]:
    """The SMS that ``event`` produces for a patient with ``prefs``.

    With ``since``/``until``, only those sent in [since, until): a planning pass asks
    for its window, and would otherwise build messages only to throw them away.
    """
    zone = _zone(prefs.timezone)
    event_utc = event.at_utc
    plans: list[MessagePlan] = []
    for rule in message_rules().get(event.kind, ()):
        send_at, not_after, local_day = _rule_timing(
            rule, event_utc, zone, prefs.quiet_start, prefs.quiet_end
        )
        if (since is not None and send_at < since) or (until is not None and send_at >= until):
            continue
        plans.append(
            MessagePlan(
                key=f"{event.key}:{rule.variant}:{local_day}",
                template=rule.template_for(event.details),
                send_at=send_at,
                not_after=not_after,
                event=event,
                expects=rule.expects,
            )
        )
    return plans
