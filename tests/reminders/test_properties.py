"""Property tests (hypothesis) of the pure core: reply parser, planner and SMS timing.

``test_parser.py`` and ``test_planner.py`` hold example-based tests and a few narrow
properties (one regimen, one zone). These go wide: any text (and non-text) reaches the
parser; every regimen with any valid options, start date, time zone (DST and odd
offsets), dose and check-in times (DST gaps included), holds, extension, recorded
outcomes and early stop reaches the planner; any event and quiet-hours window reaches
the SMS timing rules. Each must never raise on valid input and keep its invariants.

Examples per test: ``max_examples`` below; deadlines are off; CI runs derandomized
(the ``ci`` hypothesis profile in ``tests/conftest.py``), so a CI failure reproduces.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reminders.core import parser
from reminders.core.clinical_rules import clinical_rules
from reminders.core.messaging import ContactPrefs, in_quiet_hours, messages_for_event
from reminders.core.parser import (
    OPT_OUT_KEYWORDS,
    SYMPTOM_CODES,
    Expecting,
    Intent,
    ParsedReply,
    parse_reply,
)
from reminders.core.planner import (
    DoseOutcome,
    Hold,
    PlannedDose,
    PlanSpec,
    plan_doses,
    plan_events,
)
from reminders.core.regimens import (
    BoolOption,
    ChoiceOption,
    IntOption,
    NumberOption,
    Regimen,
    WeekdaysOption,
    load_regimens,
)

EXAMPLES = 200
REGIMENS: dict[str, Regimen] = load_regimens()
ZONES = [
    "UTC",
    "Europe/Brussels",
    "Europe/London",
    "America/New_York",
    "America/St_Johns",  # -03:30 with DST
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45/+13:45
    "Pacific/Kiritimati",  # +14
    "Pacific/Pago_Pago",  # -11
    "America/Santiago",  # DST changes at midnight
]
EXPECTING = st.sampled_from([None, *Expecting])


# --------------------------------------------------------------------------- the parser
def _check_reply(reply: ParsedReply) -> None:
    fever = clinical_rules().fever
    assert isinstance(reply, ParsedReply)
    assert isinstance(reply.intent, Intent)
    assert reply.symptoms <= SYMPTOM_CODES
    assert reply.negated_symptoms <= SYMPTOM_CODES
    assert (reply.intent == Intent.TEMPERATURE) == (reply.temperature_c is not None)
    if reply.temperature_c is not None:
        assert fever.plausible_min_c <= reply.temperature_c <= fever.plausible_max_c
        assert round(reply.temperature_c, 1) == reply.temperature_c
        assert reply.temperature_unit in ("C", "F")
    if reply.intent == Intent.SYMPTOMS:
        assert reply.symptoms
    if reply.intent == Intent.OPT_OUT:
        assert reply.opts_out
    assert all(isinstance(n, int) for n in reply.menu_numbers)


# Whole Unicode, control characters and lone surrogates included (an SMS gateway can
# hand over anything); plus text built from what patients actually type.
ANY_TEXT = st.text(st.characters(codec=None), max_size=400)
FRAGMENTS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "37,8",
                "38.",
                ".5",
                "101 F",
                "39°C",
                "３８，５℃",
                "٣٨٫٥",
                "1e3",
                "-38",
                "38..5",
                "9" * 40,
                "0x26",
                "2 3",
                "2,3 and 5",
                "no",
                "geen koorts",
                "pas de toux",
                "sans fièvre",
                "STOP",
                "stop.",
                "YES",
                "help!",
                "taken",
                "\u200b",
                "\u0000",
                "🤒",
                "\ud800",
                "8:30",
                "3 days",
            ]
        ),
        st.decimals(min_value=-1000, max_value=1000, places=2).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
    ),
    max_size=15,
).map(" ".join)


@settings(max_examples=EXAMPLES)
@given(text=st.one_of(ANY_TEXT, FRAGMENTS), expecting=EXPECTING)
def test_the_parser_never_raises_and_keeps_its_invariants(text: str, expecting: Any) -> None:
    # parser._parse, not parse_reply: parse_reply's safety net must not hide a bug.
    reply = parser._parse(text, expecting)
    _check_reply(reply)
    # The public function gives the same answer, and surrounding space changes nothing.
    assert parse_reply(text, expecting) == reply
    assert parser._parse(f"  {text}\n", expecting) == reply


@settings(max_examples=EXAMPLES // 2)
@given(
    value=st.one_of(
        st.none(), st.integers(), st.floats(), st.binary(max_size=50), st.lists(st.integers())
    ),
    expecting=EXPECTING,
)
def test_the_parser_accepts_any_object_from_a_broken_caller(value: Any, expecting: Any) -> None:
    _check_reply(parse_reply(value, expecting))


@settings(max_examples=EXAMPLES)
@given(
    tenths=st.integers(350, 420),
    comma=st.booleans(),
    suffix=st.sampled_from(["", "C", " °C", "°", " degrees"]),
    expecting=st.sampled_from([None, Expecting.TEMPERATURE, Expecting.SYMPTOMS]),
)
def test_any_plausible_celsius_reading_is_read_exactly(
    tenths: int, comma: bool, suffix: str, expecting: Any
) -> None:
    text = f"{tenths // 10}{',' if comma else '.'}{tenths % 10}{suffix}"
    reply = parse_reply(text, expecting)
    assert reply.intent == Intent.TEMPERATURE, (text, reply)
    assert reply.temperature_c == tenths / 10 and reply.temperature_unit == "C", (text, reply)


@settings(max_examples=EXAMPLES // 2)
@given(word=st.sampled_from(sorted(OPT_OUT_KEYWORDS)), case=st.sampled_from(["lower", "upper"]))
def test_a_lone_stop_keyword_always_opts_out(word: str, case: str) -> None:
    text = word.lower() if case == "lower" else word.upper()
    assert parse_reply(f" {text}. ", Expecting.TEMPERATURE).opts_out


# --------------------------------------------------------------------------- the planner
def _option_strategy(option: Any) -> st.SearchStrategy[Any]:
    if isinstance(option, BoolOption):
        return st.booleans()
    if isinstance(option, IntOption):
        return st.integers(option.min, option.max)
    if isinstance(option, NumberOption):
        return st.floats(option.min, option.max, allow_nan=False).map(lambda v: round(v, 2))
    if isinstance(option, ChoiceOption):
        return st.sampled_from(option.choices)
    assert isinstance(option, WeekdaysOption), option
    return st.sets(st.integers(0, 6), min_size=option.count, max_size=option.count).map(sorted)


@st.composite
def base_specs(draw: st.DrawFn) -> PlanSpec:
    """A valid plan without holds, outcomes or stop: any regimen, options, zone and times."""
    regimen = REGIMENS[draw(st.sampled_from(sorted(REGIMENS)))]
    options = {}
    for name, option in regimen.options.items():
        if option.default is None or draw(st.booleans()):
            options[name] = draw(_option_strategy(option))
    extension = 0
    if regimen.extension is not None:
        extension = draw(st.integers(0, regimen.extension.max_extra_weeks))
    return PlanSpec(
        regimen=regimen,
        start_date=draw(st.dates(date(2025, 1, 1), date(2028, 12, 31))),
        timezone=draw(st.sampled_from(ZONES)),
        options=options,
        dose_time=draw(st.times()).replace(second=0, microsecond=0),
        checkin_time=draw(st.times()).replace(second=0, microsecond=0),
        extension_weeks=extension,
    )


def _rebuild(spec: PlanSpec, **changes: Any) -> PlanSpec:
    values = {
        "regimen": spec.regimen,
        "start_date": spec.start_date,
        "timezone": spec.timezone,
        "options": dict(spec.options),
        "dose_time": spec.dose_time,
        "checkin_time": spec.checkin_time,
        "holds": spec.holds,
        "outcomes": dict(spec.outcomes),
        "extension_weeks": spec.extension_weeks,
        "stopped_on": spec.stopped_on,
    }
    values.update(changes)
    return PlanSpec(**values)


@st.composite
def holds_within(draw: st.DrawFn, spec: PlanSpec) -> tuple[Hold, ...]:
    """Up to three holds starting within the plan (after the start, before the last dose)."""
    doses = plan_doses(spec)
    last = max(d.date for d in doses if d.date is not None)
    span = max((last - spec.start_date).days, 0)
    holds = []
    for _ in range(draw(st.integers(0, 3))):
        start = spec.start_date + timedelta(days=draw(st.integers(0, span)))
        closed = draw(st.booleans())
        resume = start + timedelta(days=draw(st.integers(0, 45))) if closed else None
        holds.append(Hold(start, resume, "hold"))
    return tuple(holds)


def _dated(doses: list[PlannedDose]) -> list[date]:
    return [d.date for d in doses if d.date is not None]


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_holds_keep_every_dose_and_never_stack_or_bring_one_forward(data: st.DataObject) -> None:
    spec = data.draw(base_specs())
    without = plan_doses(spec)
    holds = data.draw(holds_within(spec))
    held = plan_doses(_rebuild(spec, holds=holds))
    # The same doses, same indices and phases: a hold moves doses, never drops or adds one.
    assert [(d.index, d.phase, d.amount) for d in held] == [
        (d.index, d.phase, d.amount) for d in without
    ]
    assert [d.index for d in held] == list(range(1, len(held) + 1))
    # Never two doses on one day, and never before the start date.
    dated = _dated(held)
    assert len(set(dated)) == len(dated)
    assert all(day >= spec.start_date for day in dated)
    assert dated == sorted(dated)
    for before, after in zip(without, held, strict=True):
        assert (after.date is None) == (after.status == "on_hold")
        if after.date is not None and before.date is not None:
            assert after.date >= before.date  # a hold never brings a dose forward
        for hold in holds:
            if after.date is not None and before.date is not None and before.date >= hold.start:
                # A dose the hold reached is given on or after the resume date.
                assert hold.resume is not None and after.date >= hold.resume
    weekday_phases = {p.id for p in spec.regimen.phases if p.pattern == "weekdays"}
    if weekday_phases and "weekdays" in spec.resolved_options:
        allowed = set(spec.resolved_options["weekdays"])
        for dose in held:
            if dose.date is not None and (
                dose.phase in weekday_phases or dose.phase == "extension"
            ):
                assert dose.date.weekday() in allowed, dose


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_recording_doses_on_their_dates_and_stopping_keep_the_plan_consistent(
    data: st.DataObject,
) -> None:
    spec = data.draw(base_specs())
    spec = _rebuild(spec, holds=data.draw(holds_within(spec)))
    doses = plan_doses(spec)
    scheduled = [d for d in doses if d.status == "scheduled" and d.date is not None]
    recorded = data.draw(st.integers(0, len(scheduled)))
    outcomes = {
        d.index: DoseOutcome(data.draw(st.sampled_from(["given", "missed"])), d.date, None)
        for d in scheduled[:recorded]
    }
    after = plan_doses(_rebuild(spec, outcomes=outcomes))
    # Recording what happened on the planned day moves no dose and keeps the count.
    assert [d.date for d in after] == [d.date for d in doses]
    assert [d.status for d in after if d.index in outcomes] == [o.status for o in outcomes.values()]
    # An early stop cancels exactly what was still to come; given and missed doses stay.
    if scheduled and data.draw(st.booleans()):
        stop = data.draw(st.sampled_from(scheduled)).date
        stopped = plan_doses(_rebuild(spec, outcomes=outcomes, stopped_on=stop))
        assert len(stopped) == len(doses)
        for dose in stopped:
            if dose.index in outcomes:
                assert dose.status == outcomes[dose.index].status
            elif dose.date is None or dose.date >= stop:
                assert dose.status == "cancelled"


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_plan_events_stay_in_their_window_sorted_with_unique_keys(data: st.DataObject) -> None:
    spec = data.draw(base_specs())
    spec = _rebuild(spec, holds=data.draw(holds_within(spec)))
    zone = ZoneInfo(spec.timezone)
    offset = timedelta(hours=data.draw(st.integers(-48, 24 * 120)))
    start = datetime.combine(spec.start_date, time(0), UTC) + offset
    length = timedelta(hours=data.draw(st.integers(0, 24 * 10)))
    end = start + length
    events = plan_events(spec, start, end)
    assert events == sorted(events, key=lambda e: (e.at_utc, e.key))
    assert all(start <= e.at_utc < end for e in events)
    keys = [e.key for e in events]
    assert len(set(keys)) == len(keys)
    # Nothing before the plan, except a premedication the evening before a dose and the
    # supportive medicines a regimen starts ahead (hydration from day -1).
    ahead = min([0] + [item.from_day - 1 for item in spec.regimen.supportive])
    earliest = spec.start_date + timedelta(days=ahead - 1)
    for event in events:
        assert event.local == event.at_utc.astimezone(zone)
        assert event.local.date() >= earliest, event.key
    # Two adjacent windows hold exactly the events of the whole.
    middle = start + timedelta(hours=data.draw(st.integers(0, int(length.total_seconds() // 3600))))
    halves = plan_events(spec, start, middle) + plan_events(spec, middle, end)
    assert [e.key for e in halves] == keys


# --------------------------------------------------------------------------- SMS timing
@settings(max_examples=EXAMPLES)
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    quiet_start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    quiet_end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
)
def test_no_message_is_ever_timed_inside_quiet_hours(
    data: st.DataObject, zone: str, quiet_start: time, quiet_end: time
) -> None:
    spec = _rebuild(data.draw(base_specs()), timezone=zone)
    start = datetime.combine(spec.start_date, time(0), UTC) + timedelta(
        days=data.draw(st.integers(-1, 60))
    )
    events = plan_events(spec, start, start + timedelta(days=2))
    assume(events)
    prefs = ContactPrefs(zone, quiet_start, quiet_end)
    tz = ZoneInfo(zone)
    for event in events:
        for message in messages_for_event(event, prefs):
            local = message.send_at.astimezone(tz)
            assert not in_quiet_hours(local.time(), quiet_start, quiet_end), (
                event.key,
                message.template,
                local,
            )
            assert message.send_at.tzinfo is not None and message.not_after.tzinfo is not None
            assert message.event is event


def test_recording_a_postponed_dose_keeps_the_spacing_of_the_next() -> None:
    """Found by the property above: recording dose 1 on its postponed day moved dose 2 back."""
    spec = PlanSpec(
        regimen=REGIMENS["ofatumumab_lenalidomide"],
        start_date=date(2025, 1, 1),
        timezone="UTC",
        holds=(Hold(date(2025, 1, 1), date(2025, 1, 2), "infusion reaction"),),
    )
    planned = plan_doses(spec)
    assert [d.date for d in planned[:2]] == [date(2025, 1, 2), date(2025, 1, 9)]
    recorded = plan_doses(_rebuild(spec, outcomes={1: DoseOutcome("given", date(2025, 1, 2), 300)}))
    assert [(d.status, d.date) for d in recorded[:2]] == [
        ("given", date(2025, 1, 2)),
        ("scheduled", date(2025, 1, 9)),  # still a week after dose 1, as planned
    ]
