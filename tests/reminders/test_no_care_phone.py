"""A team without a care phone: the SMS name the emergency number, as such, never the team.

Defence in depth behind ``backend.services.care_phone`` (no SMS consent in such a team,
no removal of the number while patients have it): a team from before that rule, or
changed outside the app, still never sends "call your care team now on Hématologie
Saint-Luc". The patient's region gives the number and their language its name; each
context that renders without the number logs a warning with ids only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from reminders.conversations import handle_inbound_sms
from reminders.core.clinical_rules import emergency_fallback
from reminders.core.regions import get_region
from reminders.core.templates import TEMPLATE_KEYS, get_template, render, template_placeholders
from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage, Team
from reminders.jobs import run_due
from tests.conftest import reread

TEAM = "Hématologie — Cliniques universitaires Saint-Luc"
# Tuesday 17 March 2026: day 16 of alemtuzumab, inside the CMV window (weeks 3-8).
IN_CMV_WINDOW = datetime(2026, 3, 17, 17, 0, tzinfo=UTC)  # 18:00 Brussels
PHONE = "+32470123456"


def team_loses_its_number(session, team_id: int) -> None:
    """The state the app refuses to enter: a number cleared outside it (or before the rule)."""
    session.exec(update(Team).where(Team.id == team_id).values(care_phone=None))
    session.commit()


@pytest.mark.parametrize(
    ("language", "region", "named"),
    [
        ("en", "BE", "112 (emergency number)"),
        ("fr", "BE", "112 (numéro d'urgence)"),
        ("nl", "BE", "112 (noodnummer)"),
        ("en", "US", "911 (emergency number)"),
    ],
)
def test_a_fever_reply_and_the_reminders_name_the_emergency_number_not_the_team(
    engine, session, console, clock, make_user, treated, caplog, language, region, named
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    user, _ = make_user(team=TEAM)
    patient, _ = treated(
        user.team_id,
        display_name="Marie-Thérèse Vandenbroucke-Delacroix",
        language=language,
        region=region,
    )
    team_loses_its_number(session, user.team_id)

    with caplog.at_level(logging.WARNING, logger="reminders.rendering"):
        run_due(engine, console, IN_CMV_WINDOW)
        with session_scope(engine) as writing:
            fever = handle_inbound_sms(
                writing,
                provider_sid="SMnocarephone1",
                from_phone=PHONE,
                body="38.6",
                now=IN_CMV_WINDOW + timedelta(minutes=5),
            ).reply

    reread(session)
    queued = {
        m.kind: m.body
        for m in session.exec(
            select(OutboundMessage).where(
                OutboundMessage.patient_id == patient.id,
                # Those queued before the number went were written with it.
                OutboundMessage.created_at >= IN_CMV_WINDOW,
            )
        ).all()
        if m.kind in TEMPLATE_KEYS and "{team_phone}" in get_template(m.kind, language).text
    }
    # The pass's dose reminders and the reply to the fever (stored as the TwiML answer).
    assert {"dose_reminder_evening_before", "dose_reminder_morning"} <= queued.keys(), queued
    bodies = list(queued.values())
    for body in [fever, *bodies]:
        assert named in body, body
        # Neither the team's name (the old fallback) nor a placeholder left unfilled.
        assert "Hématologie" not in body and "None" not in body, body
    # The urgent answer still ends with the emergency fallback of the patient's region.
    assert fever.endswith(emergency_fallback(language, get_region(region))), fever
    warnings = [r.getMessage() for r in caplog.records if r.name == "reminders.rendering"]
    assert f"team {user.team_id} has no care phone: SMS for patient {patient.id}" in warnings[0]
    for line in warnings:
        assert PHONE not in line and "Vandenbroucke" not in line and TEAM not in line


@pytest.mark.parametrize("language", ["en", "fr", "nl"])
@pytest.mark.parametrize("region", ["BE", "US"])
def test_every_template_with_the_teams_number_reads_the_emergency_number_without_it(
    language: str, region: str
) -> None:
    """Each message that names the team's number (patient's and family's) in each language."""
    place = get_region(region)
    for key in TEMPLATE_KEYS:
        if "team_phone" not in template_placeholders(key):
            continue
        values = dict.fromkeys(template_placeholders(key), "x")
        values["team_phone"] = None
        text = render(key, language, region=place, **values)
        assert f"{place.emergency_number} (" in text and "None" not in text, (key, text)


def test_a_team_number_when_there_is_one_is_quoted_as_given() -> None:
    text = render("help_reply", "en", team_name="Saint-Luc", team_phone="+32 2 764 11 11")
    assert "Call +32 2 764 11 11." in text and "emergency number" not in text
