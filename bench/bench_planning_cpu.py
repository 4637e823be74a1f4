"""Planning: where the next-24-hours pass spends its CPU, in one process and with its workers.

Run from the repository root::

    .venv/bin/python -m bench.bench_planning_cpu --patients 10000,100000
    .venv/bin/python -m bench.bench_planning_cpu --quick        # seconds, for a smoke run

For each size, the headline pass of :mod:`bench.bench_planning` (the outbox holds the
previous day's messages; the pass writes the next 24 hours) is run twice on the same
database: planned in this process alone, then as the clock plans it, with its worker
processes. For each it prints the wall time and the CPU seconds of the pass's own
process (every thread: reading chunks, inserting, pickling) and of the workers
(read from ``/proc``, so on Linux only).

CPU seconds hold up on a shared machine far better than wall times do, and they bound
the pass: on ``c`` cores a pass that costs ``T`` CPU seconds in all its processes cannot
take less than ``T / c`` seconds. The last column is that bound as a speed-up over the
one-process pass (``c`` x one-process CPU / the workers' pass CPU): the most the
workers can give on this machine, however well they are scheduled
(``docs/benchmarks.md``, "Issue 13: the gap at 100,000 patients").
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_planning import forget_pass, timed_pass, warm_up_workers
from bench.common import (
    BENCH_NOW,
    Stopwatch,
    bench_engine,
    cpu_seconds,
    format_table,
    headline,
    seed_population,
    sqlite_database,
)
from reminders.planning_workers import default_planning_processes

DEFAULT_SIZES = (10_000, 100_000)
#: The smallest population a pass hands to its workers (more than one chunk of patients).
QUICK_SIZES = (1_000,)


def workers_cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by this process's live child processes.

    None where ``/proc`` is missing: the workers' CPU is then not reported.
    """
    total = 0.0
    for child in multiprocessing.active_children():
        seconds = cpu_seconds(child.pid)
        if seconds is None:
            return None
        total += seconds
    return total


def cpu_of_pass(
    engine: Any, now: datetime, processes: int, *, profile: bool = False
) -> dict[str, Any]:
    """Run the pass at ``now``: rows, wall seconds and CPU seconds of each side.

    ``profile``: print where the pass's own thread spent its time (cProfile, which
    slows it down: the figures returned are then not comparable).
    """
    profiler = cProfile.Profile() if profile else None
    before = workers_cpu_seconds()
    with Stopwatch() as sw:
        if profiler is not None:
            profiler.enable()
        rows, _ = timed_pass(engine, now, processes)
        if profiler is not None:
            profiler.disable()
    after = workers_cpu_seconds()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    workers = None if before is None or after is None else after - before
    return {"rows": rows, "wall": sw.wall, "own_cpu": sw.cpu, "workers_cpu": workers}


def measure_size(
    patients: int,
    directory: Path,
    processes: int,
    *,
    profile: bool = False,
) -> dict[str, Any]:
    """Seed ``patients``, store yesterday's messages, then time today's pass both ways."""
    now = BENCH_NOW
    engine = bench_engine(sqlite_database(directory, f"cpu-{patients}.sqlite3"))
    seed_population(engine, patients, now)
    # As bench.bench_planning times them: each pass follows yesterday's pass made the
    # same way, so the caches of whichever processes plan are warm, as in a running clock.
    yesterday = now - timedelta(hours=24)
    timed_pass(engine, yesterday, 0)
    alone = cpu_of_pass(engine, now, 0)
    forget_pass(engine, now)
    forget_pass(engine, yesterday)
    timed_pass(engine, yesterday, processes)
    with_workers = cpu_of_pass(engine, now, processes, profile=profile)
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{directory / f'cpu-{patients}.sqlite3'}{suffix}").unlink(missing_ok=True)
    if alone["rows"] != with_workers["rows"]:
        raise RuntimeError(
            f"one process wrote {alone['rows']} rows, the workers {with_workers['rows']}"
        )
    return {"patients": patients, "processes": processes, "alone": alone, "workers": with_workers}


def ceiling(result: dict[str, Any], cores: int) -> float | None:
    """The most the workers can speed the pass up on ``cores`` cores, from CPU seconds."""
    workers = result["workers"]
    if workers["workers_cpu"] is None:
        return None
    return cores * result["alone"]["own_cpu"] / (workers["own_cpu"] + workers["workers_cpu"])


def print_report(results: list[dict[str, Any]], cores: int) -> None:
    """One line per pass: wall time, CPU seconds per process, the bound on ``cores`` cores."""
    rows = []
    for r in results:
        for label, run in (
            ("one process", r["alone"]),
            (f"{r['processes']} workers", r["workers"]),
        ):
            workers = run["workers_cpu"]
            total = run["own_cpu"] + (workers or 0.0)
            rows.append(
                [
                    r["patients"],
                    label,
                    run["rows"],
                    f"{run['wall']:.2f}",
                    f"{run['own_cpu']:.2f}",
                    "-" if workers is None else f"{workers:.2f}",
                    f"{total:.2f}",
                    f"{1000 * total / r['patients']:.3f}",
                    f"{r['alone']['wall'] / run['wall']:.2f}",
                    "" if run is r["alone"] else f"{ceiling(r, cores) or 0:.2f}",
                ]
            )
    print(
        format_table(
            f"Next-24-hours pass, CPU seconds (SQLite, {cores} cores)",
            [
                "patients",
                "pass",
                "rows",
                "wall s",
                "own process CPU s",
                "workers CPU s",
                "total CPU s",
                "CPU ms/patient",
                "speed-up (wall)",
                f"speed-up bound on {cores} cores",
            ],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the measurement, print the table and return the rows (for the smoke test)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", default=",".join(str(n) for n in DEFAULT_SIZES))
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    parser.add_argument("--processes", type=int, default=None, help="planning workers")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the pass's own thread (with workers)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite files go")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else tuple(int(n) for n in args.patients.split(","))
    processes = args.processes or default_planning_processes() or 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(headline("Planning CPU"), flush=True)
    warm_up_workers(processes)
    with tempfile.TemporaryDirectory(prefix="bench-planning-cpu-", dir=args.workdir) as tmp:
        results = [measure_size(size, Path(tmp), processes, profile=args.profile) for size in sizes]
    print_report(results, cores or 1)
    return results


if __name__ == "__main__":
    main()
