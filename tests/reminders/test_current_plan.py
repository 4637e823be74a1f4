"""One "current plan" for every reader (issue 13, item 3).

The rule lives in :mod:`reminders.data.plans`; the SMS conversation, the rendering
context of the planning pass and the dashboard's patient page must name the same plan,
including when two plans were created in the same instant (the higher id wins).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlmodel import Session

from backend.dashboard.queries import patient_overview
from reminders.conversations import conversation
from reminders.data.models import Patient, Plan, User
from reminders.data.plans import current_plan, pick_current_plan
from reminders.data.statuses import PlanStatus
from reminders.rendering import patient_context
from tests.conftest import FIXED_NOW

TEAM = "Hématologie clinique — Cliniques universitaires Saint-Luc"

#: Each scenario: the plans in the order they are inserted, as (status, minutes after
#: the first plan's creation), and the index of the plan the rule names.
SCENARIOS = {
    "newest open plan": ([(PlanStatus.ACTIVE, 0), (PlanStatus.ACTIVE, 10)], 1),
    "open plan beats a newer stopped one": ([(PlanStatus.ON_HOLD, 0), (PlanStatus.STOPPED, 10)], 0),
    "no open plan: the newest": ([(PlanStatus.STOPPED, 10), (PlanStatus.STOPPED, 0)], 0),
    "same instant: the higher id": ([(PlanStatus.ACTIVE, 5), (PlanStatus.ACTIVE, 5)], 1),
    "same instant, stopped: the higher id": (
        [(PlanStatus.STOPPED, 5), (PlanStatus.STOPPED, 5), (PlanStatus.STOPPED, 0)],
        1,
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_reader_names_the_same_current_plan(
    scenario: str,
    session: Session,
    make_user: Callable[..., tuple[User, str]],
    make_patient: Callable[..., Patient],
) -> None:
    plans_spec, expected = SCENARIOS[scenario]
    user, _ = make_user(TEAM)
    patient = make_patient(user.team_id, display_name="Marie-Thérèse Vandenbroucke-Dubois")
    created = FIXED_NOW - timedelta(days=30)
    plans = []
    for status, minutes in plans_spec:
        plan = Plan(
            patient_id=patient.id,
            regimen_id="alemtuzumab_sc",
            start_date=date(2026, 3, 2),
            status=status,
            created_at=created + timedelta(minutes=minutes),
            updated_at=created + timedelta(minutes=minutes),
        )
        session.add(plan)
        session.commit()
        plans.append(plan)
    want = plans[expected].id

    assert pick_current_plan(plans).id == want
    assert current_plan(session, patient.id).id == want
    assert conversation(session, patient.phone, FIXED_NOW)[2].id == want
    assert patient_context(session, patient).plan.id == want
    overview = patient_overview(session, patient, FIXED_NOW)
    assert overview.plans[0][0].id is not None
    assert overview.current is not None and overview.current[0].id == want


def test_no_plan_is_no_current_plan(
    session: Session,
    make_user: Callable[..., tuple[User, str]],
    make_patient: Callable[..., Patient],
) -> None:
    user, _ = make_user(TEAM)
    patient = make_patient(user.team_id)
    assert pick_current_plan([]) is None
    assert current_plan(session, patient.id) is None
    assert conversation(session, patient.phone, FIXED_NOW)[2] is None
