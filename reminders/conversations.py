"""Patient replies: store, understand and route each incoming SMS to its answer.

``handle_inbound_sms`` is the single entry for an incoming SMS (the Twilio
webhook and the demo phone simulator both call it). It stores the message once
per Twilio ``MessageSid``, reads it with the pure parser in the context of the
open conversation (:func:`conversation`: the patient, their team, current plan and
open check-in) and routes it: a STOP or START to the opt-out policy
(``reminders.optout``), a TAKEN to the pill confirmations (``reminders.pills``), a
temperature or symptoms to the check-in steps and triage (``reminders.checkins``:
urgent findings raise an alert and queue an SMS to the team's on-call number in the
same transaction), words no rule reads to a person (``reminders.inbound``). A message
from a family contact's number goes to ``reminders.family_messages``, one from a number
nobody has to ``reminders.unknown_senders`` (told at once that nobody reads it, at most
once a day). It returns the reply to send at once (in the webhook's TwiML answer).

The reply is stored with the message (an outbound row keyed :func:`reply_key`), so
that a repeated delivery of the same MessageSid (Twilio retries a webhook whose
answer it never got, e.g. when the web process died after the commit) is answered
with the same text, not lost; and an alert the message raised names that reply
(``details["reply_key"]``), so the care team sees whether the advice was delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from reminders.checkins import CHECKIN_FIELDS, OpenCheckIn, check_in_step, symptom_menu
from reminders.core.parser import Expecting, Intent, ParsedReply, parse_reply
from reminders.data.family_contacts import contacts_by_phone
from reminders.data.models import (
    CheckIn,
    FamilyContact,
    InboundMessage,
    OutboundMessage,
    Patient,
    Plan,
    Team,
)
from reminders.data.plans import current_plan_id_of
from reminders.data.statuses import OPEN_CHECKIN_STATES, CheckInState, OutboxStatus, Recipient
from reminders.family_messages import family_intent, handle_family_sms
from reminders.inbound import Answer, StoredInbound, answer, forward_free_text, reply_key
from reminders.optout import BlockCause, block_patient_sms, record_opt_in
from reminders.outbox import outbox_row
from reminders.pills import confirm_pill, last_pill_reminder
from reminders.planning import replan_patient
from reminders.rendering import PatientContext, drug_name
from reminders.unknown_senders import answer_unknown_sender, repeated_answer

#: A check-in older than this no longer frames a reply.
CHECKIN_CONTEXT = timedelta(hours=24)


@dataclass(frozen=True)
class InboundResult:
    """What to answer (None: nothing), and whether the message had been seen before.

    For a repeated MessageSid, ``reply`` is the stored answer to the first delivery,
    unless Twilio has reported a message made from it (then None: never twice).
    """

    reply: str | None
    intent: str | None = None
    duplicate: bool = False
    patient_id: int | None = None


# The look-ups every reply makes, built once: building a statement (operators, bind
# parameters, its cache key) cost about as much as running it on SQLite.
# With the patient comes their team (into the session), which every reply names.
# Only an active (not discharged) patient: the database holds at most one per number
# (``uq_patient_active_phone``), so a reply reaches exactly one team (issue 12, item 1).
_PATIENT_BY_PHONE = (
    select(Patient, Team)
    .join(Team, Team.id == Patient.team_id)
    .where(Patient.phone == bindparam("phone"), Patient.discharged_at.is_(None))
    .order_by(Patient.created_at.desc())
)
# What a reply is read and answered in, in one statement: the patient with their team,
# their current plan (reminders/data/plans.py) and the columns of their most recent check-in still
# waiting for an answer, each the row a look-up of its own would find
# (``_PATIENT_BY_PHONE``, ``patient_context``'s current plan; tests/reminders/
# test_conversations.py compares them). The two states are compared with OR rather
# than IN: an IN list is expanded into the SQL text on every execution.
_CURRENT_PLAN_ID = current_plan_id_of(Patient.id).correlate(Patient)
_OPEN_CHECKIN_ID = (
    select(CheckIn.id)
    .where(
        CheckIn.patient_id == Patient.id,
        or_(*(CheckIn.state == state for state in OPEN_CHECKIN_STATES)),
        CheckIn.opened_at >= bindparam("since"),
    )
    .order_by(CheckIn.opened_at.desc(), CheckIn.id.desc())
    .limit(1)
    .correlate(Patient)
    .scalar_subquery()
)
_CONVERSATION_BY_PHONE = (
    select(Patient, Team, Plan, *(CheckIn.__table__.c[name] for name in CHECKIN_FIELDS))
    .join(Team, Team.id == Patient.team_id)
    .outerjoin(Plan, Plan.id == _CURRENT_PLAN_ID)
    .outerjoin(CheckIn, CheckIn.id == _OPEN_CHECKIN_ID)
    .where(Patient.phone == bindparam("phone"), Patient.discharged_at.is_(None))
    .order_by(Patient.created_at.desc())
)
# The message is stored with one INSERT that skips a MessageSid already stored (Twilio
# re-delivers a webhook it got no answer to): RETURNING gives the new id, or no row for
# a duplicate. A concurrent delivery of the same MessageSid waits for the first
# transaction (SQLite: the write lock; PostgreSQL: the unique index), then inserts
# nothing: it loses here, before anything else is written.
_INBOUND_TABLE = InboundMessage.__table__
_INSERT_INBOUND = {
    name: dialect.insert(_INBOUND_TABLE)
    .on_conflict_do_nothing(index_elements=["provider_sid"])
    .returning(_INBOUND_TABLE.c.id)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
# What the first delivery of a MessageSid was answered: its stored intent and reply (the
# outer join finds no reply for an opt-out, an unknown number or a message left unanswered),
# and the number and text an unknown number's answer is made from again.
_STORED_ANSWER = (
    select(
        _INBOUND_TABLE.c.intent,
        _INBOUND_TABLE.c.patient_id,
        OutboundMessage.body,
        OutboundMessage.provider_sid,
        _INBOUND_TABLE.c.from_phone,
        _INBOUND_TABLE.c.body.label("inbound_body"),
    )
    .select_from(_INBOUND_TABLE)
    .outerjoin(OutboundMessage, OutboundMessage.dedupe_key == bindparam("reply_key"))
    .where(_INBOUND_TABLE.c.provider_sid == bindparam("provider_sid"))
)
# Built once: ``insert().values(...)`` would build a statement and its cache key per reply.
_INSERT_REPLY = insert(OutboundMessage.__table__)


def stored_answer(session: Session, provider_sid: str) -> InboundResult:
    """The answer to a MessageSid already stored (a repeated delivery of the webhook).

    The same text as the first time, so that a reply committed but never received by
    Twilio is not lost; but nothing once Twilio has reported a message made from that
    answer (its status callback linked it, ``provider_sid``): it was received, and
    answering again would send the advice twice.

    An unknown number's answer has no outbox row (it has no team): its words are made
    again from the stored number and text, unless Twilio reported a message made from
    them (``reminders.unknown_senders.repeated_answer``).
    """
    found = session.execute(
        _STORED_ANSWER, {"provider_sid": provider_sid, "reply_key": reply_key(provider_sid)}
    ).first()
    if found is None:  # only when the caller's insert saw a row this read cannot see
        return InboundResult(reply=None, duplicate=True)
    intent, patient_id, body, twilio_sid, from_phone, inbound_body = found
    if body is None and patient_id is None:
        return InboundResult(
            reply=repeated_answer(intent, from_phone, inbound_body), intent=intent, duplicate=True
        )
    return InboundResult(
        reply=body if twilio_sid is None else None,
        intent=intent,
        duplicate=True,
        patient_id=patient_id,
    )


def find_patient_by_phone(session: Session, phone: str) -> Patient | None:
    """The one active patient with this E.164 number (None: nobody, or only discharged ones)."""
    return _patient_and_team(session, phone)[0]


def _patient_and_team(session: Session, phone: str) -> tuple[Patient | None, Team | None]:
    # The caller keeps the team referenced, so that it stays in the session's identity
    # map and the reply's rendering context finds it there without another query.
    found = session.exec(_PATIENT_BY_PHONE, params={"phone": phone}).first()
    return (found[0], found[1]) if found is not None else (None, None)


def conversation(
    session: Session, phone: str, now: datetime
) -> tuple[Patient | None, Team | None, Plan | None, OpenCheckIn | None]:
    """The patient with this number, their team, current plan and open check-in.

    The rows :func:`find_patient_by_phone`, ``patient_context`` and a look-up of the
    most recent open check-in would find, read with one statement; the check-in as an
    :class:`OpenCheckIn` (its columns, no model instance to track and flush).
    """
    found = session.exec(
        _CONVERSATION_BY_PHONE, params={"phone": phone, "since": now - CHECKIN_CONTEXT}
    ).first()
    if found is None:
        return None, None, None, None
    checkin = None
    if found[3] is not None:
        checkin = OpenCheckIn(dict(zip(CHECKIN_FIELDS, found[3:], strict=True)))
    return found[0], found[1], found[2], checkin


def _expecting(checkin: OpenCheckIn | None, pill: OutboundMessage | None) -> Expecting | None:
    if checkin is not None:
        return (
            Expecting.TEMPERATURE
            if checkin.state == CheckInState.AWAITING_TEMPERATURE
            else Expecting.SYMPTOMS
        )
    if pill is not None:
        return Expecting.CONFIRMATION
    return None


def handle_inbound_sms(
    session: Session, *, provider_sid: str, from_phone: str, body: str, now: datetime
) -> InboundResult:
    """Store, understand and answer one incoming SMS (idempotent per ``provider_sid``).

    The message is read in the context of the conversation before it is stored, so
    it is inserted once with its intent (no second write); all of it happens in the
    caller's transaction, so a concurrent duplicate still loses at the insert.
    """
    patient, team, plan, checkin = conversation(session, from_phone, now)
    pill = parsed = None
    # A number that is an active patient's is theirs, even if it is also a family
    # contact's: only a number no active patient has may be a relative's.
    relatives = contacts_by_phone(session, from_phone) if patient is None else []
    unknown_answer = None
    if relatives:
        parsed = parse_reply(body, None)
    if patient is not None:
        # The last pill reminder frames a reply only when no check-in does, and answers
        # a TAKEN: most replies (to a check-in) need not look it up.
        pill = last_pill_reminder(session, patient.id, now) if checkin is None else None
        parsed = parse_reply(body, _expecting(checkin, pill))
        if checkin is not None and parsed.intent is Intent.TAKEN:
            pill = last_pill_reminder(session, patient.id, now)
    values = {
        "provider_sid": provider_sid,
        "team_id": patient.team_id if patient else None,
        "patient_id": patient.id if patient else None,
        "from_phone": from_phone,
        "body": body[:1600],
        "received_at": now,
        "intent": str(parsed.intent) if parsed else None,
        "checkin_id": checkin.id if checkin else None,
    }
    if relatives and parsed is not None:
        # A relative's message: no patient of its own (it stays out of the patient's
        # thread), the team of the first contact, the family's intent.
        values.update(team_id=relatives[0][1].team_id, intent=family_intent(parsed))
    elif patient is None:
        # Nobody's number: answered at most once a day (reminders.unknown_senders), the
        # decision stored as the intent. Read from the stored text, as a retry reads it.
        values["intent"], unknown_answer = answer_unknown_sender(
            session, from_phone, values["body"], parse_reply(body, None), now
        )
    inserted = session.execute(_INSERT_INBOUND[session.get_bind().dialect.name], values)
    inbound_id = inserted.scalar()
    if inbound_id is None:  # this MessageSid is stored already: a repeated delivery
        return stored_answer(session, provider_sid)
    inbound = StoredInbound(inbound_id, provider_sid, values["body"], values["checkin_id"])
    if relatives and parsed is not None:
        return _from_relative(session, relatives, inbound, parsed, now)
    if patient is None or parsed is None:
        return InboundResult(reply=unknown_answer, intent=values["intent"])
    # What patient_context(session, patient) reads, loaded above with the patient.
    context = PatientContext(patient, team, drug_name(plan), plan)
    reply = _respond(session, context, inbound, parsed, checkin, pill, now)
    if reply is not None:
        _record_reply(session, context, inbound, reply, now)
    return InboundResult(
        reply=reply[1] if reply else None, intent=str(parsed.intent), patient_id=patient.id
    )


def _from_relative(
    session: Session,
    relatives: list[tuple[FamilyContact, Patient, Team]],
    inbound: StoredInbound,
    parsed: ParsedReply,
    now: datetime,
) -> InboundResult:
    """A family contact's message (``reminders.family_messages``), answered in their words."""
    answered = handle_family_sms(session, relatives, inbound, parsed, now)
    if answered is None:
        return InboundResult(reply=None, intent=family_intent(parsed))
    context, contact, reply = answered
    _record_reply(session, context, inbound, reply, now, to_contact=contact)
    return InboundResult(reply=reply[1], intent=family_intent(parsed))


def _respond(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    checkin: OpenCheckIn | None,
    pill: OutboundMessage | None,
    now: datetime,
) -> Answer | None:
    """Act on the reply; return (template, text) to answer, or None."""
    patient = context.patient
    intent = parsed.intent
    if parsed.opts_out:
        return _opt_out(session, patient, inbound, now)
    if parsed.opts_in and intent is Intent.OPT_IN:
        record_opt_in(session, patient)
        replan_patient(session, patient.id, now)
        return answer(context, "opted_in_confirmation")
    if intent is Intent.HELP:
        return answer(context, "help_reply")
    if intent is Intent.TAKEN:
        if pill is not None:
            confirm_pill(session, patient, pill, now)
        return answer(context, "pill_taken_ack")
    if intent is Intent.IMPLAUSIBLE_TEMPERATURE:
        return answer(context, "reask_temperature")
    if (
        intent is Intent.YES
        and checkin is not None
        and checkin.state == CheckInState.AWAITING_SYMPTOMS
    ):
        return answer(context, symptom_menu(context.plan))
    if intent in (Intent.TEMPERATURE, Intent.SYMPTOMS, Intent.NO_SYMPTOMS) or (
        intent is Intent.NO
        and checkin is not None
        and checkin.state == CheckInState.AWAITING_SYMPTOMS
    ):
        return check_in_step(session, context, inbound, parsed, checkin, now)
    return forward_free_text(session, context, inbound, parsed, now)


def _opt_out(session: Session, patient: Patient, inbound: StoredInbound, now: datetime) -> None:
    block_patient_sms(
        session,
        patient,
        BlockCause.STOP_KEYWORD,
        now=now,
        dedupe_key=f"optout:{inbound.provider_sid}",
        details={"inbound_id": inbound.id},
    )
    # No reply: the carrier/Twilio confirms an opt-out, and anything we sent would be refused.
    return None


def _record_reply(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    reply: Answer,
    now: datetime,
    *,
    to_contact: FamilyContact | None = None,
) -> None:
    """Keep the TwiML answer in the thread, as a sent outbound message.

    An answer to a family contact (``to_contact``) is kept as theirs (recipient family,
    their number), out of the patient's own thread.

    Stored as ``provider_status`` "twiml" without a ``provider_sid``: Twilio makes the
    message from the answer and reports it to the ``<Message action>`` URL, whose
    first status callback links its sid (``backend.webhooks``); from then on the row
    is tracked like any outbound SMS.
    """
    template, text = reply
    # A plain INSERT: nothing reads the row back in this request, so a model instance
    # through the unit of work would only add to every reply's time.
    session.execute(
        _INSERT_REPLY,
        outbox_row(
            team_id=context.patient.team_id,
            kind=template,
            body=text,
            dedupe_key=reply_key(inbound.provider_sid),
            now=now,
            patient_id=context.patient.id,
            to_phone=context.patient.phone if to_contact is None else to_contact.phone,
            recipient=Recipient.PATIENT if to_contact is None else Recipient.FAMILY,
            urgent=True,
            status=OutboxStatus.SENT,
            provider_status="twiml",
            sent_at=now,
            checkin_id=inbound.checkin_id,
        ),
    )
