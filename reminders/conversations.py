"""Patient replies: parse, triage, answer, record and alert.

``handle_inbound_sms`` is the single entry for an incoming SMS (the Twilio
webhook and the demo phone simulator both call it). It stores the message once
per Twilio ``MessageSid``, reads it with the pure parser in the context of the
open conversation, applies the pure triage rules and returns the reply to send
at once (in the webhook's TwiML answer). Urgent findings raise an alert and
queue an SMS to the team's on-call number in the same transaction.

The reply is stored with the message (an outbound row keyed :func:`reply_key`), so
that a repeated delivery of the same MessageSid (Twilio retries a webhook whose
answer it never got, e.g. when the web process died after the commit) is answered
with the same text, not lost; and an alert the message raised names that reply
(``details["reply_key"]``), so the care team sees whether the advice was delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from reminders.core.clinical_rules import clinical_rules
from reminders.core.dates import local_today
from reminders.core.parser import Expecting, Intent, ParsedReply, parse_reply
from reminders.core.planner import is_in_cmv_window, risk_windows_on, treatment_end
from reminders.core.prophylaxis import ENDED_COURSE_STATUSES
from reminders.core.regimens import get_regimen
from reminders.core.regions import get_region, temperature_text
from reminders.core.triage import (
    Severity,
    TriageContext,
    TriageDecision,
    persistent_low_grade,
    triage_report,
)
from reminders.data.alerts import raise_alert
from reminders.data.expected_levels import apply_expected_levels
from reminders.data.models import (
    CheckIn,
    InboundMessage,
    OutboundMessage,
    Patient,
    PillConfirmation,
    Plan,
    ProphylaxisCourse,
    SymptomReport,
    Team,
)
from reminders.data.plans import current_plan, current_plan_id_of
from reminders.data.statuses import (
    ACCEPTED_OUTBOX_STATUSES,
    OPEN_CHECKIN_STATES,
    CheckInState,
    OutboxStatus,
    PlanStatus,
    check_transition,
)
from reminders.followups import raise_urgent_alert
from reminders.optout import BlockCause, block_patient_sms, record_opt_in
from reminders.outbox import outbox_row, queue_patient_message
from reminders.planning import replan_patient
from reminders.rendering import PatientContext, drug_name, render_for
from reminders.specs import load_plan_spec

#: A check-in older than this no longer frames a reply.
CHECKIN_CONTEXT = timedelta(hours=24)
#: A TAKEN reply confirms a pill reminder sent within this window.
PILL_CONFIRMATION_WINDOW = timedelta(hours=12)
#: Pill reminders sent this close together are one round (08:00 cotrimoxazole and acyclovir).
PILL_ROUND = timedelta(minutes=30)


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
#: The check-in columns a reply reads or changes (see :class:`OpenCheckIn`).
_CHECKIN_FIELDS = (
    "id",
    "state",
    "temperature_c",
    "symptoms",
    "in_cmv_window",
    "last_prompt_at",
    "recheck_due_at",
    "closed_at",
    "severity",
)
_CHECKIN_TABLE = CheckIn.__table__
_CONVERSATION_BY_PHONE = (
    select(Patient, Team, Plan, *(_CHECKIN_TABLE.c[name] for name in _CHECKIN_FIELDS))
    .join(Team, Team.id == Patient.team_id)
    .outerjoin(Plan, Plan.id == _CURRENT_PLAN_ID)
    .outerjoin(CheckIn, CheckIn.id == _OPEN_CHECKIN_ID)
    .where(Patient.phone == bindparam("phone"), Patient.discharged_at.is_(None))
    .order_by(Patient.created_at.desc())
)
# The check-in's changes, written with one UPDATE of the columns that changed (the
# parameters name them), as the unit of work would have written them.
_UPDATE_CHECKIN = update(_CHECKIN_TABLE).where(_CHECKIN_TABLE.c.id == bindparam("checkin_pk"))
_RECENT_PILL_REMINDERS = (
    select(OutboundMessage)
    .where(
        OutboundMessage.patient_id == bindparam("patient_id"),
        OutboundMessage.expects == "taken",
        OutboundMessage.status.in_(ACCEPTED_OUTBOX_STATUSES),
        OutboundMessage.sent_at >= bindparam("since"),
    )
    .order_by(OutboundMessage.sent_at.desc())
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
# A reminder already confirmed (a second TAKEN, or two replies handled at once by two
# web workers) adds nothing: the unique (patient, reminder) pair decides in the insert,
# where a look-up first would let both replies pass it and fail the second at commit.
_PILL_TABLE = PillConfirmation.__table__
_INSERT_PILL_CONFIRMATIONS = {
    name: dialect.insert(_PILL_TABLE).on_conflict_do_nothing(
        index_elements=["patient_id", "event_key"]
    )
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_UPDATE_INBOUND_CHECKIN = (
    update(_INBOUND_TABLE)
    .where(_INBOUND_TABLE.c.id == bindparam("inbound_pk"))
    .values(checkin_id=bindparam("new_checkin_id"))
)
# What the first delivery of a MessageSid was answered: its stored intent and reply (the
# outer join finds no reply for an opt-out, an unknown number or a message left unanswered).
_STORED_ANSWER = (
    select(
        _INBOUND_TABLE.c.intent,
        _INBOUND_TABLE.c.patient_id,
        OutboundMessage.body,
        OutboundMessage.provider_sid,
    )
    .select_from(_INBOUND_TABLE)
    .outerjoin(OutboundMessage, OutboundMessage.dedupe_key == bindparam("reply_key"))
    .where(_INBOUND_TABLE.c.provider_sid == bindparam("provider_sid"))
)
# Built once: ``insert().values(...)`` would build a statement and its cache key per reply.
_INSERT_REPLY = insert(OutboundMessage.__table__)
_INSERT_REPORT = insert(SymptomReport.__table__)


class OpenCheckIn:
    """The check-in a reply answers: its columns, and which of them the reply changed.

    Read with the patient as plain columns (no model instance to track) and written
    back by :meth:`save` with one UPDATE of the changed columns, as the unit of work
    would write them.
    """

    __slots__ = (*_CHECKIN_FIELDS, "_stored")

    id: int
    state: str
    temperature_c: float | None
    symptoms: list[str] | None
    in_cmv_window: bool
    last_prompt_at: datetime
    recheck_due_at: datetime | None
    closed_at: datetime | None
    severity: str | None

    def __init__(self, values: dict[str, Any]) -> None:
        for name in _CHECKIN_FIELDS:
            setattr(self, name, values[name])
        self._stored = dict(values)

    @classmethod
    def of(cls, checkin: CheckIn) -> OpenCheckIn:
        """The open check-in of a stored (flushed) model instance."""
        return cls({name: getattr(checkin, name) for name in _CHECKIN_FIELDS})

    def save(self, session: Session) -> None:
        """Write the columns changed since it was read (nothing when none changed)."""
        changed = {
            name: getattr(self, name)
            for name in _CHECKIN_FIELDS[1:]
            if getattr(self, name) != self._stored[name]
        }
        if not changed:
            return
        if "state" in changed:  # written with Core, so checked here rather than by the ORM
            check_transition(CheckInState, self._stored["state"], changed["state"])
        session.execute(_UPDATE_CHECKIN, {"checkin_pk": self.id, **changed})
        self._stored.update(changed)
        # A caller's session may hold this check-in as a model instance (the dashboard's
        # simulator, tests, an unprompted report's new row): it reloads on next access.
        loaded = session.identity_map.get(session.identity_key(CheckIn, self.id))
        if loaded is not None:
            session.expire(loaded)


@dataclass
class StoredInbound:
    """The stored incoming message, as the rest of a reply needs it."""

    id: int
    provider_sid: str
    body: str
    checkin_id: int | None

    def link_checkin(self, session: Session, checkin_id: int) -> None:
        """Attach the message to the check-in it opened (an unprompted report)."""
        session.execute(
            _UPDATE_INBOUND_CHECKIN, {"inbound_pk": self.id, "new_checkin_id": checkin_id}
        )
        self.checkin_id = checkin_id


def reply_key(provider_sid: str) -> str:
    """The ``dedupe_key`` of the stored reply to the incoming message ``provider_sid``."""
    return f"reply:{provider_sid}"


def stored_answer(session: Session, provider_sid: str) -> InboundResult:
    """The answer to a MessageSid already stored (a repeated delivery of the webhook).

    The same text as the first time, so that a reply committed but never received by
    Twilio is not lost; but nothing once Twilio has reported a message made from that
    answer (its status callback linked it, ``provider_sid``): it was received, and
    answering again would send the advice twice.
    """
    found = session.execute(
        _STORED_ANSWER, {"provider_sid": provider_sid, "reply_key": reply_key(provider_sid)}
    ).first()
    if found is None:  # only when the caller's insert saw a row this read cannot see
        return InboundResult(reply=None, duplicate=True)
    intent, patient_id, body, twilio_sid = found
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
        checkin = OpenCheckIn(dict(zip(_CHECKIN_FIELDS, found[3:], strict=True)))
    return found[0], found[1], found[2], checkin


def last_pill_reminder(session: Session, patient_id: int, now: datetime) -> OutboundMessage | None:
    """The newest pill reminder sent to the patient within the confirmation window."""
    return _recent_pill_reminders(session, patient_id, now).first()


def pill_round(session: Session, patient_id: int, newest: OutboundMessage) -> list[OutboundMessage]:
    """Every pill reminder of the same round as ``newest`` (one TAKEN answers them all)."""
    since = newest.sent_at - PILL_ROUND
    return [
        m
        for m in _recent_pill_reminders(session, patient_id, newest.sent_at).all()
        if m.sent_at >= since
    ]


def _recent_pill_reminders(session: Session, patient_id: int, now: datetime) -> Any:
    """Pill reminders sent within the confirmation window before ``now``, newest first."""
    return session.exec(
        _RECENT_PILL_REMINDERS,
        params={"patient_id": patient_id, "since": now - PILL_CONFIRMATION_WINDOW},
    )


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


#: "Not passed" for an optional plan argument (None means the patient has no plan).
_UNSET: Any = object()


_ONGOING_PROPHYLAXIS = (
    select(ProphylaxisCourse.id)
    .where(
        ProphylaxisCourse.patient_id == bindparam("patient_id"),
        ProphylaxisCourse.stopped_on.is_(None),
        ProphylaxisCourse.status.not_in(sorted(ENDED_COURSE_STATUSES)),
    )
    .limit(1)
)
_RECENT_TEMPERATURES = select(SymptomReport.reported_at, SymptomReport.temperature_c).where(
    SymptomReport.patient_id == bindparam("patient_id"),
    SymptomReport.temperature_c.is_not(None),
    SymptomReport.reported_at >= bindparam("since"),
)


def triage_context(
    session: Session,
    patient: Patient,
    now: datetime,
    *,
    plan: Plan | None = _UNSET,
    temperature_c: float | None = None,
) -> TriageContext:
    """What triage needs beyond the reply: CMV window and risk, the drug, earlier readings.

    ``plan``: the patient's current plan when the caller has loaded it already.
    ``temperature_c``: this reply's reading; when it is slightly raised, the patient's
    earlier readings are looked up to tell whether it keeps coming back.
    """
    if plan is _UNSET:
        plan = current_plan(session, patient.id)
    if plan is None:
        return TriageContext()
    regimen = get_regimen(plan.regimen_id)
    # Risk windows count the days of treatment received: they move with holds and
    # recorded doses (reminders.core.planner), so both are loaded (issue 11, item 5).
    spec = load_plan_spec(session, plan, patient)
    today = local_today(patient.timezone, now)
    in_cmv_window = is_in_cmv_window(spec, today)
    end = treatment_end(spec)
    on_treatment = plan.status != PlanStatus.STOPPED and (end is None or today <= end)
    running = on_treatment or _prophylaxis_ongoing(session, patient.id)
    fever = clinical_rules().fever
    readings: tuple[float, ...] = ()
    if temperature_c is not None and fever.recheck_from_c <= temperature_c < fever.threshold_c:
        readings = persistent_low_grade(
            [*_recent_temperatures(session, patient.id, now), (now, temperature_c)],
            now,
            in_risk_window=bool(risk_windows_on(spec, today)),
            on_treatment_or_prophylaxis=running,
        )
    return TriageContext(
        in_cmv_window=in_cmv_window,
        drug=regimen.drug,
        cmv_test_on_fever=in_cmv_window or (regimen.monitors_cmv and running),
        low_grade_readings=readings,
    )


def _prophylaxis_ongoing(session: Session, patient_id: int) -> bool:
    """Whether any prophylaxis course of the patient is running (or proposed)."""
    found = session.exec(_ONGOING_PROPHYLAXIS, params={"patient_id": patient_id}).first()
    return found is not None


def _recent_temperatures(
    session: Session, patient_id: int, now: datetime
) -> list[tuple[datetime, float]]:
    """(reported at, Celsius) of the patient's readings within the longest persistence span."""
    rule = clinical_rules().fever.persistent_low_grade
    since = now - timedelta(hours=max(rule.any_time_hours, rule.in_risk_window_hours))
    rows = session.exec(_RECENT_TEMPERATURES, params={"patient_id": patient_id, "since": since})
    return [(at, celsius) for at, celsius in rows]


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
    inserted = session.execute(_INSERT_INBOUND[session.get_bind().dialect.name], values)
    inbound_id = inserted.scalar()
    if inbound_id is None:  # this MessageSid is stored already: a repeated delivery
        return stored_answer(session, provider_sid)
    inbound = StoredInbound(inbound_id, provider_sid, values["body"], values["checkin_id"])
    if patient is None or parsed is None:
        return InboundResult(reply=None, intent="unknown_sender")
    # What patient_context(session, patient) reads, loaded above with the patient.
    context = PatientContext(patient, team, drug_name(plan), plan)
    reply = _respond(session, context, inbound, parsed, checkin, pill, now)
    if reply is not None:
        _record_reply(session, context, inbound, reply, now)
    return InboundResult(
        reply=reply[1] if reply else None, intent=str(parsed.intent), patient_id=patient.id
    )


def _respond(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    checkin: OpenCheckIn | None,
    pill: OutboundMessage | None,
    now: datetime,
) -> tuple[str, str] | None:
    """Act on the reply; return (template, text) to answer, or None."""
    patient = context.patient
    intent = parsed.intent
    if parsed.opts_out:
        return _opt_out(session, patient, inbound, now)
    if parsed.opts_in and intent is Intent.OPT_IN:
        record_opt_in(session, patient)
        replan_patient(session, patient.id, now)
        return _text(context, "opted_in_confirmation")
    if intent is Intent.HELP:
        return _text(context, "help_reply")
    if intent is Intent.TAKEN:
        if pill is not None:
            _confirm_pill(session, patient, pill, now)
        return _text(context, "pill_taken_ack")
    if intent is Intent.IMPLAUSIBLE_TEMPERATURE:
        return _text(context, "reask_temperature")
    if (
        intent is Intent.YES
        and checkin is not None
        and checkin.state == CheckInState.AWAITING_SYMPTOMS
    ):
        return _text(context, _symptom_menu(session, patient, context.plan))
    if intent in (Intent.TEMPERATURE, Intent.SYMPTOMS, Intent.NO_SYMPTOMS) or (
        intent is Intent.NO
        and checkin is not None
        and checkin.state == CheckInState.AWAITING_SYMPTOMS
    ):
        return _check_in_step(session, context, inbound, parsed, checkin, now)
    return _forward_free_text(session, context, inbound, parsed, now)


def _text(context: PatientContext, template: str, **values: object) -> tuple[str, str]:
    return template, render_for(context, template, **values)


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


def _confirm_pill(session: Session, patient: Patient, pill: OutboundMessage, now: datetime) -> None:
    """Record adherence for every reminder of the round ``pill`` belongs to, once each."""
    rows = [
        {
            "patient_id": patient.id,
            "course_id": reminder.course_id,
            "event_key": reminder.dedupe_key,
            "confirmed_at": now,
        }
        for reminder in pill_round(session, patient.id, pill)
    ]
    if rows:
        session.execute(_INSERT_PILL_CONFIRMATIONS[session.get_bind().dialect.name], rows)


def _symptom_menu(session: Session, patient: Patient, plan: Plan | None = _UNSET) -> str:
    """The symptom menu for the patient's regimen (with yellow skin/eyes for inotuzumab)."""
    if plan is _UNSET:
        plan = current_plan(session, patient.id)
    extra = get_regimen(plan.regimen_id).extra_symptoms if plan is not None else ()
    return "checkin_symptoms_with_jaundice" if "jaundice" in extra else "checkin_symptoms"


def _check_in_step(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    checkin: OpenCheckIn | None,
    now: datetime,
) -> tuple[str, str]:
    patient = context.patient
    if checkin is None:  # an unprompted report still gets triaged
        new = CheckIn(
            patient_id=patient.id,
            event_key=f"adhoc:{inbound.provider_sid}",
            opened_at=now,
            last_prompt_at=now,
        )
        session.add(new)
        session.flush()
        checkin = OpenCheckIn.of(new)
        inbound.link_checkin(session, checkin.id)
    if parsed.temperature_c is not None:
        checkin.temperature_c = parsed.temperature_c
    # Red flags ("chest pain", "koorts") are reported signs like the menu's symptoms:
    # they stay with the check-in, so a later temperature is triaged with them.
    symptoms = frozenset(parsed.symptoms) | parsed.red_flags
    answered_symptoms = parsed.intent in (Intent.SYMPTOMS, Intent.NO_SYMPTOMS, Intent.NO) or bool(
        symptoms
    )
    if answered_symptoms:
        checkin.symptoms = sorted(set(checkin.symptoms or []) | symptoms)
    tcontext = triage_context(
        session, patient, now, plan=context.plan, temperature_c=parsed.temperature_c
    )
    checkin.in_cmv_window = tcontext.in_cmv_window
    temperature = (
        parsed.temperature_c if parsed.temperature_c is not None else checkin.temperature_c
    )
    decision = triage_report(temperature, frozenset(checkin.symptoms or ()), tcontext)
    # A slightly raised temperature the care team noted as expected: recorded and answered,
    # but no re-check and no alert (never a fever, a red flag or another symptom).
    decision = apply_expected_levels(session, patient.id, temperature, decision, now)
    report_symptoms = list(checkin.symptoms or [])
    # A plain INSERT (nothing reads the report back as a model): its id is the driver's.
    report_id = session.execute(
        _INSERT_REPORT,
        {
            "patient_id": patient.id,
            "checkin_id": checkin.id,
            "reported_at": now,
            "temperature_c": temperature,
            "symptoms": report_symptoms,
            "severity": str(decision.severity),
            "summary": decision.summary[:500],
            "source": "sms",
            "rule_ids": list(decision.rule_ids),
        },
    ).inserted_primary_key[0]
    _alert_for(
        session, patient, decision, report_id, temperature, report_symptoms, checkin, inbound, now
    )
    if parsed.has_free_text and decision.severity is not Severity.URGENT:
        # Words the parser could not read may matter ("36.8 but my leg is swollen").
        _forward_free_text(session, context, inbound, parsed, now)
    values = _triage_values(decision, temperature, patient)
    if decision.awaits_temperature:
        # Fever in words: the patient is told to call now, and the check-in waits for
        # the number (a reply with it is triaged together with the words).
        checkin.state, checkin.last_prompt_at = CheckInState.AWAITING_TEMPERATURE, now
        checkin.severity = str(decision.severity)
        checkin.save(session)
        return _text(context, decision.patient_template or "fever_words_urgent", **values)
    if decision.severity is Severity.URGENT:
        _close(checkin, decision, now)
        checkin.save(session)
        return _text(context, decision.patient_template or "fever_urgent", **values)
    if decision.recheck_after_minutes:
        _schedule_recheck(session, context, checkin, inbound, decision.recheck_after_minutes, now)
        checkin.save(session)
        return _text(context, decision.patient_template or "recheck_temperature", **values)
    if answered_symptoms:
        _close(checkin, decision, now)
        checkin.save(session)
        return _text(context, decision.patient_template or "all_clear_thanks", **values)
    checkin.state, checkin.last_prompt_at = CheckInState.AWAITING_SYMPTOMS, now
    checkin.save(session)
    return _text(context, _symptom_menu(session, patient, context.plan))


def _close(checkin: OpenCheckIn, decision: TriageDecision, now: datetime) -> None:
    checkin.state, checkin.closed_at, checkin.severity = (
        CheckInState.CLOSED,
        now,
        str(decision.severity),
    )


def _schedule_recheck(
    session: Session,
    context: PatientContext,
    checkin: OpenCheckIn,
    inbound: StoredInbound,
    minutes: int,
    now: datetime,
) -> None:
    """Ask for the temperature again in ``minutes`` (the check-in waits for it)."""
    recheck_at = now + timedelta(minutes=minutes)
    checkin.state, checkin.last_prompt_at, checkin.recheck_due_at = (
        CheckInState.AWAITING_TEMPERATURE,
        recheck_at,
        recheck_at,
    )
    queue_patient_message(
        session,
        context,
        "checkin_temperature",
        dedupe_key=f"checkin{checkin.id}:recheck:{inbound.provider_sid}",
        now=now,
        due_at=recheck_at,
        not_after=recheck_at + timedelta(hours=2),
        urgent=True,  # a temperature re-check is not held back by quiet hours
        expects="temperature",
        checkin_id=checkin.id,
    )


def _triage_values(
    decision: TriageDecision, temperature: float | None, patient: Patient
) -> dict[str, object]:
    """The temperatures a triage answer quotes, with the units of the patient's region."""
    language, region = patient.language, get_region(patient.region)
    return {
        "temperature": temperature_text(temperature, language, region)
        if temperature is not None
        else "",
        "recheck_minutes": decision.recheck_after_minutes
        or clinical_rules().fever.recheck_after_minutes,
        "fever": temperature_text(clinical_rules().fever.threshold_c, language, region),
    }


def _alert_for(
    session: Session,
    patient: Patient,
    decision: TriageDecision,
    report_id: int,
    temperature: float | None,
    symptoms: list[str],
    checkin: OpenCheckIn,
    inbound: StoredInbound,
    now: datetime,
) -> None:
    if not decision.alert_care_team:
        return
    fields = {
        # Set whenever the care team is alerted: a matched rule asked for it.
        "kind": str(decision.alert_kind),
        "reason": decision.summary[:500],
        "details": {
            "report_id": report_id,
            "checkin_id": checkin.id,
            "temperature_c": temperature,
            "symptoms": symptoms,
            "reasons": list(decision.reasons),
            "rule_ids": list(decision.rule_ids),
            "red_flags": list(decision.red_flags),
            "cmv_test_advised": decision.cmv_test_advised,
            # The answer this message gets (every report is answered): the alert shows
            # whether the advice reached the patient.
            "reply_key": reply_key(inbound.provider_sid),
        },
        "source": "; ".join(decision.sources)[:200],
        "dedupe_key": f"report:{report_id}",
    }
    if decision.severity is Severity.URGENT or decision.notify_on_call:
        raise_urgent_alert(session, patient, now, **fields)
    else:
        raise_alert(
            session,
            patient,
            severity=str(decision.severity)
            if str(decision.severity) in ("high", "routine")
            else "high",
            now=now,
            **fields,
        )


def _forward_free_text(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    now: datetime,
) -> tuple[str, str]:
    """A message we could not read: a human reads it (never routine), the patient is told so.

    Red flags never come this way: the parser reports them and they are triaged.
    """
    patient = context.patient
    raise_alert(
        session,
        patient,
        severity="high",
        kind="patient_message",
        reason=("Needs review, message from patient: " + inbound.body)[:500],
        details={
            "inbound_id": inbound.id,
            "needs_review": True,
            "reply_key": reply_key(inbound.provider_sid),
        },
        source="patient SMS (a message the companion could not read is read by a person)",
        now=now,
        dedupe_key=f"message:{inbound.provider_sid}",
    )
    return _text(context, "free_text_ack")


def _record_reply(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    reply: tuple[str, str],
    now: datetime,
) -> None:
    """Keep the TwiML answer in the thread, as a sent outbound message.

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
            to_phone=context.patient.phone,
            urgent=True,
            status=OutboxStatus.SENT,
            provider_status="twiml",
            sent_at=now,
            checkin_id=inbound.checkin_id,
        ),
    )
