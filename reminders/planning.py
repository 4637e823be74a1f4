"""The planning pass: every consenting patient's plans and courses into outbox rows.

A planning pass (:func:`materialise_due_messages`) turns every consenting
patient's plan and prophylaxis events into outbox rows for the next 24 hours.
It is idempotent: each row has a ``dedupe_key`` made of the patient, the plan or
course, the event key, the message variant and the event's local date, and
rows are inserted with ON CONFLICT DO NOTHING (:mod:`reminders.outbox`), so running
a pass twice (or two clocks by mistake) stores nothing twice. A message whose moment
passed while the system was down is stored as pending while still fresh, otherwise
as missed.

When a plan or the patient's preferences change, :func:`replan_patient` deletes
the patient's unsent plan-derived rows and plans them again from the new state.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, String, TypeDecorator, bindparam, delete, type_coerce
from sqlmodel import Session, select

from reminders.core.messaging import (
    ContactPrefs,
    MessagePlan,
    max_freshness,
    message_rules,
    messages_for_event,
)
from reminders.core.planner import (
    EventKind,
    PlannedEvent,
    plan_doses,
    plan_events,
    prophylaxis_events,
)
from reminders.core.prophylaxis import ENDED_COURSE_STATUSES, CourseStatus
from reminders.data.models import (
    DoseRecord,
    OutboundMessage,
    Patient,
    Plan,
    PlanHold,
    PlanningPass,
    ProphylaxisCourse,
    Team,
)
from reminders.data.plans import pick_current_plan
from reminders.data.statuses import OutboxStatus
from reminders.outbox import INSERT_CHUNK, dedupe_key, insert_ignoring_duplicates, outbox_row
from reminders.planning_workers import PlanningWorkers, pack_rows, unpack_rows
from reminders.rendering import PatientContext, drug_name, render_for
from reminders.specs import build_plan_spec, build_prophylaxis_spec

#: How far ahead a planning pass writes messages.
PLANNING_HORIZON = timedelta(hours=24)
#: Patients planned together: a pass loads, plans and writes one chunk at a time, so its
#: memory stays flat whatever the number of patients (bench/bench_memory.py).
PATIENT_CHUNK = 1_000
#: Dedupe keys looked up per query (well under SQLite's limit of bound parameters).
KEY_LOOKUP_CHUNK = 2_048


def _messages(
    events: Iterable[PlannedEvent], prefs: ContactPrefs, since: datetime, until: datetime
) -> list[MessagePlan]:
    return [
        message for event in events for message in messages_for_event(event, prefs, since, until)
    ]


@dataclass(frozen=True)
class PlannedMessage:
    """A message a pass wants in the outbox, before its body is rendered.

    Rendering is most of a message's cost and a pass every five minutes finds nearly
    all its messages already stored, so the key is computed first and only the
    messages missing from the outbox are rendered.
    """

    context: PatientContext
    message: MessagePlan
    plan_id: int | None
    course_id: int | None
    dedupe_key: str
    spec: Any = None  # the plan's PlanSpec, for a milestone's progress

    @classmethod
    def of(
        cls,
        context: PatientContext,
        message: MessagePlan,
        *,
        plan_id: int | None = None,
        course_id: int | None = None,
        spec: Any = None,
    ) -> PlannedMessage:
        """The planned message with its outbox key."""
        key = dedupe_key(context.patient.id, message, plan_id=plan_id, course_id=course_id)
        return cls(context, message, plan_id, course_id, key, spec)

    def row(self, now: datetime) -> dict[str, Any]:
        """The outbox row, body rendered; missed if its moment passed while the system was down."""
        message, context = self.message, self.context
        extra = (
            _progress(self.spec, message.event)
            if self.spec is not None and message.event.kind == "milestone"
            else {}
        )
        fresh = now <= message.not_after
        return outbox_row(
            team_id=context.team.id,
            kind=message.template,
            body=render_for(context, message.template, message.event, **extra),
            dedupe_key=self.dedupe_key,
            now=now,
            due_at=message.send_at,
            patient_id=context.patient.id,
            plan_id=self.plan_id,
            course_id=self.course_id,
            not_after=message.not_after,
            status=OutboxStatus.PENDING if fresh else OutboxStatus.MISSED,
            error_reason=None if fresh else "moment passed while the system was down",
            expects=message.expects,
        )


def planned_messages_for_patient(
    context: PatientContext,
    plans: Sequence[Plan],
    holds: dict[int, list[PlanHold]],
    records: dict[int, list[DoseRecord]],
    courses: Sequence[ProphylaxisCourse],
    now: datetime,
    horizon: timedelta = PLANNING_HORIZON,
    *,
    since: datetime | None = None,
) -> list[PlannedMessage]:
    """Messages for one patient's plans and courses sent in [since, now+horizon).

    ``since`` defaults to now minus the longest freshness window (everything a pass
    may still send or must record as missed); a pass that follows a committed one
    starts where that one stopped (:func:`materialise_due_messages`).
    """
    patient = context.patient
    # Events from a freshness window back whatever ``since`` is: quiet hours can move a
    # message hours past its event, into the window.
    events_start = now - max_freshness()
    since = events_start if since is None else max(since, events_start)
    until = now + horizon
    # Events up to a day past the horizon: an evening-before reminder precedes its dose.
    event_end = until + timedelta(days=1)
    prefs = ContactPrefs(patient.timezone, patient.quiet_start, patient.quiet_end)
    planned: list[PlannedMessage] = []
    current = context.plan
    for plan in plans:
        spec = build_plan_spec(
            plan,
            patient,
            holds.get(plan.id, ()),
            records.get(plan.id, ()),
            courses=courses,
            current=current is None or plan.id == current.id,
        )
        events = plan_events(spec, events_start, event_end)
        for message in _messages(events, prefs, max(since, plan.created_at), until):
            planned.append(PlannedMessage.of(context, message, plan_id=plan.id, spec=spec))
    pill_end = until + _prophylaxis_lead()
    for course in courses:
        if course.status != CourseStatus.ACTIVE:
            continue  # a proposed course keeps check-ins going but sends no pill reminder
        events = prophylaxis_events(
            build_prophylaxis_spec(course, patient.timezone), events_start, pill_end
        )
        # From when the course became active: a proposal confirmed at 14:00 does not
        # send (or count as missed) the 08:00 pill of a day it was not yet prescribed.
        active_from = course.confirmed_at or course.created_at
        for message in _messages(events, prefs, max(since, active_from), until):
            planned.append(PlannedMessage.of(context, message, course_id=course.id))
    return planned


@lru_cache(maxsize=1)
def _prophylaxis_lead() -> timedelta:
    """How long before its pill event a prophylaxis message may be sent.

    Zero while every prophylaxis rule sends at the event itself (quiet hours only
    ever delay a message), so a pass need not plan pills past its horizon.
    """
    rules = message_rules().get(str(EventKind.PROPHYLAXIS), ())
    early = any(r.local_time is not None or r.day_offset for r in rules)
    return timedelta(days=1) if early else timedelta(0)


def _progress(spec: Any, event: PlannedEvent) -> dict[str, Any]:
    """Doses behind the patient and in total, for a milestone message."""
    doses = [d for d in plan_doses(spec) if d.status != "cancelled"]
    done = sum(1 for d in doses if d.date is not None and d.date < event.local.date())
    return {"done": done, "total": len(doses)}


def _grouped(rows: Iterable[Any], key: str) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, key)].append(row)
    return groups


def materialise_due_messages(
    session: Session,
    now: datetime,
    *,
    patient_ids: Sequence[int] | None = None,
    horizon: timedelta = PLANNING_HORIZON,
    processes: int = 0,
) -> int:
    """Write the next ``horizon`` of messages for every patient who may receive SMS.

    ``processes``: planning processes to use beside this one when there are more
    patients than one chunk (:mod:`reminders.planning_workers`); this process reads
    and writes while they plan. 0 plans everything here.

    A pass over every patient plans the messages sent from the end of the last
    committed pass (:class:`~reminders.data.models.PlanningPass`) to ``now + horizon``, or
    from a whole freshness window back when there is none (a first deployment, or
    after the clock was stopped longer than that): the messages before it are stored
    already, and looking back again on every pass would only find them stored. A pass
    for given patients (``replan_patient``) always looks back in full.

    Patients are planned :data:`PATIENT_CHUNK` at a time (their plans, holds, dose
    records and courses loaded per chunk), so memory does not grow with the
    number of patients; only messages whose key is not yet in the outbox are
    rendered and inserted.

    The pass reads table rows, not ORM objects: it only reads, so building and
    tracking model instances would be pure overhead. The rows have the models'
    attribute names, so the planner's spec builders and the templates take them as
    they are.

    Its statements keep a few shapes whatever the number of patients: chunks are
    read by patient id range, new rows are inserted :data:`INSERT_CHUNK` at a time
    (a chunk's remainder waits for the next chunk) and key look-ups come in a few
    sizes. SQLite's driver keeps 128 prepared statements per connection, so a
    statement of a new size per chunk would grow the process with every chunk.
    """
    # Rows are read with Core statements, which do not autoflush: changes the caller
    # made in this session (an opt-in, a new hold) must be visible to the plan.
    session.flush()
    full_pass = patient_ids is None
    look_back = now - max_freshness()
    # A full pass starts where the last committed one stopped, never more than a
    # freshness window back; a pass for given patients always looks back in full.
    mark = planned_until(session, now) if full_pass else None
    since = look_back if mark is None else max(mark, look_back)
    teams: dict[int, Any] = {}
    created = 0
    waiting: list[dict[str, Any]] = []
    workers: PlanningWorkers | None = None
    try:
        for patients in _consenting_patients(session, patient_ids):
            chunk = _load_chunk(session, patients, teams, by_range=full_pass)
            if workers is None and processes and len(patients) == PATIENT_CHUNK:
                # More than a chunk of patients: worth planning in other processes.
                workers = PlanningWorkers(processes, rows_of_packed_chunk, now, horizon, since)
            if workers is None:
                waiting += _new_rows(session, chunk, now, horizon, since)
            else:
                # The workers' rows are not looked up first: they are rendered already,
                # and the insert skips a stored key with the same probe of the unique
                # index that a look-up would make.
                for part in _split_chunk(chunk, processes):
                    for rows in workers.submit(_pack_chunk(part)):
                        waiting += rows
            ready = len(waiting) - len(waiting) % INSERT_CHUNK
            if ready:
                created += insert_ignoring_duplicates(session, waiting[:ready])
                del waiting[:ready]
        for rows in workers.drain() if workers is not None else ():
            waiting += rows
    finally:
        if workers is not None:
            workers.cancel()
    created += insert_ignoring_duplicates(session, waiting)
    if full_pass:
        _record_pass(session, now, since, now + horizon, created)
    return created


#: Planning passes kept (a week of five-minute passes); older ones are deleted.
PASS_HISTORY = timedelta(days=7)

_LAST_PASS = (
    select(PlanningPass.planned_until)
    .where(PlanningPass.planned_at <= bindparam("now"))
    .order_by(PlanningPass.planned_at.desc(), PlanningPass.id.desc())
    .limit(1)
)


def planned_until(session: Session, now: datetime) -> datetime | None:
    """Where the last committed pass made at or before ``now`` stopped (None: no such pass).

    Passes made after ``now`` are ignored: a pass run for an earlier moment (``run-due
    --now``, a clock set back) must not skip messages on their account.
    """
    return session.exec(_LAST_PASS, params={"now": now}).first()


def _record_pass(
    session: Session, now: datetime, since: datetime, until: datetime, rows: int
) -> None:
    session.execute(delete(PlanningPass).where(PlanningPass.planned_at < now - PASS_HISTORY))
    session.add(
        PlanningPass(
            planned_at=now,
            planned_from=since,
            planned_until=until,
            rows_written=rows,
        )
    )
    session.flush()


@lru_cache(maxsize=1_024)
def _shared_json(text: str) -> Any:
    return json.loads(text)


class _SharedJSON(TypeDecorator):
    """A JSON column read for a planning pass: each distinct text is parsed once.

    Thousands of plans and courses hold the same options and times. The values are
    shared between rows, so the pass only reads them (the spec builders copy them).
    """

    impl = String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        # psycopg already decodes json columns; SQLite hands back the text.
        return _shared_json(value) if isinstance(value, str) else value


def _read_only(table: Any) -> list[Any]:
    """The columns of ``table`` for a pass that only reads them (JSON parsed once per text)."""
    return [
        type_coerce(c, _SharedJSON()).label(c.name) if isinstance(c.type, JSON) else c
        for c in table.c
    ]


def _rows(session: Session, query: Any) -> Any:
    """The rows of a Core query (attribute access like the models)."""
    return session.execute(query).all()


def _consenting_patients(session: Session, patient_ids: Sequence[int] | None) -> Iterator[Any]:
    """Patients who may receive SMS, in chunks of :data:`PATIENT_CHUNK` by ascending id."""
    c = Patient.__table__.c
    query = (
        select(*_read_only(Patient.__table__))
        .where(
            c.sms_consent.is_(True),
            c.opted_out.is_(False),
            c.sms_blocked_reason.is_(None),
            c.discharged_at.is_(None),
            c.erased_at.is_(None),
        )
        .order_by(c.id)
        .limit(PATIENT_CHUNK)
    )
    if patient_ids is not None:
        query = query.where(c.id.in_(patient_ids))
    last_id: int | None = None
    while True:
        # Keyset pagination: each chunk is an index range scan, however deep the pass is.
        page = _rows(session, query if last_id is None else query.where(c.id > last_id))
        if page:
            yield page
        if len(page) < PATIENT_CHUNK:
            return
        last_id = page[-1].id


@dataclass(frozen=True)
class PatientChunk:
    """A chunk of patients with the rows their messages depend on (read-only table rows)."""

    patients: Sequence[Any]
    plans: Sequence[Any]
    courses: Sequence[Any]
    holds: Sequence[Any]
    records: Sequence[Any]
    teams: Mapping[int, Any]


def _load_chunk(
    session: Session, patients: Sequence[Any], teams: dict[int, Any], *, by_range: bool
) -> PatientChunk:
    """Read the plans, courses not ended, holds, dose records and teams of ``patients``.

    Only active courses have pill reminders: a proposed course (from the regimen, no dose
    yet), a declined or a stopped one sends nothing.

    ``by_range``: load them by patient id range (one statement shape for a whole
    pass) rather than by a list of ids. ``teams`` caches teams across chunks.
    """
    plan = Plan.__table__
    course = ProphylaxisCourse.__table__
    if by_range:
        owned = plan.c.patient_id.between(patients[0].id, patients[-1].id)
        owns_course = course.c.patient_id.between(patients[0].id, patients[-1].id)
    else:
        ids = [p.id for p in patients]
        owned = plan.c.patient_id.in_(ids)
        owns_course = course.c.patient_id.in_(ids)
    needed = {p.team_id for p in patients}
    missing_teams = needed - teams.keys()
    if missing_teams:
        team = Team.__table__
        teams.update(
            (t.id, t) for t in _rows(session, select(team).where(team.c.id.in_(missing_teams)))
        )
    return PatientChunk(
        patients=patients,
        plans=_rows(session, select(*_read_only(plan)).where(owned)),
        courses=_rows(
            # Proposed courses too: they keep check-ins going (no pill reminders).
            session,
            select(*_read_only(course)).where(
                course.c.status.not_in(sorted(ENDED_COURSE_STATUSES)), owns_course
            ),
        ),
        holds=_rows(session, _of_plans(PlanHold, owned)),
        records=_rows(session, _of_plans(DoseRecord, owned)),
        teams={team_id: teams[team_id] for team_id in needed},
    )


def plan_chunk(
    chunk: PatientChunk, now: datetime, horizon: timedelta, since: datetime
) -> list[PlannedMessage]:
    """The messages of a chunk's patients sent in [since, now + horizon) (no database)."""
    plans = _grouped(chunk.plans, "patient_id")
    courses = _grouped(chunk.courses, "patient_id")
    holds = _grouped(chunk.holds, "plan_id")
    records = _grouped(chunk.records, "plan_id")
    planned: list[PlannedMessage] = []
    for patient in chunk.patients:
        patient_plans = plans.get(patient.id, [])
        patient_courses = courses.get(patient.id, [])
        if not patient_plans and not patient_courses:
            continue
        current = pick_current_plan(patient_plans)
        context = PatientContext(patient, chunk.teams[patient.team_id], drug_name(current), current)
        planned.extend(
            planned_messages_for_patient(
                context, patient_plans, holds, records, patient_courses, now, horizon, since=since
            )
        )
    return planned


def _new_rows(
    session: Session, chunk: PatientChunk, now: datetime, horizon: timedelta, since: datetime
) -> list[dict[str, Any]]:
    """Plan one chunk in this process: the rows of the messages the outbox does not have yet."""
    planned = plan_chunk(chunk, now, horizon, since)
    stored = _stored_keys(session, [p.dedupe_key for p in planned])
    return [p.row(now) for p in planned if p.dedupe_key not in stored]


def _split_chunk(chunk: PatientChunk, parts: int) -> list[PatientChunk]:
    """``chunk`` in ``parts`` chunks of consecutive patients, one per worker.

    Every worker then plans a part of the same chunk while this process reads the
    next one, and the pass's last chunk is planned by all of them at once.
    """
    size = -(-len(chunk.patients) // parts)
    out = []
    for start in range(0, len(chunk.patients), size):
        patients = chunk.patients[start : start + size]
        ids = {p.id for p in patients}
        plans = [plan for plan in chunk.plans if plan.patient_id in ids]
        plan_ids = {plan.id for plan in plans}
        out.append(
            PatientChunk(
                patients=patients,
                plans=plans,
                courses=[c for c in chunk.courses if c.patient_id in ids],
                holds=[h for h in chunk.holds if h.plan_id in plan_ids],
                records=[r for r in chunk.records if r.plan_id in plan_ids],
                teams={p.team_id: chunk.teams[p.team_id] for p in patients},
            )
        )
    return out


def _pack_chunk(chunk: PatientChunk) -> tuple[Any, ...]:
    """A chunk as plain tuples, for a worker process."""
    return (
        pack_rows(chunk.patients),
        pack_rows(chunk.plans),
        pack_rows(chunk.courses),
        pack_rows(chunk.holds),
        pack_rows(chunk.records),
        pack_rows(list(chunk.teams.values())),
    )


def rows_of_packed_chunk(
    packed: tuple[Any, ...], now: datetime, horizon: timedelta, since: datetime
) -> list[dict[str, Any]]:
    """In a planning worker: the rendered outbox rows of a packed chunk's messages.

    Every message in the window is rendered (the worker cannot see the outbox); with
    the pass starting where the last one stopped, nearly all of them are new.
    """
    patients, plans, courses, holds, records, teams = (unpack_rows(p) for p in packed)
    chunk = PatientChunk(patients, plans, courses, holds, records, {t.id: t for t in teams})
    return [planned.row(now) for planned in plan_chunk(chunk, now, horizon, since)]


def _of_plans(model: Any, owned: Any) -> Any:
    """Rows of ``model`` (holds, dose records) belonging to the plans ``owned`` selects."""
    table, plan = model.__table__, Plan.__table__
    return select(table).join(plan, plan.c.id == table.c.plan_id).where(owned)


def _stored_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the outbox already holds (a lookup in its unique index).

    Each look-up is padded (with a repeated key) to a power of two, so that a pass
    prepares a handful of statement shapes rather than one per chunk.
    """
    stored: set[str] = set()
    column = OutboundMessage.__table__.c.dedupe_key
    for start in range(0, len(keys), KEY_LOOKUP_CHUNK):
        chunk = list(keys[start : start + KEY_LOOKUP_CHUNK])
        size = max(16, 1 << (len(chunk) - 1).bit_length())
        chunk += [chunk[-1]] * (size - len(chunk))
        stored.update(session.execute(select(column).where(column.in_(chunk))).scalars())
    return stored


def replan_patient(session: Session, patient_id: int, now: datetime) -> int:
    """Drop the patient's unsent plan-derived messages and plan them again from the current state."""
    session.flush()
    session.execute(
        delete(OutboundMessage).where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.status == OutboxStatus.PENDING,
            (OutboundMessage.plan_id.is_not(None)) | (OutboundMessage.course_id.is_not(None)),
        )
    )
    return materialise_due_messages(session, now, patient_ids=[patient_id])
