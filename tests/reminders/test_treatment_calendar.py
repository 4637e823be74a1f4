"""The treatment calendar's pure core: the printed weeks and the feed, read back by ``icalendar``.

The real regimen library (alemtuzumab s.c. with its two mandatory prophylaxis courses);
the planner is the reference for every date and time. The RFC 5545 text is parsed by the
``icalendar`` package, which this code does not use to write it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import icalendar
import pytest

from reminders.core.clinical_rules import LANGUAGES, emergency_fallback, urgent_advice
from reminders.core.ical import (
    MAX_LINE_OCTETS,
    CalendarEvent,
    escape_text,
    fold,
    ical_document,
)
from reminders.core.planner import EventKind, PlanSpec, ProphylaxisSpec, plan_doses, plan_events
from reminders.core.regimens import get_regimen
from reminders.core.treatment_calendar import (
    FEED_PAST_DAYS,
    PRINT_WEEKS,
    calendar_words,
    feed_events,
    feed_window,
    printable_calendar,
)

ZONE = "Europe/Brussels"
START = date(2026, 3, 2)  # a Monday; Europe's clocks change on 29 March, inside the weeks
TODAY = date(2026, 3, 4)
PHONE = "+32 2 555 01 23"
COTRIMOXAZOLE = "cotrimoxazole (trimethoprim/sulfamethoxazole)"


def plan(regimen: str = "alemtuzumab_sc", **kwargs) -> PlanSpec:
    return PlanSpec(regimen=get_regimen(regimen), start_date=START, timezone=ZONE, **kwargs)


def courses() -> list[ProphylaxisSpec]:
    return [
        ProphylaxisSpec(1, COTRIMOXAZOLE, "960 mg", (time(20), time(8)), (0, 2, 4), START, ZONE),
        ProphylaxisSpec(2, "acyclovir", "400 mg", (time(8), time(20)), None, START, ZONE),
    ]


def parse(document: str) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(document)


def all_text(printed) -> str:
    """Every word of a printed calendar, to look for what must not be there."""
    parts = [printed.weeks_line, printed.printed_on, printed.treatment_line or ""]
    parts += [m.text for week in printed.weeks for day in week for m in day.marks]
    parts += [f"{p.name} {p.dose_text or ''} {p.times} {p.days}" for p in printed.pills]
    return " ".join(parts)


# --------------------------------------------------------------------------- the words
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_word(language: str) -> None:
    words = calendar_words(language)  # pydantic: every key required, no stray one
    assert set(words.forms) == {"sc", "iv", "oral"}
    assert set(words.lab_names) == set(calendar_words("en").lab_names)
    assert words.weeks_line.format(weeks=6, first="a", last="b")


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        calendar_words("de")


# --------------------------------------------------------------------------- RFC 5545 text
def test_folding_keeps_lines_within_75_octets_and_never_cuts_a_character() -> None:
    line = "SUMMARY:" + escape_text("Prise de sang (CMV) à l'hôpital; Marie-Françoise, été " * 4)
    folded = fold(line)
    physical = folded.split("\r\n")
    assert len(physical) > 2
    assert all(len(p.encode("utf-8")) <= MAX_LINE_OCTETS for p in physical)
    assert all(p.startswith(" ") for p in physical[1:])
    assert folded.replace("\r\n ", "") == line  # unfolding (3.1) gives the line back


def test_text_is_escaped_and_read_back_unchanged() -> None:
    summary = 'Injection : alemtuzumab, à l\'hôpital; "note" \\ end\nsecond line'
    stamp = datetime(2026, 3, 4, 10, 0, 7, 123456, tzinfo=UTC)
    event = CalendarEvent(
        "a@b", datetime(2026, 3, 4, 8, tzinfo=UTC), timedelta(minutes=30), summary
    )
    document = ical_document(
        [event], name="Calendrier d’été", stamp=stamp, refresh=timedelta(hours=6)
    )
    assert document.endswith("\r\n") and "\n" not in document.replace("\r\n", "")
    calendar = parse(document)
    assert str(calendar["X-WR-CALNAME"]) == "Calendrier d’été"
    (parsed,) = calendar.walk("VEVENT")
    assert str(parsed["SUMMARY"]) == summary
    assert parsed["DTSTAMP"].dt == stamp.replace(microsecond=0)
    assert parsed["DURATION"].dt == timedelta(minutes=30)


# --------------------------------------------------------------------------- the printed page
def test_the_printed_weeks_carry_the_planners_doses_and_blood_tests() -> None:
    spec = plan()
    printed = printable_calendar(
        spec, courses(), today=TODAY, timezone=ZONE, language="en", discreet=False
    )
    assert len(printed.weeks) == PRINT_WEEKS and all(len(w) == 7 for w in printed.weeks)
    first, last = printed.weeks[0][0].day, printed.weeks[-1][-1].day
    assert first == START and first.weekday() == 0 and (last - first).days == 7 * PRINT_WEEKS - 1
    assert f"next {PRINT_WEEKS} weeks" in printed.weeks_line
    doses = {
        d.day: [m.text for m in d.marks if m.kind == EventKind.DOSE]
        for week in printed.weeks
        for d in week
        if any(m.kind == EventKind.DOSE for m in d.marks)
    }
    expected = {d.date: d.local for d in plan_doses(spec) if d.date and first <= d.date <= last}
    assert set(doses) == set(expected)
    assert doses[START] == ["Injection 09:00, at the hospital"]  # the first dose, in hospital
    # After the DST change too, 09:00 local: the planner's wall time.
    assert all(f"{expected[day]:%H:%M}" in texts[0] for day, texts in doses.items())
    labs = {
        d.day
        for week in printed.weeks
        for d in week
        if any(m.kind == EventKind.LAB for m in d.marks)
    }
    assert labs == {first + timedelta(weeks=k) for k in range(PRINT_WEEKS)}
    assert printed.treatment_line == "Treatment: alemtuzumab"
    assert printed.fever_advice == urgent_advice("en")
    assert printed.no_answer == emergency_fallback("en")
    today = [d.day for week in printed.weeks for d in week if d.is_today]
    assert today == [TODAY]
    # Medicines by the short names of the SMS (labels.toml): "aciclovir" as typed "acyclovir".
    pills = {p.name: p for p in printed.pills}
    assert pills["cotrimoxazole"].times == "08:00, 20:00"
    assert pills["cotrimoxazole"].days == "on Monday, Wednesday, Friday"
    assert pills["aciclovir"].days == "every day"
    assert pills["allopurinol"].days == "until Sunday 15 March"  # the first two weeks


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("fr", ["Injection 09:00, à l'hôpital", "Prise de sang (CMV)", "tous les jours"]),
        ("nl", ["Injectie 09:00, in het ziekenhuis", "Bloedafname (CMV)", "elke dag"]),
    ],
)
def test_the_printed_page_is_in_the_patients_language(language: str, words: list[str]) -> None:
    printed = printable_calendar(
        plan(), courses(), today=TODAY, timezone=ZONE, language=language, discreet=False
    )
    text = all_text(printed)
    for word in words:
        assert word in text
    assert "Injection 09:00, at" not in text and "every day" not in text
    assert printed.fever_advice == urgent_advice(language)
    assert printed.no_answer == emergency_fallback(language)


def test_a_discreet_patients_page_names_no_medicine() -> None:
    spec = plan()
    printed = printable_calendar(
        spec, courses(), today=TODAY, timezone=ZONE, language="fr", discreet=True
    )
    text = all_text(printed).lower()
    for name in ("alemtuzumab", "cotrimoxazole", "aciclovir", "allopurinol", "cmv", "960 mg"):
        assert name not in text
    assert printed.treatment_line is None
    assert "traitement 09:00" in text and "comprimés" in text


def test_a_stopped_course_ends_and_one_starting_later_begins_on_the_page() -> None:
    later = ProphylaxisSpec(
        3, "acyclovir", "400 mg", (time(8),), None, START + timedelta(days=10), ZONE
    )
    stopped = ProphylaxisSpec(
        4,
        "valaciclovir",
        "500 mg",
        (time(8),),
        None,
        START,
        ZONE,
        stopped_on=START + timedelta(days=3),
    )
    gone = ProphylaxisSpec(
        5, "fluconazole", "50 mg", (time(8),), None, START, ZONE, stopped_on=START
    )
    printed = printable_calendar(
        None, [later, stopped, gone], today=TODAY, timezone=ZONE, language="en", discreet=False
    )
    pills = {p.name: p.days for p in printed.pills}
    assert pills == {
        "aciclovir": "every day, from Thursday 12 March",
        "valaciclovir": "every day, until Wednesday 4 March",
    }
    assert not printed.has_marks and printed.treatment_line is None


# --------------------------------------------------------------------------- the feed
def feed(spec: PlanSpec, language: str = "en", discreet: bool = False, today: date = TODAY) -> str:
    events = feed_events(
        spec,
        today=today,
        language=language,
        discreet=discreet,
        namespace="plan:7",
        team_phone=PHONE,
    )
    return ical_document(
        events,
        name=calendar_words(language).calendar_name,
        stamp=datetime(2026, 3, 4, 9, 30, tzinfo=UTC),
        refresh=timedelta(hours=6),
    )


def test_the_feed_has_every_dose_and_blood_test_at_the_planners_instants() -> None:
    spec = plan()
    calendar = parse(feed(spec))
    events = list(calendar.walk("VEVENT"))
    first, last = feed_window(spec, TODAY)
    doses = [d.at_utc for d in plan_doses(spec) if d.date and first <= d.date <= last]
    labs = [
        e.at_utc
        for e in plan_events(
            spec, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
        )
        if e.kind == EventKind.LAB
    ]
    assert len(doses) == 36 and len(labs) == 12  # 12 weeks, three injections and one test each
    starts = sorted(e["DTSTART"].dt for e in events)
    assert starts == sorted(doses + labs)
    assert all(e["DTSTART"].dt.tzinfo is not None for e in events)
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == len(uids)
    assert uids == [str(e["UID"]) for e in parse(feed(spec)).walk("VEVENT")]  # stable
    summaries = {str(e["SUMMARY"]) for e in events}
    assert summaries == {
        "Injection: alemtuzumab, at the hospital",
        "Injection: alemtuzumab",
        "Blood test (CMV)",
    }
    first_dose = next(e for e in events if "hospital" in str(e["SUMMARY"]))
    description = str(first_dose["DESCRIPTION"])
    assert "Stay at least 2 hours afterwards." in description
    assert PHONE in description and urgent_advice("en") in description
    assert emergency_fallback("en") in description


def test_a_dose_moved_by_a_hold_keeps_its_uid() -> None:
    from reminders.core.planner import Hold

    before = {str(e["UID"]): e["DTSTART"].dt for e in parse(feed(plan())).walk("VEVENT")}
    held = plan(holds=(Hold(date(2026, 3, 9), date(2026, 3, 16), "CMV PCR positive"),))
    after = {str(e["UID"]): e["DTSTART"].dt for e in parse(feed(held)).walk("VEVENT")}
    moved = {uid for uid in before.keys() & after.keys() if before[uid] != after[uid]}
    assert moved, "the held doses moved under the same UIDs"


def test_the_feed_is_bounded_from_a_few_weeks_back_to_the_end_of_the_plan() -> None:
    spec = plan()
    today = date(2026, 5, 4)  # week 10 of 12
    events = list(parse(feed(spec, today=today)).walk("VEVENT"))
    starts = [e["DTSTART"].dt.date() for e in events]
    assert min(starts) >= today - timedelta(days=FEED_PAST_DAYS)
    last_dose = max(d.date for d in plan_doses(spec) if d.date)
    assert max(starts) == last_dose
    # Long after the treatment: nothing left to show.
    assert not list(parse(feed(spec, today=date(2027, 3, 1))).walk("VEVENT"))


def test_the_feed_speaks_the_patients_language_and_a_discreet_one_names_nothing() -> None:
    french = parse(feed(plan(), "fr"))
    assert str(french["X-WR-CALNAME"]) == "Calendrier de traitement"
    assert {str(e["SUMMARY"]) for e in french.walk("VEVENT")} == {
        "Injection : alemtuzumab, à l'hôpital",
        "Injection : alemtuzumab",
        "Prise de sang (CMV)",
    }
    discreet = feed(plan("rituximab_cll_chemo"), "nl", discreet=True)
    assert "rituximab" not in discreet.lower() and "cmv" not in discreet.lower()
    summaries = {str(e["SUMMARY"]) for e in parse(discreet).walk("VEVENT")}
    assert summaries <= {"Behandeling", "Behandeling, in het ziekenhuis", "Bloedafname"}
    assert summaries
    disease = get_regimen("rituximab_cll_chemo").disease
    assert disease.lower() not in feed(plan("rituximab_cll_chemo")).lower()


@pytest.mark.parametrize(
    "regimen", ["alemtuzumab_iv", "inotuzumab_weekly", "rituximab_fl_maintenance"]
)
def test_every_regimen_gives_a_valid_feed(regimen: str) -> None:
    calendar = parse(feed(plan(regimen)))
    events = list(calendar.walk("VEVENT"))
    assert events
    for event in events:
        assert {"UID", "DTSTAMP", "DTSTART", "DURATION", "SUMMARY"} <= set(event)
