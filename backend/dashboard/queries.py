"""What the care-team pages show, read from the database (no Flask here).

Each function takes a session, the team-checked rows and ``now``; the views
turn the results into HTML and charts. Writing stays in ``backend.services``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from backend.schemas import PlanOut
from backend.serializers import body_surface_area, plan_out
from backend.services.labs import labs_of
from backend.services.prophylaxis import courses_of, eligibility
from reminders.core.bsa import BodySurfaceArea
from reminders.core.dates import local_today
from reminders.core.expected_levels import ExpectedLevelNote, quieting_level
from reminders.core.prophylaxis import StopEligibility
from reminders.core.regimens import UnknownRegimen, get_regimen
from reminders.core.templates import DOSE_REMINDER_KEYS
from reminders.data.alerts import list_alerts
from reminders.data.models import (
    Alert,
    InboundMessage,
    LabResult,
    OutboundMessage,
    Patient,
    PillConfirmation,
    Plan,
    ProphylaxisCourse,
    SymptomReport,
    Team,
    User,
)
from reminders.data.plans import pick_current_plan
from reminders.data.statuses import (
    ACCEPTED_OUTBOX_STATUSES,
    SETTLED_OUTBOX_STATUSES,
    AlertStatus,
    OutboxStatus,
)

#: Outbox kinds tied to a dose of the plan (they stop with a hold).
DOSE_REMINDER_KINDS = frozenset(DOSE_REMINDER_KEYS)
#: How people read each kind of message.
MESSAGE_KIND_LABELS = {
    "welcome": "Welcome",
    "dose_reminder_evening_before": "Dose reminder (evening before)",
    "dose_reminder_morning": "Dose reminder (morning)",
    "first_dose_in_hospital": "First dose (in hospital)",
    "dose_in_hospital_evening_before": "Dose reminder (evening before, in hospital)",
    "premedication_reminder": "Premedication reminder",
    "premedication_by_team": "Premedication (given by the team)",
    "pill_reminder": "Pill reminder",
    "lab_reminder": "Blood test reminder",
    "milestone": "Milestone",
    "milestone_review": "Review note (care-team decision)",
    "checkin_temperature": "Temperature check-in",
    "checkin_resend": "Check-in (sent again)",
    "one_off": "Message from the care team",
}
ADHERENCE_DAYS = 14
THREAD_LIMIT = 60


def kind_label(kind: str) -> str:
    """A readable name for an outbox kind (template names otherwise)."""
    return MESSAGE_KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


@dataclass(frozen=True)
class ThreadItem:
    """One SMS of the patient's thread, either way."""

    at: datetime
    direction: str  # "in" (from the patient) or "out"
    text: str
    status: str
    kind: str


@dataclass(frozen=True)
class QueueItem:
    """An alert of the queue and the patient it is about."""

    alert: Alert
    patient: Patient
    waited: timedelta
    overdue: bool
    acknowledged_by: User | None


#: Alerts per page of the triage queue: never cut silently, the page says "showing 1-200 of N".
QUEUE_PAGE_SIZE = 200


@dataclass
class AlertQueue:
    """One page of the triage queue, and how many alerts are waiting in all."""

    items: list[QueueItem]
    total: int
    page: int
    per_page: int

    @property
    def first(self) -> int:
        """The position of the page's first alert (1-based; 0 on an empty page)."""
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        """The position of the page's last alert."""
        return (self.page - 1) * self.per_page + len(self.items)

    @property
    def has_next(self) -> bool:
        """More alerts wait on the next page."""
        return self.last < self.total


@dataclass
class PatientOverview:
    """Everything the patient page shows."""

    patient: Patient
    team: Team
    plans: list[tuple[Plan, PlanOut]]
    current: tuple[Plan, PlanOut] | None
    bsa: BodySurfaceArea | None
    courses: list[tuple[ProphylaxisCourse, StopEligibility]]
    labs: list[LabResult]
    reports: list[SymptomReport]
    thread: list[ThreadItem]
    upcoming: list[OutboundMessage]
    adherence: list[tuple[date, int, int]]
    alerts: list[Alert]
    today: date
    extra: dict[str, object] = field(default_factory=dict)


def expected_marks(
    reports: Iterable[SymptomReport], levels: Iterable[ExpectedLevelNote]
) -> dict[int, ExpectedLevelNote]:
    """The readings an expected level quieted, by report id, with the level that did.

    The rule the SMS conversation applied (``reminders.core.expected_levels``), read with
    the levels in force at each reading's instant: the page marks what the SMS quieted.
    """
    levels = list(levels)
    marks: dict[int, ExpectedLevelNote] = {}
    for report in reports:
        level = quieting_level(report.temperature_c, report.rule_ids, levels, report.reported_at)
        if level is not None and report.id is not None:
            marks[report.id] = level
    return marks


def alert_queue(
    session: Session,
    team_id: int,
    now: datetime,
    overdue_after: timedelta,
    page: int = 1,
    per_page: int = QUEUE_PAGE_SIZE,
) -> AlertQueue:
    """Open and acknowledged alerts of the team, most urgent and oldest first, a page at a time.

    Urgent alerts sort first, so a long queue pushes the least pressing ones to later
    pages, never an urgent one; the page knows the total, so none is dropped unseen.
    """
    page = max(page, 1)
    alerts, total = list_alerts(session, team_id, page=page, per_page=per_page)
    patients = _by_id(session, Patient, {a.patient_id for a in alerts})
    users = _by_id(session, User, {a.acknowledged_by for a in alerts if a.acknowledged_by})
    items = []
    for alert in alerts:
        waited = now - alert.created_at
        items.append(
            QueueItem(
                alert=alert,
                patient=patients[alert.patient_id],
                waited=waited,
                overdue=alert.severity == "urgent"
                and alert.status == AlertStatus.OPEN
                and waited > overdue_after,
                acknowledged_by=users.get(alert.acknowledged_by),
            )
        )
    return AlertQueue(items=items, total=total, page=page, per_page=per_page)


def _by_id(session: Session, model: type, ids: Iterable[int | None]) -> dict[int, object]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {row.id: row for row in session.exec(select(model).where(model.id.in_(wanted))).all()}


def users_by_id(session: Session, ids: Iterable[int | None]) -> dict[int, User]:
    """Users by id, for "acknowledged by" and "resolved by" lines."""
    return _by_id(session, User, ids)  # type: ignore[return-value]


def patient_overview(session: Session, patient: Patient, now: datetime) -> PatientOverview:
    """Plans, prophylaxis, labs, reports, SMS thread, upcoming messages, adherence, alerts."""
    plans_rows = session.exec(
        select(Plan)
        .where(Plan.patient_id == patient.id)
        .order_by(Plan.created_at.desc(), Plan.id.desc())
    ).all()
    plans = [(plan, plan_out(session, plan, patient)) for plan in plans_rows]
    chosen = pick_current_plan(plan for plan, _ in plans)
    current = next((p for p in plans if p[0] is chosen), None)
    alerts, _ = list_alerts(session, patient.team_id, patient_id=patient.id, per_page=200)
    return PatientOverview(
        patient=patient,
        team=session.get(Team, patient.team_id),
        plans=plans,
        current=current,
        bsa=_bsa(patient),
        courses=[
            (c, eligibility(session, c, patient, now)) for c in courses_of(session, patient.id)
        ],
        labs=list(reversed(labs_of(session, patient.id))),
        reports=list(
            session.exec(
                select(SymptomReport)
                .where(SymptomReport.patient_id == patient.id)
                .order_by(SymptomReport.reported_at, SymptomReport.id)
            ).all()
        ),
        thread=sms_thread(session, patient.id),
        upcoming=upcoming_messages(session, patient.id),
        adherence=pill_adherence(session, patient, now),
        alerts=alerts,
        today=local_today(patient.timezone, now),
    )


def _bsa(patient: Patient) -> BodySurfaceArea | None:
    try:
        return body_surface_area(patient)
    except ValueError:  # an implausible height or weight: shown as missing, never guessed
        return None


def sms_thread(session: Session, patient_id: int, limit: int = THREAD_LIMIT) -> list[ThreadItem]:
    """The patient's SMS conversation, oldest first: what was sent and what they answered."""
    outbound = session.exec(
        select(OutboundMessage)
        .where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status.in_((*SETTLED_OUTBOX_STATUSES, OutboxStatus.UNCONFIRMED)),
        )
        .order_by(OutboundMessage.sent_at.desc(), OutboundMessage.id.desc())
        .limit(limit)
    ).all()
    inbound = session.exec(
        select(InboundMessage)
        .where(InboundMessage.patient_id == patient_id)
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(limit)
    ).all()
    items = [
        ThreadItem(m.sent_at or m.due_at, "out", m.body, m.status, m.kind) for m in outbound
    ] + [ThreadItem(m.received_at, "in", m.body, "received", m.intent or "") for m in inbound]
    # Ties (a reply recorded at the same instant as the message it answers): incoming first.
    items.sort(key=lambda item: (item.at, item.direction == "out"))
    return items[-limit:]


def upcoming_messages(session: Session, patient_id: int) -> list[OutboundMessage]:
    """Messages to the patient still waiting in the outbox, soonest first."""
    return list(
        session.exec(
            select(OutboundMessage)
            .where(
                OutboundMessage.patient_id == patient_id,
                OutboundMessage.recipient == "patient",
                OutboundMessage.status == OutboxStatus.PENDING,
            )
            .order_by(OutboundMessage.due_at, OutboundMessage.id)
        ).all()
    )


def pill_adherence(
    session: Session, patient: Patient, now: datetime, days: int = ADHERENCE_DAYS
) -> list[tuple[date, int, int]]:
    """Per local day of the last ``days``: pill reminders sent and how many the patient confirmed."""
    zone = ZoneInfo(patient.timezone)
    today = local_today(patient.timezone, now)
    since = now - timedelta(days=days + 1)
    sent = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id,
            OutboundMessage.expects == "taken",
            OutboundMessage.status.in_(ACCEPTED_OUTBOX_STATUSES),
            OutboundMessage.sent_at >= since,
        )
    ).all()
    confirmed = set(
        session.exec(
            select(PillConfirmation.event_key).where(PillConfirmation.patient_id == patient.id)
        ).all()
    )
    per_day = {today - timedelta(days=n): [0, 0] for n in range(days)}
    for message in sent:
        day = message.sent_at.astimezone(zone).date()
        if day in per_day:
            per_day[day][0] += 1
            per_day[day][1] += message.dedupe_key in confirmed
    return [(day, counts[0], counts[1]) for day, counts in sorted(per_day.items())]


def regimen_name(regimen_id: str) -> str:
    """The regimen's readable name (its id when it is no longer in the library)."""
    try:
        return get_regimen(regimen_id).name
    except UnknownRegimen:
        return regimen_id


def patient_search(session: Session, team_id: int, text: str | None) -> list[Patient]:
    """The team's patients by name, filtered by a name or hospital reference fragment."""
    query = select(Patient).where(Patient.team_id == team_id)
    if text:
        pattern = f"%{text.strip().lower()}%"
        from sqlalchemy import func, or_

        query = query.where(
            or_(
                func.lower(Patient.display_name).like(pattern),
                func.lower(Patient.hospital_ref).like(pattern),
            )
        )
    return list(session.exec(query.order_by(Patient.display_name, Patient.id).limit(500)).all())


def open_alert_count(session: Session, team_id: int) -> int:
    """How many alerts of the team are not resolved yet (the badge in the navigation)."""
    from sqlalchemy import func

    return int(
        session.exec(
            select(func.count())
            .select_from(Alert)
            .where(Alert.team_id == team_id, Alert.status != AlertStatus.RESOLVED)
        ).one()
    )


def open_alert_counts(session: Session, team_id: int) -> dict[int, int]:
    """Open or acknowledged alerts per patient of the team."""
    rows = session.exec(
        select(Alert.patient_id).where(
            Alert.team_id == team_id, Alert.status != AlertStatus.RESOLVED
        )
    ).all()
    counts: dict[int, int] = {}
    for patient_id in rows:
        counts[patient_id] = counts.get(patient_id, 0) + 1
    return counts


def export_rows(session: Session, patient: Patient) -> list[dict[str, object]]:
    """Symptom reports and SMS (both ways) of a patient, oldest first, for the CSV export."""
    zone = ZoneInfo(patient.timezone)
    rows: list[dict[str, object]] = []
    for report in session.exec(
        select(SymptomReport).where(SymptomReport.patient_id == patient.id)
    ).all():
        rows.append(
            {
                "at": report.reported_at,
                "record": "symptom_report",
                "direction": "",
                "kind": report.source,
                "status": report.severity,
                "temperature_c": ""
                if report.temperature_c is None
                else f"{report.temperature_c:.1f}",
                "symptoms": " ".join(report.symptoms or []),
                "text": report.summary,
            }
        )
    for item in sms_thread(session, patient.id, limit=100_000):
        rows.append(
            {
                "at": item.at,
                "record": "sms",
                "direction": "from_patient" if item.direction == "in" else "to_patient",
                "kind": item.kind,
                "status": item.status,
                "temperature_c": "",
                "symptoms": "",
                "text": item.text,
            }
        )
    rows.sort(key=lambda row: (row["at"], row["record"]))
    for row in rows:
        at: datetime = row["at"]  # type: ignore[assignment]
        row["at_local"] = at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        row["at_utc"] = at.isoformat()
    return rows
