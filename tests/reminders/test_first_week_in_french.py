"""A French (and a Dutch) patient's first week, through the clock's jobs and the real twilio client.

The clock runs every hour of the first week (the planning pass, the follow-ups, the
dispatcher: ``reminders.jobs.run_due`` with an injected ``now``); the patient answers every
check-in and pill, and reports a fever once. Every SMS the Twilio test server received for
the patient, and every answer to their replies, must be free of the English words of the
regimen files (issue 15, item 4: "prenez votre prémédication (a steroid, as prescribed by
your care team...)", "C'est l'heure de votre hydration and allopurinol").
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from reminders.conversations import handle_inbound_sms
from reminders.core.labels import labels
from reminders.core.regimens import DEFAULT_DIRECTORY
from reminders.core.templates import TEMPLATE_KEYS, get_template
from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage
from reminders.gateways import TwilioGateway
from reminders.jobs import run_due
from tests.conftest import reread
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID

BRUSSELS = ZoneInfo("Europe/Brussels")
START = date(2026, 3, 2)  # a Monday
WORD = re.compile(r"[^\W\d_]{3,}")


def _texts(value: Any, key: str = "") -> Iterator[str]:
    """Every text of a regimen file but its sources (file names and passages cited)."""
    if key.endswith(("source", "sources")):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _texts(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, key)


def _words(texts: Any) -> set[str]:
    return {word.casefold() for text in texts for word in WORD.findall(text)}


def english_words(language: str) -> set[str]:
    """The words of the regimen files and of the English short names, minus those that are
    words of ``language`` too (its short names and its templates: alemtuzumab, dose, CMV)."""
    english: set[str] = set()
    for path in sorted(DEFAULT_DIRECTORY.glob("*.toml")):
        english |= _words(_texts(tomllib.loads(path.read_text(encoding="utf-8"))))
    english |= _words(label.en for label in labels().values())
    own = _words(label.text(language) for label in labels().values())
    own |= _words(
        text
        for key in TEMPLATE_KEYS
        for text in (get_template(key, language).text, get_template(key, language).discreet)
        if text
    )
    return english - own


def test_the_english_words_include_what_leaked_before():
    """The check would have caught the defects of the issue."""
    words = english_words("fr")
    assert {"steroid", "prescribed", "hydration", "acyclovir", "antihistamine"} <= words
    assert {"take", "your", "today", "blood"} <= words  # the English event titles
    assert not {"alemtuzumab", "cmv", "dose", "allopurinol", "aciclovir"} & words
    assert "paracetamol" in words  # French writes paracétamol


@pytest.mark.slow
@pytest.mark.parametrize(
    ("regimen_id", "language"),
    [("alemtuzumab_sc", "fr"), ("alemtuzumab_sc", "nl"), ("rituximab_cll_chemo", "fr")],
)
def test_the_first_week_reaches_the_patient_in_their_language(
    engine, session, treated_patient, clock, fake_twilio, language, regimen_id
) -> None:
    clock.now = datetime(2026, 2, 25, 9, 0, tzinfo=UTC)
    patient = treated_patient(
        regimen_id,
        start=START,
        display_name="Marie-Thérèse Vandenbroucke-Delacroix",
        language=language,
        quiet_start=time(22, 0),
        quiet_end=time(7, 0),
    )
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=5,
    )
    answers_to_patient: list[str] = []
    replies = 0
    first = datetime.combine(START - timedelta(days=1), time(18, 0), BRUSSELS).astimezone(UTC)
    now = first
    while now < first + timedelta(days=8):
        run_due(engine, gateway, now)
        with session_scope(engine) as s:
            expects = s.exec(
                select(OutboundMessage.expects).where(
                    OutboundMessage.sent_at == now, OutboundMessage.patient_id == patient.id
                )
            ).all()
        answers = []
        for expected in expects:
            if expected == "temperature":
                # A fever on the evening of day 4 (the urgent advice), else a normal reading.
                fever = now.astimezone(BRUSSELS).date() == START + timedelta(days=3)
                answers += [("38,6" if fever else "36,8", 2), ("0", 3)]
            elif expected == "taken":
                answers.append(({"fr": "PRIS", "nl": "GENOMEN"}[language], 5))
        for number, (text, minutes) in enumerate(answers):
            replies += 1
            with session_scope(engine) as s:
                result = handle_inbound_sms(
                    s,
                    provider_sid=f"SMweek{replies}",
                    from_phone=patient.phone,
                    body=text,
                    now=now + timedelta(minutes=minutes + number),
                )
            answers_to_patient.append(result.reply)
        now += timedelta(hours=1)

    received = fake_twilio.bodies_to(patient.phone)
    kinds = set(
        reread(session).exec(
            select(OutboundMessage.kind).where(OutboundMessage.patient_id == patient.id)
        )
    )
    # The week's reminders all went: doses, premedication, pills, check-ins.
    assert {"welcome", "pill_reminder", "checkin_temperature"} <= kinds
    assert {"premedication_reminder", "premedication_by_team"} & kinds
    assert len(received) > 20 and replies > 10 and all(answers_to_patient)
    english = english_words(language)
    leaked = {
        word
        for body in [*received, *answers_to_patient]
        for word in WORD.findall(body)
        if word.casefold() in english
    }
    assert not leaked, (leaked, received)
    # The fever reply got the urgent advice in the patient's language, with 112.
    assert any("112" in answer for answer in answers_to_patient)
