"""Planning: materialise 24 hours of messages for N patients, against APScheduler in the same run.

Run from the repository root::

    .venv/bin/python -m bench.bench_planning                    # 10,000 and 100,000 patients
    .venv/bin/python -m bench.bench_planning --patients 20000 --repeat 3
    .venv/bin/python -m bench.bench_planning --quick            # seconds, for a smoke run

For each size, a fresh SQLite file is seeded with N patients on mixed regimens
(:func:`bench.common.seed_population`) and three planning passes are timed, each the
``materialise_due_messages`` call the clock makes every five minutes, in one transaction:

* **next 24 h** (the headline): the outbox already holds the previous day's messages
  (an untimed pass 24 hours earlier wrote them); the pass writes every message due in
  the next 24 hours. Rate = rows written per second. Timed twice: planned in this
  process alone ("one process"), then as the clock plans, with its planning worker
  processes (``--processes``, default one per core up to 4; the pool is started and
  warmed by yesterday's pass first, as in a clock that has been running).
* **cold**: an empty outbox (a first deployment); the pass also writes the record of
  the past 24 hours (messages still fresh as pending, the others as missed).
* **steady**: the same pass five minutes later, as the clock runs it all day: nearly
  everything is stored already.
* **storing only**: the next 24 hours' rows, already planned and rendered, deleted and
  inserted again as a pass inserts them: the half of a pass that APScheduler's rate
  (one stored row per reminder) compares with, without the planning computation.

The baseline is the plain APScheduler pattern: one ``date`` job per reminder, added to
a started (paused) ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` on a SQLite
file; each ``add_job`` stores one row in its own transaction. The jobs are the first
``--baseline-jobs`` messages the pass planned (same run dates and identifiers), and the
baseline is measured before and after the passes of each size; the ratio uses their
median. The target is a rate at least 20 times the baseline's, with a cost per patient
that stays flat from 10,000 to 100,000 patients.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, select

from bench.common import (
    BENCH_NOW,
    Stopwatch,
    bench_engine,
    count_rows,
    format_table,
    headline,
    seed_population,
    spread,
    sqlite_database,
)
from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage, PlanningPass
from reminders.outbox import insert_ignoring_duplicates
from reminders.planning import materialise_due_messages
from reminders.planning_workers import default_planning_processes, planning_pool

TARGET_RATIO = 20.0
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (300, 1_000)


def send_reminder(patient_id: int, kind: str, key: str) -> None:
    """The job an APScheduler-based design would run at each reminder's time (never run here)."""


def apscheduler_rate(directory: Path, jobs: list[tuple[datetime, int, str, str]]) -> float:
    """Date jobs stored per second by APScheduler 3 with a SQLAlchemyJobStore on SQLite."""
    path = directory / "apscheduler.sqlite3"
    path.unlink(missing_ok=True)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{path}")}, timezone=UTC
    )
    # Started but paused: add_job writes to the store at once and nothing fires.
    scheduler.start(paused=True)
    try:
        with Stopwatch() as sw:
            for run_date, patient_id, kind, key in jobs:
                scheduler.add_job(
                    "bench.bench_planning:send_reminder",
                    "date",
                    run_date=run_date,
                    args=(patient_id, kind, key),
                    id=key,
                    misfire_grace_time=3600,
                    replace_existing=True,
                )
    finally:
        scheduler.shutdown(wait=False)
    return len(jobs) / sw.wall


def timed_pass(engine: Any, now: datetime, processes: int) -> tuple[int, float]:
    """One planning pass in one transaction, as the clock runs it: (rows written, seconds)."""
    with Stopwatch() as sw, session_scope(engine) as session:
        created = materialise_due_messages(session, now, processes=processes)
    return created, sw.wall


def forget_pass(engine: Any, now: datetime) -> None:
    """Undo the pass made at ``now``: its rows and its record, to time it again."""
    with engine.begin() as conn:
        conn.execute(delete(OutboundMessage).where(OutboundMessage.created_at == now))
        conn.execute(delete(PlanningPass).where(PlanningPass.planned_at == now))


def warm_up_workers(processes: int) -> None:
    """Start the pool and import the planner in every worker, as a running clock has."""
    if processes:
        pool = planning_pool(processes)
        list(pool.map(_import_planner, range(processes * 4)))


def _import_planner(_: int) -> bool:
    import reminders.planning  # noqa: F401 - imported for its side effect in the worker

    return True


def storage_only(engine: Any, now: datetime) -> tuple[int, float]:
    """The storing half of a pass alone: the next 24 hours' rows, deleted and inserted again.

    What APScheduler's rate measures (one stored row per reminder), without the
    planning computation that produces the reminders: (rows, seconds).
    """
    table = OutboundMessage.__table__
    window = (table.c.due_at >= now) & (table.c.due_at < now + timedelta(hours=24))
    with engine.begin() as conn:
        rows = [
            {k: v for k, v in row._mapping.items() if k != "id"}
            for row in conn.execute(select(table).where(window))
        ]
        conn.execute(delete(table).where(window))
    with Stopwatch() as sw, session_scope(engine) as session:
        stored = insert_ignoring_duplicates(session, rows)
    return stored, sw.wall


def measure_size(
    patients: int,
    directory: Path,
    baseline_jobs: int,
    processes: int,
    now: datetime = BENCH_NOW,
) -> dict[str, Any]:
    """Seed ``patients`` and time the passes and the baseline around them."""
    url = sqlite_database(directory, f"planning-{patients}.sqlite3")
    engine = bench_engine(url)
    population = seed_population(engine, patients, now)
    print(f"  {population.describe()}", flush=True)

    cold_rows, cold_seconds = timed_pass(engine, now, processes)
    with engine.connect() as conn:
        sample = conn.execute(
            select(
                OutboundMessage.due_at,
                OutboundMessage.patient_id,
                OutboundMessage.kind,
                OutboundMessage.dedupe_key,
            )
            .where(OutboundMessage.due_at >= now)
            .order_by(OutboundMessage.id)
            .limit(baseline_jobs)
        ).all()
    # The same run dates moved into the real future: a job whose date has passed would
    # fire (and be deleted) as the scheduler shuts down.
    offset = datetime.now(UTC) + timedelta(days=1) - now
    jobs = [(due + offset, pid, kind, key) for due, pid, kind, key in sample]
    baseline = [apscheduler_rate(directory, jobs)]

    # The headline pass: yesterday's messages are stored, the next 24 hours are not.
    # First planned in this process alone, then again with the worker processes.
    url = sqlite_database(directory, f"planning-{patients}.sqlite3")
    engine.dispose()
    engine = bench_engine(url)
    seed_population(engine, patients, now)
    timed_pass(engine, now - timedelta(hours=24), 0)
    single_rows, single_seconds = timed_pass(engine, now, 0)
    forget_pass(engine, now)
    if processes:
        # Yesterday's pass again, in the workers: their caches warm, as in a running clock.
        forget_pass(engine, now - timedelta(hours=24))
        timed_pass(engine, now - timedelta(hours=24), processes)
        day_rows, day_seconds = timed_pass(engine, now, processes)
    else:
        day_rows, day_seconds = timed_pass(engine, now, 0)
    steady_rows, steady_seconds = timed_pass(engine, now + timedelta(minutes=5), processes)
    next_day = count_rows(
        engine,
        OutboundMessage,
        OutboundMessage.due_at >= now,
        OutboundMessage.due_at < now + timedelta(hours=24),
    )
    store_rows, store_seconds = storage_only(engine, now)
    engine.dispose()
    baseline.append(apscheduler_rate(directory, jobs))
    for name in (f"planning-{patients}.sqlite3", "apscheduler.sqlite3"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{directory / name}{suffix}").unlink(missing_ok=True)
    if single_rows != day_rows:
        raise RuntimeError(f"one process wrote {single_rows} rows, the workers {day_rows}")
    return {
        "patients": patients,
        "processes": processes,
        "day_rows": day_rows,
        "day_seconds": day_seconds,
        "single_seconds": single_seconds,
        "next_day_stored": next_day,
        "cold_rows": cold_rows,
        "cold_seconds": cold_seconds,
        "steady_rows": steady_rows,
        "steady_seconds": steady_seconds,
        "store_rows": store_rows,
        "store_seconds": store_seconds,
        "baseline": baseline,
        "baseline_jobs": len(jobs),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--patients",
        default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated population sizes (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK_SIZES}")
    parser.add_argument(
        "--baseline-jobs", type=int, default=None, help="APScheduler jobs to time (default 5000)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure each size this many times")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="planning worker processes (default: the clock's, one per core up to 4)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite files go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the tables and return the rows (for the smoke test)."""
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else tuple(int(n) for n in args.patients.split(","))
    baseline_jobs = args.baseline_jobs or (200 if args.quick else 5_000)
    processes = default_planning_processes() if args.processes is None else args.processes
    print(headline("Planning"), flush=True)
    print(f"planning worker processes: {processes}", flush=True)
    warm_up_workers(processes)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-planning-", dir=args.workdir) as tmp:
        for size in sizes:
            for attempt in range(args.repeat):
                print(f"{size:,} patients (run {attempt + 1}/{args.repeat})", flush=True)
                started = time.perf_counter()
                results.append(measure_size(size, Path(tmp), baseline_jobs, processes))
                print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    print_report(results)
    return results


def print_report(results: list[dict[str, Any]]) -> None:
    """The tables: rates and ratio per size, then the cost per patient (linearity)."""
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_size.setdefault(r["patients"], []).append(r)
    rows = []
    per_patient: dict[int, float] = {}
    for size, runs in by_size.items():
        rates = [r["day_rows"] / r["day_seconds"] for r in runs]
        baselines = [b for r in runs for b in r["baseline"]]
        ratios = [
            (r["day_rows"] / r["day_seconds"]) / statistics.median(r["baseline"]) for r in runs
        ]
        per_patient[size] = statistics.median(r["day_seconds"] / size * 1000 for r in runs)
        single = [
            (r["day_rows"] / r["single_seconds"]) / statistics.median(r["baseline"]) for r in runs
        ]
        rows.append(
            [
                size,
                runs[0]["day_rows"],
                runs[0]["processes"],
                spread([r["day_seconds"] for r in runs]),
                spread(rates),
                spread(baselines),
                spread(ratios),
                f">= {TARGET_RATIO:g}",
                "yes" if min(ratios) >= TARGET_RATIO else "no",
                spread([r["single_seconds"] for r in runs]),
                spread(single),
            ]
        )
    print(
        format_table(
            "Planning pass, next 24 hours (SQLite; median (min-max) over runs)",
            [
                "patients",
                "rows written",
                "workers",
                "pass s",
                "rows/s",
                "APScheduler jobs/s",
                "ratio",
                "target",
                "met",
                "one process s",
                "one process ratio",
            ],
            rows,
        )
    )
    other = []
    for size, runs in by_size.items():
        other.append(
            [
                size,
                runs[0]["cold_rows"],
                spread([r["cold_seconds"] for r in runs]),
                spread([r["cold_rows"] / r["cold_seconds"] for r in runs]),
                runs[0]["steady_rows"],
                spread([r["steady_seconds"] for r in runs]),
                spread([r["store_rows"] / r["store_seconds"] for r in runs]),
                spread(
                    [
                        r["store_rows"] / r["store_seconds"] / statistics.median(r["baseline"])
                        for r in runs
                    ]
                ),
                f"{per_patient[size]:.3f}",
            ]
        )
    print(
        format_table(
            "Other passes and cost per patient",
            [
                "patients",
                "cold rows",
                "cold s",
                "cold rows/s",
                "steady rows",
                "steady s",
                "storing only rows/s",
                "storing vs APScheduler",
                "next-24h ms/patient",
            ],
            other,
        )
    )
    sizes = sorted(per_patient)
    if len(sizes) > 1:
        growth = per_patient[sizes[-1]] / per_patient[sizes[0]]
        print(
            f"\nCost per patient at {sizes[-1]:,} / at {sizes[0]:,}: {growth:.2f} "
            "(1.00 = linear; target: linear growth)"
        )


if __name__ == "__main__":
    main()
