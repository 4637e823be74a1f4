"""The SMS outbox: planning passes write due messages into it; dispatchers send them.

A planning pass (:func:`materialise_due_messages`) turns every consenting
patient's plan and prophylaxis events into outbox rows for the next 24 hours.
It is idempotent: each row has a ``dedupe_key`` made of the patient, the plan or
course, the event key, the message variant and the event's local date, and
rows are inserted with ON CONFLICT DO NOTHING, so running a pass twice (or two
clocks by mistake) stores nothing twice. A message whose moment passed while the
system was down is stored as pending while still fresh, otherwise as missed.

When a plan or the patient's preferences change, :func:`replan_patient` deletes
the patient's unsent plan-derived rows and plans them again from the new state.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import phonenumbers
from sqlalchemy import JSON, String, TypeDecorator, bindparam, delete, type_coerce
from sqlalchemy.dialects import postgresql
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
from reminders.core.prophylaxis import ENDED_COURSE_STATUSES
from reminders.core.regimens import get_regimen
from reminders.core.templates import render
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
from reminders.data.plans import current_plan, pick_current_plan
from reminders.data.statuses import OutboxStatus
from reminders.planning_workers import PlanningWorkers, pack_rows, unpack_rows
from reminders.specs import build_plan_spec, build_prophylaxis_spec

#: How far ahead a planning pass writes messages.
PLANNING_HORIZON = timedelta(hours=24)
#: Rows a pass inserts at a time (a chunk's remainder waits for the next chunk), so
#: that its statements keep one shape (see :func:`materialise_due_messages`).
INSERT_CHUNK = 1_000
#: Patients planned together: a pass loads, plans and writes one chunk at a time, so its
#: memory stays flat whatever the number of patients (bench/bench_memory.py).
PATIENT_CHUNK = 1_000
#: Dedupe keys looked up per query (well under SQLite's limit of bound parameters).
KEY_LOOKUP_CHUNK = 2_048


@dataclass(frozen=True)
class PatientContext:
    """What rendering needs to know about a patient and their team.

    ``plan`` is the patient's current plan that ``drug`` was read from, kept so
    that a reply needing it again (triage, the symptom menu) does not query it again.
    """

    patient: Patient
    team: Team
    drug: str | None
    plan: Plan | None = None

    @cached_property
    def patient_values(self) -> Mapping[str, Any]:
        """The placeholders that name the patient and the team (the same in every message).

        Computed once per context: a pass renders a few messages per patient.
        """
        team = self.team
        patient = self.patient
        return MappingProxyType(
            {
                "first_name": patient.display_name.split()[0]
                if patient.display_name.strip()
                else "",
                "team_name": team.name,
                "team_phone": display_phone(team.care_phone) if team.care_phone else team.name,
                "drug": self.drug or "",
                "patient_ref": f"P{patient.id}",
                "place": team.name,
            }
        )


def sms_allowed(patient: Patient) -> bool:
    """True when the patient may get SMS: consent, no opt-out, a reachable number, in care."""
    return (
        patient.sms_consent
        and not patient.opted_out
        and patient.sms_blocked_reason is None
        and patient.discharged_at is None
    )


@lru_cache(maxsize=4096)
def display_phone(e164: str) -> str:
    """A phone number as people read it (+32 2 555 01 23), still GSM-7 and dialable."""
    # Cached: every message names its team's number, and a pass renders thousands of
    # messages for a few dozen teams; phonenumbers parses slowly.
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def template_values(context: PatientContext, event: PlannedEvent | None = None) -> dict[str, Any]:
    """Values for every template placeholder (each template uses the ones it needs)."""
    values = dict(context.patient_values)
    if event is None:
        return values
    details = event.details
    local = event.local
    values.update(
        {
            # Formatted by hand: a pass formats thousands of times, and strftime is slow.
            "time": f"{local.hour:02d}:{local.minute:02d}",
            "date": f"{local.day:02d}/{local.month:02d}",
            # Only the dose the regimen gives an observation time for has one (and
            # only its template asks for it): no number made up here.
            "observation_hours": _number(details.get("observation_hours")),
            "premedication": "; ".join(details.get("items") or ()) or event.title,
            "medicine": details.get("drug") or event.title,
        }
    )
    return values


def render_for(
    context: PatientContext, template: str, event: PlannedEvent | None = None, **extra: Any
) -> str:
    """Render ``template`` in the patient's language, honouring discreet mode."""
    values = template_values(context, event)
    values.update(extra)
    # Without a known drug the discreet wording reads naturally ("your treatment").
    discreet = context.patient.discreet or not context.drug
    return render(template, context.patient.language, discreet=discreet, **values)


def _row(
    context: PatientContext,
    plan: MessagePlan,
    now: datetime,
    *,
    plan_id: int | None,
    course_id: int | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status = OutboxStatus.PENDING if now <= plan.not_after else OutboxStatus.MISSED
    return {
        "team_id": context.team.id,
        "patient_id": context.patient.id,
        "plan_id": plan_id,
        "course_id": course_id,
        "recipient": "patient",
        "kind": plan.template,
        "dedupe_key": dedupe_key(context.patient.id, plan, plan_id=plan_id, course_id=course_id),
        "body": render_for(context, plan.template, plan.event, **(extra or {})),
        "urgent": False,
        "due_at": plan.send_at,
        "not_after": plan.not_after,
        "next_attempt_at": plan.send_at,
        "status": status,
        "attempts": 0,
        "error_reason": None
        if status == OutboxStatus.PENDING
        else "moment passed while the system was down",
        "created_at": now,
        "expects": plan.expects,
    }


def dedupe_key(
    patient_id: int | None, plan: MessagePlan, *, plan_id: int | None, course_id: int | None
) -> str:
    """The outbox key of a planned message: patient, plan or course, event, variant and date."""
    owner = f"plan{plan_id}" if plan_id is not None else f"course{course_id}"
    return f"p{patient_id}:{owner}:{plan.key}"


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
        """The outbox row, body rendered."""
        extra = (
            _progress(self.spec, self.message.event)
            if self.spec is not None and self.message.event.kind == "milestone"
            else None
        )
        return _row(
            self.context,
            self.message,
            now,
            plan_id=self.plan_id,
            course_id=self.course_id,
            extra=extra,
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
        if course.status != "active":
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


def insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert outbox rows, skipping any whose ``dedupe_key`` exists; return how many were new.

    Rows may give different sets of columns (a column left out takes the model's
    default); they are inserted a set at a time. The stored values are those an ORM
    insert of the same rows stores (tests/reminders/test_outbox.py compares them).
    """
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_columns[frozenset(row)].append(row)
    connection = session.connection()
    return sum(_insert_group(connection, columns, group) for columns, group in by_columns.items())


#: Fewest rows worth a COPY on PostgreSQL: below it (a reply, an alert, a re-planned
#: patient) the staging table's three extra statements cost more than they save.
COPY_MIN_ROWS = 64


def _insert_group(connection: Any, columns: frozenset[str], rows: list[dict[str, Any]]) -> int:
    dialect = connection.dialect
    if dialect.name == "sqlite":
        return _insert_sqlite(connection, columns, rows)
    if dialect.driver == "psycopg" and len(rows) >= COPY_MIN_ROWS:
        return _insert_postgresql_copy(connection, columns, rows)
    return _insert_postgresql(connection, rows)


def _insert_postgresql(connection: Any, rows: list[dict[str, Any]]) -> int:
    """A few rows on PostgreSQL: SQLAlchemy's batched insert (insertmanyvalues)."""
    table = OutboundMessage.__table__
    # RETURNING counts the new rows (PostgreSQL reports no rowcount for a batched insert).
    statement = (
        postgresql.insert(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id)
    )
    return sum(
        len(connection.execute(statement, rows[start : start + INSERT_CHUNK]).all())
        for start in range(0, len(rows), INSERT_CHUNK)
    )


def _insert_postgresql_copy(
    connection: Any, columns: frozenset[str], rows: list[dict[str, Any]]
) -> int:
    """Many rows on PostgreSQL: COPY into a staging table, then one INSERT ... SELECT.

    COPY cannot skip existing keys itself, so the rows go into a temporary table of
    this connection first; the INSERT from it skips them (ON CONFLICT DO NOTHING, also
    for a key repeated within the rows) and its row count is the new rows. The rows
    keep their order (``ordinal``), so ids follow it as with a plain insert. The
    staging table is emptied after use and at commit, and dropped with the connection.
    """
    insert = _driver_insert(connection.dialect, columns)
    quote = connection.dialect.identifier_preparer.quote
    listed = ", ".join(quote(name) for name in insert.names)
    outbox = connection.dialect.identifier_preparer.format_table(OutboundMessage.__table__)
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS "
        f"SELECT 0 AS ordinal, * FROM {outbox} WITH NO DATA"
    )
    driver_connection = connection.connection.driver_connection
    with (
        driver_connection.cursor() as cursor,
        cursor.copy(f"COPY {_STAGING} (ordinal, {listed}) FROM STDIN") as copy,
    ):
        for ordinal, values in enumerate(_bound_values(insert, rows)):
            copy.write_row((ordinal, *values))
    created = connection.exec_driver_sql(
        f"INSERT INTO {outbox} ({listed}) SELECT {listed} FROM {_STAGING} "
        f"ORDER BY ordinal ON CONFLICT ({quote('dedupe_key')}) DO NOTHING"
    ).rowcount
    # TRUNCATE, not DELETE: a pass stages many groups in one transaction, and temporary
    # tables are never vacuumed, so deleted rows would be scanned again by every group.
    connection.exec_driver_sql(f"TRUNCATE {_STAGING}")
    return created


#: The staging table of :func:`_insert_postgresql_copy` (temporary: one per connection).
_STAGING = "pg_temp.outbox_staging"


def _insert_sqlite(connection: Any, columns: frozenset[str], rows: list[dict[str, Any]]) -> int:
    """The SQLite insert: one ``executemany`` of plain tuples through the driver.

    The driver's row count gives the new rows: a row skipped by ON CONFLICT DO NOTHING
    changes nothing.
    """
    insert = _driver_insert(connection.dialect, columns)
    quote = connection.dialect.identifier_preparer.quote
    outbox = connection.dialect.identifier_preparer.format_table(OutboundMessage.__table__)
    sql = (
        f"INSERT INTO {outbox} ({', '.join(quote(name) for name in insert.names)}) "
        f"VALUES ({', '.join('?' * len(insert.names))}) "
        f"ON CONFLICT ({quote('dedupe_key')}) DO NOTHING"
    )
    return connection.exec_driver_sql(sql, _bound_values(insert, rows)).rowcount


def _bound_values(insert: _DriverInsert, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each row's values in ``insert.names`` order, converted as SQLAlchemy binds them.

    Each distinct value is converted once per call with its column type's bind
    processor: a pass repeats a few hundred instants across thousands of rows.
    """
    converters = [(position, processor, {}) for position, processor in insert.converters]
    defaults = insert.defaults
    values = []
    for row in rows:
        bound = list(insert.given(row))
        for position, processor, seen in converters:
            value = bound[position]
            if value is not None:
                try:
                    bound[position] = seen[value]
                except KeyError:
                    bound[position] = seen[value] = processor(value)
        values.append((*bound, *defaults))
    return values


@dataclass(frozen=True)
class _DriverInsert:
    """The columns of an outbox insert run through the DBAPI driver, in statement order.

    ``names``: the columns the rows give (table order), then those they leave out that
    have a default. ``given``: a row's values of the first ones; ``converters``: their
    positions and types' bind processors, for those the driver cannot take as they
    are; ``defaults``: the converted defaults of the others.
    """

    names: tuple[str, ...]
    given: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    defaults: tuple[Any, ...]


@lru_cache(maxsize=32)
def _driver_insert(dialect: Any, columns: frozenset[str]) -> _DriverInsert:
    """The columns, value getter, converters and defaults of a driver-level insert.

    The statements name their columns themselves, so the value positions are known
    without reading them back out of a compiled statement.
    """
    table = OutboundMessage.__table__
    unknown = columns - set(table.c.keys())
    if unknown:
        raise ValueError(f"not outbox columns: {', '.join(sorted(unknown))}")

    def processor(name: str) -> Callable[[Any], Any] | None:
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    given = [column.name for column in table.c if column.name in columns]
    defaults = {}
    for column in table.c:
        if column.name not in columns and column.default is not None:
            # A column left out takes its model default, as an ORM insert would.
            if not column.default.is_scalar:
                raise ValueError(f"outbox rows must give {column.name}: it has no scalar default")
            convert = processor(column.name)
            value = column.default.arg
            defaults[column.name] = convert(value) if convert and value is not None else value
    getter = itemgetter(*given)
    return _DriverInsert(
        names=(*given, *defaults),
        given=getter if len(given) > 1 else lambda row: (getter(row),),
        converters=tuple(
            (position, convert)
            for position, name in enumerate(given)
            if (convert := processor(name)) is not None
        ),
        defaults=tuple(defaults.values()),
    )


def _grouped(rows: Iterable[Any], key: str) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, key)].append(row)
    return groups


def drug_name(plan: Plan | None) -> str | None:
    """The drug of ``plan``'s regimen, or None (no plan, or a regimen no longer in the library)."""
    if plan is None:
        return None
    try:
        return get_regimen(plan.regimen_id).drug
    except KeyError:
        return None


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


def cancel_pending_for_patient(session: Session, patient_id: int, reason: str) -> None:
    """Cancel every unsent message to the patient (opt-out, unreachable number)."""
    messages = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).all()
    for message in messages:
        message.status = OutboxStatus.CANCELLED
        message.error_reason = reason
        session.add(message)


def enqueue_message(
    session: Session,
    *,
    team_id: int,
    kind: str,
    body: str,
    dedupe_key: str,
    now: datetime,
    patient_id: int | None = None,
    recipient: str = "patient",
    urgent: bool = False,
    due_at: datetime | None = None,
    not_after: datetime | None = None,
    expects: str | None = None,
    alert_id: int | None = None,
    checkin_id: int | None = None,
) -> bool:
    """Queue one message (a reply, an alert to the on-call number); False if it was queued before."""
    due = due_at or now
    row = {
        "team_id": team_id,
        "patient_id": patient_id,
        "recipient": recipient,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "body": body,
        "urgent": urgent,
        "due_at": due,
        "not_after": not_after,
        "next_attempt_at": due,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "expects": expects,
        "alert_id": alert_id,
        "checkin_id": checkin_id,
    }
    return insert_ignoring_duplicates(session, [row]) == 1


def patient_context(session: Session, patient: Patient) -> PatientContext:
    """The rendering context of one patient (team, current plan and its drug)."""
    team = session.get(Team, patient.team_id)
    plan = current_plan(session, patient.id)
    return PatientContext(patient, team, drug_name(plan), plan)
