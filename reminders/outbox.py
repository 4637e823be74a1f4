"""The outbox table's writes: one builder of rows, the idempotent insert, cancelling.

Every row of the outbox is made by :func:`outbox_row`, the one place that knows its
columns and their defaults: the planning pass's reminders (:mod:`reminders.planning`),
replies and on-call alerts (:func:`enqueue_message`), the TwiML reply kept in a
conversation's thread. Rows are inserted with ON CONFLICT DO NOTHING on
``dedupe_key`` (:func:`insert_ignoring_duplicates`), so a message planned or queued
twice is stored once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlmodel import Session, select

from reminders.core.messaging import MessagePlan
from reminders.data.models import OutboundMessage
from reminders.data.statuses import OutboxStatus
from reminders.rendering import PatientContext, render_for
from reminders.wakeup import wake_dispatchers

#: Rows inserted per statement on PostgreSQL, and the batches a planning pass gathers
#: before it inserts, so that its statements keep one shape (reminders.planning).
INSERT_CHUNK = 1_000


def _column_defaults() -> MappingProxyType[str, Any]:
    """Every insertable outbox column (all but the id) with its model default, else None."""
    defaults = {}
    for column in OutboundMessage.__table__.c:
        if column.primary_key:
            continue
        if column.default is not None and not column.default.is_scalar:
            raise ValueError(f"outbox column {column.name} has no scalar default")
        defaults[column.name] = column.default.arg if column.default is not None else None
    return MappingProxyType(defaults)


_COLUMN_DEFAULTS = _column_defaults()


def outbox_row(
    *,
    team_id: int,
    kind: str,
    body: str,
    dedupe_key: str,
    now: datetime,
    due_at: datetime | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One outbox row, every insertable column filled: the one builder of outbox rows.

    ``due_at`` defaults to ``now`` and ``next_attempt_at`` to ``due_at``; ``created_at``
    is ``now``. ``columns`` gives any other column (``patient_id``, ``status``,
    ``expects`` ...); the rest take the model's defaults. An unknown column is a
    ``ValueError``. Every row having every column, rows of all kinds are inserted
    with one statement shape.
    """
    due = now if due_at is None else due_at
    # A copy of a prepared dict and item assignments: a planning pass builds a row per
    # message, and dict(mapping) or keyword updates cost several times as much.
    row = _COLUMN_DEFAULTS.copy()
    row["team_id"] = team_id
    row["kind"] = kind
    row["body"] = body
    row["dedupe_key"] = dedupe_key
    row["due_at"] = row["next_attempt_at"] = due
    row["created_at"] = now
    if not columns.keys() <= row.keys():
        unknown = columns.keys() - row.keys()
        raise ValueError(f"not outbox columns: {', '.join(sorted(unknown))}")
    row.update(columns)
    return row


def dedupe_key(
    patient_id: int | None, plan: MessagePlan, *, plan_id: int | None, course_id: int | None
) -> str:
    """The outbox key of a planned message: patient, plan or course, event, variant and date."""
    owner = f"plan{plan_id}" if plan_id is not None else f"course{course_id}"
    return f"p{patient_id}:{owner}:{plan.key}"


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


def enqueue_message(session: Session, *, now: datetime, **columns: Any) -> bool:
    """Queue one message (a reply, a page to a clinician); False if it was queued before.

    ``columns`` are the row's, as :func:`outbox_row` takes them: ``team_id``, ``kind``,
    ``body`` and ``dedupe_key`` always, then any other outbox column (``patient_id``,
    ``urgent``, ``due_at``, ``expects`` ...); a column left out takes the model's
    default, so :func:`outbox_row` stays the one place that knows them. A page
    (``recipient="clinician"``) carries its number (``to_phone``), its ``channel``
    (SMS or a voice call) and the clinician paged (``user_id``, None for the fallback).
    An urgent row due now wakes the dispatchers when the transaction commits
    (:func:`reminders.wakeup.wake_dispatchers`): the page leaves within a second instead
    of at the next poll.
    """
    row = outbox_row(now=now, **columns)
    queued = insert_ignoring_duplicates(session, [row]) == 1
    if queued and row["urgent"] and row["due_at"] <= now:
        wake_dispatchers(session)
    return queued


def queue_patient_message(
    session: Session,
    context: PatientContext,
    template: str,
    *,
    dedupe_key: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
    **columns: Any,
) -> bool:
    """Queue the message ``template`` to the patient of ``context``, in their language.

    The row's kind is the template's key, and its team the patient's; ``values`` are
    extra template values, ``columns`` further outbox columns (``due_at``,
    ``expects``...). False if it was queued before.
    """
    patient = context.patient
    return enqueue_message(
        session,
        team_id=patient.team_id,
        patient_id=patient.id,
        kind=template,
        body=render_for(context, template, **(values or {})),
        dedupe_key=dedupe_key,
        now=now,
        **columns,
    )
