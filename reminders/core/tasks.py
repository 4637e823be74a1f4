"""Decision milestones as care-team tasks: which are due for a plan on a local day.

A regimen milestone with a ``decision`` (the week-4 response review: "no response
in the blood after 4 weeks should lead to discontinuation", 003, Table 3) is a task
for the care team, never a message of congratulation to the patient. Its date
comes from the planner (counted from the doses actually given, moved by holds).

Pure: the service ``reminders.decision_tasks`` saves the due tasks as alerts, once per
plan and milestone (:func:`task_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from reminders.core.planner import PlanSpec

__all__ = ["DecisionTask", "decision_tasks", "due_decision_tasks", "task_key"]


@dataclass(frozen=True)
class DecisionTask:
    """A decision the care team must take on ``due`` (the patient's local date)."""

    milestone_id: str
    name: str
    due: date
    decision: str
    source: str
    doses_given: int
    doses_total: int


def task_key(plan_id: int, milestone_id: str) -> str:
    """The task's stable key (its alert's ``dedupe_key``): one task per plan and milestone."""
    return f"task:{plan_id}:{milestone_id}"


def decision_tasks(spec: PlanSpec) -> list[DecisionTask]:
    """Every dated decision milestone of the plan, in date order (none once stopped)."""
    if spec.stopped_on is not None:
        # A stopped plan needs no decision about going on: the team has taken it.
        return []
    schedule = spec._schedule
    live = [s for s in schedule.slots if s.status != "cancelled"]
    given = sum(1 for s in live if s.status == "given")
    tasks = [
        DecisionTask(
            milestone_id=m.id,
            name=m.name,
            due=on,
            decision=m.decision.text,
            source=m.decision.source,
            doses_given=given,
            doses_total=len(live),
        )
        for m, on in schedule.milestones
        if m.decision is not None
    ]
    return sorted(tasks, key=lambda t: (t.due, t.milestone_id))


def due_decision_tasks(
    spec: PlanSpec, today: date, *, not_before: date | None = None
) -> list[DecisionTask]:
    """The plan's decision tasks due by ``today`` (the patient's local date).

    A task is due from its day on and stays due (a clock that was down raises it
    late, not never). ``not_before`` (the local day the plan was entered) leaves out
    tasks dated earlier: for a patient enrolled mid-treatment they are history, and
    raising them would fill the queue with decisions already taken.
    """
    return [
        t
        for t in decision_tasks(spec)
        if t.due <= today and (not_before is None or t.due >= not_before)
    ]
