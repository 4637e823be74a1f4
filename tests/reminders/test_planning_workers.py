"""Planning in worker processes: the same outbox as planning in one process, and failures."""

from __future__ import annotations

import os
from collections import namedtuple
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlmodel import delete, select

from reminders import planning, planning_workers
from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage, PlanningPass
from reminders.planning import materialise_due_messages
from reminders.planning_workers import (
    PlanningWorkers,
    default_planning_processes,
    pack_rows,
    unpack_rows,
)

MONDAY_6AM_BRUSSELS = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def _stored(session) -> dict[str, tuple]:
    session.expire_all()
    return {
        m.dedupe_key: (m.status, m.kind, m.body, m.due_at, m.not_after, m.expects, m.plan_id)
        for m in session.exec(select(OutboundMessage))
    }


def test_worker_processes_store_the_same_outbox_as_one_process(
    engine, session, treated_patient, clock, monkeypatch
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=30)
    for n, regimen in enumerate(
        ("alemtuzumab_sc", "inotuzumab_weekly", "rituximab_cll_chemo", "alemtuzumab_iv") * 2
    ):
        treated_patient(
            regimen_id=regimen,
            timezone=("Europe/Brussels", "America/New_York", "Asia/Tokyo")[n % 3],
            language=("en", "fr", "nl")[n % 3],
            discreet=n % 4 == 0,
            quiet_start=time(22, 0),
            quiet_end=time(7, 0),
        )
    monkeypatch.setattr(planning, "PATIENT_CHUNK", 3)  # eight patients: three chunks
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
    moments = (MONDAY_6AM_BRUSSELS, MONDAY_6AM_BRUSSELS + timedelta(hours=7))
    for moment in moments:
        with session_scope(engine) as s:
            materialise_due_messages(s, moment, processes=2)
    assert 2 in planning_workers._pools  # the pass did plan in workers
    in_workers = _stored(session)
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
        s.exec(delete(PlanningPass))
    for moment in moments:
        with session_scope(engine) as s:
            materialise_due_messages(s, moment, processes=0)
    assert _stored(session) == in_workers
    assert len(in_workers) > 50


def test_packed_rows_read_like_table_rows() -> None:
    Row = namedtuple("Row", ("id", "timezone", "options"))
    rows = [Row(1, "Europe/Brussels", {"a": 1}), Row(2, "Asia/Tokyo", {})]
    back = unpack_rows(pack_rows(rows))
    assert [(r.id, r.timezone, r.options) for r in back] == [tuple(r) for r in rows]
    assert unpack_rows(pack_rows([])) == []


def _square(value: int, offset: int) -> int:
    return value * value + offset


def _die(value: int) -> int:
    os._exit(3)  # a worker killed mid-chunk


def test_results_come_back_in_the_order_chunks_were_sent() -> None:
    workers = PlanningWorkers(2, _square, 1)
    results = []
    for value in range(7):
        results += workers.submit(value)
    results += workers.drain()
    assert results == [v * v + 1 for v in range(7)]


def test_a_dead_worker_fails_the_pass_and_the_next_pass_gets_a_new_pool() -> None:
    workers = PlanningWorkers(3, _die)
    with pytest.raises(planning_workers.BrokenProcessPool):
        list(workers.submit(1))
        list(workers.drain())
    assert 3 not in planning_workers._pools
    healthy = PlanningWorkers(3, _square, 0)
    assert [*healthy.submit(4), *healthy.drain()] == [16]


def test_one_planning_process_per_core_at_most_four() -> None:
    processes = default_planning_processes()
    assert 0 <= processes <= planning_workers.MAX_DEFAULT_PROCESSES
    assert processes != 1
