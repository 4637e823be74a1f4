"""The treatment calendar of a patient: the printed page and the private iCalendar feed.

Reads the patient's current plan (:mod:`reminders.data.plans`), its holds and dose records
and the prescribed prophylaxis courses, and hands them to the pure
:mod:`reminders.core.treatment_calendar`. The team's number is written as the SMS write it
(:func:`reminders.rendering.display_phone`; the team's name when it has none): the number
patients call. The on-call fallback number is the clinicians' (the last step of an
escalation), which no SMS gives a patient, so the calendar does not either.
Functions take ``session`` and ``now``; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from reminders.core.dates import local_today
from reminders.core.ical import ical_document
from reminders.core.planner import PlanSpec, ProphylaxisSpec
from reminders.core.prophylaxis import CourseStatus
from reminders.core.regions import get_region
from reminders.core.treatment_calendar import (
    PrintedCalendar,
    calendar_words,
    feed_events,
    printable_calendar,
)
from reminders.data.calendar_feeds import find_feed, note_fetch
from reminders.data.models import Patient, Plan, ProphylaxisCourse, Team
from reminders.data.plans import current_plan
from reminders.rendering import display_phone
from reminders.specs import build_prophylaxis_spec, load_plan_spec

#: How often a phone is asked to fetch the feed again: a moved dose shows within hours.
FEED_REFRESH = timedelta(hours=6)


@dataclass(frozen=True)
class PrintPage:
    """The printed page: the calendar and the team it names."""

    calendar: PrintedCalendar
    team_name: str
    team_phone: str | None


def team_phone(team: Team) -> str:
    """The number patients call, as the SMS give it (the team's name when it has none)."""
    return display_phone(team.care_phone) if team.care_phone else team.name


def _plan_spec(session: Session, patient: Patient) -> tuple[Plan | None, PlanSpec | None]:
    """The patient's current plan and its spec (None, None without a plan)."""
    plan = current_plan(session, patient.id)
    return plan, load_plan_spec(session, plan, patient) if plan is not None else None


def _course_specs(session: Session, patient: Patient) -> list[ProphylaxisSpec]:
    """The specs of the patient's prescribed prophylaxis courses."""
    courses = session.exec(
        select(ProphylaxisCourse)
        .where(ProphylaxisCourse.patient_id == patient.id)
        .order_by(ProphylaxisCourse.id)
    ).all()
    # Proposed and declined courses were never prescribed: no tablet to show.
    return [
        build_prophylaxis_spec(c, patient.timezone)
        for c in courses
        if c.status in (CourseStatus.ACTIVE, CourseStatus.STOPPED)
    ]


def print_page(session: Session, patient: Patient, now: datetime) -> PrintPage:
    """The printed calendar of ``patient`` from the local day of ``now``."""
    _, spec = _plan_spec(session, patient)
    team = session.get(Team, patient.team_id)
    calendar = printable_calendar(
        spec,
        _course_specs(session, patient),
        today=local_today(patient.timezone, now),
        timezone=patient.timezone,
        language=patient.language,
        discreet=patient.discreet,
        region=get_region(patient.region),
    )
    return PrintPage(calendar, team.name, team_phone(team) if team.care_phone else None)


def feed_document(session: Session, token: str, now: datetime) -> str | None:
    """The iCalendar text behind ``token``, or None when the link does not work.

    A working link's fetch is noted (at most hourly; the caller commits). The feed names
    no patient: its events are built from the plan alone, and its UIDs from the plan's id.
    """
    found = find_feed(session, token)
    if found is None:
        return None
    feed, patient = found
    note_fetch(session, feed, now)
    plan, spec = _plan_spec(session, patient)
    events = feed_events(
        spec,
        today=local_today(patient.timezone, now),
        language=patient.language,
        discreet=patient.discreet,
        namespace=f"plan:{plan.id}" if plan is not None else "",
        team_phone=team_phone(session.get(Team, patient.team_id)),
        region=get_region(patient.region),
    )
    return ical_document(
        events,
        name=calendar_words(patient.language).calendar_name,
        stamp=now,
        refresh=FEED_REFRESH,
    )


def feed_url(base_url: str, token: str) -> str:
    """The link to give the family: ``https://host/calendar/<token>.ics``."""
    return f"{base_url.rstrip('/')}/calendar/{token}.ics"
