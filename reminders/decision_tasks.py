"""Care-team tasks: decision milestones saved as alerts in the team's queue.

The pure core (:mod:`reminders.core.tasks`) decides which decision milestones of a
plan are due on the patient's local day; this service saves each one once, as an
:class:`~reminders.data.models.Alert` of kind ``decision_task`` (severity ``high``) keyed
``task:{plan_id}:{milestone_id}``. An alert holds everything a task needs: the
decision text (``reason``), its source, the plan and milestone (``details``), who
acknowledged and resolved it and with which note; so there is no task table.

Tasks are raised whatever the patient's SMS consent: they are for the team.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from reminders.core.dates import local_today
from reminders.core.regimens import load_regimens
from reminders.core.tasks import DecisionTask, due_decision_tasks, task_key
from reminders.data.alerts import raise_alert
from reminders.data.models import Alert, DoseRecord, Patient, Plan, PlanHold
from reminders.data.statuses import OPEN_PLAN_STATUSES
from reminders.specs import build_plan_spec

logger = logging.getLogger(__name__)

TASK_KIND = "decision_task"
TASK_SEVERITY = "high"
#: Plans read per query: bounded memory whatever the number of patients.
PLAN_CHUNK = 500


@cache
def regimens_with_decisions() -> tuple[str, ...]:
    """Ids of the regimens that have a decision milestone (the only plans to look at)."""
    return tuple(
        sorted(
            r.id
            for r in load_regimens().values()
            if any(m.decision is not None for m in r.milestones)
        )
    )


def task_alert_fields(plan: Plan, task: DecisionTask) -> dict[str, object]:
    """The alert of a task: the decision as its reason, the source, the plan and milestone."""
    return {
        "severity": TASK_SEVERITY,
        "kind": TASK_KIND,
        "reason": f"{task.name} due {task.due:%d %b %Y}: {task.decision}"[:500],
        "source": task.source[:200],
        "details": {
            "task": True,
            "plan_id": plan.id,
            "regimen_id": plan.regimen_id,
            "milestone": task.milestone_id,
            "name": task.name,
            "due_date": task.due.isoformat(),
            "decision": task.decision,
            "source": task.source,
            "doses_given": task.doses_given,
            "doses_total": task.doses_total,
        },
    }


def raise_due_decision_tasks(session: Session, now: datetime) -> int:
    """Save every decision task due by the patients' local today; return how many are new.

    Idempotent: a task already raised (open, acknowledged or resolved) is not raised
    again. The caller commits.
    """
    regimen_ids = regimens_with_decisions()
    if not regimen_ids:
        return 0
    created = 0
    last_id = 0
    while True:
        plans = session.exec(
            select(Plan)
            .where(
                Plan.id > last_id,
                # Stopped plans have no tasks; completed ones keep theirs (still "active").
                Plan.status.in_(OPEN_PLAN_STATUSES),
                Plan.regimen_id.in_(regimen_ids),
            )
            .order_by(Plan.id)
            .limit(PLAN_CHUNK)
        ).all()
        if not plans:
            return created
        created += _raise_for_plans(session, plans, now)
        last_id = plans[-1].id


def _raise_for_plans(session: Session, plans: Sequence[Plan], now: datetime) -> int:
    plan_ids = [p.id for p in plans]
    patients = {
        p.id: p
        for p in session.exec(
            select(Patient).where(Patient.id.in_({p.patient_id for p in plans}))
        ).all()
    }
    holds: dict[int, list[PlanHold]] = defaultdict(list)
    for hold in session.exec(
        select(PlanHold)
        .where(PlanHold.plan_id.in_(plan_ids))
        .order_by(PlanHold.start_date, PlanHold.id)
    ).all():
        holds[hold.plan_id].append(hold)
    records: dict[int, list[DoseRecord]] = defaultdict(list)
    for record in session.exec(select(DoseRecord).where(DoseRecord.plan_id.in_(plan_ids))).all():
        records[record.plan_id].append(record)
    due: list[tuple[Plan, Patient, DecisionTask]] = []
    for plan in plans:
        patient = patients[plan.patient_id]
        try:
            spec = build_plan_spec(plan, patient, holds[plan.id], records[plan.id])
        except ValueError:
            # A plan the planner refuses is shown as an error on its page; one bad plan
            # must not keep the other patients' tasks from the queue. Ids only in logs.
            # No traceback: its message may quote the plan's option values.
            logger.warning("decision tasks: plan %s cannot be planned", plan.id)
            continue
        today = local_today(patient.timezone, now)
        entered = local_today(patient.timezone, plan.created_at)
        for task in due_decision_tasks(spec, today, not_before=entered):
            due.append((plan, patient, task))
    if not due:
        return 0
    keys = [task_key(plan.id, task.milestone_id) for plan, _, task in due]
    existing = set(session.exec(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys))).all())
    created = 0
    for (plan, patient, task), key in zip(due, keys, strict=True):
        if key in existing:
            continue
        try:
            # A savepoint: a task raised by a concurrent pass (run-due beside the clock)
            # violates the unique dedupe_key, and only this insert is undone.
            with session.begin_nested():
                raise_alert(
                    session,
                    patient,
                    now=now,
                    dedupe_key=key,
                    **task_alert_fields(plan, task),  # type: ignore[arg-type]
                )
        except IntegrityError:
            continue
        created += 1
    return created
