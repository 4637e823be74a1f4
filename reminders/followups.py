"""Follow-ups: unanswered check-ins, urgent alerts nobody acknowledged, missing prophylaxis.

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
from reminders.core.templates import render
from reminders.data.alerts import raise_alert
from reminders.data.models import (
    Alert,
    CheckIn,
    Patient,
    Plan,
    ProphylaxisCourse,
    Team,
)
from reminders.data.prophylaxis import (
    MISSING_ALERT_KIND,
    missing_alert_key,
    propose_regimen_courses,
)
from reminders.data.statuses import (
    OPEN_CHECKIN_STATES,
    OPEN_PLAN_STATUSES,
    AlertStatus,
    CheckInState,
)
from reminders.outbox import enqueue_message, queue_patient_message
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


def alert_needs_reescalation(alert: Alert, now: datetime, policy: AlertPolicy) -> bool:
    """True when an urgent alert has waited unacknowledged past the re-escalation delay."""
    if alert.severity != "urgent" or alert.status != AlertStatus.OPEN:
        return False
    last = alert.oncall_notified_at or alert.created_at
    return now - last >= timedelta(minutes=policy.urgent_reescalate_after_minutes)


def follow_up_checkins(session: Session, now: datetime) -> dict[str, int]:
    """Re-send each unanswered check-in once, then flag it to the care team."""
    policy = clinical_rules().alerts
    counts = {"resent": 0, "flagged": 0}
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
        session.add(checkin)
    return counts


def notify_on_call(
    session: Session, alert: Alert, now: datetime, *, template: str = "oncall_alert"
) -> bool:
    """Queue an urgent SMS about ``alert`` to the team's on-call number (no patient phone in it)."""
    team = session.get(Team, alert.team_id)
    if team is None or not team.oncall_phone:
        return False
    body = render(
        template,
        "en",
        patient_ref=f"P{alert.patient_id}",
        reason=alert.reason[:80],
        team_name=team.name,
        minutes=clinical_rules().alerts.urgent_reescalate_after_minutes,
        alert_id=alert.id,
    )
    queued = enqueue_message(
        session,
        team_id=team.id,
        patient_id=alert.patient_id,
        recipient="oncall",
        kind=template,
        body=body,
        dedupe_key=f"alert{alert.id}:oncall{alert.escalation_count}",
        now=now,
        urgent=True,
        alert_id=alert.id,
    )
    alert.oncall_notified_at = now
    session.add(alert)
    return queued


def escalate_unacknowledged_alerts(session: Session, now: datetime) -> int:
    """Send urgent alerts nobody acknowledged within the delay to the on-call number again."""
    policy = clinical_rules().alerts
    count = 0
    open_urgent = session.exec(
        select(Alert).where(Alert.severity == "urgent", Alert.status == AlertStatus.OPEN)
    ).all()
    for alert in open_urgent:
        if alert_needs_reescalation(alert, now, policy):
            alert.escalation_count += 1
            if notify_on_call(session, alert, now, template="oncall_reescalation"):
                count += 1
    return count


def raise_urgent_alert(
    session: Session, patient: Patient, now: datetime, **fields: object
) -> Alert:
    """Raise an urgent alert about ``patient`` and notify their team's on-call number once."""
    alert = raise_alert(session, patient, severity="urgent", now=now, **fields)  # type: ignore[arg-type]
    if alert.oncall_notified_at is None:
        notify_on_call(session, alert, now)
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
