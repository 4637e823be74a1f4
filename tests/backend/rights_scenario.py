"""A week of care for the data-rights tests: real SMS both ways, doses, labs, alerts, pages.

Marie-Thérèse Vandenbroucke-Delacroix, on alemtuzumab s.c. from Monday 2 March 2026, gets
her reminders and check-ins through the real twilio client (to ``tests/twilio_fake.py``),
answers them (naming herself and her number, as people do), has a fever that pages the
team, and her team records doses and labs whose notes name her. Her daughter, a family
contact with her consent, gets the copy of the urgent advice and texts the team once. Planning runs ahead, so
SMS are still pending at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlmodel import Session, select

from backend.db import get_engine
from backend.schemas import DoseRecordIn, LabIn
from backend.schemas_family import FamilyContactIn
from backend.services.family import add_contact
from backend.services.labs import record_lab
from backend.services.plans import record_dose
from reminders.conversations import handle_inbound_sms
from reminders.data import calendar_feeds
from reminders.data.alerts import raise_alert
from reminders.data.db import session_scope
from reminders.data.models import Alert, OutboundMessage, Patient, Plan, User
from reminders.data.statuses import AlertStatus
from reminders.gateways import TwilioGateway
from reminders.jobs import run_due
from tests.conftest import Clock, reread
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID, FakeTwilio

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
NAME_PARTS = ("Marie", "Thérèse", "Therese", "Vandenbroucke", "Delacroix")
E164 = "+32470123456"
NATIONAL = "0470 12 34 56"
#: The digits that remain of the number however it is written.
NSN = "470123456"
HOSPITAL_REF = "HUB-2026-004178"
TEAM = "Hématologie — Saint-Luc"
#: Her daughter, a family contact who gets copies of urgent advice and texts the team once.
FAMILY_NAME = "Sophie Vandenbroucke-Lemaire"
FAMILY_NAME_PARTS = ("Sophie", "Lemaire")
FAMILY_E164 = "+32478998877"
FAMILY_NSN = "478998877"
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def fake_twilio_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """The Twilio-compatible fake, with no proxy between it and the gateway (a fixture's body)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with FakeTwilio() as server:
        yield server


def gateway_to(fake: FakeTwilio) -> TwilioGateway:
    """The real twilio client, sending to ``fake``."""
    return TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake.base_url,
        timeout=5,
    )


@dataclass
class Week:
    """What the week left: the patient, their plan, the team's admin and their API token."""

    patient: Patient
    plan: Plan
    admin: User
    token: str
    replies: int


def run_passes(app: Flask, fake: FakeTwilio, first: datetime, hours: int, step: int = 2) -> None:
    """Planning, follow-ups, escalation and dispatch every ``step`` hours for ``hours``."""
    engine = get_engine(app)
    gateway = gateway_to(fake)
    for offset in range(0, hours, step):
        run_due(engine, gateway, first + timedelta(hours=offset))


def a_week_of_care(
    app: Flask,
    session: Session,
    clock: Clock,
    make_user: Callable[..., tuple[User, str]],
    treated: Callable[..., tuple[Patient, Plan]],
    fake: FakeTwilio,
    days: int = 7,
) -> Week:
    """Run ``days`` days of care for :data:`NAME` (see the module docstring)."""
    admin, token = make_user(team=TEAM, role="admin", name="Dr Claire Dubois")
    clock.now = START - timedelta(days=1)
    patient, plan = treated(
        admin.team_id, display_name=NAME, phone=NATIONAL, hospital_ref=HOSPITAL_REF, language="fr"
    )
    add_contact(
        session,
        patient,
        FamilyContactIn(
            name=FAMILY_NAME,
            phone="0478 99 88 77",
            language="nl",
            relationship="dochter",
            consent_method="written",
        ),
        admin.id,
        clock.now,
        region="BE",
    )
    session.commit()
    engine = get_engine(app)
    gateway = gateway_to(fake)
    replies = 0
    for hour in range(0, days * 24, 2):
        now = START + timedelta(hours=hour)
        run_due(engine, gateway, now)
        with session_scope(engine) as s:
            asked = s.exec(
                select(OutboundMessage.expects).where(
                    OutboundMessage.sent_at == now, OutboundMessage.patient_id == patient.id
                )
            ).all()
        for expects in asked:
            if expects == "temperature":
                day = hour // 24
                text = (
                    "38,6 et des frissons"
                    if day == 3
                    else f"37,{day} ça va, c'est Marie-Thérèse, rappelez-moi au 0470/12.34.56"
                )
                answers = [text, "0"]
            elif expects == "taken":
                answers = ["TAKEN"]
            else:
                continue
            for minutes, text in enumerate(answers, start=3):
                replies += 1
                with session_scope(engine) as s:
                    handle_inbound_sms(
                        s,
                        provider_sid=f"SMweek{replies:04d}",
                        from_phone=E164,
                        body=text,
                        now=now + timedelta(minutes=minutes),
                    )
    replies += 1
    with session_scope(engine) as s:
        handle_inbound_sms(
            s,
            provider_sid=f"SMweek{replies:04d}",
            from_phone=FAMILY_E164,
            body="Bonjour, c'est Sophie Lemaire, rappelez-moi au 0478 99 88 77 svp",
            now=START + timedelta(days=days - 1, hours=10),
        )
    clock.now = START + timedelta(days=days)
    reread(session)
    patient = session.get_one(Patient, patient.id)
    plan = session.get_one(Plan, plan.id)
    record_dose(
        session,
        plan,
        patient,
        1,
        DoseRecordIn(status="given", dose_mg=3, note="Mme Vandenbroucke-Delacroix tolère bien"),
        admin.id,
        clock.now,
    )
    record_dose(
        session,
        plan,
        patient,
        2,
        DoseRecordIn(status="missed", note="Marie-Thérèse absente, appelée au +32 470 12 34 56"),
        admin.id,
        clock.now,
    )
    for kind, value in (("cmv_pcr", 1200.0), ("cd4", 180.0), ("anc", 1400.0)):
        record_lab(
            session,
            patient,
            LabIn(
                kind=kind,
                value=value,
                taken_at=clock.now - timedelta(hours=3),
                note=f"prélevé chez Mme Vandenbroucke ({HOSPITAL_REF})",
            ),
            admin.id,
            clock.now,
        )
    alert = raise_alert(
        session,
        patient,
        severity="routine",
        kind="other",
        reason=f"Marie-Thérèse a appelé du {NATIONAL}",
        now=clock.now,
        details={"caller": "Marie-Thérèse Vandenbroucke-Delacroix", "phone": E164},
    )
    session.flush()
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at, alert.resolved_by = clock.now, admin.id
    alert.resolution_note = "rappelée au 0470 12 34 56, va bien"
    session.add(alert)
    calendar_feeds.create_feed(
        session, patient, "Téléphone de sa fille Sophie Vandenbroucke", admin.id, clock.now
    )
    session.commit()
    assert session.exec(select(Alert).where(Alert.patient_id == patient.id)).first()
    return Week(patient, plan, admin, token, replies)
