"""Follow-ups: unanswered check-ins (and the family's nudge), raising urgent alerts, missing prophylaxis.

Decide apart from deliver: pure "should we?" functions look at one row and the
time; the jobs below save the state change and queue the message in the same
transaction; the dispatcher delivers it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from reminders.core.clinical_rules import AlertPolicy, clinical_rules
from reminders.core.prophylaxis import missing_mandatory_prophylaxis
from reminders.core.regimens import ProphylaxisDefault, Regimen, load_regimens
from reminders.data.alerts import raise_alert
from reminders.data.models import (
    Alert,
    CheckIn,
    Patient,
    Plan,
    ProphylaxisCourse,
)
from reminders.data.prophylaxis import (
    MISSING_ALERT_KIND,
    missing_alert_key,
    propose_regimen_courses,
)
from reminders.data.statuses import (
    OPEN_CHECKIN_STATES,
    OPEN_PLAN_STATUSES,
    CheckInState,
)
from reminders.escalation import start_escalation
from reminders.family import nudge_after_unanswered
from reminders.outbox import queue_patient_message
from reminders.rendering import patient_context, sms_allowed


def checkin_follow_up(checkin: CheckIn, now: datetime, policy: AlertPolicy) -> str | None:
    """What an open check-in needs now: "resend", "flag" or nothing."""
    if checkin.state not in OPEN_CHECKIN_STATES:
        return None
    waited = now - checkin.last_prompt_at
    if checkin.resend_count == 0 and waited >= timedelta(minutes=policy.checkin_flag_after_minutes):
        # The moment to ask again passed unseen (the clock process was down): a re-send
        # hours late would be a stale prompt, and the flag is already due. Tell the team.
        return "flag"
    if checkin.resend_count == 0 and waited >= timedelta(
        minutes=policy.checkin_resend_after_minutes
    ):
        return "resend"
    flag_after = policy.checkin_flag_after_minutes - policy.checkin_resend_after_minutes
    if checkin.resend_count >= 1 and waited >= timedelta(minutes=flag_after):
        return "flag"
    return None


def follow_up_checkins(session: Session, now: datetime) -> dict[str, int]:
    """Re-send each unanswered check-in once, then flag it to the care team.

    The second unanswered check-in in a row also nudges the patient's consenting family
    contacts, once per run (:func:`reminders.family.nudge_after_unanswered`).
    """
    policy = clinical_rules().alerts
    counts = {"resent": 0, "flagged": 0, "family_nudged": 0}
    for checkin in session.exec(
        select(CheckIn).where(CheckIn.state.in_(OPEN_CHECKIN_STATES))
    ).all():
        action = checkin_follow_up(checkin, now, policy)
        if action is None:
            continue
        patient = session.get(Patient, checkin.patient_id)
        if action == "resend" and sms_allowed(patient):
            context = patient_context(session, patient)
            sent_at = checkin.last_prompt_at.astimezone(ZoneInfo(patient.timezone))
            queue_patient_message(
                session,
                context,
                "checkin_resend",
                values={"sent_time": sent_at.strftime("%H:%M")},
                dedupe_key=f"checkin{checkin.id}:resend",
                now=now,
                not_after=now + timedelta(hours=3),
                expects="temperature"
                if checkin.state == CheckInState.AWAITING_TEMPERATURE
                else "symptoms",
                checkin_id=checkin.id,
            )
            checkin.resend_count += 1
            checkin.last_prompt_at = now
            counts["resent"] += 1
        else:
            checkin.state = CheckInState.UNANSWERED
            checkin.closed_at = now
            raise_alert(
                session,
                patient,
                severity="high",
                kind="checkin_unanswered",
                reason="Symptom check-in not answered (sent twice): please call the patient",
                details={"checkin_id": checkin.id},
                source="care-team policy: re-send once, then flag",
                now=now,
                dedupe_key=f"checkin{checkin.id}:unanswered",
            )
            counts["flagged"] += 1
            counts["family_nudged"] += nudge_after_unanswered(session, patient, checkin, now)
        session.add(checkin)
    return counts


def raise_urgent_alert(
    session: Session, patient: Patient, now: datetime, **fields: object
) -> Alert:
    """Raise an urgent alert about ``patient`` and page the on-call clinician at once.

    The first step of the team's escalation policy (an SMS to the rota's primary) is
    queued in the same transaction as the alert; a repeated raise (same ``dedupe_key``)
    pages nobody again. The clock's ``escalate-alerts`` job takes the later steps.
    """
    alert = raise_alert(session, patient, severity="urgent", now=now, **fields)  # type: ignore[arg-type]
    if alert.escalation_count == 0:
        start_escalation(session, alert, now)
    return alert


def check_mandatory_prophylaxis(session: Session, now: datetime) -> int:
    """Raise one high alert per open plan whose mandatory prophylaxis is still undecided.

    A plan (active or on hold) of a regimen with mandatory prophylaxis is checked
    ``prophylaxis_check.confirm_within_hours`` (24 h, a care-team setting from issue 11)
    after the later of the local start of its start date and its creation
    (:func:`reminders.core.prophylaxis.missing_mandatory_prophylaxis`). Each plan
    alerts at most once (``dedupe_key``); a course confirmed or declined before the
    check prevents it, and after it resolves the alert
    (``backend.services.prophylaxis.confirm_course``). A stopped plan is not checked.

    A plan started before proposals existed has none: they are proposed here (inert
    until a user confirms them), so that the alert always has something to confirm.
    Returns the number of alerts raised.
    """
    regimens = {r.id: r for r in load_regimens().values() if r.mandatory_prophylaxis}
    if not regimens:
        return 0
    alerted = set(
        session.exec(select(Alert.dedupe_key).where(Alert.kind == MISSING_ALERT_KIND)).all()
    )
    plans = [
        plan
        for plan in session.exec(
            select(Plan).where(Plan.regimen_id.in_(regimens), Plan.status.in_(OPEN_PLAN_STATUSES))
        ).all()
        if missing_alert_key(plan.id) not in alerted
    ]
    if not plans:
        return 0
    statuses: dict[int, dict[str, str]] = {}
    for plan_id, entry, status in session.exec(
        select(
            ProphylaxisCourse.plan_id, ProphylaxisCourse.regimen_entry, ProphylaxisCourse.status
        ).where(
            ProphylaxisCourse.plan_id.in_([p.id for p in plans]),
            ProphylaxisCourse.regimen_entry.is_not(None),
        )
    ).all():
        statuses.setdefault(plan_id, {})[entry] = status
    raised = 0
    for plan in plans:
        regimen = regimens[plan.regimen_id]
        patient = session.get(Patient, plan.patient_id)
        course_status = statuses.get(plan.id, {})
        if any(entry.id not in course_status for entry in regimen.prophylaxis):
            for course in propose_regimen_courses(session, plan, patient, now):
                course_status[course.regimen_entry] = course.status
        missing = missing_mandatory_prophylaxis(
            entries=regimen.mandatory_prophylaxis,
            course_status=course_status,
            start_date=plan.start_date,
            created_at=plan.created_at,
            timezone=patient.timezone,
            now=now,
        )
        if not missing:
            continue
        raise_alert(
            session,
            patient,
            severity="high",
            kind=MISSING_ALERT_KIND,
            reason=_missing_reason(regimen, missing),
            details={"plan_id": plan.id, "missing": [entry.id for entry in missing]},
            source=_missing_source(missing),
            now=now,
            dedupe_key=missing_alert_key(plan.id),
        )
        raised += 1
    return raised


def _missing_reason(regimen: Regimen, missing: tuple[ProphylaxisDefault, ...]) -> str:
    """The alert's sentence: which drugs, since when, what to do, and the source."""
    hours = clinical_rules().prophylaxis_check.confirm_within_hours
    drugs = ", ".join(entry.drug for entry in missing)
    reason = (
        f"Mandatory prophylaxis not active {hours} h after the start of {regimen.name}: "
        f"{drugs}. Confirm the proposed courses (dose, times) or decline them with a reason. "
        f"Source: {_missing_source(missing)}"
    )
    return reason[:500]


def _missing_source(missing: tuple[ProphylaxisDefault, ...]) -> str:
    """The seed files that make the missing courses mandatory, and the deadline's source."""
    files = dict.fromkeys(
        name
        for entry in missing
        for name in re.findall(r"\d{3}_[0-9a-f]{16}\.txt", entry.mandatory_source or "")
    )
    seeds = "; ".join(f"{name}{' (Table 4)' if name.startswith('003_') else ''}" for name in files)
    deadline = clinical_rules().prophylaxis_check.source
    return f"{seeds}; {deadline}"[:200]
