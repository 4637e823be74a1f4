"""Fixtures for the SMS engine: the engine, a console gateway, a Twilio fake (``treated_patient``: tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.db import get_engine
from bench.common import dispatcher_environment as bench_dispatcher_environment
from reminders.data.models import OutboundMessage
from reminders.gateways import ConsoleGateway
from reminders.outbox import insert_ignoring_duplicates, outbox_row
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


def queue_due(
    session: Session,
    team_id: int,
    patient_ids: Sequence[int],
    bodies: Iterable[str],
    *,
    prefix: str,
    due: datetime,
    kind: str = "one_off",
    first: int = 0,
) -> int:
    """Queue one pending message per body, due at ``due`` and keyed ``prefix:n`` from
    ``first``, spread over ``patient_ids``; commit; how many were new."""
    rows = [
        outbox_row(
            team_id=team_id,
            kind=kind,
            body=body,
            dedupe_key=f"{prefix}:{n}",
            now=due,
            patient_id=patient_ids[n % len(patient_ids)],
        )
        for n, body in enumerate(bodies, start=first)
    ]
    created = insert_ignoring_duplicates(session, rows)
    session.commit()
    return created


def outbox(session: Session, **filters: Any) -> list[OutboundMessage]:
    """Outbox rows matching ``filters`` (column=value), oldest due first."""
    session.commit()  # end the read transaction: on SQLite it would keep an old snapshot
    session.expire_all()
    query = select(OutboundMessage).order_by(OutboundMessage.due_at, OutboundMessage.id)
    for name, value in filters.items():
        query = query.where(getattr(OutboundMessage, name) == value)
    return list(session.exec(query).all())


def dispatcher_environment(
    database_url: str, twilio_url: str, public_base_url: str = "https://companion.test"
) -> dict[str, str]:
    """The environment of a ``reminders dispatch`` process sending to the Twilio fake.

    No proxy variables: test traffic stays on 127.0.0.1 even where CI sets them.
    """
    return bench_dispatcher_environment(database_url, twilio_url) | {
        "PUBLIC_BASE_URL": public_base_url,
        "PYTHONUNBUFFERED": "1",
    }
