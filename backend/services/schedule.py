"""The patient's schedule: plan events and prophylaxis intakes between two local dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session

from backend.services.plans import ScheduledEvent, local_window, plan_events_between
from backend.services.prophylaxis import courses_of
from reminders.core.dates import local_today
from reminders.core.planner import prophylaxis_events
from reminders.core.prophylaxis import CourseStatus
from reminders.data.errors import InvalidInput
from reminders.data.models import Patient
from reminders.specs import build_prophylaxis_spec

DEFAULT_WINDOW_DAYS = 14
MAX_WINDOW_DAYS = 800


@dataclass(frozen=True)
class ScheduleWindow:
    """Events between two local dates (inclusive), sorted by time."""

    first: date
    last: date
    events: list[ScheduledEvent]


def events_between(
    session: Session, patient: Patient, start_utc: datetime, end_utc: datetime
) -> list[ScheduledEvent]:
    """Every plan and prophylaxis event of ``patient`` in [start, end), by time then key."""
    events = plan_events_between(session, patient, start_utc, end_utc)
    for course in courses_of(session, patient.id):
        if course.status not in (CourseStatus.ACTIVE, CourseStatus.STOPPED):
            continue  # proposed or declined: never prescribed, no pill to plan
        spec = build_prophylaxis_spec(course, patient.timezone)
        events.extend(ScheduledEvent(None, e) for e in prophylaxis_events(spec, start_utc, end_utc))
    events.sort(key=lambda s: (s.event.at_utc, s.event.key))
    return events


def schedule_between(
    session: Session, patient: Patient, first: date | None, last: date | None, now: datetime
) -> ScheduleWindow:
    """The schedule between local dates ``first`` and ``last`` (default: the next two weeks)."""
    first = first or local_today(patient.timezone, now)
    last = last or first + timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    if last < first:
        raise InvalidInput("'to' is before 'from'", field="to")
    if (last - first).days >= MAX_WINDOW_DAYS:
        raise InvalidInput(f"window is longer than {MAX_WINDOW_DAYS} days", field="to")
    start_utc, end_utc = local_window(patient.timezone, first, last)
    return ScheduleWindow(first, last, events_between(session, patient, start_utc, end_utc))
