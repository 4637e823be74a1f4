"""Every metric the companion exports to Prometheus, defined once (issue 16, item 2).

Two kinds, read two ways (``docs/architecture.md``, "Metrics"):

* **State kept in the database** (the outbox by status, the oldest due message, open
  alerts, the check-in answer rate, the last planning pass) is read when Prometheus
  scrapes, by :class:`DatabaseState`, a custom collector of a few aggregate queries
  over indexed columns. Every web worker answers the same figures, whichever process
  changed the rows and on whichever host it runs.
* **Events** happen in the dispatcher and the clock (a send accepted, a Twilio error, an
  SMS over its segment budget, a planning pass) and leave no row that could be counted
  later (an error is overwritten by the retry that succeeds, segments are not stored,
  a pass's duration is nowhere). They are counters and histograms of prometheus_client,
  in its multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is in the process
  environment: each process writes its values to files there, and the web's
  ``/metrics`` sums the files of every process of the host
  (:func:`event_collector`). Without the variable they stay in this process
  (:data:`EVENTS`: one-process runs and the tests).

The event metrics are built on first use, not at import: prometheus_client opens its
file in the multiprocess directory when a metric is built, and importing the engine
must touch no file. No label ever holds a phone number, a name, a patient id or a text:
labels are statuses, severities, channels, template kinds and Twilio's error codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache, wraps
from threading import Lock
from typing import Any, ParamSpec

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Column, Select, bindparam, func, select
from sqlalchemy.engine import Connection, Engine

from reminders.core.templates import segments
from reminders.data.db import database_unavailable
from reminders.data.models import Alert, CheckIn, OutboundMessage, PlanningPass
from reminders.data.statuses import AlertStatus, Channel, CheckInState, OutboxStatus

logger = logging.getLogger(__name__)

P = ParamSpec("P")

#: Every name starts with this, so the companion's series are easy to find and select.
PREFIX = "companion"

#: Outbox rows still on their way: all of them are counted, however old.
IN_FLIGHT_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (
    OutboxStatus.PENDING,
    OutboxStatus.SENDING,
    OutboxStatus.UNCONFIRMED,
)
#: Outbox rows whose send is over: counted over :data:`SETTLED_WINDOW` only (the table
#: keeps months of them, and counting all would read the whole index on every scrape).
FINISHED_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = tuple(
    status for status in OutboxStatus if status not in IN_FLIGHT_OUTBOX_STATUSES
)
SETTLED_WINDOW = timedelta(hours=24)
#: Check-ins opened this long ago or less make the answer rate.
ANSWER_RATE_WINDOW = timedelta(days=7)
#: The alert severities always exported (zero when none is open), in urgency order.
ALERT_SEVERITIES = ("urgent", "high", "routine")
#: Alerts a human still has to act on.
UNRESOLVED_ALERT_STATUSES: tuple[AlertStatus, ...] = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)

#: Send delays, in seconds: a page within a second, a reminder within a minute or two,
#: and the tail of an outage or a backlog.
SEND_DELAY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
#: A planning pass: tenths of a second for a ward, a minute for tens of thousands.
PLANNING_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: The registry of this process's event metrics (used when there is no multiprocess
#: directory: a one-process run, the tests).
EVENTS = CollectorRegistry()


@dataclass(frozen=True)
class EventMetrics:
    """The counters and histograms of events, as prometheus_client objects."""

    send_delay: Histogram
    segments: Counter
    twilio_errors: Counter
    over_budget: Counter
    planning_pass: Histogram


#: The first sends of a dispatcher come from several sender threads at once: one builds
#: the metrics, the others wait (a second build would register every name twice).
_BUILDING = Lock()


def events() -> EventMetrics:
    """The event metrics, built once per process on first use (see the module's docstring)."""
    with _BUILDING:
        return _build_events()


@cache
def _build_events() -> EventMetrics:
    return EventMetrics(
        send_delay=Histogram(
            f"{PREFIX}_send_delay_seconds",
            "From the moment an outbox row became due (next_attempt_at) to the gateway "
            "accepting it, by channel (sms, voice)",
            ["channel"],
            buckets=SEND_DELAY_BUCKETS,
            registry=EVENTS,
        ),
        segments=Counter(
            f"{PREFIX}_sms_segments",
            "SMS segments the gateway accepted (what the carrier bills)",
            registry=EVENTS,
        ),
        twilio_errors=Counter(
            f"{PREFIX}_twilio_errors",
            "Messages and calls Twilio refused, by its error code (http_<status> when its "
            "answer had none), or left unanswered (none: a timeout, a connection failure)",
            ["code"],
            registry=EVENTS,
        ),
        over_budget=Counter(
            f"{PREFIX}_sms_over_budget",
            "SMS that take more segments than their template's budget (still sent), counted "
            "at their first claim, by template kind",
            ["kind"],
            registry=EVENTS,
        ),
        planning_pass=Histogram(
            f"{PREFIX}_planning_pass_seconds",
            "How long the clock's planning pass over every patient took",
            buckets=PLANNING_BUCKETS,
            registry=EVENTS,
        ),
    )


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """Log a failure to record a metric instead of raising it: counting a send must never
    stop the dispatcher from recording the send itself."""

    @wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            logger.warning("metric not recorded: %s", record.__name__, exc_info=True)

    return guarded


@_never_raises
def observe_accepted(channel: str, body: str, due_at: datetime | None, at: datetime) -> None:
    """A send the gateway accepted at ``at``: its delay since ``due_at``, and its segments."""
    metrics = events()
    if due_at is not None:
        metrics.send_delay.labels(channel=channel).observe(max((at - due_at).total_seconds(), 0.0))
    if channel == Channel.SMS:
        metrics.segments.inc(segments(body).segments)


@_never_raises
def count_twilio_error(code: str | None, http_status: int | None) -> None:
    """A message or call Twilio refused (its error code, else ``http_<status>``) or left
    unanswered (``none``: a timeout or a connection failure)."""
    label = code or (f"http_{http_status}" if http_status is not None else "none")
    events().twilio_errors.labels(code=label).inc()


@_never_raises
def count_over_budget(kind: str) -> None:
    """An SMS over its template's segment budget (the dispatcher still sends it)."""
    events().over_budget.labels(kind=kind).inc()


@_never_raises
def observe_planning_pass(seconds: float) -> None:
    """A planning pass over every patient took ``seconds``."""
    events().planning_pass.observe(seconds)


def event_collector(multiprocess_directory: str | None) -> Collector:
    """Where the event metrics are read: every process's files, or this process's registry."""
    if multiprocess_directory:
        # A registry only for the exposition, as prometheus_client's documentation shows
        # for multiprocess mode: the collector reads the files of every process.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_directory)
        return registry
    return EVENTS


# --- state read from the database at scrape time -------------------------------------------

_OUTBOX = OutboundMessage.__table__.c
_ALERT = Alert.__table__.c
_CHECKIN = CheckIn.__table__.c
_PASS = PlanningPass.__table__.c


def _count_by(
    state: Column[Any], states: Iterable[str], since: Column[Any] | None = None
) -> Select[Any]:
    """Rows counted by ``state``, for the ``states`` named (and ``since`` a bound instant).

    Every state is named, even all of an enum's, so the index's first column is a list
    of ranges, not a scan.
    """
    query = select(state, func.count()).where(state.in_([str(s) for s in states]))
    if since is not None:
        query = query.where(since >= bindparam("since"))
    return query.group_by(state)


# Each statement reads one index range (``ix_outbound_status_next_attempt`` and the
# indexes of migration 0016): a scrape costs milliseconds on a year of rows.
_IN_FLIGHT = _count_by(_OUTBOX.status, IN_FLIGHT_OUTBOX_STATUSES)
_SETTLED = _count_by(_OUTBOX.status, FINISHED_OUTBOX_STATUSES, _OUTBOX.next_attempt_at)
_CHECKINS = _count_by(_CHECKIN.state, CheckInState, _CHECKIN.opened_at)
_DUE = select(func.count(), func.min(_OUTBOX.next_attempt_at)).where(
    _OUTBOX.status == OutboxStatus.PENDING, _OUTBOX.next_attempt_at <= bindparam("now")
)
_UNRESOLVED_ALERTS = (
    select(_ALERT.status, _ALERT.severity, func.count(), func.min(_ALERT.created_at))
    .where(_ALERT.status.in_([str(s) for s in UNRESOLVED_ALERT_STATUSES]))
    .group_by(_ALERT.status, _ALERT.severity)
)
_LAST_PASS = select(func.max(_PASS.planned_at))


class DatabaseState:
    """A prometheus_client collector of the state the database holds, as of ``now``.

    Built per scrape (``now`` is the scrape's instant). An unreachable database is
    ``companion_database_up 0`` and no state, so the event metrics are still exported.
    """

    def __init__(self, engine: Engine, now: datetime) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterator[Metric]:
        """The gauges of the database's state (prometheus_client's collector protocol)."""
        started = time.perf_counter()
        up = GaugeMetricFamily(
            f"{PREFIX}_database_up", "1 when this scrape could read the database, else 0"
        )
        try:
            with self.engine.connect() as conn:
                families = list(self._families(conn))
        except Exception as error:
            if not database_unavailable(error):
                raise
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily(
            f"{PREFIX}_metrics_database_seconds",
            "How long this scrape's database queries took",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _families(self, conn: Connection) -> Iterator[Metric]:
        now = self.now
        yield from self._outbox(conn, now)
        yield from self._alerts(conn, now)
        yield from self._checkins(conn, now)
        last_pass = conn.execute(_LAST_PASS).scalar()
        if last_pass is not None:
            yield _gauge(
                "planning_last_pass_age_seconds",
                "Seconds since the clock's last committed planning pass (the clock is alive)",
                _age(now, last_pass),
            )

    def _outbox(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        yield _counts(
            "outbox_messages",
            "Outbox rows on their way (pending, sending, unconfirmed), by status",
            "status",
            IN_FLIGHT_OUTBOX_STATUSES,
            dict(conn.execute(_IN_FLIGHT).all()),
        )
        yield _counts(
            "outbox_settled_last_day_messages",
            "Outbox rows whose send is over, by status, among those whose last attempt "
            "was due in the last 24 hours",
            "status",
            FINISHED_OUTBOX_STATUSES,
            dict(conn.execute(_SETTLED, {"since": now - SETTLED_WINDOW}).all()),
        )
        due, oldest = conn.execute(_DUE, {"now": now}).one()
        yield _gauge("outbox_due_messages", "Pending outbox rows due now (not yet claimed)", due)
        yield _gauge(
            "outbox_oldest_due_age_seconds",
            "Seconds the oldest pending row has been due without being claimed (0: none)",
            _age(now, oldest) if oldest is not None else 0,
        )

    def _alerts(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        counts = GaugeMetricFamily(
            f"{PREFIX}_alerts_unresolved",
            "Alerts not resolved, by severity and status (open: nobody acknowledged it yet)",
            labels=["severity", "status"],
        )
        ages = GaugeMetricFamily(
            f"{PREFIX}_alerts_oldest_unresolved_age_seconds",
            "Seconds since the oldest unresolved alert was raised, by severity and status "
            "(0: none)",
            labels=["severity", "status"],
        )
        found = {
            (severity, status): (count, oldest)
            for status, severity, count, oldest in conn.execute(_UNRESOLVED_ALERTS)
        }
        severities = list(ALERT_SEVERITIES) + sorted(
            {severity for severity, _ in found} - set(ALERT_SEVERITIES)
        )
        for severity in severities:
            for status in UNRESOLVED_ALERT_STATUSES:
                count, oldest = found.get((severity, status), (0, None))
                labels = [severity, str(status)]
                counts.add_metric(labels, count)
                ages.add_metric(labels, _age(now, oldest) if oldest is not None else 0)
        yield counts
        yield ages

    def _checkins(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        by_state = dict(conn.execute(_CHECKINS, {"since": now - ANSWER_RATE_WINDOW}).all())
        yield _counts(
            "checkins_last_week",
            "Symptom check-ins opened in the last 7 days, by state (closed: answered)",
            "state",
            tuple(CheckInState),
            by_state,
        )
        answered = by_state.get(CheckInState.CLOSED, 0)
        settled = answered + by_state.get(CheckInState.UNANSWERED, 0)
        if settled:
            yield _gauge(
                "checkin_answer_ratio",
                "Check-ins of the last 7 days answered, over those answered or given up "
                "as unanswered (the ones still waiting are left out)",
                answered / settled,
            )


def _counts(
    name: str,
    documentation: str,
    label: str,
    values: tuple[StrEnum, ...],
    counts: Mapping[str, int],
) -> GaugeMetricFamily:
    """A gauge of row counts by ``label``: every one of ``values``, 0 for those with no row."""
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=[label])
    for value in values:
        family.add_metric([str(value)], counts.get(value, 0))
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _age(now: datetime, then: datetime) -> float:
    """Seconds from ``then`` to ``now`` (0 for a moment ahead of ``now``)."""
    return max((now - then).total_seconds(), 0.0)
