"""A patient's treatment calendar, from the planner: the printed page and the feed's events.

Pure: the callers pass the plan's spec, the prophylaxis courses, the local date and the
team's phone as text; nothing here reads a clock or a database. The dates and times are
the planner's own (:func:`reminders.core.planner.plan_doses` for doses,
:func:`~reminders.core.planner.plan_events` for lab tests and the supportive medicines),
so the calendar never disagrees with the SMS.

Words come from ``calendar_words/{en,fr,nl}.toml``; the fever advice and what to do when
nobody answers are quoted from :mod:`reminders.core.clinical_rules`, never retyped, so a
change there (a region's emergency number) reaches the calendar too. Discreet patients
(``discreet=True``) see no drug name: "Treatment" and "Tablets" instead.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reminders.core.clinical_rules import LANGUAGES, emergency_fallback, urgent_advice
from reminders.core.datafiles import read_toml
from reminders.core.dates import resolve_wall_time
from reminders.core.ical import CalendarEvent
from reminders.core.labels import short_name
from reminders.core.planner import (
    EventKind,
    PlannedDose,
    PlanSpec,
    ProphylaxisSpec,
    plan_doses,
    plan_events,
    treatment_end,
)
from reminders.core.regions import Region

__all__ = [
    "FEED_PAST_DAYS",
    "PRINT_WEEKS",
    "CalendarDay",
    "CalendarWords",
    "DayMark",
    "PillLine",
    "PrintedCalendar",
    "calendar_words",
    "feed_events",
    "format_day",
    "printable_calendar",
]

_WORDS = Path(__file__).with_name("calendar_words")

#: Weeks on the printed page: with a header, two prophylaxis courses, the fever rule and
#: the phone numbers, this many week rows still fit one A4 page (a browser test prints it).
PRINT_WEEKS = 6
#: The feed starts this many days back, so the family sees the last few doses given.
FEED_PAST_DAYS = 28
#: ...and ends a week after the last dose, or this far ahead at most (an open hold has
#: no last dose; an extension can add weeks). The feed is fetched again and moves on.
FEED_AFTER_LAST_DOSE = timedelta(days=7)
FEED_HORIZON = timedelta(days=366)
#: How long a dose or a blood test lasts on a phone's screen: a display choice, not a
#: clinical one (the planner gives instants; the first dose's stay is said in words).
EVENT_LENGTH = timedelta(minutes=30)
#: Doses that happen or happened (a missed or cancelled dose is not on the calendar; a
#: dose on an open hold has no date).
_SHOWN_DOSES = frozenset({"scheduled", "given"})
#: The domain part of every UID (RFC 5545 3.8.4.7 suggests one to make them unique).
UID_DOMAIN = "mab-companion"

_SevenNames = Annotated[tuple[str, ...], Field(min_length=7, max_length=7)]
_TwelveNames = Annotated[tuple[str, ...], Field(min_length=12, max_length=12)]


class CalendarWords(BaseModel):
    """The words of one language (``calendar_words/<language>.toml``): every key required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    weeks_line: str
    printed_on: str
    treatment_line: str
    caption: str
    weekdays: _SevenNames
    weekdays_short: _SevenNames
    months: _TwelveNames
    day_format: str
    treatment: str
    at_hospital: str
    blood_test: str
    no_treatment_days: str
    pills_heading: str
    pills_every_day: str
    pills_on_days: str
    pills_from: str
    pills_until: str
    pills_none: str
    tablets: str
    fever_heading: str
    contacts_heading: str
    care_team: str
    calendar_name: str
    dose_summary: str
    hospital_summary: str
    stay_after: str
    questions: str
    forms: Mapping[str, str]
    lab_names: Mapping[str, str]


@cache
def calendar_words(language: str) -> CalendarWords:
    """The calendar's words in ``language`` (en, fr or nl); ValueError naming the file."""
    if language not in LANGUAGES:
        raise ValueError(f"no calendar words for language {language!r}")
    path = _WORDS / f"{language}.toml"
    try:
        return CalendarWords.model_validate(read_toml(path))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc


def format_day(day: date, words: CalendarWords) -> str:
    """A date as the patient reads it: "Monday 2 March", "lundi 2 mars", "maandag 2 maart"."""
    return words.day_format.format(
        weekday=words.weekdays[day.weekday()], day=day.day, month=words.months[day.month - 1]
    )


def _clock(moment: datetime | time) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


# --------------------------------------------------------------------------- the printed page
@dataclass(frozen=True)
class DayMark:
    """One line in a day's box: a dose with its time, or a blood test."""

    kind: EventKind
    text: str


@dataclass(frozen=True)
class CalendarDay:
    """A day of the grid: its date, how its number is written, and its marks."""

    day: date
    label: str
    marks: tuple[DayMark, ...]
    is_today: bool


@dataclass(frozen=True)
class PillLine:
    """One course of tablets: name, dose as the care team entered it, times and days."""

    name: str
    dose_text: str | None
    times: str
    days: str


@dataclass(frozen=True)
class PrintedCalendar:
    """Everything the printed page shows, in the patient's language (phones added by the web)."""

    language: str
    words: CalendarWords
    weeks: tuple[tuple[CalendarDay, ...], ...]
    weeks_line: str
    printed_on: str
    treatment_line: str | None
    has_marks: bool
    pills: tuple[PillLine, ...]
    fever_advice: str
    no_answer: str


def _local_bounds(timezone: str, first: date, last: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight on ``first`` and on the day after ``last``."""
    zone = ZoneInfo(timezone)
    start = resolve_wall_time(datetime.combine(first, time(0)), zone)[1]
    end = resolve_wall_time(datetime.combine(last + timedelta(days=1), time(0)), zone)[1]
    return start, end


def _dose_text(dose: PlannedDose, words: CalendarWords, discreet: bool) -> str:
    form = words.treatment if discreet else words.forms.get(dose.route, words.treatment)
    text = f"{form} {_clock(dose.local)}" if dose.local is not None else form
    return f"{text}, {words.at_hospital}" if dose.in_hospital else text


def _lab_name(lab_id: str, words: CalendarWords, discreet: bool) -> str:
    # A discreet patient's blood test does not say what it looks for.
    return words.blood_test if discreet else words.lab_names.get(lab_id, words.blood_test)


def printable_calendar(
    plan: PlanSpec | None,
    courses: Sequence[ProphylaxisSpec],
    *,
    today: date,
    timezone: str,
    language: str,
    discreet: bool,
    region: Region | None = None,
    weeks: int = PRINT_WEEKS,
) -> PrintedCalendar:
    """The printed page: ``weeks`` weeks from the Monday of ``today``'s week.

    Days carry the doses (time, "at the hospital") and blood tests of the plan; the tablets
    list the prophylaxis courses running in those weeks and the regimen's supportive
    medicines (allopurinol in the first two weeks), each with its times and days.
    """
    words = calendar_words(language)
    first = today - timedelta(days=today.weekday())
    last = first + timedelta(days=7 * weeks - 1)
    marks: dict[date, list[DayMark]] = {}
    supportive: dict[str, list[datetime]] = {}
    if plan is not None:
        for dose in plan_doses(plan):
            if dose.status in _SHOWN_DOSES and dose.date and first <= dose.date <= last:
                marks.setdefault(dose.date, []).append(
                    DayMark(EventKind.DOSE, _dose_text(dose, words, discreet))
                )
        for event in plan_events(plan, *_local_bounds(timezone, first, last)):
            if event.kind == EventKind.LAB:
                text = _lab_name(event.details["lab"], words, discreet)
                marks.setdefault(event.local.date(), []).append(DayMark(EventKind.LAB, text))
            elif event.kind == EventKind.SUPPORTIVE:
                supportive.setdefault(event.details["drug"], []).append(event.local)
    grid = tuple(
        tuple(
            _grid_day(first + timedelta(days=7 * w + d), w == d == 0, today, marks, words)
            for d in range(7)
        )
        for w in range(weeks)
    )
    # Medicines by the short names the SMS use, in the patient's language (labels.toml).
    pills = [
        _course_line(c, short_name(c.drug, language), words, discreet, first, last)
        for c in courses
        if _runs(c, first, last)
    ]
    pills += [
        _supportive_line(short_name(d, language), at, words, discreet)
        for d, at in supportive.items()
    ]
    return PrintedCalendar(
        language=language,
        words=words,
        weeks=grid,
        weeks_line=words.weeks_line.format(
            weeks=weeks, first=format_day(first, words), last=format_day(last, words)
        ),
        printed_on=words.printed_on.format(date=format_day(today, words)),
        treatment_line=None
        if discreet or plan is None
        else words.treatment_line.format(drug=short_name(plan.regimen.drug, language)),
        has_marks=bool(marks),
        pills=tuple(pills),
        fever_advice=urgent_advice(language, region),
        no_answer=emergency_fallback(language, region),
    )


def _grid_day(
    day: date, first_cell: bool, today: date, marks: dict[date, list[DayMark]], words: CalendarWords
) -> CalendarDay:
    # The month is named where it changes (and in the first box), as on a wall calendar.
    label = (
        f"{day.day} {words.months[day.month - 1]}" if first_cell or day.day == 1 else str(day.day)
    )
    return CalendarDay(day, label, tuple(marks.get(day, ())), day == today)


def _runs(course: ProphylaxisSpec, first: date, last: date) -> bool:
    return course.start_date <= last and (course.stopped_on is None or course.stopped_on > first)


def _course_line(
    course: ProphylaxisSpec,
    name: str,
    words: CalendarWords,
    discreet: bool,
    first: date,
    last: date,
) -> PillLine:
    if course.weekdays is None:
        days = words.pills_every_day
    else:
        names = ", ".join(words.weekdays[d] for d in sorted(course.weekdays))
        days = words.pills_on_days.format(days=names)
    if course.start_date > first:
        days += ", " + words.pills_from.format(date=format_day(course.start_date, words))
    if course.stopped_on is not None and course.stopped_on <= last:
        end = course.stopped_on - timedelta(days=1)  # the last day a pill is taken
        days += ", " + words.pills_until.format(date=format_day(end, words))
    return PillLine(
        name=words.tablets if discreet else name,
        # The dose as typed by the care team may name the drug: not for a discreet patient.
        dose_text=None if discreet else course.dose_text,
        times=", ".join(_clock(t) for t in sorted(course.times)),
        days=days,
    )


def _supportive_line(
    drug: str, moments: list[datetime], words: CalendarWords, discreet: bool
) -> PillLine:
    # The regimen's dose text is English ("as prescribed"): the drug, its time and its
    # last day in these weeks say enough, and the SMS remind each day.
    times = sorted({_clock(m) for m in moments})
    return PillLine(
        name=words.tablets if discreet else drug,
        dose_text=None,
        times=", ".join(times),
        days=words.pills_until.format(date=format_day(max(moments).date(), words)),
    )


# --------------------------------------------------------------------------- the feed
def event_uid(namespace: str, key: str) -> str:
    """A UID that stays the same across fetches and says nothing about the patient.

    ``namespace`` tells plans apart (``plan:12``), ``key`` is the planner's stable event
    key (``dose:7``, ``lab:cmv_pcr:2026-03-02``): a dose moved by a hold keeps its UID,
    so the phone moves the event instead of adding another.
    """
    digest = hashlib.sha256(f"{namespace}|{key}".encode()).hexdigest()[:32]
    return f"{digest}@{UID_DOMAIN}"


def feed_window(plan: PlanSpec, today: date) -> tuple[date, date]:
    """The feed's first and last local dates: a few weeks back to just after the last dose."""
    end = treatment_end(plan)
    last = max(end or today, today) + FEED_AFTER_LAST_DOSE
    return today - timedelta(days=FEED_PAST_DAYS), min(last, today + FEED_HORIZON)


def feed_events(
    plan: PlanSpec | None,
    *,
    today: date,
    language: str,
    discreet: bool,
    namespace: str,
    team_phone: str,
    region: Region | None = None,
) -> list[CalendarEvent]:
    """The feed's events: the plan's doses and blood tests in :func:`feed_window`, by time.

    Pills are left out (two or three a day would flood a phone); the SMS remind them. No
    name and no diagnosis: the summary says the form and the drug (or "Treatment" for a
    discreet patient), the description who to call and the fever advice.
    """
    if plan is None:
        return []
    words = calendar_words(language)
    first, last = feed_window(plan, today)
    footer = "\n".join(
        (
            words.questions.format(phone=team_phone),
            urgent_advice(language, region),
            emergency_fallback(language, region),
        )
    )
    events = []
    for dose in plan_doses(plan):
        if dose.status not in _SHOWN_DOSES or dose.at_utc is None or not first <= dose.date <= last:
            continue
        form = words.forms.get(dose.route, words.treatment)
        summary = (
            words.treatment
            if discreet
            else words.dose_summary.format(form=form, drug=short_name(plan.regimen.drug, language))
        )
        description = footer
        if dose.in_hospital:
            summary = words.hospital_summary.format(summary=summary)
        if dose.observation_hours:
            description = (
                f"{words.stay_after.format(hours=f'{dose.observation_hours:g}')}\n{footer}"
            )
        events.append(
            CalendarEvent(
                event_uid(namespace, f"dose:{dose.index}"),
                dose.at_utc,
                EVENT_LENGTH,
                summary,
                description,
            )
        )
    for event in plan_events(plan, *_local_bounds(plan.timezone, first, last)):
        if event.kind == EventKind.LAB:
            events.append(
                CalendarEvent(
                    event_uid(namespace, event.key),
                    event.at_utc,
                    EVENT_LENGTH,
                    _lab_name(event.details["lab"], words, discreet),
                    footer,
                )
            )
    events.sort(key=lambda e: (e.start_utc, e.uid))
    return events
