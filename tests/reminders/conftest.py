"""Fixtures for the SMS engine: the engine, a console gateway and a patient on treatment."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.db import get_engine
from backend.schemas import ProphylaxisConfirmIn, ProphylaxisIn
from backend.services.prophylaxis import add_course, confirm_course
from reminders.data.models import OutboundMessage, Patient, ProphylaxisCourse, Team
from reminders.gateways import ConsoleGateway
from tests.twilio_fake import FakeTwilio


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep test traffic on 127.0.0.1 even where CI sets proxy variables.

    The gateways keep ``requests``' default of honouring them (production may need a
    proxy), so the variables themselves are removed for these tests.
    """
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A fresh Twilio-compatible server on a free port of 127.0.0.1."""
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def engine(app) -> Engine:
    """The app's engine."""
    return get_engine(app)


@pytest.fixture
def console() -> ConsoleGateway:
    """A console gateway writing into a buffer."""
    return ConsoleGateway(io.StringIO())


@pytest.fixture
def treated_patient(
    session: Session, make_user, make_patient, make_plan, clock
) -> Callable[..., Patient]:
    """A consenting patient on alemtuzumab s.c. from 2026-03-02 with two active prophylaxis courses."""

    def factory(
        regimen_id: str = "alemtuzumab_sc", start: date = date(2026, 3, 2), **overrides: Any
    ) -> Patient:
        user, _ = make_user()
        team = session.get(Team, user.team_id)
        team.oncall_phone = "+32470999999"
        session.add(team)
        session.commit()
        patient = make_patient(user.team_id, **overrides)
        plan = make_plan(patient, regimen_id, start)
        # The nurse confirms the courses the plan proposed (alemtuzumab: both mandatory);
        # a regimen without prophylaxis gets the same two courses entered by hand.
        proposed = session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
        for drug in ("cotrimoxazole", "acyclovir"):
            course = next((c for c in proposed if c.regimen_entry == drug), None)
            if course is not None:
                confirm_course(
                    session,
                    course,
                    patient,
                    ProphylaxisConfirmIn(
                        drug=drug, dose_text="as prescribed", times=["08:00", "20:00"]
                    ),
                    user.id,
                    clock.now,
                )
                continue
            add_course(
                session,
                patient,
                ProphylaxisIn(
                    drug=drug,
                    dose_text="as prescribed",
                    times=["08:00", "20:00"],
                    start_date=start,
                    plan_id=plan.id,
                ),
                clock.now,
            )
        session.commit()
        return patient

    return factory


def outbox(session: Session, **filters: Any) -> list[OutboundMessage]:
    """Outbox rows matching ``filters`` (column=value), oldest due first."""
    session.commit()  # end the read transaction: on SQLite it would keep an old snapshot
    session.expire_all()
    query = select(OutboundMessage).order_by(OutboundMessage.due_at, OutboundMessage.id)
    for name, value in filters.items():
        query = query.where(getattr(OutboundMessage, name) == value)
    return list(session.exec(query).all())
