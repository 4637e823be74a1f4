"""Decision milestones as care-team tasks: which are due, on which local day (pure core)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reminders.core.messaging import ContactPrefs, messages_for_event
from reminders.core.planner import DoseOutcome, Hold, PlanSpec, plan_events
from reminders.core.regimens import get_regimen
from reminders.core.tasks import decision_tasks, due_decision_tasks, task_key
from reminders.core.templates import render, segments

MONDAY = date(2026, 3, 2)


def alemtuzumab(**kw) -> PlanSpec:
    return PlanSpec(get_regimen("alemtuzumab_sc"), MONDAY, "Europe/Brussels", **kw)


def test_week4_review_is_due_on_day_29_with_its_decision_and_source() -> None:
    plan = alemtuzumab()
    assert due_decision_tasks(plan, date(2026, 3, 29)) == []
    [task] = due_decision_tasks(plan, date(2026, 3, 30))
    assert (task.milestone_id, task.due) == ("week4_review", date(2026, 3, 30))
    assert "sign of response in the blood after 4 weeks" in task.decision
    assert task.source.startswith("003_a1949903592dbecf.txt, Table 3")
    assert task.name == "Week-4 response review"
    assert task_key(41, task.milestone_id) == "task:41:week4_review"


def test_week4_review_after_a_hold_is_due_later() -> None:
    plan = alemtuzumab(holds=(Hold(date(2026, 3, 17), date(2026, 3, 26), "febrile neutropenia"),))
    assert due_decision_tasks(plan, date(2026, 4, 7)) == []
    [task] = due_decision_tasks(plan, date(2026, 4, 8))
    assert task.milestone_id == "week4_review"
    # Counted from the doses actually given: 9 days on hold, 9 days later.
    assert task.due == date(2026, 3, 30) + timedelta(days=9)


def test_an_open_hold_leaves_the_review_undated_and_not_due() -> None:
    plan = alemtuzumab(holds=(Hold(date(2026, 3, 17), None, "CMV reactivation"),))
    assert due_decision_tasks(plan, date(2026, 6, 1)) == []


def test_tasks_stay_due_after_their_day_but_not_before_the_plan_was_entered() -> None:
    plan = alemtuzumab()
    due = [t.milestone_id for t in due_decision_tasks(plan, date(2026, 5, 20))]
    assert due == ["week4_review", "week12_marrow"]
    # A plan entered in the system on 1 May (mid-treatment): the week-4 review is history.
    late = due_decision_tasks(plan, date(2026, 5, 20), not_before=date(2026, 5, 1))
    assert [t.milestone_id for t in late] == ["week12_marrow"]


def test_a_stopped_plan_has_no_tasks() -> None:
    plan = alemtuzumab(stopped_on=date(2026, 4, 20))
    assert due_decision_tasks(plan, date(2026, 8, 1)) == []


def test_doses_given_are_counted_for_the_team() -> None:
    outcomes = {i: DoseOutcome("given", d, 30) for i, d in ((1, MONDAY), (2, date(2026, 3, 4)))}
    [task] = due_decision_tasks(alemtuzumab(outcomes=outcomes), date(2026, 3, 30))
    assert (task.doses_given, task.doses_total) == (2, 36)


def test_regimens_without_decisions_have_no_tasks() -> None:
    plan = PlanSpec(get_regimen("inotuzumab_weekly"), MONDAY, "Europe/Brussels")
    assert decision_tasks(plan) == []


def test_rituximab_weekly_maintenance_decision_three_months_after_the_last_infusion() -> None:
    plan = PlanSpec(get_regimen("rituximab_fl_weekly"), MONDAY, "Europe/Brussels")
    [task] = decision_tasks(plan)
    assert (task.milestone_id, task.due) == ("maintenance_decision", date(2026, 6, 23))


# --------------------------------------------------------------------------- the patient's SMS
CONGRATULATIONS = re.compile(r"(?i)well done|bravo|goed gedaan|congratulat|félicit|gefeliciteerd")


def test_the_patient_gets_a_neutral_note_not_a_well_done_for_the_week4_review() -> None:
    plan = alemtuzumab()
    zone = ZoneInfo("Europe/Brussels")
    start = datetime.combine(date(2026, 3, 30), time(0), zone).astimezone(UTC)
    [review] = [
        e for e in plan_events(plan, start, start + timedelta(days=1)) if e.kind == "milestone"
    ]
    prefs = ContactPrefs("Europe/Brussels", time(22, 0), time(7, 0))
    [message] = messages_for_event(review, prefs)
    assert message.template == "milestone_review"
    values = {
        "first_name": "Marie-Françoise",
        "team_name": "Hématologie Cliniques universitaires Saint-Luc",
        "team_phone": "+32 2 764 18 00",
        "drug": "alemtuzumab",
        "done": "12",
        "total": "36",
    }
    for lang in ("en", "fr", "nl"):
        for discreet in (False, True):
            text = render(message.template, lang, discreet=discreet, **values)
            assert not CONGRATULATIONS.search(text), text
            assert "alemtuzumab" not in text  # no drug name: fine in discreet mode too
            info = segments(text)
            assert info.segments == 1 and info.encoding == "GSM-7", (lang, text, info)
