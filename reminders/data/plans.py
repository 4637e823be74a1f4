"""The one definition of a patient's *current plan*, in SQL and in Python.

The current plan is the plan in force: the newest open plan (active or on hold); when
none is open, the newest plan of any status. "Newest" is the later ``created_at``, and
two plans created in the same instant are told apart by the higher id, so that every
reader (the SMS conversation, the planning pass, the dashboard) names the same plan.

:func:`current_plan_key` is the rule; :data:`CURRENT_PLAN_ORDER` says it as an SQL
``ORDER BY`` (first row wins), and a test checks that both pick the same plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import case
from sqlmodel import Session, select

from reminders.data.models import Plan
from reminders.data.statuses import OPEN_PLAN_STATUSES


class PlanLike(Protocol):
    """What the rule reads of a plan (a model instance or a plain row)."""

    id: Any
    status: Any
    created_at: datetime


def current_plan_key(plan: PlanLike) -> tuple[bool, datetime, int]:
    """Sort key of the rule: the largest key is the current plan."""
    return (plan.status in OPEN_PLAN_STATUSES, plan.created_at, plan.id or 0)


P = TypeVar("P", bound=PlanLike)


def pick_current_plan(plans: Iterable[P]) -> P | None:
    """The current plan among one patient's ``plans`` (None when there are none)."""
    return max(plans, key=current_plan_key, default=None)


#: The rule as an ORDER BY: the first row is the current plan.
CURRENT_PLAN_ORDER = (
    case((Plan.status.in_(OPEN_PLAN_STATUSES), 0), else_=1),
    Plan.created_at.desc(),
    Plan.id.desc(),
)


def current_plan_id_of(patient_id: Any) -> Any:
    """A scalar subquery: the id of the current plan of the patient ``patient_id`` names.

    ``patient_id`` is a column (``Patient.id``, correlated) or a bound parameter.
    """
    return (
        select(Plan.id)
        .where(Plan.patient_id == patient_id)
        .order_by(*CURRENT_PLAN_ORDER)
        .limit(1)
        .scalar_subquery()
    )


def current_plan(session: Session, patient_id: int) -> Plan | None:
    """The patient's current plan, or None when they have no plan."""
    return session.exec(
        select(Plan).where(Plan.patient_id == patient_id).order_by(*CURRENT_PLAN_ORDER).limit(1)
    ).first()
