"""An SMS from a number the companion does not know: one answer a day, never silence.

Reached from :func:`reminders.conversations.handle_inbound_sms` when no active patient and
no family contact of an active patient has the sending number: a patient texting "39,2
et des frissons" from a new phone or a partner's, a discharged patient's old number, a
patient whose contact details were erased, a wrong number. Nobody reads these messages
(no team is theirs), so the sender is told so at once, in the webhook's TwiML answer: no
care team reads this number's messages; unwell, call your care team now; no answer, the
emergency number (``unknown_sender_reply``). Nothing in it names a patient or a team: we
do not know who is writing.

* **Language and emergency number** come from the sender's number and words: the
  country of the number (``phonenumbers``) gives the emergency number
  (``regions.toml``; a country it does not list gets the default region's) and, when the
  words tell no language, the language (:mod:`reminders.core.text_language`: a Belgian
  number is answered in French and Dutch, ``unknown_sender_reply_bilingual``).
* **At most one answer per number per** :data:`ANSWER_INTERVAL`, read from the stored
  messages of that number (``InboundMessage``: ``from_phone``, ``received_at``, intent
  :data:`ANSWERED` or :data:`ANSWER_SENT`): a wrong number or two auto-responders
  answering each other get one SMS a day, not a stream (nor a bill: SMS pumping).
  The look-up reads the rows without a patient (``patient_id IS NULL``: its index), which
  the retention job keeps to 30 days (``reminders.data.retention``).
* **No answer** to a STOP (the carrier confirms it), to an active care-team member's
  phone (their ``ACK`` replies are handled before, ``backend.services.paging``; their
  other texts were never answered), or to a sender that is no phone number (an
  alphanumeric sender or a short code: an operator's notice, never a patient). HELP gets
  the same answer as any message.
* **A repeated MessageSid** (Twilio retrying a webhook whose answer it never got) gets the
  same words again: the answer is stored as the message's intent only (an outbox row needs
  a team, and this message has none), and rebuilt from the stored number and text
  (:func:`repeated_answer`). Once Twilio has reported a message made from it (the status
  callback of the answer's ``action`` URL: :func:`note_answer_sent`), nothing: it arrived.

Two different messages of one number delivered at the same instant may both be answered
(neither sees the other's row before it commits); one pair, not a stream.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from reminders.core.parser import ParsedReply
from reminders.core.regions import get_region
from reminders.core.templates import render
from reminders.core.text_language import unknown_sender_languages
from reminders.data.models import InboundMessage, User

#: The intent stored for a message from an unknown number that was not answered (a STOP,
#: a second message within the day, a care-team member's phone, no phone number).
UNANSWERED = "unknown_sender"
#: ... answered (the TwiML answer carried ``unknown_sender_reply``).
ANSWERED = "unknown_sender_answered"
#: ... answered, and Twilio reported a message made from the answer (a retry gets nothing).
ANSWER_SENT = "unknown_sender_answer_sent"
#: Every intent of a message from an unknown number.
UNKNOWN_SENDER_INTENTS = (UNANSWERED, ANSWERED, ANSWER_SENT)

#: One answer per number in this long.
ANSWER_INTERVAL = timedelta(hours=24)

_INBOUND = InboundMessage.__table__
# Built once (as the conversation's statements): the most recent answer to this number.
_ANSWERED_SINCE = (
    select(_INBOUND.c.id)
    .where(
        _INBOUND.c.patient_id.is_(None),
        _INBOUND.c.from_phone == bindparam("phone"),
        _INBOUND.c.intent.in_([ANSWERED, ANSWER_SENT]),
        _INBOUND.c.received_at > bindparam("since"),
    )
    .limit(1)
)
_STAFF_PHONE = (
    select(User.__table__.c.id)
    .where(User.__table__.c.phone == bindparam("phone"), User.__table__.c.is_active.is_(True))
    .limit(1)
)
_MARK_SENT = (
    update(_INBOUND)
    .where(
        _INBOUND.c.provider_sid == bindparam("reply_to"),
        _INBOUND.c.patient_id.is_(None),
        _INBOUND.c.intent == ANSWERED,
    )
    .values(intent=ANSWER_SENT)
)


def _phone_number(phone: str) -> phonenumbers.PhoneNumber | None:
    """``phone`` parsed, or None for what is no phone number (an alphanumeric sender, a short code)."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def sender_country(phone: str) -> str | None:
    """The ISO 3166 code of the country of an E.164 number ("+32..." -> "BE"); None if unknown.

    None too for what is no phone number (an alphanumeric sender, a short code).
    """
    number = _phone_number(phone)
    if number is None:
        return None
    # A number the metadata does not call valid (a new range) still has its calling
    # code's main country: "+44 7700..." is British, "+1 ..." American.
    country = phonenumbers.region_code_for_number(
        number
    ) or phonenumbers.region_code_for_country_code(number.country_code)
    return country if country and country != "ZZ" else None


def unknown_sender_answer(phone: str, body: str) -> str:
    """The answer to ``body`` from the unknown number ``phone``, in the words' language.

    The same number and text always give the same words (a retried webhook's answer).
    """
    country = sender_country(phone)
    region = get_region(country)
    languages = unknown_sender_languages(country, body)
    texts = [render("unknown_sender_reply", language, region=region) for language in languages]
    if len(texts) == 1:
        return texts[0]
    first, second = texts
    return render(
        "unknown_sender_reply_bilingual",
        languages[0],
        in_first_language=first,
        in_second_language=second,
    )


def answer_unknown_sender(
    session: Session, phone: str, body: str, parsed: ParsedReply, now: datetime
) -> tuple[str, str | None]:
    """(the intent to store, the answer or None) for a message from an unknown number.

    Read before the message is stored (it is inserted once, with its intent).
    """
    if parsed.opts_out or _phone_number(phone) is None:
        return UNANSWERED, None
    if session.execute(_STAFF_PHONE, {"phone": phone}).first() is not None:
        return UNANSWERED, None
    answered = session.execute(
        _ANSWERED_SINCE, {"phone": phone, "since": now - ANSWER_INTERVAL}
    ).first()
    if answered is not None:
        return UNANSWERED, None
    return ANSWERED, unknown_sender_answer(phone, body)


def repeated_answer(intent: str | None, phone: str, body: str) -> str | None:
    """The answer to a repeated delivery of a message from an unknown number stored as ``intent``.

    The first delivery's words when it was answered and Twilio has reported no message
    made from it; else None.
    """
    return unknown_sender_answer(phone, body) if intent == ANSWERED else None


def note_answer_sent(session: Session, reply_to: str) -> bool:
    """Twilio reported a message made from the answer to the unknown sender's ``reply_to``.

    From then on a repeated delivery of ``reply_to`` gets nothing. True when this report
    was the first (one conditional UPDATE: two reports at once cannot both count).
    """
    return bool(session.execute(_MARK_SENT, {"reply_to": reply_to}).rowcount)
