"""An SMS from a number the companion does not know: answered at once, at most once a day.

A patient texting "39,2 et des frissons" from a new phone, a discharged or erased patient,
a wrong number: no team reads it, so the sender is told so and told to call their team or
the emergency number (hazard H-UNK-1, ``reminders/unknown_senders.py``). On SQLite and
PostgreSQL, through the conversation service the webhook calls; one test goes through
the signed webhook and the test Twilio server (TwiML answer, a retried MessageSid, the
status callback of the message made from the answer).
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from sqlmodel import Session, select

from backend.schemas_family import FamilyContactIn
from backend.services import family as family_service
from backend.services.discharge import discharge_patient
from backend.services.rights import erase_contact_details
from reminders.core.clinical_rules import emergency_fallback
from reminders.core.regions import get_region
from reminders.core.templates import get_template, render, segments
from reminders.core.text_language import (
    language_of_words,
    language_scores,
    unknown_sender_languages,
)
from reminders.data.models import Alert, InboundMessage, OutboundMessage, Patient
from reminders.data.retention import delete_unknown_sender_sms
from reminders.unknown_senders import ANSWER_INTERVAL, sender_country, unknown_sender_answer
from tests.conftest import reread
from tests.reminders.test_family_contacts import sms
from tests.twilio_fake import FAKE_AUTH_TOKEN, inbound_sms_params, signed_form_post

BE = get_region("BE")
US = get_region("US")
FRENCH = render("unknown_sender_reply", "fr", region=BE)
DUTCH = render("unknown_sender_reply", "nl", region=BE)
ENGLISH_US = render("unknown_sender_reply", "en", region=US)
BOTH = f"{FRENCH}\n{DUTCH}"

STRANGER = "+32479000111"  # a Belgian mobile no patient and no contact has
AMERICAN = "+12025550143"
OUR_NUMBER = "+32460000000"
BASE = "https://companion.test"
PATIENT_NAME = "Marie-Thérèse Vandenbroucke-Delacroix"


def stored(session: Session, phone: str) -> list[InboundMessage]:
    reread(session)
    query = select(InboundMessage).where(InboundMessage.from_phone == phone)
    return list(session.exec(query.order_by(InboundMessage.id)).all())


# --- the words ---------------------------------------------------------------------------------


def test_each_answer_is_one_gsm7_segment_and_both_languages_two(session: Session) -> None:
    for language in ("en", "fr", "nl"):
        template = get_template("unknown_sender_reply", language)
        assert template.max_segments == 1 and template.why is None
        for region in (BE, US):
            text = render("unknown_sender_reply", language, region=region)
            info = segments(text)
            assert (info.encoding, info.segments) == ("GSM-7", 1), text
            assert text.endswith(emergency_fallback(language, region))
    assert segments(BOTH).segments == 2
    assert get_template("unknown_sender_reply_bilingual", "fr").max_segments == 2
    # Nothing about anyone: no name, no team, no number but the emergency one.
    for text in (FRENCH, DUTCH, ENGLISH_US):
        assert "{" not in text and "+" not in text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("39,2 et des frissons", "fr"),
        ("J'ai de la fièvre", "fr"),
        ("il a du mal à respirer", "fr"),
        ("39,2 en koude rillingen", "nl"),
        ("Ik heb koorts", "nl"),
        ("Fever 39.2 and chills", "en"),
        ("39,2", None),
        ("ok", None),  # every language's filler
        ("HELP", None),
    ],
)
def test_the_words_tell_the_language_or_nothing(text: str, language: str | None) -> None:
    assert language_of_words(text) == language, language_scores(text)


@pytest.mark.parametrize(
    ("country", "text", "languages"),
    [
        ("BE", "39,2 et des frissons", ("fr",)),
        ("BE", "39,2 en koude rillingen", ("nl",)),
        ("BE", "39,2", ("fr", "nl")),
        # A Belgian number is answered in French or Dutch, never English alone.
        ("BE", "Fever 39.2 and chills", ("fr", "nl")),
        ("BE", "she is confused", ("fr", "nl")),  # "is" is Dutch too: not Dutch for that
        ("BE", "Pouvez-vous me rappeler ?", ("fr", "nl")),  # "me" is English filler
        ("FR", "39,2", ("fr",)),
        ("LU", "39,2", ("fr",)),
        ("NL", "39,2", ("nl",)),
        ("NL", "température 39 et frissons", ("fr",)),
        ("US", "39,2", ("en",)),
        ("US", "Ik heb koorts", ("nl",)),
        ("GB", "fever", ("en",)),
        (None, "39", ("en",)),
    ],
)
def test_the_answers_language(country, text: str, languages: tuple[str, ...]) -> None:
    assert unknown_sender_languages(country, text) == languages


def test_the_senders_country_comes_from_the_number() -> None:
    assert sender_country(STRANGER) == "BE" and sender_country(AMERICAN) == "US"
    assert sender_country("+447700900123") == "GB"  # not in regions.toml: the default's 112
    assert sender_country("VODAFONE") is None and sender_country("+3247") is None
    assert unknown_sender_answer("+447700900123", "fever") == render(
        "unknown_sender_reply", "en", region=BE
    )


# --- the answer --------------------------------------------------------------------------------


def test_a_french_fever_text_from_an_unknown_belgian_number_gets_the_french_answer(
    session: Session, treated_patient, clock
) -> None:
    treated_patient(display_name=PATIENT_NAME, language="fr")
    result = sms(session, STRANGER, "39,2 et des frissons", clock.now)
    assert result.reply == FRENCH and "112" in FRENCH
    assert (result.intent, result.patient_id) == ("unknown_sender_answered", None)
    [inbound] = stored(session, STRANGER)
    assert (inbound.patient_id, inbound.team_id, inbound.intent) == (
        None,
        None,
        "unknown_sender_answered",
    )
    # Nobody's: no alert, no outbox row (an outbox row needs a team).
    assert session.exec(select(Alert)).all() == []
    to_stranger = select(OutboundMessage).where(OutboundMessage.to_phone == STRANGER)
    assert session.exec(to_stranger).all() == []


def test_a_dutch_text_gets_the_dutch_answer_and_words_that_tell_nothing_both(
    session: Session, clock
) -> None:
    assert sms(session, STRANGER, "Ik heb 39,2 en koude rillingen", clock.now).reply == DUTCH
    other = "+32478111222"
    assert sms(session, other, "39,2", clock.now).reply == BOTH


def test_an_american_number_gets_english_and_911(session: Session, clock) -> None:
    result = sms(session, AMERICAN, "102.5 and shaking", clock.now)
    assert result.reply == ENGLISH_US and "911" in result.reply and "112" not in result.reply


def test_a_canadian_number_gets_911_in_english_or_in_french(session: Session, clock) -> None:
    """+1 is shared: the number's own country (Toronto, Montréal) decides, not the code."""
    canada = get_region("CA")
    english = sms(session, "+14165550123", "fever and chills", clock.now)
    assert english.reply == render("unknown_sender_reply", "en", region=canada)
    french = sms(session, "+15145550188", "39,2 et des frissons", clock.now)
    assert french.reply == render("unknown_sender_reply", "fr", region=canada)
    assert all("911" in r.reply and "112" not in r.reply for r in (english, french))


def test_one_answer_per_number_per_day(session: Session, clock) -> None:
    first = sms(session, STRANGER, "39,2 et des frissons", clock.now)
    assert first.reply == FRENCH
    later = clock.now + timedelta(hours=23, minutes=59)
    for n, body in enumerate(("Allo ?", "39,5", "HELP")):
        again = sms(session, STRANGER, body, later + timedelta(seconds=n))
        assert (again.reply, again.intent) == (None, "unknown_sender")
    # Another number is answered meanwhile: the limit is per number.
    assert sms(session, "+32478111222", "fièvre", later).reply == FRENCH
    # A day after the answer (not after the last message), the number is answered again.
    next_day = clock.now + ANSWER_INTERVAL + timedelta(minutes=1)
    assert sms(session, STRANGER, "toujours 39 de fièvre", next_day).reply == FRENCH
    intents = [m.intent for m in stored(session, STRANGER)]
    assert intents == ["unknown_sender_answered"] + ["unknown_sender"] * 3 + [
        "unknown_sender_answered"
    ]


def test_a_repeated_message_sid_gets_the_same_words_and_is_stored_once(
    session: Session, clock
) -> None:
    first = sms(session, STRANGER, "39,2 et des frissons", clock.now, sid="SMretry0001")
    # The retry comes after another message of the number: still the first answer's words.
    sms(session, STRANGER, "???", clock.now + timedelta(minutes=1))
    again = sms(session, STRANGER, "39,2 et des frissons", clock.now, sid="SMretry0001")
    assert again.duplicate and again.reply == first.reply == FRENCH
    assert [m.provider_sid for m in stored(session, STRANGER)].count("SMretry0001") == 1


def test_stop_gets_no_answer_and_help_the_same_answer(session: Session, clock) -> None:
    stop = sms(session, STRANGER, "STOP", clock.now)
    assert (stop.reply, stop.intent) == (None, "unknown_sender")
    # A STOP is no answer, so it does not hold the next one back.
    assert sms(session, STRANGER, "HELP", clock.now + timedelta(minutes=1)).reply == BOTH


def test_no_answer_to_what_is_no_phone_number(session: Session, clock) -> None:
    result = sms(session, "VODAFONE", "Votre forfait est épuisé", clock.now)
    assert (result.reply, result.intent) == (None, "unknown_sender")


def test_a_clinicians_phone_is_not_answered_as_a_stranger(
    session: Session, make_user, clock
) -> None:
    """Their ACK replies are the paging's (tests/backend/test_paging.py); anything else
    they text stays unanswered, as before."""
    make_user("Hématologie — Cliniques universitaires Saint-Luc", phone="+32475000222")
    for body in ("ok merci", "ACK"):
        result = sms(session, "+32475000222", body, clock.now)
        assert (result.reply, result.intent) == (None, "unknown_sender")


def test_a_discharged_patients_old_number_gets_the_answer(
    session: Session, make_user, make_patient, clock
) -> None:
    nurse, _ = make_user("Hématologie — Cliniques universitaires Saint-Luc")
    patient = make_patient(nurse.team_id, display_name=PATIENT_NAME, language="nl")
    phone = patient.phone
    discharge_patient(session, patient, nurse.id, "Suivi terminé", clock.now)
    session.commit()
    result = sms(session, phone, "39,2 et des frissons", clock.now + timedelta(days=3))
    assert result.reply == FRENCH and result.patient_id is None
    assert PATIENT_NAME.split("-")[0] not in result.reply


def test_an_erased_patients_number_gets_the_answer(
    session: Session, make_user, make_patient, clock
) -> None:
    nurse, _ = make_user("Hématologie — Cliniques universitaires Saint-Luc")
    patient = make_patient(nurse.team_id, display_name=PATIENT_NAME, language="fr")
    phone = patient.phone
    erase_contact_details(session, patient, clock.now)
    session.commit()
    result = sms(session, phone, "Ik heb koorts", clock.now + timedelta(hours=1))
    assert result.reply == DUTCH and result.intent == "unknown_sender_answered"


def test_a_patient_and_a_family_contact_are_answered_as_before(
    session: Session, treated_patient, clock
) -> None:
    patient = treated_patient(display_name=PATIENT_NAME, language="fr")
    family_service.add_contact(
        session,
        patient,
        FamilyContactIn(
            name="Zoë Vandenbroucke",
            phone="+32471987654",
            language="nl",
            relationship="dochter",
            consent_method="verbal",
        ),
        None,
        reread(session).get(Patient, patient.id).updated_at,
        region="BE",
    )
    session.commit()
    own = sms(session, patient.phone, "39,2 et des frissons", clock.now)
    assert own.patient_id == patient.id and own.intent == "temperature"
    assert own.reply not in (FRENCH, BOTH) and "appelez" in own.reply.casefold()
    relative = sms(session, "+32471987654", "Kan iemand mij terugbellen over mama?", clock.now)
    assert relative.intent == "family_message"
    assert relative.reply.startswith("Uw bericht over Marie-Thérèse is doorgegeven")


def test_the_retention_job_still_deletes_unknown_senders_sms_after_30_days(
    session: Session, clock
) -> None:
    sms(session, STRANGER, "39,2 et des frissons", clock.now)
    sms(session, STRANGER, "39,5", clock.now + timedelta(hours=1))
    assert delete_unknown_sender_sms(session, clock.now + timedelta(days=30, hours=2)) == 2
    session.commit()
    assert stored(session, STRANGER) == []
    # Gone with them, the day's limit: a month on the number is answered again.
    assert sms(session, STRANGER, "39", clock.now + timedelta(days=31)).reply == BOTH


# --- through the webhook and the test Twilio server ------------------------------------------


def said(response) -> list[str]:
    return [m.text or "" for m in ElementTree.fromstring(response.data).iter("Message")]


def test_the_webhook_answers_once_even_when_twilio_retries(
    app, client, session: Session, fake_twilio, clock
) -> None:
    """A retried MessageSid whose first answer Twilio never got: the same words; once Twilio
    made the message (its status callback came), a further retry gets nothing. The sender
    gets exactly one SMS; a second message the same day gets none."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    params = inbound_sms_params(STRANGER, "39,2 et des frissons", OUR_NUMBER)
    url = f"{BASE}/twilio/sms"
    lost = signed_form_post(client, url, params, FAKE_AUTH_TOKEN)  # Twilio never got it
    assert lost.status_code == 200 and said(lost) == [FRENCH]
    retry = signed_form_post(client, url, params, FAKE_AUTH_TOKEN)
    assert said(retry) == [FRENCH]
    [made] = fake_twilio.answer_twiml(retry.get_data(as_text=True), params)
    assert fake_twilio.bodies_to(STRANGER) == [FRENCH]

    def post(target: str, form: dict[str, str], headers: dict[str, str]) -> int:
        parts = urllib.parse.urlsplit(target)
        return client.post(
            f"{parts.path}?{parts.query}",
            base_url=f"{parts.scheme}://{parts.netloc}",
            data=form,
            headers=headers,
        ).status_code

    assert fake_twilio.send_status_callback(made, "sent", post=post) == 204
    assert fake_twilio.send_status_callback(made, "delivered", post=post) == 204
    [inbound] = stored(session, STRANGER)
    assert inbound.intent == "unknown_sender_answer_sent"
    late = signed_form_post(client, url, params, FAKE_AUTH_TOKEN)
    assert late.status_code == 200 and said(late) == []
    fake_twilio.answer_twiml(late.get_data(as_text=True), params)
    second = inbound_sms_params(STRANGER, "toujours 39,2", OUR_NUMBER)
    quiet = signed_form_post(client, url, second, FAKE_AUTH_TOKEN)
    assert said(quiet) == []
    fake_twilio.answer_twiml(quiet.get_data(as_text=True), second)
    assert fake_twilio.bodies_to(STRANGER) == [FRENCH]  # one SMS in all
    # The answered message keeps its mark within the day: a third message stays quiet.
    assert [m.intent for m in stored(session, STRANGER)] == [
        "unknown_sender_answer_sent",
        "unknown_sender",
    ]


def test_the_webhook_answers_an_american_number_in_english(
    app, client, session: Session, fake_twilio
) -> None:
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    params = inbound_sms_params(AMERICAN, "fever 102 and chills", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert said(answer) == [ENGLISH_US]
    fake_twilio.answer_twiml(answer.get_data(as_text=True), params)
    assert fake_twilio.bodies_to(AMERICAN) == [ENGLISH_US]
