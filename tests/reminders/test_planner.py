"""The planner: exact dose dates for every regimen, holds, stop, extension, DST and events."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminders.core.planner import (
    DoseOutcome,
    EventKind,
    Hold,
    PlanSpec,
    ProphylaxisSpec,
    day_of_treatment,
    is_in_cmv_window,
    last_dose_given,
    plan_doses,
    plan_events,
    prophylaxis_events,
    risk_window_spans,
    risk_windows_on,
    treatment_end,
)
from reminders.core.regimens import get_regimen

BRUSSELS = "Europe/Brussels"
NEW_YORK = "America/New_York"
MONDAY = date(2026, 3, 2)


def d(text: str) -> date:
    return date.fromisoformat(text)


def dates(*texts: str) -> list[date]:
    return [d(t) for t in texts]


def spec(
    regimen_id: str = "alemtuzumab_sc", start: date = MONDAY, tz: str = BRUSSELS, **kw
) -> PlanSpec:
    return PlanSpec(get_regimen(regimen_id), start, tz, **kw)


def dose_dates(plan: PlanSpec) -> list[date | None]:
    return [dose.date for dose in plan_doses(plan)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def events_between(plan: PlanSpec, first: date, last: date, tz: str = BRUSSELS):
    """Events of the local days first..last inclusive."""
    zone = ZoneInfo(tz)
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    return plan_events(plan, start, end)


# The 36 Mon/Wed/Fri injections from Monday 2 March 2026 (12 weeks).
ALEMTUZUMAB_36 = dates(
    "2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09", "2026-03-11", "2026-03-13",
    "2026-03-16", "2026-03-18", "2026-03-20", "2026-03-23", "2026-03-25", "2026-03-27",
    "2026-03-30", "2026-04-01", "2026-04-03", "2026-04-06", "2026-04-08", "2026-04-10",
    "2026-04-13", "2026-04-15", "2026-04-17", "2026-04-20", "2026-04-22", "2026-04-24",
    "2026-04-27", "2026-04-29", "2026-05-01", "2026-05-04", "2026-05-06", "2026-05-08",
    "2026-05-11", "2026-05-13", "2026-05-15", "2026-05-18", "2026-05-20", "2026-05-22",
)  # fmt: skip


# --------------------------------------------------------------------------- alemtuzumab
def test_alemtuzumab_sc_36_doses_mon_wed_fri() -> None:
    doses = plan_doses(spec())
    assert [x.date for x in doses] == ALEMTUZUMAB_36
    assert [x.index for x in doses] == list(range(1, 37))
    assert {(x.amount, x.unit, x.route, x.phase, x.status) for x in doses} == {
        (30, "mg", "sc", "treatment", "scheduled")
    }
    first, second = doses[0], doses[1]
    assert first.in_hospital is True and first.observation_hours == 2
    assert second.in_hospital is False and second.observation_hours is None
    assert first.local == datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo(BRUSSELS))
    assert first.at_utc == utc(2026, 3, 2, 8, 0)
    assert "Table 2" in first.source


def test_alemtuzumab_sc_with_escalation_3_10_30_then_three_times_a_week() -> None:
    doses = plan_doses(spec(options={"escalation": True}))
    assert len(doses) == 39
    assert [(x.date, x.amount, x.phase) for x in doses[:5]] == [
        (d("2026-03-02"), 3, "escalation"),
        (d("2026-03-03"), 10, "escalation"),
        (d("2026-03-04"), 30, "escalation"),
        (d("2026-03-06"), 30, "treatment"),
        (d("2026-03-09"), 30, "treatment"),
    ]
    assert doses[-1].date == d("2026-05-27")
    assert doses[0].in_hospital and doses[0].observation_hours == 2


def test_alemtuzumab_sc_custom_weekdays_tue_thu_sat() -> None:
    plan = spec(start=d("2026-03-03"), options={"weekdays": ["tue", "thu", "sat"]})
    got = dose_dates(plan)
    assert got[:7] == dates(
        "2026-03-03",
        "2026-03-05",
        "2026-03-07",
        "2026-03-10",
        "2026-03-12",
        "2026-03-14",
        "2026-03-17",
    )
    assert len(got) == 36 and got[-1] == d("2026-05-23")
    assert {x.weekday() for x in got} == {1, 3, 5}  # type: ignore[union-attr]


def test_alemtuzumab_start_on_a_non_injection_day_waits_for_the_next_one() -> None:
    # Started on a Sunday: the first injection is Monday; day 1 is still the Sunday.
    plan = spec(start=d("2026-03-01"))
    assert dose_dates(plan)[:2] == dates("2026-03-02", "2026-03-04")
    assert day_of_treatment(plan, d("2026-03-02")) == 2


@pytest.mark.parametrize("weekdays", [["mon", "thu"], ["wed"], ["mon", "wed", "fri", "sun"]])
def test_alemtuzumab_refuses_anything_but_three_days_a_week(weekdays: list[str]) -> None:
    with pytest.raises(
        ValueError, match="option 'weekdays' must name exactly 3 different weekdays"
    ):
        spec(options={"weekdays": weekdays})


def test_alemtuzumab_extension_by_six_weeks_gives_54_doses() -> None:
    doses = plan_doses(spec(extension_weeks=6))
    assert len(doses) == 54
    assert [x.date for x in doses[:36]] == ALEMTUZUMAB_36
    assert [x.date for x in doses[36:39]] == dates("2026-05-25", "2026-05-27", "2026-05-29")
    assert doses[-1].date == d("2026-07-03")  # end of week 18
    assert {x.phase for x in doses[36:]} == {"extension"}


def test_alemtuzumab_extension_of_seven_weeks_is_refused() -> None:
    with pytest.raises(ValueError, match="above the maximum of 6 extra weeks"):
        spec(extension_weeks=7)


def test_extension_is_refused_for_regimens_without_one() -> None:
    with pytest.raises(ValueError, match="cannot be extended"):
        spec("rituximab_fl_maintenance", extension_weeks=1)


def test_alemtuzumab_iv_escalation_is_always_there_and_every_dose_in_hospital() -> None:
    doses = plan_doses(spec("alemtuzumab_iv"))
    assert len(doses) == 39
    assert [(x.date, x.amount) for x in doses[:4]] == [
        (d("2026-03-02"), 3),
        (d("2026-03-03"), 10),
        (d("2026-03-04"), 30),
        (d("2026-03-06"), 30),
    ]
    assert all(x.in_hospital and x.route == "iv" for x in doses)
    assert doses[0].observation_hours == 2 and doses[1].observation_hours is None


def test_alemtuzumab_iv_steroid_premedication_only_in_the_first_two_weeks() -> None:
    plan = spec("alemtuzumab_iv")
    premeds = [
        e
        for e in events_between(plan, d("2026-03-02"), d("2026-03-20"))
        if e.kind == "premedication"
    ]
    by_day = {e.local.date(): e.details["items"] for e in premeds}
    assert any("steroid" in item for item in by_day[d("2026-03-13")])  # day 12
    assert not any("steroid" in item for item in by_day[d("2026-03-16")])  # day 15
    assert all("paracetamol" in " ".join(items) for items in by_day.values())


# --------------------------------------------------------------------------- other regimens
def test_ofatumumab_retreatment_8_weekly_then_24_monthly() -> None:
    doses = plan_doses(spec("ofatumumab_retreatment", start=d("2026-01-05")))
    assert [x.date for x in doses[:8]] == dates(
        "2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26",
        "2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23",
    )  # fmt: skip
    maintenance = doses[8:]
    assert len(maintenance) == 24
    assert [x.date for x in maintenance[:3]] == dates("2026-03-23", "2026-04-23", "2026-05-23")
    assert maintenance[-1].date == d("2028-02-23")
    assert {x.phase for x in maintenance} == {"maintenance"}
    assert all(x.amount is None and x.in_hospital for x in doses)  # dose entered by the care team


def test_ofatumumab_lenalidomide_cycles_as_written() -> None:
    doses = plan_doses(spec("ofatumumab_lenalidomide"))
    assert [(x.date, x.amount) for x in doses] == [
        (d("2026-03-02"), 300),  # cycle 1 day 1
        (d("2026-03-09"), 1000),  # cycle 1 day 8
        (d("2026-03-16"), 1000),  # cycle 1 day 15
        (d("2026-03-23"), 1000),  # cycle 1 day 22
        (d("2026-04-27"), 1000),  # cycle 3 (nothing in cycle 2)
        (d("2026-05-25"), 1000),  # cycle 4
        (d("2026-06-22"), 1000),  # cycle 5
        (d("2026-07-20"), 1000),  # cycle 6
        (d("2026-08-17"), 1000),  # cycle 7
        (d("2026-10-12"), 1000),  # cycle 9
        (d("2026-12-07"), 1000),  # cycle 11
        (d("2027-02-01"), 1000),  # cycle 13
        (d("2027-03-29"), 1000),  # cycle 15
        (d("2027-05-24"), 1000),  # cycle 17
        (d("2027-07-19"), 1000),  # cycle 19
        (d("2027-09-13"), 1000),  # cycle 21
        (d("2027-11-08"), 1000),  # cycle 23
    ]


def test_lenalidomide_daily_from_day_9_open_ended() -> None:
    plan = spec("ofatumumab_lenalidomide")
    events = events_between(plan, d("2026-03-08"), d("2026-03-11"))
    lenalidomide = [e for e in events if e.kind == "supportive"]
    assert [e.key for e in lenalidomide] == [
        "supportive:lenalidomide:2026-03-10",
        "supportive:lenalidomide:2026-03-11",
    ]
    assert lenalidomide[0].details["dose_text"] == "10 mg by mouth"
    assert day_of_treatment(plan, d("2026-03-10")) == 9
    # Still there three years later (after the last ofatumumab dose): only the care team stops it.
    later = events_between(plan, d("2029-06-01"), d("2029-06-01"))
    assert [e.key for e in later if e.kind == "supportive"] == [
        "supportive:lenalidomide:2029-06-01"
    ]


def test_lenalidomide_pauses_during_a_hold_and_stops_with_the_treatment() -> None:
    hold = Hold(d("2026-04-01"), d("2026-04-15"), "neutropenia")
    plan = spec("ofatumumab_lenalidomide", holds=(hold,), stopped_on=d("2026-06-01"))
    keys = {
        e.key
        for e in events_between(plan, d("2026-03-25"), d("2026-06-10"))
        if e.kind == "supportive"
    }
    assert "supportive:lenalidomide:2026-03-31" in keys
    assert not any(f"2026-04-{day:02d}" in k for k in keys for day in range(1, 15))
    assert "supportive:lenalidomide:2026-04-15" in keys
    assert "supportive:lenalidomide:2026-05-31" in keys
    assert not any(k >= "supportive:lenalidomide:2026-06-01" for k in keys)


def test_rituximab_cll_day_0_then_day_1_of_cycles_2_to_6() -> None:
    doses = plan_doses(spec("rituximab_cll_chemo"))
    assert [(x.date, x.amount, x.unit) for x in doses] == [
        (d("2026-03-02"), 375, "mg/m2"),  # cycle 1 day 0 = the start date
        (d("2026-03-31"), 500, "mg/m2"),  # cycle 2 day 1 = start + 28 + 1
        (d("2026-04-28"), 500, "mg/m2"),
        (d("2026-05-26"), 500, "mg/m2"),
        (d("2026-06-23"), 500, "mg/m2"),
        (d("2026-07-21"), 500, "mg/m2"),
    ]


def test_rituximab_cll_hydration_and_allopurinol_from_48_hours_before() -> None:
    plan = spec("rituximab_cll_chemo")
    events = events_between(plan, d("2026-02-25"), d("2026-03-05"))
    supportive = [e for e in events if e.kind == "supportive"]
    assert [e.local for e in supportive] == [
        datetime(2026, 2, 28, 9, 0, tzinfo=ZoneInfo(BRUSSELS)),
        datetime(2026, 3, 1, 9, 0, tzinfo=ZoneInfo(BRUSSELS)),
        datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo(BRUSSELS)),
    ]
    assert [e.details["day"] for e in supportive] == [-1, 0, 1]
    # The care team may keep the reminders going longer.
    longer = spec("rituximab_cll_chemo", options={"tls_prophylaxis_until_day": 7})
    keys = [
        e.key
        for e in events_between(longer, d("2026-02-25"), d("2026-03-12"))
        if e.kind == "supportive"
    ]
    assert keys[-1] == "supportive:hydration_allopurinol:2026-03-08"
    # Premedication an hour before each infusion.
    premed = [e for e in events if e.kind == "premedication"]
    assert [(e.key, e.local.hour) for e in premed] == [("premed:1", 8)]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (
            2,
            dates(
                "2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31", "2026-09-30", "2026-11-30",
                "2027-01-31", "2027-03-31", "2027-05-31", "2027-07-31", "2027-09-30", "2027-11-30",
            ),
        ),
        (
            3,
            dates(
                "2026-01-31", "2026-04-30", "2026-07-31", "2026-10-31",
                "2027-01-31", "2027-04-30", "2027-07-31", "2027-10-31",
            ),
        ),
    ],
)  # fmt: skip
def test_rituximab_fl_maintenance_12_or_8_doses_with_month_ends_clamped(
    interval: int, expected: list[date]
) -> None:
    plan = spec(
        "rituximab_fl_maintenance", start=d("2026-01-31"), options={"interval_months": interval}
    )
    assert dose_dates(plan) == expected


def test_rituximab_fl_maintenance_defaults_to_every_3_months() -> None:
    assert len(plan_doses(spec("rituximab_fl_maintenance"))) == 8


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (
            28,
            dates(
                "2026-03-02", "2026-03-09", "2026-03-16", "2026-03-30", "2026-04-06", "2026-04-13"
            ),
        ),
        (
            21,
            dates(
                "2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30", "2026-04-06"
            ),
        ),
    ],
)
def test_inotuzumab_weekly_21_or_28_day_cycles(length: int, expected: list[date]) -> None:
    plan = spec("inotuzumab_weekly", options={"cycles": 2, "cycle_length_days": length})
    doses = plan_doses(plan)
    assert [x.date for x in doses] == expected
    assert [x.amount for x in doses] == [0.8, 0.5, 0.5, 0.8, 0.5, 0.5]
    assert {x.unit for x in doses} == {"mg/m2"}


def test_inotuzumab_weekly_default_is_one_28_day_cycle() -> None:
    assert dose_dates(spec("inotuzumab_weekly")) == dates("2026-03-02", "2026-03-09", "2026-03-16")


def test_inotuzumab_single_dose_needs_the_care_team_dose() -> None:
    with pytest.raises(ValueError, match="option 'dose_mg_m2' is required"):
        spec("inotuzumab_single")
    plan = spec("inotuzumab_single", options={"dose_mg_m2": 1.8, "interval_days": 21, "cycles": 3})
    assert [(x.date, x.amount) for x in plan_doses(plan)] == [
        (d("2026-03-02"), 1.8),
        (d("2026-03-23"), 1.8),
        (d("2026-04-13"), 1.8),
    ]
    plan = spec("inotuzumab_single", options={"dose_mg_m2": 1.3, "cycles": 2})
    assert dose_dates(plan) == dates("2026-03-02", "2026-03-30")


def test_inotuzumab_checkins_ask_about_jaundice() -> None:
    plan = spec("inotuzumab_weekly")
    checkins = [e for e in events_between(plan, MONDAY, MONDAY) if e.kind == "checkin"]
    assert checkins[0].details["extra_symptoms"] == ["jaundice"]
    alem = [e for e in events_between(spec(), MONDAY, MONDAY) if e.kind == "checkin"]
    assert "jaundice" not in alem[0].details["extra_symptoms"]


# --------------------------------------------------------------------------- holds
def test_hold_with_resume_relays_on_allowed_weekdays_and_keeps_the_count() -> None:
    hold = Hold(d("2026-03-17"), d("2026-03-26"), "CMV PCR rising")
    got = dose_dates(spec(holds=(hold,)))
    assert got[:7] == ALEMTUZUMAB_36[:7]  # up to Monday 16 March, untouched
    assert got[7:10] == dates("2026-03-27", "2026-03-30", "2026-04-01")  # Fri, Mon, Wed
    assert got[-1] == d("2026-06-01")
    assert len(got) == 36 and len(set(got)) == 36
    assert not any(hold.start <= x < hold.resume for x in got)  # type: ignore[operator]


def test_hold_moves_a_dose_but_keeps_its_key() -> None:
    plan = spec(holds=(Hold(d("2026-03-17"), d("2026-03-26"), "fever"),))
    events = events_between(plan, d("2026-03-27"), d("2026-03-27"))
    dose = [e for e in events if e.kind == "dose"]
    assert [(e.key, e.dose_index) for e in dose] == [("dose:8", 8)]


def test_hold_during_escalation_keeps_consecutive_days_then_three_times_a_week() -> None:
    plan = spec("alemtuzumab_iv", holds=(Hold(d("2026-03-03"), d("2026-03-10"), "rigors"),))
    assert dose_dates(plan)[:6] == dates(
        "2026-03-02", "2026-03-10", "2026-03-11", "2026-03-13", "2026-03-16", "2026-03-18"
    )


def test_hold_never_brings_a_dose_forward() -> None:
    plan = spec(holds=(Hold(d("2026-03-10"), d("2026-03-11"), "short"),))
    assert dose_dates(plan) == ALEMTUZUMAB_36


def test_open_hold_leaves_remaining_doses_on_hold_without_date() -> None:
    plan = spec(holds=(Hold(d("2026-03-17"), None, "CMV reactivation"),))
    doses = plan_doses(plan)
    assert [x.status for x in doses[:7]] == ["scheduled"] * 7
    assert all(x.status == "on_hold" and x.date is None and x.at_utc is None for x in doses[7:])
    assert treatment_end(plan) is None
    # No dose events during the hold, but check-ins and the weekly CMV test continue.
    events = events_between(plan, d("2026-03-18"), d("2026-03-31"))
    kinds = {e.kind for e in events}
    assert EventKind.DOSE not in kinds and EventKind.PREMEDICATION not in kinds
    assert len([e for e in events if e.kind == "checkin"]) == 14
    assert [e.key for e in events if e.kind == "lab"] == [
        "lab:cmv_pcr:2026-03-23",
        "lab:cmv_pcr:2026-03-30",
    ]
    # Check-ins go on long after, while the hold is open: daily, because the risk
    # windows stop counting on the last day of treatment received (day 15, in the CMV
    # window) until the care team resumes (issue 11, item 5).
    far = events_between(plan, d("2026-09-01"), d("2026-09-04"))
    assert [e.key for e in far if e.kind == "checkin"] == [
        "checkin:2026-09-01",
        "checkin:2026-09-02",
        "checkin:2026-09-03",
        "checkin:2026-09-04",
    ]
    assert is_in_cmv_window(plan, d("2026-09-04"))


def test_two_holds_compose() -> None:
    holds = (
        Hold(d("2026-04-08"), d("2026-04-15"), "ANC below 250"),
        Hold(d("2026-03-17"), d("2026-03-26"), "fever"),  # given out of order on purpose
    )
    got = dose_dates(spec(holds=holds))
    assert got[7:14] == dates(
        "2026-03-27",
        "2026-03-30",
        "2026-04-01",
        "2026-04-03",
        "2026-04-06",
        "2026-04-15",
        "2026-04-17",
    )
    assert got[-1] == d("2026-06-08")
    assert len(set(got)) == 36


def test_hold_on_an_interval_regimen_shifts_keeping_the_spacing() -> None:
    plan = spec(
        "rituximab_fl_maintenance",
        start=d("2026-01-31"),
        holds=(Hold(d("2026-04-01"), d("2026-05-15"), "infection"),),
    )
    assert dose_dates(plan) == dates(
        "2026-01-31", "2026-05-15", "2026-08-15", "2026-11-15",
        "2027-02-15", "2027-05-15", "2027-08-15", "2027-11-15",
    )  # fmt: skip


def test_hold_on_a_cycle_regimen_shifts_the_rest_of_the_sequence() -> None:
    plan = spec(
        "ofatumumab_lenalidomide", holds=(Hold(d("2026-03-10"), d("2026-03-20"), "pneumonia"),)
    )
    got = dose_dates(plan)
    # Dose 3 (16 March) moves to the resume date; everything after keeps its spacing (+4 days).
    assert got[:5] == dates("2026-03-02", "2026-03-09", "2026-03-20", "2026-03-27", "2026-05-01")
    assert got[-1] == d("2027-11-12")


def test_given_and_missed_outcomes_are_kept_and_never_moved() -> None:
    outcomes = {
        1: DoseOutcome("given", d("2026-03-02"), 30),
        2: DoseOutcome("missed", d("2026-03-04")),
        3: DoseOutcome("given", d("2026-03-07"), 30),  # given a day late
    }
    plan = spec(outcomes=outcomes, holds=(Hold(d("2026-03-03"), d("2026-03-12"), "rash"),))
    doses = plan_doses(plan)
    assert [(x.status, x.date) for x in doses[:4]] == [
        ("given", d("2026-03-02")),
        ("missed", d("2026-03-04")),
        ("given", d("2026-03-07")),
        ("scheduled", d("2026-03-13")),
    ]
    assert doses[0].given_mg == 30 and doses[1].given_mg is None
    assert len(doses) == 36
    assert last_dose_given(plan) == d("2026-03-07")


def test_recording_a_dose_as_given_renames_no_other_key() -> None:
    window = (utc(2026, 3, 1), utc(2026, 4, 1))
    before = {e.key for e in plan_events(spec(), *window)}
    after = {
        e.key
        for e in plan_events(spec(outcomes={3: DoseOutcome("given", d("2026-03-06"), 30)}), *window)
    }
    assert before - after == {"dose:3", "premed:3"}  # no reminder for a dose already given
    assert after <= before


def test_missed_first_dose_moves_the_hospital_visit_to_the_next_dose() -> None:
    doses = plan_doses(spec(outcomes={1: DoseOutcome("missed", d("2026-03-02"))}))
    assert not doses[0].in_hospital
    assert doses[1].in_hospital and doses[1].observation_hours == 2


def test_outcome_for_a_dose_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="the plan has doses 1 to 36"):
        spec(outcomes={37: DoseOutcome("given", d("2026-05-25"))})


def test_hold_resume_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="before its start"):
        Hold(d("2026-03-10"), d("2026-03-09"), "typo")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 120), st.integers(0, 30), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
def test_holds_never_lose_or_stack_doses(
    raw: list[tuple[int, int, bool]], escalation: bool
) -> None:
    holds = tuple(
        Hold(MONDAY + timedelta(days=a), MONDAY + timedelta(days=a + b) if closed else None, "h")
        for a, b, closed in raw
    )
    plan = spec(holds=holds, options={"escalation": escalation})
    doses = plan_doses(plan)
    assert len(doses) == (39 if escalation else 36)
    dated = [x.date for x in doses if x.date is not None]
    assert len(set(dated)) == len(dated)
    assert dated == sorted(dated)
    for x in doses:
        assert (x.date is None) == (x.status == "on_hold")
        for h in holds:
            if x.date is not None and x.date >= h.start:
                assert h.resume is not None and x.date >= h.resume
    treatment = [x for x in doses if x.phase == "treatment" and x.date is not None]
    assert {x.date.weekday() for x in treatment} <= {0, 2, 4}  # type: ignore[union-attr]


# --------------------------------------------------------------------------- stop early
def test_stop_early_cancels_later_doses_and_reminders() -> None:
    stop = d("2026-03-27")  # non-response at week 4
    plan = spec(stopped_on=stop, outcomes={1: DoseOutcome("given", MONDAY, 30)})
    doses = plan_doses(plan)
    assert [x.status for x in doses[:11]] == ["given"] + ["scheduled"] * 10
    assert all(x.status == "cancelled" for x in doses[11:])
    assert doses[11].date == stop
    assert treatment_end(plan) == d("2026-03-25")
    events = events_between(plan, stop, d("2026-07-31"))
    assert {e.kind for e in events} == {EventKind.CHECKIN, EventKind.MILESTONE}
    assert [e.key for e in events if e.kind == "milestone"] == ["milestone:transplant_gap"]
    checkins = [e.local.date() for e in events if e.kind == "checkin"]
    # Daily while still in the CMV window (to day 58 = 28 April: the window counts from
    # the first injection and runs its reported range, 002), then weekly after the
    # last dose (Wednesday 25 March) the taper: twice a week (Wednesdays and Saturdays)
    # to 8 weeks after it (20 May), then weekly (Wednesdays).
    assert checkins[:33] == [stop + timedelta(days=k) for k in range(33)]
    assert checkins[33:40] == dates(
        "2026-04-29", "2026-05-02", "2026-05-06", "2026-05-09", "2026-05-13", "2026-05-16",
        "2026-05-20",
    )  # fmt: skip
    assert checkins[40:] == [d("2026-05-20") + timedelta(weeks=k) for k in range(1, 11)]


def test_stop_cancels_doses_on_an_open_hold() -> None:
    plan = spec(holds=(Hold(d("2026-03-17"), None, "CMV"),), stopped_on=d("2026-04-02"))
    doses = plan_doses(plan)
    assert all(x.status == "cancelled" and x.date is None for x in doses[7:])
    assert treatment_end(plan) == d("2026-03-16")


# --------------------------------------------------------------------------- events
def test_plan_events_window_is_half_open_and_sorted() -> None:
    events = plan_events(spec(), utc(2026, 3, 4, 8, 0), utc(2026, 3, 6, 8, 0))
    assert [e.key for e in events] == [
        "dose:2",  # 09:00 local = 08:00 UTC: the start is included
        "supportive:allopurinol:2026-03-04",
        "checkin:2026-03-04",
        "supportive:allopurinol:2026-03-05",
        "checkin:2026-03-05",
        "premed:3",  # 08:00 local on 6 March; dose:3 at 08:00 UTC is excluded
    ]
    assert all(utc(2026, 3, 4, 8) <= e.at_utc < utc(2026, 3, 6, 8) for e in events)
    assert events == sorted(events, key=lambda e: (e.at_utc, e.key))


def test_adjacent_windows_partition_the_events() -> None:
    plan = spec(options={"escalation": True})
    whole = plan_events(plan, utc(2026, 3, 1), utc(2026, 8, 1))
    parts = []
    cursor = utc(2026, 3, 1)
    while cursor < utc(2026, 8, 1):
        parts.extend(plan_events(plan, cursor, cursor + timedelta(hours=24)))
        cursor += timedelta(hours=24)
    assert [e.key for e in parts] == [e.key for e in whole]
    assert len({e.key for e in whole}) == len(whole)  # keys unique


def test_first_day_events_in_detail() -> None:
    events = events_between(spec(), MONDAY, MONDAY)
    assert [(e.key, e.kind, e.local.strftime("%H:%M")) for e in events] == [
        ("premed:1", EventKind.PREMEDICATION, "08:00"),
        ("dose:1", EventKind.DOSE, "09:00"),
        ("lab:cmv_pcr:2026-03-02", EventKind.LAB, "09:00"),
        ("supportive:allopurinol:2026-03-02", EventKind.SUPPORTIVE, "09:00"),
        ("checkin:2026-03-02", EventKind.CHECKIN, "18:00"),
    ]
    dose = events[1]
    assert dose.title == "Alemtuzumab injection today at the hospital (stay 2 hours after)"
    assert dose.details["amount_text"] == "30 mg" and dose.dose_index == 1
    assert dose.at_utc.tzinfo is UTC and dose.local.tzinfo == ZoneInfo(BRUSSELS)
    assert events[0].details["minutes_before"] == 60


def test_allopurinol_only_the_first_14_days() -> None:
    events = events_between(spec(), d("2026-03-01"), d("2026-03-20"))
    days = [e.local.date() for e in events if e.kind == "supportive"]
    assert days == [MONDAY + timedelta(days=k) for k in range(14)]


def test_weekly_cmv_pcr_during_treatment() -> None:
    events = events_between(spec(), d("2026-02-20"), d("2026-07-01"))
    labs = [e for e in events if e.kind == "lab"]
    assert [e.local.date() for e in labs] == [MONDAY + timedelta(weeks=k) for k in range(12)]
    assert labs[-1].local.date() == d("2026-05-18")  # week 12; nothing after the last dose
    assert labs[0].details["lab"] == "cmv_pcr" and labs[-1].details["week"] == 12


def test_checkins_daily_in_cmv_window_sparser_outside() -> None:
    plan = spec()
    events = events_between(plan, d("2026-02-25"), d("2026-08-31"))
    checkins = [e.local.date() for e in events if e.kind == "checkin"]
    days = {day_of_treatment(plan, x) for x in checkins}
    # Daily from day 1 to a week after the last dose (22 May, day 82): first week, low
    # points, then the CMV window (day 14 to 58 and to the end of treatment, 002).
    assert sorted(n for n in days if n <= 89) == list(range(1, 90))
    # Then twice a week (Mondays and Fridays) to 8 weeks after the last dose (17 July),
    # then weekly (Fridays) to 9 months after it (issue 11, item 7).
    after = [x for x in checkins if x > d("2026-05-29")]
    twice = [d("2026-06-01") + timedelta(weeks=k, days=dd) for k in range(7) for dd in (0, 4)]
    assert after[:14] == twice and twice[-1] == d("2026-07-17")
    assert after[14:] == [d("2026-07-17") + timedelta(weeks=k) for k in range(1, 7)]
    cmv = [e for e in events if e.kind == "checkin" and e.local.date() == d("2026-04-05")]
    assert "cmv" in cmv[0].details["risk_windows"]


def test_checkins_on_dose_days_for_infusion_regimens() -> None:
    plan = spec("rituximab_fl_maintenance", start=d("2026-01-31"))
    events = events_between(plan, d("2026-04-25"), d("2026-05-02"))
    # Weekly (days 85, 92) and the infusion day (30 April, day 90).
    assert [e.key for e in events if e.kind == "checkin"] == [
        "checkin:2026-04-25",
        "checkin:2026-04-30",
        "checkin:2026-05-02",
    ]


def test_milestones_and_their_dates() -> None:
    events = events_between(spec(), d("2026-03-01"), d("2026-08-31"))
    milestones = [(e.key, e.local) for e in events if e.kind == "milestone"]
    zone = ZoneInfo(BRUSSELS)
    assert milestones == [
        ("milestone:week4_review", datetime(2026, 3, 30, 9, 0, tzinfo=zone)),
        ("milestone:week12_marrow", datetime(2026, 5, 18, 9, 0, tzinfo=zone)),
        ("milestone:transplant_gap", datetime(2026, 7, 22, 9, 0, tzinfo=zone)),
    ]


def test_day_milestones_move_with_holds() -> None:
    plan = spec(holds=(Hold(d("2026-03-17"), d("2026-03-26"), "fever"),))
    events = events_between(plan, d("2026-03-01"), d("2026-08-31"))
    milestones = {e.key: e.local.date() for e in events if e.kind == "milestone"}
    assert milestones == {
        "milestone:week4_review": d("2026-04-08"),
        "milestone:week12_marrow": d("2026-05-27"),
        "milestone:transplant_gap": d("2026-08-01"),  # 1 June + 2 months
    }


def test_day_milestones_count_from_a_late_first_dose() -> None:
    # Treatment received: the first injection given a day late moves the week-4 review
    # (003, Table 3: "after 4 weeks of treatment") and the week-12 marrow a day later.
    plan = spec(outcomes={1: DoseOutcome("given", d("2026-03-03"), 30)})
    events = events_between(plan, d("2026-03-01"), d("2026-08-31"))
    milestones = {e.key: e.local.date() for e in events if e.kind == "milestone"}
    assert milestones["milestone:week4_review"] == d("2026-03-31")
    assert milestones["milestone:week12_marrow"] == d("2026-05-19")


def test_day_milestones_count_from_the_first_dose_not_a_missed_one() -> None:
    plan = spec(
        outcomes={
            1: DoseOutcome("missed", d("2026-03-02")),
            2: DoseOutcome("given", d("2026-03-04"), 30),
        }
    )
    events = events_between(plan, d("2026-03-01"), d("2026-05-31"))
    milestones = {e.key: e.local.date() for e in events if e.kind == "milestone"}
    assert milestones["milestone:week4_review"] == d("2026-04-01")


def test_day_milestones_count_from_the_first_dose_when_the_start_is_not_a_dose_day() -> None:
    # Started on a Saturday: the first injection is on Monday; four weeks from it.
    plan = spec(start=d("2026-02-28"))
    events = events_between(plan, d("2026-02-28"), d("2026-05-31"))
    milestones = {e.key: e.local.date() for e in events if e.kind == "milestone"}
    assert milestones["milestone:week4_review"] == d("2026-03-30")


def test_a_hold_before_the_first_dose_moves_milestones_once() -> None:
    plan = spec(holds=(Hold(d("2026-03-02"), d("2026-03-09"), "infection before the start"),))
    assert plan_doses(plan)[0].date == d("2026-03-09")
    events = events_between(plan, d("2026-03-01"), d("2026-05-31"))
    milestones = {e.key: e.local.date() for e in events if e.kind == "milestone"}
    assert milestones["milestone:week4_review"] == d("2026-04-06")


def test_decision_milestones_say_so_in_their_event() -> None:
    events = events_between(spec(), d("2026-03-30"), d("2026-03-30"))
    [review] = [e for e in events if e.kind == "milestone"]
    assert review.details["decision"] is True
    assert "non-response" in review.details["decision_text"]


# --------------------------------------------------------------------------- DST
@pytest.mark.parametrize(
    ("tz", "change", "before_utc_hour", "after_utc_hour"),
    [
        (BRUSSELS, d("2026-03-29"), 8, 7),
        (BRUSSELS, d("2026-10-25"), 7, 8),
        (NEW_YORK, d("2026-03-08"), 14, 13),
        (NEW_YORK, d("2026-11-01"), 13, 14),
    ],
)
def test_daily_9am_reminder_stays_9am_local_across_dst(
    tz: str, change: date, before_utc_hour: int, after_utc_hour: int
) -> None:
    # Lenalidomide runs daily at the dose time from day 9 and never ends by itself.
    plan = spec("ofatumumab_lenalidomide", start=change - timedelta(days=20), tz=tz)
    events = events_between(plan, change - timedelta(days=3), change + timedelta(days=3), tz)
    pills = [e for e in events if e.kind == "supportive"]
    assert len(pills) == 7
    for e in pills:
        assert (e.local.hour, e.local.minute) == (9, 0)
        assert e.local.tzinfo == ZoneInfo(tz)
        expected = before_utc_hour if e.local.date() < change else after_utc_hour
        assert e.at_utc.hour == expected, e.local
        assert e.at_utc == e.local.astimezone(UTC)


def test_prophylaxis_reminders_keep_local_time_across_dst() -> None:
    course = ProphylaxisSpec(
        course_id=7,
        drug="cotrimoxazole",
        dose_text="as prescribed",
        times=(time(9, 0), time(21, 0)),
        weekdays=None,
        start_date=d("2026-03-01"),
        timezone=NEW_YORK,
        stopped_on=None,
    )
    events = prophylaxis_events(course, utc(2026, 3, 7, 12), utc(2026, 3, 9, 14))
    assert [(e.key, e.at_utc.hour) for e in events] == [
        ("pill:7:2026-03-07T09:00", 14),
        ("pill:7:2026-03-07T21:00", 2),  # 02:00 UTC on 8 March
        ("pill:7:2026-03-08T09:00", 13),  # EDT from 8 March
        ("pill:7:2026-03-08T21:00", 1),
        ("pill:7:2026-03-09T09:00", 13),
    ]
    assert all(e.kind == EventKind.PROPHYLAXIS for e in events)


@pytest.mark.parametrize(
    ("tz", "day", "wall", "local_hm", "utc_dt"),
    [
        # Spring forward: 02:30 does not exist; the first valid instant is 03:00.
        (BRUSSELS, d("2026-03-29"), time(2, 30), (3, 0), utc(2026, 3, 29, 1, 0)),
        (NEW_YORK, d("2026-03-08"), time(2, 30), (3, 0), utc(2026, 3, 8, 7, 0)),
        # Fall back: 02:30 (Brussels) / 01:30 (New York) happen twice; the first one is used.
        (BRUSSELS, d("2026-10-25"), time(2, 30), (2, 30), utc(2026, 10, 25, 0, 30)),
        (NEW_YORK, d("2026-11-01"), time(1, 30), (1, 30), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_dst_gap_moves_forward_and_fold_takes_the_first(
    tz: str, day: date, wall: time, local_hm: tuple[int, int], utc_dt: datetime
) -> None:
    course = ProphylaxisSpec(1, "acyclovir", "as prescribed", (wall,), None, day, tz, None)
    [event] = prophylaxis_events(course, utc_dt - timedelta(hours=12), utc_dt + timedelta(hours=12))
    assert event.at_utc == utc_dt
    assert (event.local.hour, event.local.minute) == local_hm
    assert event.key == f"pill:1:{day.isoformat()}T{wall.hour:02d}:{wall.minute:02d}"
    # The planner uses the same rule for check-ins.
    plan = spec(start=day - timedelta(days=20), tz=tz, checkin_time=wall)
    [checkin] = [e for e in events_between(plan, day, day, tz) if e.kind == "checkin"]
    assert checkin.at_utc == utc_dt


# --------------------------------------------------------------------------- prophylaxis
def test_prophylaxis_never_ends_without_a_stop_date() -> None:
    course = ProphylaxisSpec(
        3, "acyclovir", "as prescribed", (time(8, 0),), None, MONDAY, BRUSSELS, None
    )
    five_years_on = prophylaxis_events(course, utc(2031, 6, 1), utc(2031, 6, 2))
    assert [e.key for e in five_years_on] == ["pill:3:2031-06-01T08:00"]
    assert prophylaxis_events(course, utc(2026, 2, 1), utc(2026, 3, 2)) == []  # before the start


def test_prophylaxis_stops_on_the_stop_date_and_respects_weekdays() -> None:
    course = ProphylaxisSpec(
        4,
        "cotrimoxazole",
        "as prescribed",
        (time(8, 0),),
        (0, 2, 4),
        MONDAY,
        BRUSSELS,
        d("2026-03-11"),
    )
    events = prophylaxis_events(course, utc(2026, 3, 1), utc(2026, 4, 1))
    assert [e.key for e in events] == [
        "pill:4:2026-03-02T08:00",
        "pill:4:2026-03-04T08:00",
        "pill:4:2026-03-06T08:00",
        "pill:4:2026-03-09T08:00",
    ]


def test_prophylaxis_spec_validation() -> None:
    with pytest.raises(ValueError, match="at least one time"):
        ProphylaxisSpec(1, "x", "y", (), None, MONDAY, BRUSSELS, None)
    with pytest.raises(ValueError, match="weekdays"):
        ProphylaxisSpec(1, "x", "y", (time(8),), (7,), MONDAY, BRUSSELS, None)
    with pytest.raises(ValueError, match="unknown time zone"):
        ProphylaxisSpec(1, "x", "y", (time(8),), None, MONDAY, "Mars/Olympus", None)


# --------------------------------------------------------------------------- helpers & validation
def test_day_numbering_and_risk_windows() -> None:
    plan = spec()
    assert day_of_treatment(plan, MONDAY) == 1
    assert day_of_treatment(plan, d("2026-03-01")) == 0
    assert day_of_treatment(plan, d("2026-03-09")) == 8  # week 2 starts
    # The CMV window: day 14 to day 58 (002), then to a week after the last dose.
    assert not is_in_cmv_window(plan, d("2026-03-14"))  # day 13
    assert is_in_cmv_window(plan, d("2026-03-15"))  # day 14
    assert is_in_cmv_window(plan, d("2026-04-28"))  # day 58
    assert is_in_cmv_window(plan, d("2026-05-29"))  # last dose (22 May) + 7 days
    assert not is_in_cmv_window(plan, d("2026-05-30"))
    assert [w.id for w in risk_windows_on(plan, MONDAY)] == ["first_week"]
    assert {w.id for w in risk_windows_on(plan, d("2026-03-25"))} == {
        "low_platelets",
        "low_neutrophils",
        "cmv",
    }
    assert not is_in_cmv_window(spec("rituximab_cll_chemo"), d("2026-04-01"))


def test_treatment_end_and_last_dose_given() -> None:
    plan = spec()
    assert treatment_end(plan) == d("2026-05-22")
    assert last_dose_given(plan) is None
    assert treatment_end(spec(extension_weeks=2)) == d("2026-06-05")


def test_plan_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown option 'weekly'"):
        spec(options={"weekly": True})
    with pytest.raises(ValueError, match="unknown time zone"):
        spec(tz="Europe/Atlantis")
    with pytest.raises(ValueError, match="dose_time"):
        spec(dose_time=time(9, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_events(spec(), datetime(2026, 3, 1), datetime(2026, 3, 2))
    assert plan_events(spec(), utc(2026, 3, 2), utc(2026, 3, 2)) == []


def test_plan_spec_is_immutable_and_copies_its_mappings() -> None:
    options = {"escalation": True}
    plan = spec(options=options)
    options["escalation"] = False
    assert len(plan_doses(plan)) == 39
    with pytest.raises(AttributeError):
        plan.start_date = MONDAY  # type: ignore[misc]


# --------------------------------------------------------------------------- risk windows follow the doses
# Issue 11, item 5: the CMV window counts from the treatment actually received (a hold
# moves it) and covers the reported range: day 14 to day 58 after the start (002,
# Moreton et al) and reactivations after 11 and 12 weeks of therapy (002, Lundin et al).
TWO_WEEK_HOLD_IN_WEEK_2 = Hold(d("2026-03-09"), d("2026-03-23"), "febrile neutropenia")


def test_cmv_window_covers_the_reported_range_and_the_end_of_treatment() -> None:
    plan = spec()
    assert not is_in_cmv_window(plan, d("2026-03-14"))  # day 13
    assert is_in_cmv_window(plan, d("2026-03-15"))  # day 14: earliest reported (002)
    assert is_in_cmv_window(plan, d("2026-04-28"))  # day 58: latest of Moreton's range
    # Weeks 11-12 of therapy (002, Lundin): through the last dose (22 May, week 12)
    # and the end of its week.
    assert is_in_cmv_window(plan, d("2026-05-15"))  # day 75, week 11
    assert is_in_cmv_window(plan, d("2026-05-22"))  # the last injection
    assert is_in_cmv_window(plan, d("2026-05-24"))  # day 84, end of week 12
    assert not is_in_cmv_window(plan, d("2026-06-01"))


def test_a_two_week_hold_in_week_2_moves_the_cmv_window() -> None:
    plan = spec(holds=(TWO_WEEK_HOLD_IN_WEEK_2,))
    # Seven days of treatment received before the hold; none during it.
    assert not is_in_cmv_window(plan, d("2026-03-20"))  # was day 19 counted from the start
    assert not is_in_cmv_window(plan, d("2026-03-28"))  # 13 days received
    assert is_in_cmv_window(plan, d("2026-03-29"))  # 14 days received
    assert is_in_cmv_window(plan, d("2026-05-12"))  # 58 days received
    # The last dose moved by two weeks (5 June): the window follows it.
    assert treatment_end(plan) == d("2026-06-05")
    assert is_in_cmv_window(plan, d("2026-06-05"))
    assert is_in_cmv_window(plan, d("2026-06-07"))
    assert not is_in_cmv_window(plan, d("2026-06-15"))
    # Daily check-ins follow the window.
    checkins = {
        e.local.date() for e in events_between(plan, d("2026-05-25"), d("2026-06-07"))
        if e.kind == "checkin"
    }  # fmt: skip
    assert checkins == {d("2026-05-25") + timedelta(days=k) for k in range(14)}


def test_day_50_of_treatment_received_after_a_hold_is_in_the_cmv_window() -> None:
    plan = spec(holds=(TWO_WEEK_HOLD_IN_WEEK_2,))
    day_64 = d("2026-05-04")  # day 64 from the start, 50 days of treatment received
    assert day_of_treatment(plan, day_64) == 64
    assert is_in_cmv_window(plan, day_64)
    assert "cmv" in {w.id for w in risk_windows_on(plan, day_64)}


def test_risk_windows_count_from_the_first_dose_actually_given() -> None:
    # The first injection was missed and the second given on Wednesday 4 March: the
    # blood-count low points and the CMV window count from the injection given.
    plan = spec(
        outcomes={1: DoseOutcome("missed", MONDAY), 2: DoseOutcome("given", d("2026-03-04"))}
    )
    assert [w.id for w in risk_windows_on(plan, d("2026-03-10"))] == ["first_week"]  # 7th day
    assert not is_in_cmv_window(plan, d("2026-03-16"))  # 13 days after the first given
    assert is_in_cmv_window(plan, d("2026-03-17"))


def test_an_open_hold_before_any_dose_opens_no_risk_window() -> None:
    plan = spec(holds=(Hold(MONDAY, None, "infection before the start"),))
    assert risk_windows_on(plan, d("2026-03-05")) == []
    assert not is_in_cmv_window(plan, d("2026-04-01"))


# --------------------------------------------------------------------------- check-ins after treatment
# Issue 11, item 7: lymphocytes stay below 25% of baseline for more than 9 months after
# alemtuzumab (002) and prophylaxis runs at least 6 months after the last dose (003): the
# check-ins taper after treatment but go on while a prophylaxis course runs.
LAST_INJECTION = d("2026-05-22")  # the 36th injection of a Monday 2 March start


def checkin_days(plan: PlanSpec, first: date, last: date) -> list[date]:
    return [e.local.date() for e in events_between(plan, first, last) if e.kind == "checkin"]


def test_checkins_continue_6_months_after_the_last_dose_while_prophylaxis_runs() -> None:
    plan = spec(prophylaxis_ongoing=True)
    six_months = d("2026-11-20")  # 26 weeks after the last injection
    week = checkin_days(plan, six_months - timedelta(days=3), six_months + timedelta(days=3))
    assert week == [six_months]  # weekly, on the weekday of the last injection
    # A year after the last dose, still weekly while a course is not stopped.
    year = checkin_days(plan, d("2027-05-17"), d("2027-05-30"))
    assert year == [d("2027-05-21"), d("2027-05-28")]
    [event] = [
        e for e in events_between(plan, d("2027-05-21"), d("2027-05-21")) if e.kind == "checkin"
    ]
    assert event.details["reasons"] == ["prophylaxis_ongoing"]


def test_checkins_taper_then_stop_once_every_course_is_stopped() -> None:
    plan = spec(prophylaxis_ongoing=False)
    policy = plan.regimen.checkins
    steps = policy.after_treatment
    # Twice a week, then weekly (care-team operating choice); the weekly step runs to 9
    # months after the last dose (002: lymphocytes below 25% for more than 9 months).
    assert [(s.until_weeks_after_last_dose, s.times_per_week, s.every_days) for s in steps] == [
        (8, 2, None),
        (39, None, 7),
    ]
    # Weeks 3 and 4 after the last dose: twice a week (3 and 7 days into each week).
    assert checkin_days(plan, d("2026-06-08"), d("2026-06-14")) == dates("2026-06-08", "2026-06-12")
    assert checkin_days(plan, d("2026-06-12"), d("2026-06-18")) == dates("2026-06-12", "2026-06-15")
    # Six months after: weekly, whatever the courses.
    assert checkin_days(plan, d("2026-11-17"), d("2026-11-23")) == [d("2026-11-20")]
    end = LAST_INJECTION + timedelta(weeks=39)
    assert checkin_days(plan, end - timedelta(days=6), end) == [end]
    # After the taper, with every course stopped: none.
    assert checkin_days(plan, end + timedelta(days=1), end + timedelta(weeks=30)) == []


# --------------------------------------------------------------------------- honest dose messages
def test_premedication_is_given_by_the_team_in_hospital_and_taken_at_home_after() -> None:
    # Issue 11, item 8: s.c. alemtuzumab, first injection in hospital (003, Table 2).
    events = events_between(spec(), MONDAY, d("2026-03-04"))
    premeds = [e for e in events if e.kind == "premedication"]
    assert [(e.key, e.details["given_by"]) for e in premeds] == [
        ("premed:1", "care_team"),
        ("premed:2", "patient"),
    ]
    assert (
        premeds[0].title
        == "Premedication before today's injection, given by the team at the hospital"
    )
    doses = [e for e in events if e.kind == "dose"]
    assert [e.details["observation_hours"] for e in doses] == [2, None]
    # Rituximab: every infusion in hospital, the premedication always from the team, and
    # no observation time in the source.
    plan = spec("rituximab_cll_chemo")
    infusions = [e for e in events_between(plan, MONDAY, d("2026-06-30")) if e.kind == "dose"]
    assert len(infusions) == 5
    assert all(
        e.details["in_hospital"] and e.details["observation_hours"] is None for e in infusions
    )


def test_risk_window_spans_follow_the_hold() -> None:
    # What the care team sees (the plan's timeline) must be the windows the planner uses.
    spans = {
        w.id: (first, last)
        for w, first, last in risk_window_spans(spec(holds=(TWO_WEEK_HOLD_IN_WEEK_2,)))
    }
    assert spans == {
        "first_week": (MONDAY, d("2026-03-22")),  # open on day 7 through the hold
        "low_platelets": (d("2026-03-23"), d("2026-04-12")),
        "low_neutrophils": (d("2026-04-06"), d("2026-04-26")),
        "cmv": (d("2026-03-29"), d("2026-06-12")),  # to the last dose (5 June) + 7 days
    }
    [(_cmv, first, last)] = [
        s
        for s in risk_window_spans(spec(holds=(Hold(d("2026-03-17"), None, "CMV"),)))
        if s[0].kind == "cmv"
    ]
    assert (first, last) == (d("2026-03-15"), None)  # an open hold: no end yet
