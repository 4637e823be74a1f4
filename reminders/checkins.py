"""Check-ins: a temperature or symptoms answered, triaged, recorded, alerted on.

:class:`OpenCheckIn` is the check-in a reply answers (read with the patient by
``reminders.conversations.conversation``, written back with one UPDATE);
:func:`check_in_step` takes a reading or symptoms into it, triages them with the pure
rules (:func:`triage_context` supplies what the rules need beyond the reply), stores the
report with its rule ids, raises the alert the decision asks for and answers the patient:
call now, a re-check of the temperature, thanks, or the symptom menu.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, select

from reminders.core.clinical_rules import clinical_rules
from reminders.core.dates import local_today
from reminders.core.parser import Intent, ParsedReply
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
from reminders.data.models import CheckIn, Patient, Plan, ProphylaxisCourse, SymptomReport
from reminders.data.statuses import CheckInState, PlanStatus, check_transition
from reminders.family import copy_urgent_advice
from reminders.followups import raise_urgent_alert
from reminders.inbound import Answer, StoredInbound, answer, forward_free_text, reply_key
from reminders.outbox import queue_patient_message
from reminders.rendering import PatientContext
from reminders.specs import load_plan_spec

#: The check-in columns a reply reads or changes (see :class:`OpenCheckIn`).
CHECKIN_FIELDS = (
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
# The check-in's changes, written with one UPDATE of the columns that changed (the
# parameters name them), as the unit of work would have written them.
_UPDATE_CHECKIN = update(_CHECKIN_TABLE).where(_CHECKIN_TABLE.c.id == bindparam("checkin_pk"))
# Built once: ``insert().values(...)`` would build a statement and its cache key per report.
_INSERT_REPORT = insert(SymptomReport.__table__)


class OpenCheckIn:
    """The check-in a reply answers: its columns, and which of them the reply changed.

    Read with the patient as plain columns (no model instance to track) and written
    back by :meth:`save` with one UPDATE of the changed columns, as the unit of work
    would write them.
    """

    __slots__ = (*CHECKIN_FIELDS, "_stored")

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
        for name in CHECKIN_FIELDS:
            setattr(self, name, values[name])
        self._stored = dict(values)

    @classmethod
    def of(cls, checkin: CheckIn) -> OpenCheckIn:
        """The open check-in of a stored (flushed) model instance."""
        return cls({name: getattr(checkin, name) for name in CHECKIN_FIELDS})

    def save(self, session: Session) -> None:
        """Write the columns changed since it was read (nothing when none changed)."""
        changed = {
            name: getattr(self, name)
            for name in CHECKIN_FIELDS[1:]
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
    plan: Plan | None,
    now: datetime,
    temperature_c: float | None,
) -> TriageContext:
    """What triage needs beyond the reply: CMV window and risk, the drug, earlier readings.

    ``plan``: the patient's current plan (read with the reply, ``PatientContext.plan``).
    ``temperature_c``: this reply's reading; when it is slightly raised, the patient's
    earlier readings are looked up to tell whether it keeps coming back.
    """
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


def symptom_menu(plan: Plan | None) -> str:
    """The symptom menu for the regimen of ``plan`` (with yellow skin/eyes for inotuzumab)."""
    extra = get_regimen(plan.regimen_id).extra_symptoms if plan is not None else ()
    return "checkin_symptoms_with_jaundice" if "jaundice" in extra else "checkin_symptoms"


def check_in_step(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    checkin: OpenCheckIn | None,
    now: datetime,
) -> Answer:
    """Take a temperature or symptoms into the check-in, triage it, alert, answer.

    A report without a check-in open (unprompted) opens one for itself. The answer
    follows the triage: call now (urgent, or fever in words awaiting the number), a
    re-check of the temperature, thanks (symptoms answered), else the symptom menu.
    """
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
    tcontext = triage_context(session, patient, context.plan, now, parsed.temperature_c)
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
        forward_free_text(session, context, inbound, parsed, now)
    if decision.awaits_temperature or decision.severity is Severity.URGENT:
        # The patient is told to call now: their consenting family contacts get a copy,
        # queued with the alert (reminders.family).
        copy_urgent_advice(session, context, inbound.provider_sid, now)
    values = _triage_values(decision, temperature, patient)
    if decision.awaits_temperature:
        # Fever in words: the patient is told to call now, and the check-in waits for
        # the number (a reply with it is triaged together with the words).
        checkin.state, checkin.last_prompt_at = CheckInState.AWAITING_TEMPERATURE, now
        checkin.severity = str(decision.severity)
        checkin.save(session)
        return answer(context, decision.patient_template or "fever_words_urgent", **values)
    if decision.severity is Severity.URGENT:
        _close(checkin, decision, now)
        checkin.save(session)
        return answer(context, decision.patient_template or "fever_urgent", **values)
    if decision.recheck_after_minutes:
        _schedule_recheck(session, context, checkin, inbound, decision.recheck_after_minutes, now)
        checkin.save(session)
        return answer(context, decision.patient_template or "recheck_temperature", **values)
    if answered_symptoms:
        _close(checkin, decision, now)
        checkin.save(session)
        return answer(context, decision.patient_template or "all_clear_thanks", **values)
    checkin.state, checkin.last_prompt_at = CheckInState.AWAITING_SYMPTOMS, now
    checkin.save(session)
    return answer(context, symptom_menu(context.plan))


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
